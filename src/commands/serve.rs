//! The serving commands: `socketmap`, `policy`, `tcp` and `sasl`. They write nothing but replies, and
//! nothing to stderr (under spawn(8) it is the client socket).

use crate::cli::Cli;
use crate::config::{self, Config, Format, Limits, Loaded, LogSettings, StateDb};
use crate::connection::{Connection, End};
use crate::http::{Clients, IndexDir};
use crate::proto::policy;
use crate::serve::Server;
use crate::state::Store;
use crate::{exit, log};
use clap::error::{ContextKind, ContextValue};
use clap::{ArgMatches, CommandFactory};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// The protocol a serving command speaks.
pub(super) enum Protocol {
    Socketmap,
    Policy(Option<String>),
    Tcp(String),
    /// The Dovecot auth protocol for a `dovecot_sasl` service (the only one when not named).
    Sasl(Option<String>),
}

impl Protocol {
    /// The command's name, as `pfxhttp_processes_total` counts it.
    fn command(&self) -> &'static str {
        match self {
            Protocol::Socketmap => "socketmap",
            Protocol::Policy(_) => "policy",
            Protocol::Tcp(_) => "tcp",
            Protocol::Sasl(_) => "sasl",
        }
    }
}

/// Serves the connection with the configuration at `path`, or with the reason there is none.
pub(super) fn run(protocol: Protocol, path: Result<PathBuf, String>, format: Format, fd3: Option<OwnedFd>) -> u8 {
    let loaded = path.map(|p| config::load(&p, format)).map_err(|e| format!("pfxhttp configuration error: {e}"));
    serve(protocol, loaded, fd3)
}

/// A command line clap refused. For a serving command nothing may reach stderr, so the error is
/// logged and every request answered with a temporary failure naming it; `None` for any other
/// command.
pub(super) fn refused(args: &[OsString], error: &clap::Error, fd3: impl FnOnce() -> Option<OwnedFd>) -> Option<u8> {
    let protocol = protocol_of(args)?;
    // clap's message up to the usage lines, on one line.
    let message = error.to_string();
    let what: Vec<&str> = message.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
    let what = what.join(" ");
    let reason = format!("pfxhttp command line: {}", what.trim_start_matches("error: "));
    Some(serve(protocol, Err(reason), fd3()))
}

/// The serving command a refused command line names, `None` when it names another command or
/// none. clap parses it a second time, carrying on past errors; as that parse stops at an
/// unknown option before the command, each option clap refuses there is left out in turn.
fn protocol_of(args: &[OsString]) -> Option<Protocol> {
    let mut args = args.to_vec();
    for _ in 0..args.len() {
        let lenient = Cli::command().ignore_errors(true).try_get_matches_from(&args).ok()?;
        if let Some((name, matches)) = lenient.subcommand() {
            return protocol(name, matches);
        }
        let refused = Cli::command().try_get_matches_from(&args).err()?;
        let Some(ContextValue::String(option)) = refused.get(ContextKind::InvalidArg) else {
            return None;
        };
        let is_refused = |word: &OsString| word.to_str().is_some_and(|w| w.starts_with('-') && w.starts_with(option));
        let at = args.iter().skip(1).position(is_refused)?;
        args.remove(at + 1);
    }
    None
}

/// The protocol of subcommand `name`, with the arguments clap could read.
fn protocol(name: &str, matches: &ArgMatches) -> Option<Protocol> {
    let text = |id: &str| matches.try_get_one::<String>(id).ok().flatten().cloned();
    match name {
        "socketmap" => Some(Protocol::Socketmap),
        "policy" => Some(Protocol::Policy(text("service"))),
        "tcp" => Some(Protocol::Tcp(text("map").unwrap_or_default())),
        "sasl" => Some(Protocol::Sasl(text("name"))),
        _ => None,
    }
}

