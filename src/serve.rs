//! The serving loops: read a request, look it up, write the reply, until the connection ends.
//!
//! A serving command with a broken configuration keeps serving: every request gets a temporary
//! failure that names the problem, so Postfix defers mail and logs why instead of logging
//! "unexpected disconnect".

use crate::answer::Outcome;
use crate::config::{Config, DEFAULT_POLICY_ACTION, Entry};
use crate::connection::{Connection, End};
use crate::http::Transport;
use crate::log::{self, Field};
use crate::lookup::{self, CacheUse, Lookup, Report};
use crate::metrics;
use crate::proto::{netstring, policy, socketmap, tcp};
use crate::reply::{self, Reply};
use crate::state::Store;
use crate::template;
use std::collections::BTreeMap;
use std::time::Instant;

mod sasl;

/// What a serving command works with: the configuration (or why there is none) and the network.
pub struct Server<'a> {
    /// The configuration, or the reason every request fails (e.g. "pfxhttp configuration error: …").
    pub config: Result<&'a Config, String>,
    pub transport: &'a dyn Transport,
    /// Shared state (host health), opened on first need.
    pub store: &'a Store,
    /// Keep a transcript of the HTTP exchange in each report (`query -v`).
    pub verbose: bool,
    /// Use the response cache (`false` for `query --no-cache`).
    pub use_cache: bool,
}

impl Server<'_> {
    /// Serves socketmap_table(5) requests.
    pub fn socketmap(&self, conn: &mut Connection, max_request: usize) -> End {
        loop {
            let req = match conn.next(|buf| socketmap::decode(buf, max_request)) {
                Ok(req) => req,
                Err(end) => return end,
            };
            let started = Instant::now();
            let (outcome, mut report) = self.map_lookup(&req.name, &req.key);
            let max_reply = self.config.as_ref().map_or(100_000, |c| c.socketmap_max_reply_size);
            let reply = reply::socketmap(&outcome, max_reply);
            // The reply goes first: the client is waiting for it, the log line and the cache
            // write can wait.
            let sent = conn.reply(&netstring::encode(reply.wire.as_bytes()));
            let took = started.elapsed();
            self.log_lookup("socketmap", &req.name, &req.key, report.as_ref(), &reply, started);
            self.store.metrics().request("socketmap", &req.name, metrics::map_outcome(&outcome), took);
            self.store_for_later(report.as_mut());
            if let Err(end) = sent {
                return end;
            }
        }
    }

    /// Serves tcp_table(5) requests for map `name`.
    pub fn tcp(&self, conn: &mut Connection, name: &str, max_request: usize) -> End {
        loop {
            let key = match conn.next(|buf| tcp::decode(buf, max_request)) {
                Ok(key) => key,
                Err(end) => return end,
            };
            let started = Instant::now();
            let (outcome, mut report) = self.map_lookup(name, &key);
            let reply = reply::tcp(&outcome);
            let sent = conn.reply(&reply.wire);
            let took = started.elapsed();
            self.log_lookup("tcp", name, &key, report.as_ref(), &reply, started);
            self.store.metrics().request("tcp", name, metrics::map_outcome(&outcome), took);
            self.store_for_later(report.as_mut());
            if let Err(end) = sent {
                return end;
            }
        }
    }

    /// Serves policy requests for `service`, or for the service each request's
    /// `policy_context` names.
    pub fn policy(&self, conn: &mut Connection, service: Option<&str>, limits: policy::Limits) -> End {
        loop {
            let attrs: BTreeMap<String, String> = match conn.next(|buf| policy::decode(buf, limits)) {
                Ok(list) => list.into_iter().collect(),
                Err(end) => return end,
            };
            let started = Instant::now();
            let (action, mut report, name) = self.policy_check(service, &attrs);
            let sent = conn.reply(&policy::encode(&action));
            let took = started.elapsed();
            self.log_policy(&name, &attrs, report.as_ref(), &action, started);
            let outcome = metrics::policy_outcome(report.as_ref().map(|r| &r.outcome));
            self.store.metrics().request("policy", &name, outcome, took);
            self.store_for_later(report.as_mut());
            if let Err(end) = sent {
                return end;
            }
        }
    }

    /// Stores what the lookup left for the response cache, once its reply is out, and adds the
    /// counts to the shared totals when that is due.
    pub fn store_for_later(&self, report: Option<&mut Report>) {
        if let Some(write) = report.and_then(|r| r.cache_write.take()) {
            write.apply(self.store);
        }
        self.store.metrics().after_reply();
    }

    /// Looks up `key` in map `name`; the report is `None` when no HTTP request was made.
    pub fn map_lookup(&self, name: &str, key: &[u8]) -> (Outcome, Option<Report>) {
        let config = match &self.config {
            Ok(c) => c,
            Err(e) => return (Outcome::temporary(e.clone()), None),
        };
        let Some(entry) = config.map(name) else {
            return (Outcome::permanent(format!("unknown map {name}")), None);
        };
        if key.is_empty() {
            return (Outcome::NotFound, None);
        }
        // Lossy conversion could make two keys one lookup and answer one with the other's value.
        let Ok(key) = std::str::from_utf8(key) else {
            return (Outcome::permanent("key is not valid UTF-8"), None);
        };
        let id = lookup::request_id();
        let vars = template::lookup_vars(&entry.name, key, &id);
        let lookup = Lookup { entry, kind: "map", vars: &vars, key, request_id: &id, use_cache: self.use_cache };
        let report = lookup::cached(&lookup, self.transport, self.store, self.verbose);
        (report.outcome.clone(), Some(report))
    }

    /// Runs one policy check; returns the action, the report and the service name used.
    pub fn policy_check(
        &self,
        service: Option<&str>,
        attrs: &BTreeMap<String, String>,
    ) -> (String, Option<Report>, String) {
        let config = match &self.config {
            Ok(c) => c,
            Err(_) => return (DEFAULT_POLICY_ACTION.into(), None, service.unwrap_or("-").into()),
        };
        let entry = match select_service(config, service, attrs) {
            Ok(entry) => entry,
            Err(why) => {
                log::error(&why);
                return (DEFAULT_POLICY_ACTION.into(), None, service.unwrap_or("-").into());
            }
        };
        let id = lookup::request_id();
        let vars = template::policy_vars(&entry.name, attrs, &id);
        // A policy service's cache always names its key template.
        let lookup = Lookup { entry, kind: "policy", vars: &vars, key: "", request_id: &id, use_cache: self.use_cache };
        let report = lookup::cached(&lookup, self.transport, self.store, self.verbose);
        let action = reply::policy_action(&report.outcome, &entry.answer.default_action);
        (action, Some(report), entry.name.clone())
    }

    fn log_lookup<W>(
        &self,
        proto: &str,
        name: &str,
        key: &[u8],
        report: Option<&Report>,
        reply: &Reply<W>,
        started: Instant,
    ) {
        let mut fields = vec![("proto", Field::Text(proto)), ("map", Field::Text(name))];
        let key = String::from_utf8_lossy(key);
        if self.config.as_ref().map_or(true, |c| c.logging.log_keys) {
            fields.push(("key", Field::Text(&key)));
        }
        let mut said = vec![("reply", Field::Text(reply.word))];
        if let Some(reason) = &reply.reason {
            said.push(("reason", Field::Text(reason)));
        }
        log::request(&finish_fields(fields, report, &said, started));
    }

    fn log_policy(
        &self,
        name: &str,
        attrs: &BTreeMap<String, String>,
        report: Option<&Report>,
        action: &str,
        started: Instant,
    ) {
        let mut fields = vec![("proto", Field::Text("policy")), ("service", Field::Text(name))];
        if self.config.as_ref().map_or(true, |c| c.logging.log_keys) {
            for attr in ["client_address", "sender", "recipient"] {
                if let Some(v) = attrs.get(attr) {
                    fields.push((attr, Field::Text(v)));
                }
            }
        }
        let mut reply = vec![("action", Field::Text(action))];
        if let Some(Outcome::Failure(f)) = report.map(|r| &r.outcome) {
            reply.push(("reason", Field::Text(&f.reason)));
        }
        log::request(&finish_fields(fields, report, &reply, started));
    }
}

