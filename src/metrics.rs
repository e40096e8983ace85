//! Metrics without a daemon: the counters one serving process keeps in memory ([`Counts`]), which
//! the state store (`state::metrics`) adds into the state database now and then, and the Prometheus text
//! exposition format (version 0.0.4) that `pfxhttp stats` prints from the database's totals
//! ([`render`]). See `docs/design.md#metrics`.
//!
//! Everything here is pure: no clock, no file, no database.

use crate::answer::{FailureKind, Outcome};
use crate::http::{HttpError, Response};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

/// A stored series family: the name of its rows in the database, and its label names. The
/// histogram is kept as three: per-bucket counts (not cumulative), the sum in microseconds
/// (integers add up exactly) and the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Series {
    Requests,
    DurationBucket,
    DurationSumMicros,
    DurationCount,
    Attempts,
    Cache,
    TokenFetches,
    Processes,
}

impl Series {
    const ALL: [Series; 8] = [
        Series::Requests,
        Series::DurationBucket,
        Series::DurationSumMicros,
        Series::DurationCount,
        Series::Attempts,
        Series::Cache,
        Series::TokenFetches,
        Series::Processes,
    ];

    /// The name of the series' rows in the database.
    pub fn row_name(self) -> &'static str {
        match self {
            Series::Requests => "requests_total",
            Series::DurationBucket => "request_duration_bucket",
            Series::DurationSumMicros => "request_duration_sum_us",
            Series::DurationCount => "request_duration_count",
            Series::Attempts => "backend_attempts_total",
            Series::Cache => "cache_total",
            Series::TokenFetches => "token_fetches_total",
            Series::Processes => "processes_total",
        }
    }

    /// The series whose rows are called `name`; `None` for a name this pfxhttp does not know
    /// (written by a newer one): such rows are left out of the output.
    pub fn from_row_name(name: &str) -> Option<Series> {
        Series::ALL.into_iter().find(|s| s.row_name() == name)
    }
}

/// The histogram's upper bounds in microseconds, and as `le` label values; `+Inf` is last.
const BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
pub const LE: [&str; 14] =
    ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];

/// One process's counts since its last flush: series and label values to the amount to add.
///
/// A series is kept under one text key (its row name, then each label value with its length in
/// front), built in a buffer kept for the purpose: counting a series met before allocates nothing.
#[derive(Debug, Default)]
pub struct Counts {
    added: HashMap<String, u64>,
    key: String,
}

impl Counts {
    /// Adds `n` to the series with `labels`.
    pub fn add(&mut self, series: Series, labels: &[&str], n: u64) {
        self.set_key(series, labels);
        match self.added.get_mut(self.key.as_str()) {
            Some(v) => *v += n,
            None => {
                self.added.insert(self.key.clone(), n);
            }
        }
    }

    /// Takes `n` back from the series with `labels` (an attempt counted before its answer was
    /// read); never below zero.
    pub fn take_back(&mut self, series: Series, labels: &[&str], n: u64) {
        self.set_key(series, labels);
        if let Some(v) = self.added.get_mut(self.key.as_str()) {
            *v = v.saturating_sub(n);
        }
    }

    fn set_key(&mut self, series: Series, labels: &[&str]) {
        self.key.clear();
        self.key.push_str(series.row_name());
        for label in labels {
            self.key.push(' ');
            crate::text::push_decimal(&mut self.key, label.len() as u64);
            self.key.push(':');
            self.key.push_str(label);
        }
    }

    /// Counts one request of `kind` for entry `name` that took `took`.
    pub fn observe(&mut self, kind: &str, name: &str, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BOUNDS_US.len());
        self.add(Series::DurationBucket, &[kind, name, LE[bucket]], 1);
        self.add(Series::DurationSumMicros, &[kind, name], us);
        self.add(Series::DurationCount, &[kind, name], 1);
    }

    pub fn is_empty(&self) -> bool {
        self.added.values().all(|&n| n == 0)
    }

    /// The counts to add, leaving out zeros.
    pub fn iter(&self) -> impl Iterator<Item = (Series, Vec<String>, u64)> + '_ {
        self.added.iter().filter(|(_, n)| **n > 0).filter_map(|(key, n)| {
            let (series, labels) = decode(key)?;
            Some((series, labels, *n))
        })
    }

    pub fn clear(&mut self) {
        self.added.clear();
    }
}

/// The series and label values of a key [`Counts`] built.
fn decode(key: &str) -> Option<(Series, Vec<String>)> {
    let (name, mut rest) = key.split_once(' ').unwrap_or((key, ""));
    let series = Series::from_row_name(name)?;
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let (len, after) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        labels.push(after.get(..len)?.to_string());
        rest = after.get(len..)?.strip_prefix(' ').unwrap_or(after.get(len..)?);
    }
    Some((series, labels))
}

/// The `outcome` of a socketmap or tcp_table request.
pub fn map_outcome(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Found(_) => "found",
        Outcome::NotFound => "not_found",
        Outcome::Failure(f) => match f.kind {
            FailureKind::Temporary => "temporary",
            FailureKind::Timeout => "timeout",
            FailureKind::Permanent => "permanent",
        },
    }
}

/// The `outcome` of a policy request: the API's action, "not found" (`DUNNO`), or the default
/// action after a failure (`None`: no lookup was made, which also answers the default action).
pub fn policy_outcome(outcome: Option<&Outcome>) -> &'static str {
    match outcome {
        Some(Outcome::Found(_)) => "action",
        Some(Outcome::NotFound) => "not_found",
        Some(Outcome::Failure(_)) | None => "default_action",
    }
}

