//! What each command does: `serve` runs the serving commands, which write only protocol
//! replies; `admin`, `cache`, `state`, `stats` and `token` run the others, which print to the terminal.

mod admin;
mod cache;
mod identity;
mod postfix;
mod sasl_query;
mod serve;
mod state;
mod stats;
mod token;

use crate::cli::{Cli, Command};
use crate::config;
use crate::exit;
use clap::Parser;
use serve::Protocol;
use std::ffi::OsString;
use std::os::fd::OwnedFd;

/// The whole program: parses `args` and runs the command; returns the exit status.
/// `fd3` yields the connection systemd passed, if any (taking it needs `unsafe`, kept in main).
pub fn main(args: &[OsString], fd3: impl Fn() -> Option<OwnedFd>) -> u8 {
    if let Some(cli) = Cli::serving(args) {
        return run(cli, fd3());
    }
    match Cli::try_parse_from(args) {
        Ok(cli) => run(cli, fd3()),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            exit::OK
        }
        Err(e) => serve::refused(args, &e, fd3).unwrap_or_else(|| {
            let _ = e.print();
            exit::USAGE
        }),
    }
}

/// Runs a parsed command line. `fd3` is the connection passed by systemd, if any.
fn run(cli: Cli, fd3: Option<OwnedFd>) -> u8 {
    let path = config::find(cli.config.as_deref(), cli.format);
    let format = cli.format;
    let protocol = match cli.command {
        Command::Socketmap => Protocol::Socketmap,
        Command::Policy { service } => Protocol::Policy(service),
        Command::Tcp { map } => Protocol::Tcp(map),
        Command::Sasl { name } => Protocol::Sasl(name),
        Command::SaslQuery { verbose, mech, name, user } => {
            return sasl_query::run(path, format, sasl_query::Login { name: &name, user: &user, mech }, verbose);
        }
        Command::Check { postfix: false, postfix_config: None, user } => {
            return admin::check(path, format, user.as_deref());
        }
        Command::Check { postfix_config, .. } => return postfix::check(postfix_config.as_deref()),
        Command::Query { verbose, no_cache, map, key } => {
            return admin::query(path, format, &map, &key, admin::Options { verbose, no_cache });
        }
        Command::PolicyQuery { verbose, no_cache, service, attributes } => {
            return admin::policy_query(path, format, &service, &attributes, admin::Options { verbose, no_cache });
        }
        Command::Cache { action } => return cache::run(path, format, action),
        Command::State { action } => return state::run(path, format, action),
        Command::Stats { textfile, reset, yes } => {
            return stats::run(path, format, stats::Options { textfile, reset, yes });
        }
        Command::Token { refresh, name } => return token::run(path, format, &name, refresh),
    };
    serve::run(protocol, path, format, fd3)
}
