//! What each command does. Serving commands write only protocol replies; the others print to
//! the terminal.

use crate::cli::{Cli, Command, StateAction};
use crate::config::{self, Format, Loaded, StateDb};
use crate::connection::{Connection, End};
use crate::http::Clients;
use crate::proto::policy;
use crate::serve::Server;
use crate::state::{self, Store};
use crate::text::printable;
use crate::{exit, log, reply};
use clap::Parser;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::BufRead;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The protocol a serving command speaks.
enum Protocol {
    Socketmap,
    Policy(Option<String>),
    Tcp(String),
}

/// The whole program: parses `args` and runs the command; returns the exit status.
/// `fd3` yields the connection systemd passed, if any (taking it needs `unsafe`, kept in main).
pub fn main(args: &[OsString], fd3: impl Fn() -> Option<OwnedFd>) -> u8 {
    match Cli::try_parse_from(args) {
        Ok(cli) => run(cli, fd3()),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            exit::OK
        }
        Err(e) => serve_usage_error(args, &e.to_string(), fd3()).unwrap_or_else(|| {
            let _ = e.print();
            exit::USAGE
        }),
    }
}

/// Runs a parsed command line. `fd3` is the connection passed by systemd, if any.
fn run(cli: Cli, fd3: Option<OwnedFd>) -> u8 {
    let path = config::find(cli.config.as_deref());
    let protocol = match cli.command {
        Command::Socketmap => Protocol::Socketmap,
        Command::Policy { service } => Protocol::Policy(service),
        Command::Tcp { map } => Protocol::Tcp(map),
        Command::Check => return check(path, cli.format),
        Command::Query { verbose, map, key } => return query(path, cli.format, &map, &key, verbose),
        Command::PolicyQuery { verbose, service, attributes } => {
            return policy_query(path, cli.format, &service, &attributes, verbose);
        }
        Command::State { action } => return state(path, cli.format, action),
        Command::Token { refresh, name } => return token(path, cli.format, &name, refresh),
    };
    let loaded = path.map(|p| config::load(&p, cli.format)).map_err(|e| format!("pfxhttp configuration error: {e}"));
    serve(protocol, loaded, fd3)
}

/// A command line clap refused. For a serving command nothing may reach stderr, so the error is
/// logged and every request answered with a temporary failure naming it; `None` otherwise.
fn serve_usage_error(args: &[OsString], message: &str, fd3: Option<OwnedFd>) -> Option<u8> {
    let words: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    // The subcommand is the first word that is neither an option nor an option's value.
    let mut at = 0;
    while let Some(word) = words.get(at) {
        match word.as_str() {
            "-c" | "--config" | "--format" => at += 2,
            w if w.starts_with('-') => at += 1,
            _ => break,
        }
    }
    let protocol = match words.get(at)?.as_str() {
        "socketmap" => Protocol::Socketmap,
        "policy" => Protocol::Policy(None),
        "tcp" => Protocol::Tcp(words.get(at + 1).cloned().unwrap_or_default()),
        _ => return None,
    };
    // clap's message up to the usage lines, on one line.
    let what: Vec<&str> = message.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
    let what = what.join(" ");
    Some(serve(protocol, Err(format!("pfxhttp command line: {}", what.trim_start_matches("error: "))), fd3))
}