/// The request's fields, then the report's, the reply's, the time taken, the request id and the
/// trace id sent in `traceparent`.
fn finish_fields<'a>(
    mut fields: Vec<(&'a str, Field<'a>)>,
    report: Option<&'a Report>,
    reply: &[(&'a str, Field<'a>)],
    started: Instant,
) -> Vec<(&'a str, Field<'a>)> {
    if let Some(r) = report {
        if let Some(host) = &r.host {
            fields.push(("host", Field::Text(host)));
        }
        fields.push(("attempts", Field::Number(r.attempts.into())));
        if let Some(status) = r.status {
            fields.push(("status", Field::Number(status.into())));
        }
        match &r.cache {
            Some(CacheUse::Hit { age }) => fields.extend([("cache", Field::Text("hit")), ("age", Field::Number(*age))]),
            Some(CacheUse::Stale { age, failure }) => fields.extend([
                ("cache", Field::Text("stale")),
                ("age", Field::Number(*age)),
                ("failure", Field::Text(failure)),
            ]),
            Some(CacheUse::Miss) => fields.push(("cache", Field::Text("miss"))),
            None => {}
        }
    }
    fields.extend_from_slice(reply);
    fields.push(("ms", Field::Number(started.elapsed().as_millis().try_into().unwrap_or(u64::MAX))));
    if let Some(id) = report.and_then(|r| r.request_id.as_ref()) {
        fields.push(("id", Field::Text(id)));
    }
    if let Some(trace) = report.and_then(|r| r.trace_id.as_ref()) {
        fields.push(("trace", Field::Text(trace)));
    }
    fields
}

/// The policy service for a request: the named one, else the one `policy_context` names, else
/// the only one configured.
pub(crate) fn select_service<'c>(
    config: &'c Config,
    service: Option<&str>,
    attrs: &BTreeMap<String, String>,
) -> Result<&'c Entry, String> {
    if let Some(name) = service {
        return config.policy(name).ok_or_else(|| format!("policy service {name} is not configured"));
    }
    let context = attrs.get("policy_context").map(String::as_str).unwrap_or("");
    if !context.is_empty()
        && let Some(entry) = config.policy(context)
    {
        return Ok(entry);
    }
    match config.policies.as_slice() {
        [only] => Ok(only),
        [] => Err("no policy_services entry is configured".into()),
        _ => Err(format!("policy_context {context:?} names no policy service, and no SERVICE argument was given")),
    }
}