/// The `result` of one backend attempt. `answer`: the status is one the entry takes as an
/// answer (a value or "not found").
pub fn attempt_result(result: &Result<Response, HttpError>, answer: bool) -> &'static str {
    match result {
        Ok(_) if answer => "ok",
        Ok(r) if r.status == 429 => "http_429",
        Ok(r) if (500..600).contains(&r.status) => "http_5xx",
        Ok(r) if (400..500).contains(&r.status) => "http_4xx",
        Ok(_) => "invalid",
        Err(HttpError::Connect(_)) => "connect",
        Err(HttpError::Tls(_)) => "tls",
        Err(HttpError::Timeout) => "timeout",
        Err(HttpError::Body(_) | HttpError::TooLarge(_) | HttpError::Other(_)) => "invalid",
    }
}

/// What `pfxhttp stats` prints, besides the stored series.
#[derive(Debug, Default)]
pub struct Live {
    /// Entry name, host, and whether the host is marked down now.
    pub hosts: Vec<(String, String, bool)>,
    /// Processes serving now.
    pub connections: u64,
}

/// A family of the output: name, help and type.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    series: Option<(Series, &'static [&'static str])>,
}

const FAMILIES: [Family; 5] = [
    Family {
        name: "pfxhttp_requests_total",
        help: "Requests answered, by kind (socketmap, tcp, policy, sasl), entry name and outcome.",
        kind: "counter",
        series: Some((Series::Requests, &["kind", "name", "outcome"])),
    },
    Family {
        name: "pfxhttp_backend_attempts_total",
        help: "HTTP attempts to backends, by entry name, host and result.",
        kind: "counter",
        series: Some((Series::Attempts, &["name", "host", "result"])),
    },
    Family {
        name: "pfxhttp_cache_total",
        help: "Response cache uses, by entry name and result (hit, stale, miss).",
        kind: "counter",
        series: Some((Series::Cache, &["name", "result"])),
    },
    Family {
        name: "pfxhttp_token_fetches_total",
        help: "Backend token fetches, by entry name and result (ok, error).",
        kind: "counter",
        series: Some((Series::TokenFetches, &["name", "result"])),
    },
    Family {
        name: "pfxhttp_processes_total",
        help: "Serving processes started, by command (socketmap, tcp, policy, sasl).",
        kind: "counter",
        series: Some((Series::Processes, &["command"])),
    },
];

/// Stored totals: series and label values to the total.
pub type Totals = BTreeMap<(Series, Vec<String>), u64>;

/// The Prometheus text exposition format (version 0.0.4) of `totals` and `live`. Every family
/// has its `# HELP` and `# TYPE` lines, with or without samples.
pub fn render(totals: &Totals, live: &Live) -> String {
    let mut out = String::new();
    for family in &FAMILIES {
        header(&mut out, family.name, family.help, family.kind);
        let Some((series, names)) = family.series else { continue };
        for ((_, values), n) in totals.range((series, Vec::new())..).take_while(|((s, _), _)| *s == series) {
            if values.len() == names.len() {
                sample(&mut out, family.name, &pairs(names, values), &n.to_string());
            }
        }
    }
    histogram(&mut out, totals);
    let help = "1 while a host of an entry with two or more hosts is marked down, from the host health table.";
    header(&mut out, "pfxhttp_host_down", help, "gauge");
    for (name, host, down) in &live.hosts {
        sample(&mut out, "pfxhttp_host_down", &[("name", name), ("host", host)], if *down { "1" } else { "0" });
    }
    let help = "Processes serving a connection now (each keeps a row while it lives).";
    header(&mut out, "pfxhttp_connections_active", help, "gauge");
    sample(&mut out, "pfxhttp_connections_active", &[], &live.connections.to_string());
    out
}

/// `pfxhttp_request_duration_seconds`: buckets made cumulative, in `le` order.
fn histogram(out: &mut String, totals: &Totals) {
    const NAME: &str = "pfxhttp_request_duration_seconds";
    header(out, NAME, "Time from a request read to its reply written, by kind and entry name.", "histogram");
    let of = |series: Series| totals.range((series, Vec::new())..).take_while(move |((s, _), _)| *s == series);
    for ((_, values), count) in of(Series::DurationCount).filter(|((_, v), _)| v.len() == 2) {
        let labels = pairs(&["kind", "name"], values);
        let mut cumulative = 0;
        for le in LE {
            let key = (Series::DurationBucket, vec![values[0].clone(), values[1].clone(), le.to_string()]);
            cumulative += totals.get(&key).copied().unwrap_or(0);
            let mut with_le = labels.clone();
            with_le.push(("le", le));
            sample(out, &format!("{NAME}_bucket"), &with_le, &cumulative.to_string());
        }
        let sum_us = totals.get(&(Series::DurationSumMicros, values.clone())).copied().unwrap_or(0);
        sample(out, &format!("{NAME}_sum"), &labels, &format!("{}", sum_us as f64 / 1e6));
        sample(out, &format!("{NAME}_count"), &labels, &count.to_string());
    }
}

fn pairs<'a>(names: &[&'a str], values: &'a [String]) -> Vec<(&'a str, &'a str)> {
    names.iter().copied().zip(values.iter().map(String::as_str)).collect()
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let _ = write!(out, "{{{}}}", inner.join(","));
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
