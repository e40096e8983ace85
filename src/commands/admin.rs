//! The commands run by hand that look things up: `check`, `query` and `policy-query`, and the
//! setup every command run by hand shares.

use super::identity;
use crate::answer::Outcome;
use crate::config::{self, Config, Entry, Format, Loaded, LogSettings, LogTarget, StateDb};
use crate::http::Clients;
use crate::lookup::{CacheUse, Report};
use crate::serve::{Server, select_service};
use crate::state::{self, Store};
use crate::text::printable;
use crate::{exit, log, reply};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What a command run by hand works with, built once: the valid configuration and its HTTP
/// clients.
pub(super) struct Setup {
    pub config: Config,
    pub clients: Clients,
}

impl Setup {
    /// Loads the configuration at `path`; when it is not valid, prints its warnings and errors
    /// and gives the exit status.
    pub(super) fn load(path: Result<PathBuf, String>, format: Format) -> Result<Setup, u8> {
        let (loaded, _) = load(path, format)?;
        match loaded.config {
            Ok(config) => {
                let clients = Clients::new(&config.clients);
                Ok(Setup { config, clients })
            }
            Err(ref errors) => {
                print_diagnostics(&loaded.warnings, errors);
                Err(exit::CONFIG)
            }
        }
    }

    /// A server for a lookup run by hand.
    fn server<'a>(&'a self, store: &'a Store, options: Options) -> Server<'a> {
        let use_cache = !options.no_cache;
        Server { config: Ok(&self.config), transport: &self.clients, store, verbose: options.verbose, use_cache }
    }

    /// The state a lookup run by hand uses: the shared database when it exists (so that the
    /// lookup sees and fills the response cache and host marks every process shares), as the
    /// state directory's owner when run as root; else state of its own, never a new database
    /// (made by root, the spawn service's user could not open it).
    pub(super) fn store(&self) -> Store {
        match &self.config.state_db {
            StateDb::File(path) if path.exists() => match state::act_as_owner(path) {
                Ok(()) => Store::new(&self.config.state_db),
                Err(e) => {
                    eprintln!("pfxhttp: {}; using state of this process only", printable(&e.to_string()));
                    Store::new(&StateDb::Memory)
                }
            },
            _ => Store::new(&StateDb::Memory),
        }
    }
}

/// How `query` and `policy-query` run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options {
    /// Show the HTTP exchange.
    pub verbose: bool,
    /// Leave the response cache alone.
    pub no_cache: bool,
}

/// What a report says on stderr: the masked HTTP exchange, and what the cache did.
fn show(report: Option<&Report>) {
    let Some(r) = report else { return };
    for line in &r.transcript {
        eprintln!("{}", printable(line));
    }
    match &r.cache {
        Some(CacheUse::Hit { age }) => eprintln!("cache: hit (age {age}s)"),
        Some(CacheUse::Stale { age, failure }) => {
            eprintln!("cache: stale (age {age}s; the API failed: {})", printable(failure))
        }
        Some(CacheUse::Miss) => eprintln!("cache: miss"),
        None => {}
    }
}

/// Loads the configuration for a command run by hand; with no file to load, prints why.
fn load(path: Result<PathBuf, String>, format: Format) -> Result<(Loaded, PathBuf), u8> {
    let path = path.map_err(|e| {
        eprintln!("pfxhttp: {e}");
        exit::CONFIG
    })?;
    let loaded = config::load(&path, format);
    log::init_interactive(&loaded.logging);
    Ok((loaded, path))
}

fn print_diagnostics(warnings: &[String], errors: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for e in errors {
        eprintln!("error: {e}");
    }
}