/// Serves the connection. `loaded` is the configuration as loaded, or the reason the command
/// cannot work at all, which becomes the reason of every reply.
fn serve(protocol: Protocol, loaded: Result<Loaded, String>, fd3: Option<OwnedFd>) -> u8 {
    let (loaded, config) = match loaded {
        Ok(l) => {
            let config = l.config.is_none().then(|| config_error(&l.diagnostics.errors));
            (Some(l), config)
        }
        Err(reason) => (None, Some(reason)),
    };
    log::init(&loaded.as_ref().map(|l| l.logging.clone()).unwrap_or_default());
    let limits = loaded.as_ref().map(|l| l.limits).unwrap_or_default();
    if let Some(reason) = &config {
        let all = loaded.as_ref().map(|l| l.diagnostics.errors.join("; ")).unwrap_or_default();
        log::error(&format!("{reason}; every request is answered with a temporary failure. {all}"));
    }
    let config = match (&loaded, config) {
        (Some(Loaded { config: Some(c), .. }), _) => Ok(c),
        (_, reason) => Err(reason.unwrap_or_default()),
    };
    let conn = match fd3 {
        Some(fd) => fd.try_clone().map(|input| Connection::new(input.into(), fd.into(), &limits)),
        None => Connection::stdio(&limits),
    };
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            log::error(&format!("cannot use the connection: {e}"));
            return exit::OK;
        }
    };
    let clients = Clients::new(config.as_ref().map_or(&[][..], |c| &c.clients[..]));
    let store = Store::new(config.as_ref().map_or(&StateDb::Memory, |c| &c.state_db));
    let server = Server { config, transport: &clients, store: &store, verbose: false };
    let max = limits.max_request_bytes;
    let end = match &protocol {
        Protocol::Socketmap => server.socketmap(&mut conn, max),
        Protocol::Tcp(map) => server.tcp(&mut conn, map, max),
        Protocol::Policy(service) => {
            let limits = policy::Limits { max_bytes: max, max_attributes: limits.max_policy_attributes };
            server.policy(&mut conn, service.as_deref(), limits)
        }
    };
    match &end {
        End::Eof | End::Idle | End::Lifetime => log::debug(&format!("connection ends: {end}")),
        End::Malformed(_) | End::Truncated | End::Stalled | End::Unread => {
            log::warn(&format!("connection closed: {end}"))
        }
        End::Io(_) => log::warn(&format!("connection lost: {end}")),
    }
    exit::OK
}

/// The reason every reply gives when the configuration has errors: the first, and how many more.
fn config_error(errors: &[String]) -> String {
    let more = if errors.len() > 1 { format!(" (and {} more)", errors.len() - 1) } else { String::new() };
    format!("pfxhttp configuration error: {}{more}", errors.first().map_or("unknown", String::as_str))
}

/// Loads for an interactive command, printing every error; `None` when unusable.
fn load_interactive(
    path: Result<std::path::PathBuf, String>,
    format: Format,
) -> Result<(Loaded, std::path::PathBuf), u8> {
    let path = path.map_err(|e| {
        eprintln!("pfxhttp: {e}");
        exit::CONFIG
    })?;
    let loaded = config::load(&path, format);
    log::init(&loaded.logging);
    Ok((loaded, path))
}

/// The valid configuration for an interactive command; its errors printed otherwise.
fn valid_config(path: Result<std::path::PathBuf, String>, format: Format) -> Result<config::Config, u8> {
    let (loaded, _) = load_interactive(path, format)?;
    match loaded.config {
        Some(config) => Ok(config),
        None => {
            print_diagnostics(&loaded);
            Err(exit::CONFIG)
        }
    }
}

fn print_diagnostics(loaded: &Loaded) {
    for w in &loaded.diagnostics.warnings {
        eprintln!("warning: {w}");
    }
    for e in &loaded.diagnostics.errors {
        eprintln!("error: {e}");
    }
}

fn check(path: Result<std::path::PathBuf, String>, format: Format) -> u8 {
    let (loaded, path) = match load_interactive(path, format) {
        Ok(l) => l,
        Err(code) => return code,
    };
    print_diagnostics(&loaded);
    let Some(config) = &loaded.config else {
        eprintln!("{}: {} error(s)", path.display(), loaded.diagnostics.errors.len());
        return exit::CONFIG;
    };
    let mut notes = Vec::new();
    if !Path::new(&config.logging.syslog_socket).exists() {
        notes.push(format!(
            "warning: server.logging.syslog_socket: {} does not exist; serving processes log nothing",
            config.logging.syslog_socket.display()
        ));
    }
    if let StateDb::Memory = config.state_db
        && config.maps.iter().chain(&config.policies).any(|e| e.auth.is_some())
    {
        notes.push("warning: server.state_db: with :memory: every process fetches a token of its own".to_string());
    }
    for n in &notes {
        eprintln!("{n}");
    }
    let names = |entries: &[config::Entry]| entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ");
    println!(
        "{}: OK ({} socket map(s): {}; {} policy service(s): {})",
        path.display(),
        config.maps.len(),
        names(&config.maps),
        config.policies.len(),
        names(&config.policies)
    );
    exit::OK
}