/// Serves the connection. `loaded` is the configuration as loaded, or the reason the command
/// cannot work at all, which becomes the reason of every reply.
fn serve(protocol: Protocol, loaded: Result<Loaded, String>, fd3: Option<OwnedFd>) -> u8 {
    let (logging, limits): (LogSettings, Limits) =
        loaded.as_ref().map_or_else(|_| Default::default(), |l| (l.logging.clone(), l.limits));
    log::init(&logging);
    let config: Result<&Config, String> = match &loaded {
        Ok(l) => l.config.as_ref().map_err(|errors| config_error(errors)),
        Err(reason) => Err(reason.clone()),
    };
    if let Err(reason) = &config {
        // The log line lists every error once; the replies name only the first.
        let what = match &loaded {
            Ok(Loaded { config: Err(errors), .. }) => format!("pfxhttp configuration error: {}", errors.join("; ")),
            _ => reason.clone(),
        };
        log::error(&format!("{what}; every request is answered with a temporary failure"));
    }
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
    let state_db = config.as_ref().ok().map(|c| c.state_db.clone());
    let index_dir = IndexDir::new(move || state_db.as_ref().and_then(crate::state::files_dir));
    let clients = Clients::new(config.as_ref().map_or(&[][..], |c| &c.clients[..])).with_index_dir(index_dir);
    let store = Store::new(config.as_ref().map_or(&StateDb::Memory, |c| &c.state_db));
    if config.as_ref().is_ok_and(|c| c.metrics) {
        store.metrics().start(protocol.command());
    }
    let server = Server { config, transport: &clients, store: &store, verbose: false, use_cache: true };
    let end = answer(&server, &protocol, &mut conn, &limits);
    // The client is gone or done: the last counts go to the shared totals now.
    store.metrics().at_exit();
    match &end {
        // A withheld reply was logged with its request.
        End::Eof | End::Idle | End::Lifetime | End::Withheld(_) => log::debug(&format!("connection ends: {end}")),
        End::Malformed(_) | End::Truncated | End::Stalled | End::Unread => {
            log::warn(&format!("connection closed: {end}"))
        }
        End::Io(_) => log::warn(&format!("connection lost: {end}")),
    }
    // The process exits next. The state database and the HTTP clients close as always; freeing
    // the configuration's many small allocations would only cost time.
    drop(server);
    drop(store);
    drop(clients);
    std::mem::forget(loaded);
    exit::OK
}

/// Answers requests in `protocol` until the connection ends.
fn answer(server: &Server, protocol: &Protocol, conn: &mut Connection, limits: &Limits) -> End {
    let max = limits.max_request_bytes;
    match protocol {
        Protocol::Socketmap => server.socketmap(conn, max),
        Protocol::Tcp(map) => server.tcp(conn, map, max),
        Protocol::Sasl(name) => server.sasl(conn, name.as_deref()),
        Protocol::Policy(service) => {
            let limits = policy::Limits { max_bytes: max, max_attributes: limits.max_policy_attributes };
            server.policy(conn, service.as_deref(), limits)
        }
    }
}

/// The reason every reply gives when the configuration has errors: the first, and how many more.
fn config_error(errors: &[String]) -> String {
    let more = if errors.len() > 1 { format!(" (and {} more)", errors.len() - 1) } else { String::new() };
    format!("pfxhttp configuration error: {}{more}", errors.first().map_or("unknown", String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serving command `protocol_of` finds in `pfxhttp <args>`, as text.
    fn named(args: &[&str]) -> Option<String> {
        let args: Vec<OsString> = std::iter::once("pfxhttp").chain(args.iter().copied()).map(OsString::from).collect();
        protocol_of(&args).map(|p| match p {
            Protocol::Socketmap => "socketmap".to_string(),
            Protocol::Policy(service) => format!("policy {service:?}"),
            Protocol::Tcp(map) => format!("tcp {map}"),
            Protocol::Sasl(name) => format!("sasl {name:?}"),
        })
    }

    #[test]
    fn a_refused_command_line_is_read_again_by_clap() {
        assert_eq!(named(&["--bogus", "socketmap"]).as_deref(), Some("socketmap"));
        assert_eq!(named(&["-c", "x", "--bogus=1", "-q", "tcp", "m", "extra"]).as_deref(), Some("tcp m"));
        assert_eq!(named(&["tcp"]).as_deref(), Some("tcp "));
        assert_eq!(
            named(&["--config", "socketmap", "policy", "svc", "--bogus"]).as_deref(),
            Some("policy Some(\"svc\")")
        );
        assert_eq!(named(&["query", "tcp"]), None, "a protocol word as an argument");
        assert_eq!(named(&["word", "socketmap"]), None, "only options are left out");
        assert_eq!(named(&["--bogus"]), None);
        assert_eq!(named(&["sasl", "smtp-auth", "--bogus"]).as_deref(), Some("sasl Some(\"smtp-auth\")"));
    }
}