pub(super) fn check(path: Result<PathBuf, String>, format: Format, user: Option<&str>) -> u8 {
    match user {
        Some(name) => {
            if let Err(e) = identity::become_user(name) {
                eprintln!("pfxhttp: {e}");
                return exit::USAGE;
            }
        }
        None if rustix::process::geteuid().is_root() => eprintln!(
            "note: root reads every file; the spawn service's user may not: `pfxhttp check --user USER` reads \
             them as USER (master.cf user=)"
        ),
        None => {}
    }
    let (loaded, path) = match load(path, format) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let config = match &loaded.config {
        Ok(config) => config,
        Err(errors) => {
            print_diagnostics(&loaded.warnings, errors);
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            return exit::CONFIG;
        }
    };
    print_diagnostics(&loaded.warnings, &[]);
    for note in notes(config, user) {
        eprintln!("{note}");
    }
    let sasl: Vec<&str> = config.sasl.iter().map(|s| s.entry.name.as_str()).collect();
    let counts = [
        counted("socket map(s)", &names(&config.maps)),
        counted("policy service(s)", &names(&config.policies)),
        counted("dovecot_sasl service(s)", &sasl),
    ];
    println!("{}: OK ({})", path.display(), counts.join("; "));
    exit::OK
}

/// The names of `entries`, as written in the file.
fn names(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

/// `2 socket map(s): a, b`, or `0 socket map(s)`.
fn counted(label: &str, names: &[&str]) -> String {
    match names {
        [] => format!("0 {label}"),
        _ => format!("{} {label}: {}", names.len(), names.join(", ")),
    }
}

/// What `check` warns of in a valid configuration beyond the file itself.
fn notes(config: &Config, user: Option<&str>) -> Vec<String> {
    let mut notes: Vec<String> = logging_note(&config.logging).into_iter().collect();
    if let StateDb::Memory = config.state_db
        && config
            .maps
            .iter()
            .chain(&config.policies)
            .chain(config.sasl.iter().map(|s| &s.entry))
            .any(|e| e.auth.is_some())
    {
        notes.push("warning: server.state_db: with :memory: every process fetches a token of its own".to_string());
    }
    if let StateDb::Memory = config.state_db
        && config.sasl.iter().any(|s| s.oidc.is_some())
    {
        notes.push(
            "warning: server.state_db: with :memory: every sasl process fetches the identity provider's discovery \
             document and keys for itself"
                .to_string(),
        );
    }
    if let StateDb::File(db) = &config.state_db
        && std::fs::symlink_metadata(db).is_err()
    {
        notes.push(format!(
            "warning: server.state_db: {} does not exist; until it does, every process keeps host marks, \
             tokens and the response cache to itself. Create it as root with `pfxhttp state init --user \
             USER` (USER: master.cf's user=)",
            db.display()
        ));
    }
    if let (StateDb::File(db), Some(user)) = (&config.state_db, user)
        && let Err(why) = writable(db)
    {
        notes.push(format!(
            "warning: server.state_db: {user} cannot use {}: {why}; its processes would keep state to \
             themselves (`pfxhttp state check` says more)",
            db.display()
        ));
    }
    let entries =
        config.maps.iter().map(|e| ("socket_maps", e)).chain(config.policies.iter().map(|e| ("policy_services", e)));
    notes.extend(entries.filter_map(|(section, entry)| fixed_path_404(section, entry)));
    notes
}

/// What `check` says about where serving processes log: a socket that is not there (they log
/// nothing until it is), or that `stderr` is for commands run by hand only.
fn logging_note(logging: &LogSettings) -> Option<String> {
    let (syslog, postlog) = (&logging.syslog_socket, &logging.postlog_socket);
    let missing = |key: &str, path: &Path| {
        format!(
            "warning: server.logging.{key}: {} does not exist; serving processes log nothing until it does",
            path.display()
        )
    };
    match logging.target {
        LogTarget::Syslog if !syslog.exists() => Some(missing("syslog_socket", syslog)),
        LogTarget::Postlog if !postlog.exists() => Some(format!(
            "{} (or this user cannot reach it: Postfix's public/ is open to the postdrop group only; run the \
             service as user=USER:postdrop)",
            missing("postlog_socket", postlog)
        )),
        LogTarget::Auto | LogTarget::Stderr if !syslog.exists() && !postlog.exists() => Some(format!(
            "warning: server.logging: neither {} (syslog_socket) nor {} (postlog_socket) exists; serving \
             processes log nothing until one does",
            syslog.display(),
            postlog.display()
        )),
        LogTarget::Stderr => Some(
            "note: server.logging.target: stderr is for commands run by hand; serving processes log as with \
             auto (their stderr may be the client's connection)"
                .to_string(),
        ),
        _ => None,
    }
}

/// Whether this process can write the database `db` and create files beside it (SQLite's
/// `-wal` and `-shm`); a database that does not exist is reported on its own.
fn writable(db: &Path) -> Result<(), String> {
    use rustix::fs::{Access, access};
    if std::fs::symlink_metadata(db).is_err() {
        return Ok(());
    }
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    access(dir, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| format!("directory {}: {e}", dir.display()))?;
    access(db, Access::READ_OK | Access::WRITE_OK).map_err(|e| e.to_string())
}

/// A 404 from a URL whose path does not hold the key cannot mean "no such key": it means a wrong
/// URL, which `not_found_status` would turn into "not found" (a 550 reject in
/// `virtual_mailbox_maps`) instead of a temporary failure.
fn fixed_path_404(section: &str, entry: &Entry) -> Option<String> {
    if !entry.answer.not_found_status.contains(&404) {
        return None;
    }
    let path = entry.targets.iter().map(|t| url_path(t.template.source())).find(|p| !p.contains("{{"))?;
    Some(format!(
        "warning: {section}.{}.not_found_status: 404 on the fixed path {} means a wrong URL, not a \
         missing key, and answers \"not found\" instead of a temporary failure; put the key in \
         the path or leave 404 out",
        entry.name,
        printable(path)
    ))
}

/// The path of a URL (template): after the host, before any query or fragment.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    rest.find('/').map_or("/", |at| &rest[at..])
}