fn query(path: Result<std::path::PathBuf, String>, format: Format, map: &str, key: &str, verbose: bool) -> u8 {
    let config = match valid_config(path, format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = &config;
    let clients = Clients::new(&config.clients);
    // State of its own: run by hand as root, it must not create root-owned database files that
    // the spawn service's user could then not open.
    let store = Store::new(&StateDb::Memory);
    let server = Server { config: Ok(config), transport: &clients, store: &store, verbose };
    let (outcome, report) = server.map_lookup(map, key.as_bytes());
    if let Some(r) = &report {
        for line in &r.transcript {
            eprintln!("{}", printable(line));
        }
    }
    let text = reply::socketmap(&outcome, config.socketmap_max_reply_size);
    println!("{text}");
    match text.split(' ').next() {
        Some("OK") => exit::OK,
        Some("NOTFOUND") => exit::NOT_FOUND,
        _ => exit::TEMPFAIL,
    }
}

fn policy_query(
    path: Result<std::path::PathBuf, String>,
    format: Format,
    service: &str,
    args: &[String],
    verbose: bool,
) -> u8 {
    let config = match valid_config(path, format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = &config;
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
    let clients = Clients::new(&config.clients);
    // State of its own: run by hand as root, it must not create root-owned database files that
    // the spawn service's user could then not open.
    let store = Store::new(&StateDb::Memory);
    let server = Server { config: Ok(config), transport: &clients, store: &store, verbose };
    let (action, report, _) = server.policy_check(Some(service), &attrs);
    if let Some(r) = &report {
        for line in &r.transcript {
            eprintln!("{}", printable(line));
        }
    }
    println!("action={action}");
    match report.map(|r| r.outcome) {
        Some(crate::answer::Outcome::Failure(_)) | None => exit::TEMPFAIL,
        _ => exit::OK,
    }
}

fn state(path: Result<std::path::PathBuf, String>, format: Format, action: StateAction) -> u8 {
    let config = match valid_config(path, format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = &config;
    let db = match &config.state_db {
        StateDb::Memory => {
            println!("server.state_db is :memory:: every process keeps state of its own; nothing to do");
            return exit::OK;
        }
        StateDb::File(p) => p,
    };
    match action {
        StateAction::Init { user } => {
            let owner = match user.as_deref().map(lookup_user).transpose() {
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
        StateAction::Check => {
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
    }
}

/// The uid and primary gid of user `name`, from /etc/passwd.
fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| format!("no user {name} in /etc/passwd"))
}

fn token(path: Result<std::path::PathBuf, String>, format: Format, name: &str, refresh: bool) -> u8 {
    let config = match valid_config(path, format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = &config;
    let Some(entry) = config.map(name).or_else(|| config.policy(name)) else {
        eprintln!("pfxhttp: no socket map or policy service called {name}");
        return exit::USAGE;
    };
    let Some(auth) = &entry.auth else {
        eprintln!("pfxhttp: {} has no jwt_auth or backend_oidc_auth", entry.name);
        return exit::USAGE;
    };
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
    println!("{}: {}", entry.name, crate::auth::describe(auth));
    if refresh {
        let clients = Clients::new(&config.clients);
        let deadline = std::time::Instant::now() + entry.retry.deadline;
        let fetch = crate::auth::fetch::Fetch::for_entry(entry, &clients, deadline);
        if let Err(e) = crate::auth::refresh(auth, &store, &fetch) {
            eprintln!("pfxhttp: {}", printable(&e.to_string()));
            return exit::TEMPFAIL;
        }
        if setting == StateDb::Memory {
            println!("fetched a new token, kept by this process only (no state database to share it through)");
        } else {
            println!("fetched a new token");
        }
    }
    let now = state::now_ms();
    let secs = |ms: i64| (ms + 999) / 1000;
    match store.token(&crate::auth::key(auth)) {
        Some(row) => {
            match &row.token {
                Some(t) if t.expires_at > now => println!(
                    "token: valid for {} s more, fetched {} s ago, renewed from {}",
                    secs(t.expires_at - now),
                    (now - row.fetched_at) / 1000,
                    if row.refresh_from > now {
                        format!("in {} s", secs(row.refresh_from - now))
                    } else {
                        "now".into()
                    }
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
        None => println!("token: none yet\nlease: free"),
    }
    exit::OK
}
