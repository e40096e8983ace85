//! `pfxhttp state init` and `pfxhttp state check`: the shared state database, by hand.

use super::admin::Setup;
use super::identity::lookup_user;
use crate::cli::StateAction;
use crate::config::{Format, StateDb};
use crate::exit;
use crate::state;
use crate::text::printable;
use std::path::{Path, PathBuf};

pub(super) fn run(path: Result<PathBuf, String>, format: Format, action: StateAction) -> u8 {
    let setup = match Setup::load(path, format) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let db = match &setup.config.state_db {
        StateDb::Memory => {
            println!("server.state_db is :memory:: every process keeps state of its own; nothing to do");
            return exit::OK;
        }
        StateDb::File(p) => p,
    };
    match action {
        StateAction::Init { user } => init(db, user.as_deref()),
        StateAction::Check => check(db),
    }
}

/// Creates the database for the spawn service's `user`.
fn init(db: &Path, user: Option<&str>) -> u8 {
    let owner = match user.map(lookup_user).transpose() {
        Ok(owner) => owner,
        Err(e) => {
            eprintln!("pfxhttp: {e}");
            return exit::USAGE;
        }
    };
    if owner.is_none() && rustix::process::geteuid().is_root() {
        eprintln!(
            "pfxhttp: running as root without --user would leave a database the spawn service cannot \
             write; give --user NAME (the master.cf user=)"
        );
        return exit::USAGE;
    }
    match state::init(db, owner) {
        Ok(done) => {
            done.iter().for_each(|line| println!("{line}"));
            exit::OK
        }
        Err(e) => {
            eprintln!("pfxhttp: {}", printable(&e.to_string()));
            exit::TEMPFAIL
        }
    }
}

/// Reports what is wrong with the database, and the hosts marked down.
fn check(db: &Path) -> u8 {
    let report = state::check(db);
    report.facts.iter().for_each(|line| println!("{}", printable(line)));
    let now = state::now_ms();
    if report.down.is_empty() && report.problems.is_empty() {
        println!("no host is marked down");
    }
    for (host, mark) in &report.down {
        println!(
            "down: {} for {} s more ({} failure(s) in a row, last: {})",
            printable(host),
            (mark.down_until - now + 999) / 1000,
            mark.failures,
            printable(&mark.last_error)
        );
    }
    report.problems.iter().for_each(|p| eprintln!("problem: {}", printable(p)));
    if report.problems.is_empty() { exit::OK } else { exit::NOT_FOUND }
}
