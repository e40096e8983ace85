//! A lookup through the entry's response cache: a fresh row answers without any request (no
//! token, no TLS); otherwise the API is asked, a definitive answer is kept as the cache's rules
//! allow, and a failure the API may recover from is answered with a stored found value while
//! its stale window lasts. See `docs/design.md#response-cache`.

use super::Report;
use crate::answer::{FailureKind, Outcome};
use crate::cache::{self, Store as Change};
use crate::config::Entry;
use crate::http::Transport;
use crate::log;
use crate::metrics::Series;
use crate::state::{Store, cache::Row, now_ms};

/// What the cache did for one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// Answered from a fresh row, `age` seconds old.
    Hit { age: u64 },
    /// The API failed (`failure` says how); answered from a found value `age` seconds old.
    Stale { age: u64, failure: String },
    /// The API was asked.
    Miss,
}

/// What a lookup leaves for the cache to store, done after the reply has gone out (the client
/// does not wait for the database's write lock): [`CacheWrite::apply`].
#[derive(Debug)]
pub struct CacheWrite {
    key: crate::state::cache::Key,
    change: Change,
    max_entries: u64,
}

impl CacheWrite {
    /// Stores or removes the row.
    pub fn apply(self, store: &Store) {
        match self.change {
            Change::Put(row) => store.cache().put(&self.key, &row, self.max_entries),
            Change::Remove => store.cache().remove(&self.key),
        }
    }
}

/// Where a lookup stands with the cache: which entry, and whether it may be used at all.
pub struct Lookup<'a> {
    pub entry: &'a Entry,
    /// `map` or `policy`: maps and policy services have names of their own.
    pub kind: &'static str,
    pub vars: &'a upon::Value,
    /// The request key, the cache key when the entry names no template.
    pub key: &'a str,
    pub request_id: &'a str,
    /// `false` for `query --no-cache`: neither read nor written.
    pub use_cache: bool,
}

/// Runs the lookup, through the cache when the entry has one.
pub fn cached(lookup: &Lookup<'_>, transport: &dyn Transport, store: &Store, verbose: bool) -> Report {
    let entry = lookup.entry;
    let ask = || super::run(entry, lookup.vars, lookup.request_id, transport, store, verbose);
    let Some(settings) = entry.cache.as_ref().filter(|_| lookup.use_cache) else {
        return ask();
    };
    let text = match &settings.key {
        None => lookup.key.to_string(),
        Some(template) => match template.render(lookup.vars) {
            Ok(text) => text,
            Err(e) => {
                log::warn(&format!("{}: cache key: {e}; asking the API", entry.name));
                return ask();
            }
        },
    };
    let Some(key) = store.cache().key(&format!("{}:{}", lookup.kind, entry.name), &text) else {
        return ask();
    };
    let old = store.cache().get(&key);
    let now = now_ms();
    if let Some(row) = old.as_ref().filter(|row| cache::is_fresh(row, now)) {
        let outcome = row.value.clone().map_or(Outcome::NotFound, Outcome::Found);
        let mut report = Report::without_request(outcome, lookup.request_id);
        report.cache = Some(CacheUse::Hit { age: age(row, now) });
        store.metrics().add(Series::Cache, &[&entry.name, "hit"], 1);
        return report;
    }
    let mut report = ask();
    let now = now_ms();
    report.cache = Some(CacheUse::Miss);
    match &report.outcome {
        Outcome::Found(_) | Outcome::NotFound => {
            let value = match &report.outcome {
                Outcome::Found(v) => Some(v.as_str()),
                _ => None,
            };
            let directives = cache::directives(report.cache_control.iter().map(String::as_str));
            let change = match cache::on_answer(value, settings, &directives, now) {
                Change::Put(row) if cache::worth_writing(old.as_ref(), &row, settings) => Some(Change::Put(row)),
                Change::Remove if old.is_some() => Some(Change::Remove),
                Change::Put(_) | Change::Remove => None,
            };
            report.cache_write =
                change.map(|change| CacheWrite { key: key.clone(), change, max_entries: settings.max_entries });
        }
        Outcome::Failure(f) if f.kind != FailureKind::Permanent => {
            if let Some(row) = old.filter(|row| cache::serves_stale(row, now)) {
                report.cache = Some(CacheUse::Stale { age: age(&row, now), failure: f.reason.clone() });
                report.outcome = row.value.map_or(Outcome::NotFound, Outcome::Found);
            }
        }
        Outcome::Failure(_) => {}
    }
    let used = if matches!(report.cache, Some(CacheUse::Stale { .. })) { "stale" } else { "miss" };
    store.metrics().add(Series::Cache, &[&entry.name, used], 1);
    report
}

/// A row's age in whole seconds.
fn age(row: &Row, now: i64) -> u64 {
    u64::try_from((now - row.stored_at).max(0) / 1000).unwrap_or(0)
}
