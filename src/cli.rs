//! The command line.

use crate::config::Format;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "pfxhttp", version, about = "Postfix lookup tables and policy checks answered by HTTP APIs")]
pub struct Cli {
    /// The configuration file (default: the first of /usr/local/etc/pfxhttp/pfxhttp.yml,
    /// /etc/pfxhttp/pfxhttp.yml, ~/.pfxhttp/pfxhttp.yml, ./pfxhttp.yml; with --format toml or
    /// json, pfxhttp.toml or pfxhttp.json is tried first in each directory).
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The configuration file's format; a file name ending in .toml, .json, .yml or .yaml
    /// says it instead.
    #[arg(long, value_enum, default_value = "yaml", global = true)]
    pub format: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve socketmap_table(5) requests on the connection (stdin/stdout, or fd 3).
    Socketmap,
    /// Serve policy delegation requests; SERVICE names a policy_services entry, else each
    /// request's policy_context selects one (or the only one configured is used).
    Policy {
        /// The policy_services entry (default: the one policy_context names, or the only one).
        service: Option<String>,
    },
    /// Serve tcp_table(5) requests for socket_maps entry MAP.
    Tcp {
        /// The socket_maps entry.
        map: String,
    },
    /// Serve Dovecot's auth protocol to Postfix smtpd (smtpd_sasl_type = dovecot) for the
    /// dovecot_sasl service NAME (or the only one configured).
    Sasl {
        /// The dovecot_sasl entry (default: the only one).
        name: Option<String>,
    },
    /// Validate the configuration: every error with its path; exit 0, or 78 on errors.
    Check {
        /// Read the files as user NAME (master.cf user=) would: the config, every secret and TLS
        /// file, and the state database; needs root.
        #[arg(long, value_name = "NAME", conflicts_with = "postfix")]
        user: Option<String>,
        /// Check Postfix's side instead, as postconf(1) shows it: the master.cf services that run
        /// pfxhttp, and the maps, policy services and SASL sockets main.cf points at; exit 0, or
        /// 78 with each problem and its fix.
        #[arg(long)]
        postfix: bool,
        /// With --postfix: the Postfix configuration directory to check (postconf -c DIR).
        #[arg(long, value_name = "DIR", conflicts_with = "user")]
        postfix_config: Option<PathBuf>,
    },
    /// Look KEY up in MAP as Postfix would; prints the reply. Exit 0 found, 1 not found,
    /// 75 failure.
    Query {
        /// Show the HTTP request and response (secrets masked) on stderr.
        #[arg(short, long)]
        verbose: bool,
        /// Neither read nor write the response cache.
        #[arg(long)]
        no_cache: bool,
        /// The socket_maps entry.
        map: String,
        /// The key, as Postfix would send it.
        key: String,
    },
    /// Run a policy check: NAME=VALUE arguments, or name=value lines on stdin; prints the action.
    PolicyQuery {
        /// Show the HTTP request and response (secrets masked) on stderr.
        #[arg(short, long)]
        verbose: bool,
        /// Neither read nor write the response cache.
        #[arg(long)]
        no_cache: bool,
        /// The policy_services entry.
        service: String,
        /// Attributes as NAME=VALUE (default: read from stdin).
        attributes: Vec<String>,
    },
    /// Check USER's password or bearer token (read from stdin, one trailing newline dropped) with
    /// dovecot_sasl service NAME as smtpd would; prints what smtpd would get. Exit 0 OK, 1 FAIL,
    /// 75 failure.
    SaslQuery {
        /// Show the exchange (the password or token masked) on stderr.
        #[arg(short, long)]
        verbose: bool,
        /// The SASL mechanism; xoauth2 and oauthbearer read a bearer token from stdin.
        #[arg(long, value_enum, default_value = "plain")]
        mech: SaslMech,
        /// The dovecot_sasl entry.
        name: String,
        /// The user name, as the SMTP client would give it.
        user: String,
    },
    /// Show the cached token of a map or policy service with backend authentication: kind,
    /// endpoint, expiry, age and lease — never the token itself.
    Token {
        /// Fetch a new token now.
        #[arg(long)]
        refresh: bool,
        /// The socket_maps or policy_services entry.
        name: String,
    },
    /// The response cache in the state database: what it holds, or remove rows.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Print the metrics' totals from the state database in the Prometheus text format
    /// (version 0.0.4).
    Stats {
        /// Write them to FILE instead, atomically (a temporary file in the same directory,
        /// renamed), for node_exporter's textfile collector.
        #[arg(long, value_name = "FILE", conflicts_with = "reset")]
        textfile: Option<PathBuf>,
        /// Zero every counter (asks first, unless --yes).
        #[arg(long)]
        reset: bool,
        /// Do not ask before --reset.
        #[arg(long, requires = "reset")]
        yes: bool,
    },
    /// The shared state database (server.state_db): create it, or report on it.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
}

/// The mechanisms `sasl-query` can try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMech {
    Plain,
    Login,
    Xoauth2,
    Oauthbearer,
}

#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Create the database and its directory (mode 0700) for the spawn service's user.
    Init {
        /// The user the spawn service runs as (master.cf user=); needed when run as root.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Report what is wrong with the database, and the hosts currently marked down.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// One line per entry: rows, found and not-found rows, oldest and newest age, bytes.
    Stats {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only this map or policy service.
        name: Option<String>,
    },
    /// Remove rows: all, an entry's, or the one for KEY (rendered through the entry's cache key
    /// template as a request would be; for a policy service, the rendered key text itself).
    Flush {
        /// The map or policy service (default: every entry).
        name: Option<String>,
        /// The key (default: every key of the entry).
        key: Option<String>,
    },
}

impl Cli {
    /// The command line of a serving command in its plain forms (`[--config FILE] socketmap`,
    /// `tcp MAP`, `policy [SERVICE]`, `sasl [NAME]`, the option before or after the command),
    /// read without building clap's parser: Postfix starts one process per connection, and
    /// clap's work is a tenth of an idle process's. Anything else (another option, a repeated
    /// one, a value clap would refuse or read differently) is `None`, left to clap.
    pub fn serving(args: &[OsString]) -> Option<Cli> {
        let mut words = Vec::with_capacity(args.len());
        for arg in args.iter().skip(1) {
            words.push(arg.to_str()?);
        }
        let (mut config, mut rest) = (None, Vec::with_capacity(2));
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            let value = match word {
                "-c" | "--config" => words.next()?,
                _ => match word.strip_prefix("--config=") {
                    Some(value) => value,
                    None if word.starts_with('-') => return None,
                    None => {
                        rest.push(word);
                        continue;
                    }
                },
            };
            if config.is_some() || value.is_empty() || value.starts_with('-') {
                return None;
            }
            config = Some(PathBuf::from(value));
        }
        let command = match rest[..] {
            ["socketmap"] => Command::Socketmap,
            ["tcp", map] => Command::Tcp { map: map.to_string() },
            ["policy"] => Command::Policy { service: None },
            ["policy", service] => Command::Policy { service: Some(service.to_string()) },
            ["sasl"] => Command::Sasl { name: None },
            ["sasl", name] => Command::Sasl { name: Some(name.to_string()) },
            _ => return None,
        };
        Some(Cli { config, format: Format::Yaml, command })
    }
}

#[cfg(test)]
mod tests;
