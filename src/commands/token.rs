//! `pfxhttp token`: the cached token of a map or policy service with backend authentication,
//! shown without the token itself, and fetched anew on request.

use super::admin::Setup;
use crate::auth::Tokens;
use crate::config::{Format, StateDb};
use crate::exit;
use crate::state::{self, Store, TokenRow};
use crate::text::printable;
use std::path::PathBuf;

pub(super) fn run(path: Result<PathBuf, String>, format: Format, name: &str, refresh: bool) -> u8 {
    let setup = match Setup::load(path, format) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let config = &setup.config;
    let Some(entry) = config.map(name).or_else(|| config.policy(name)) else {
        eprintln!("pfxhttp: no socket map or policy service called {name}");
        return exit::USAGE;
    };
    if entry.auth.is_none() {
        eprintln!("pfxhttp: {} has no jwt_auth or backend_oidc_auth", entry.name);
        return exit::USAGE;
    }
    // Only an existing database is used: run by hand as root, this must not create one that the
    // spawn service's user could then not open.
    let setting = match &config.state_db {
        StateDb::File(p) if p.exists() => {
            if let Err(e) = state::try_open(p) {
                eprintln!("pfxhttp: {e}");
                return exit::TEMPFAIL;
            }
            config.state_db.clone()
        }
        StateDb::File(p) => {
            println!("no state database at {} (pfxhttp state init creates it)", p.display());
            StateDb::Memory
        }
        StateDb::Memory => StateDb::Memory,
    };
    let store = Store::new(&setting);
    let deadline = std::time::Instant::now() + entry.retry.deadline;
    let Some(tokens) = Tokens::for_entry(entry, &store, &setup.clients, deadline) else {
        return exit::USAGE;
    };
    println!("{}: {}", entry.name, tokens.describe());
    if refresh {
        if let Err(e) = tokens.refresh() {
            eprintln!("pfxhttp: {}", printable(&e.to_string()));
            return exit::TEMPFAIL;
        }
        if setting == StateDb::Memory {
            println!("fetched a new token, kept by this process only (no state database to share it through)");
        } else {
            println!("fetched a new token");
        }
    }
    print_token_status(tokens.status());
    exit::OK
}

/// The shared token row as `pfxhttp token` shows it: ages and times, never the token.
fn print_token_status(row: Option<TokenRow>) {
    let now = state::now_ms();
    let secs = |ms: i64| (ms + 999) / 1000;
    let Some(row) = row else {
        println!("token: none yet\nlease: free");
        return;
    };
    match &row.token {
        Some(t) if t.expires_at > now => println!(
            "token: valid for {} s more, fetched {} s ago, renewed from {}",
            secs(t.expires_at - now),
            (now - row.fetched_at) / 1000,
            if row.refresh_from > now { format!("in {} s", secs(row.refresh_from - now)) } else { "now".into() }
        ),
        Some(_) => println!("token: expired"),
        None => println!("token: none"),
    }
    if row.lease_until > now {
        println!("lease: held by process {} for {} s more", row.lease_pid, secs(row.lease_until - now));
    } else {
        println!("lease: free");
    }
}