pub(super) fn query(path: Result<PathBuf, String>, format: Format, map: &str, key: &str, options: Options) -> u8 {
    let setup = match Setup::load(path, format) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let store = setup.store();
    let server = setup.server(&store, options);
    let (outcome, mut report) = server.map_lookup(map, key.as_bytes());
    show(report.as_ref());
    server.store_for_later(report.as_mut());
    let reply = reply::socketmap(&outcome, setup.config.socketmap_max_reply_size);
    println!("{}", reply.wire);
    if let Outcome::Failure(failure) = &outcome {
        eprintln!("pfxhttp: {map}: {}", printable(&failure.reason));
    }
    match reply.kind {
        reply::Kind::Found => exit::OK,
        reply::Kind::NotFound => exit::NOT_FOUND,
        reply::Kind::Failed => exit::TEMPFAIL,
    }
}

pub(super) fn policy_query(
    path: Result<PathBuf, String>,
    format: Format,
    service: &str,
    args: &[String],
    options: Options,
) -> u8 {
    let setup = match Setup::load(path, format) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let lines: Vec<String> = if args.is_empty() {
        std::io::stdin().lock().lines().map_while(Result::ok).take_while(|l| !l.trim().is_empty()).collect()
    } else {
        args.to_vec()
    };
    let mut attrs = BTreeMap::new();
    for line in &lines {
        let Some((name, value)) = line.split_once('=') else {
            eprintln!("pfxhttp: {line:?} is not name=value");
            return exit::USAGE;
        };
        attrs.insert(name.trim().to_string(), value.trim().to_string());
    }
    let store = setup.store();
    let server = setup.server(&store, options);
    let (action, mut report, _) = server.policy_check(Some(service), &attrs);
    show(report.as_ref());
    server.store_for_later(report.as_mut());
    println!("action={action}");
    // A failure's answer is the default action, which does not say what went wrong.
    let failure = match report.map(|r| r.outcome) {
        Some(Outcome::Failure(f)) => f.reason,
        Some(_) => return exit::OK,
        None => select_service(&setup.config, Some(service), &attrs).err().unwrap_or_default(),
    };
    eprintln!("pfxhttp: {service}: {} (the answer is the default_action)", printable(&failure));
    exit::TEMPFAIL
}
