//! pfxhttp answers Postfix lookup tables and SMTP access policy checks by calling HTTP APIs.
//!
//! Postfix's master(8) starts one pfxhttp process per client connection (a `spawn(8)` service,
//! or systemd socket activation with `Accept=yes`). The process reads requests from the
//! connection until EOF, turns each into an HTTP request, maps the answer to a Postfix reply and
//! writes it back. It never listens, forks or daemonises.
//!
//! # Wire protocols
//!
//! **socketmap_table(5)**: requests and replies are netstrings, `<length>:<payload>,` where the
//! length is ASCII digits only. A request payload is `<mapname> <key>` (split at the first space;
//! the key may contain spaces). A reply payload is one of `OK <value>`, `NOTFOUND `,
//! `TEMP <reason>`, `TIMEOUT <reason>` or `PERM <reason>`. Postfix defers mail on the last three.
//!
//! **Policy delegation**: a request is `name=value` lines ended by an empty line; the reply is
//! `action=<text>` followed by an empty line.
//!
//! **tcp_table(5)**: a request is `get <key>\n` with `%XX` escapes; the reply is one line of at
//! most 4096 bytes: `200 <value, %XX-encoded>`, `500 <text>` (not found) or `400 <text>`
//! (temporary failure).
//!
//! # Layout
//!
//! Requests flow one way: [`connection`] reads bytes, a codec in [`proto`] turns them into a
//! request, [`lookup`] renders the HTTP request from [`template`]s and sends it through [`http`]
//! (hosts in [`failover`] order, tokens from [`auth`]), [`answer`] maps the HTTP response to an
//! [`answer::Outcome`], [`reply`] turns that into the protocol's reply, and the codec frames it
//! for [`connection`] to write. [`serve`] ties the steps together per protocol.
//!
//! ```text
//! main.rs          the binary: fd 3 from systemd, then commands::main
//! commands/        one file per kind of command: serve (socketmap, policy, tcp, sasl), admin
//!                  (check, query, policy-query; identity: check --user), sasl_query, cache,
//!                  state, stats (metrics in the Prometheus text format), token; cli holds the
//!                  clap definitions
//! connection.rs    the client connection: buffers, idle and lifetime limits, bounded writes
//! proto/           pure codecs: netstring + socketmap, policy, tcp, dovecot (SASL)
//! sasl.rs          SASL mechanisms as a pure state machine (sasl/session: one connection's)
//! serve.rs         the serving loop of each protocol, and its log line (serve/sasl: SMTP AUTH)
//! lookup.rs        one request: template → HTTP (lookup/cached: through the response cache,
//!                  lookup/sasl: an AUTH's verdict, lookup/target: URL checks, transcript: -v)
//! failover.rs      host order, retries, waits within the deadline
//! auth/            backend tokens (jwt_auth, backend_oidc_auth) behind one face, Tokens;
//!                  auth/idp: SASL bearer tokens checked with an OpenID provider
//! jwt.rs           JWT signature and claim checks against a key set (pure)
//! http/            the HTTP client (reqwest on the calling thread), TLS, an in-memory fake
//! answer.rs        HTTP response → Outcome;  value.rs: finding the value in JSON
//! cache.rs         the response cache's rules (fresh, stale, what HTTP allows)
//! reply.rs         Outcome → the protocol's reply;  text.rs: terminal-safe text, cutting
//! template.rs      upon templates with escaping by context
//! config/          loading (source), the YAML tree, and reading it into a typed Config in parts
//! state/           the shared SQLite state: db, walk + init (safe as root), health, tokens,
//!                  cache (response rows), documents (an identity provider's, for SASL),
//!                  metrics (totals, live processes)
//! log.rs           log lines to syslog, Postfix's postlogd or (by hand) stderr
//! metrics.rs       a process's counters and the Prometheus text of the totals (pure); the
//!                  totals live in state/metrics
//! postfix.rs       postconf(1) output read: master.cf services, parameters, references
//! ```
//!
//! The behaviour contract is `docs/design.md`.
//!
//! # Hard rules
//!
//! Under spawn(8) stdin, stdout and stderr are all the client socket, so a serving command never
//! writes anything but replies, and nothing to stderr (a panic is logged to syslog). A failure of
//! the backend is never turned into `OK`, `NOTFOUND`, tcp `500` or a policy REJECT.
#![forbid(unsafe_code)]

pub mod answer;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod connection;
pub mod failover;
pub mod http;
pub mod jwt;
pub mod log;
pub mod lookup;
pub mod metrics;
pub mod postfix;
pub mod proto;
pub mod reply;
pub mod sasl;
pub mod serve;
pub mod state;
pub mod template;
pub mod text;
pub mod value;

/// Exit statuses, from sysexits(3).
pub mod exit {
    /// Success, or EOF on the connection.
    pub const OK: u8 = 0;
    /// `query`: the key was not found.
    pub const NOT_FOUND: u8 = 1;
    /// Command line usage error.
    pub const USAGE: u8 = 64;
    /// Temporary failure.
    pub const TEMPFAIL: u8 = 75;
    /// Configuration error.
    pub const CONFIG: u8 = 78;
}

/// The version string sent in the default `User-Agent` and printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
