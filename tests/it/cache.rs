//! The response cache (`docs/design.md#response-cache`) against the built binary: every lookup
//! runs in a process of its own (as Postfix spawns them), so a row one process stores is what
//! the next one finds in the state database file. Backends are real HTTP servers on 127.0.0.1
//! whose answer a test switches between a value, "not found" and the failure under test.
//!
//! Each test checks the reply bytes, the requests the backend received, and the request's log
//! line (`cache=hit|stale|miss`, a stale one with `age`). Ages are whole seconds counted from
//! the API's answer; a noisy machine may add a second, so they are checked within bounds.

#[path = "cache/commands.rs"]
mod commands;
#[path = "cache/http_rules.rs"]
mod http_rules;
#[path = "cache/load.rs"]
mod load;
#[path = "cache/policy.rs"]
mod policy;
#[path = "cache/serve.rs"]
mod serve;
#[path = "cache/stale.rs"]
mod stale;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// Upper bound for one pfxhttp run.
pub(crate) const RUN: Duration = Duration::from_secs(20);
/// Upper bound for collecting log lines.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// How far an age in seconds may run ahead of the time a test waited, on a loaded machine.
const SLACK: u64 = 5;

/// An API on 127.0.0.1 answering every request with the [`Reply`] last [`Api::set`]; it starts
/// refusing connections once [`Api::refuse`]d.
pub(crate) struct Api {
    backend: Option<Backend>,
    reply: Arc<Mutex<Reply>>,
    url: String,
    /// Requests received before the backend was dropped.
    before_refusing: usize,
}

impl Api {
    pub(crate) fn new(reply: Reply) -> Api {
        let reply = Arc::new(Mutex::new(reply));
        let r = reply.clone();
        let backend = Backend::start(move |_| r.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let url = backend.url("/lookup");
        Api { backend: Some(backend), reply, url, before_refusing: 0 }
    }

    /// The URL of the lookup endpoint.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// From now on every request gets `reply`.
    pub(crate) fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap_or_else(|e| e.into_inner()) = reply;
    }

    /// Stops the server: connections to its port are refused.
    pub(crate) fn refuse(&mut self) {
        self.before_refusing = self.requests();
        self.backend = None;
    }

    /// Requests received so far.
    pub(crate) fn requests(&self) -> usize {
        self.backend.as_ref().map_or(self.before_refusing, Backend::request_count)
    }
}

/// `{"result": VALUE}`: a found value for a map.
pub(crate) fn found(value: &str) -> Reply {
    Reply::json(200, &format!(r#"{{"result":"{value}"}}"#))
}

/// `{}`: no value field, "not found".
pub(crate) fn not_found() -> Reply {
    Reply::json(200, "{}")
}

/// The map `users` asking `url` once per lookup (request counts are exact), with the cache
/// block `cache` (flow style; empty for none), logging to `sink`.
pub(crate) fn users(url: &str, sink: &SyslogSink, cache: &str) -> Config {
    let conf = Config::new().map("users", url).set("max_attempts", "1").syslog(sink, "");
    if cache.is_empty() { conf } else { conf.set("cache", cache) }
}

/// One socketmap lookup of `key` in `users`, in a process of its own: the reply payload must be
/// exactly `reply`. Returns the request's log line (see [`fields`]).
#[track_caller]
pub(crate) fn lookup(conf: &Config, sink: &SyslogSink, key: &str, reply: &str) -> String {
    let (got, line) = lookup_reply(conf, sink, key);
    assert_wire(&netstring(got.as_bytes()), &netstring(reply.as_bytes()));
    line
}

/// One socketmap lookup of `key` in `users`, in a process of its own: the reply payload (checked
/// to be exactly one netstring) and the request's log line.
#[track_caller]
pub(crate) fn lookup_reply(conf: &Config, sink: &SyslogSink, key: &str) -> (String, String) {
    sink.clear();
    let out = conf.run_serving(&["socketmap"], &netstring(format!("users {key}").as_bytes()), RUN);
    let payload = crate::failover::single_reply(&out.stdout);
    (payload, one_request_line(sink))
}

/// The only request log line (`proto=…`) received since the sink was last cleared.
#[track_caller]
pub(crate) fn one_request_line(sink: &SyslogSink) -> String {
    let lines: Vec<String> = sink.settle(LOG_WAIT).into_iter().filter(|l| l.contains(" proto=")).collect();
    assert_eq!(lines.len(), 1, "exactly one request line: {:?}", sink.lines());
    lines[0].clone()
}

/// A request line's fields from `proto=` up to the time taken (`ms=`, `id=` vary), with the
/// age written `age=#`; and that age, if any.
#[track_caller]
pub(crate) fn fields(line: &str) -> (String, Option<u64>) {
    let start = line.find("proto=").unwrap_or_else(|| panic!("not a request line: {line}"));
    let end = line.find(" ms=").unwrap_or_else(|| panic!("no ms= in {line}"));
    let mut age = None;
    let words: Vec<String> = line[start..end]
        .split(' ')
        .map(|w| match w.strip_prefix("age=") {
            Some(n) => {
                age = Some(n.parse::<u64>().unwrap_or_else(|_| panic!("age is not a number in {line}")));
                "age=#".to_string()
            }
            None => w.to_string(),
        })
        .collect();
    (words.join(" "), age)
}

/// Checks a request line's fields (see [`fields`]) and that its age, if any, is in `ages`.
#[track_caller]
pub(crate) fn assert_line(line: &str, expected: &str, ages: std::ops::RangeInclusive<u64>) {
    let (got, age) = fields(line);
    assert_eq!(got, expected, "request line: {line}");
    if let Some(age) = age {
        assert!(ages.contains(&age), "age {age} not within {ages:?}: {line}");
    }
}

/// `host=127.0.0.1:PORT` of the API, as the log names it.
pub(crate) fn host(api: &Api) -> String {
    api.url().trim_start_matches("http://").split('/').next().unwrap().to_string()
}

/// `pfxhttp --config F ARGS…` (a command run by hand).
pub(crate) fn command(conf: &Config, args: &[&str]) -> Output {
    conf.run_command(args, b"", RUN)
}

/// `pfxhttp cache stats` lines.
#[track_caller]
pub(crate) fn stats(conf: &Config) -> String {
    let out = command(conf, &["cache", "stats"]);
    assert_eq!(out.code(), Some(0), "cache stats: {out:?}");
    out.stdout_str()
}

/// The rows of the cache table, counted directly in the database file.
pub(crate) fn rows(conf: &Config) -> i64 {
    let db = rusqlite::Connection::open(conf.db_path()).expect("open the state database");
    db.query_row("SELECT count(*) FROM response_cache", [], |r| r.get(0)).expect("count rows")
}

/// The syslog severity (PRI & 7) of a datagram.
pub(crate) fn severity(line: &str) -> Option<u8> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    rest[..end].parse::<u16>().ok().map(|p| (p & 7) as u8)
}
