//! An entry's `cache:` block, and the Go pfxhttp's `server.response_cache`, which gives every
//! socket map a stale-if-error window. See `docs/design.md#response-cache`.

use super::templates::compile;
use super::tree::{self, Diagnostics, Table};
use super::*;
use crate::template::Context;
use serde_yaml::Value;

/// An entry's response cache settings.
#[derive(Debug)]
pub struct CacheSettings {
    /// How long a found value answers without asking the API.
    pub ttl: Duration,
    /// The same for "not found".
    pub negative_ttl: Duration,
    /// How long a found value answers when the API fails.
    pub stale_if_error: Duration,
    /// What makes two requests the same; `None`: the request key.
    pub key: Option<Template>,
    /// Rows kept for the entry; the oldest go first.
    pub max_entries: u64,
}

/// Rows an entry keeps unless its `max_entries` says otherwise.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// Reads the entry's `cache` block; without one, a socket map gets `server.response_cache`'s
/// window (`go_ttl`) as its `stale_if_error`, as the Go pfxhttp served its cache only when the
/// API failed.
pub(super) fn cache(
    t: &mut Table<'_>,
    kind: Kind,
    sample: &upon::Value,
    go_ttl: Option<Duration>,
    d: &mut Diagnostics,
) -> Option<CacheSettings> {
    let Some((p, v)) = t.take("cache") else {
        let stale_if_error = go_ttl.filter(|_| kind == Kind::Map)?;
        return Some(CacheSettings {
            ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            stale_if_error,
            key: None,
            max_entries: DEFAULT_MAX_ENTRIES,
        });
    };
    block(&p, v, kind, sample, d)
}

fn block(path: &str, v: &Value, kind: Kind, sample: &upon::Value, d: &mut Diagnostics) -> Option<CacheSettings> {
    let mut t = Table::open(v, path, d)?;
    let mut duration = |key: &str, d: &mut Diagnostics| {
        t.take(key).and_then(|(p, v)| tree::duration(&p, v, d)).unwrap_or(Duration::ZERO)
    };
    let ttl = duration("ttl", d);
    let negative_ttl = duration("negative_ttl", d);
    let stale_if_error = duration("stale_if_error", d);
    let key = t.take_str("key", d).and_then(|(s, p)| compile(&p, &s, Context::Raw, sample, d));
    let max_entries =
        t.take("max_entries").and_then(|(p, v)| tree::uint(&p, v, 1, 100_000_000, d)).unwrap_or(DEFAULT_MAX_ENTRIES);
    t.finish(d, &[]);
    if kind == Kind::Policy && key.is_none() {
        d.error(
            path,
            "key is required for a policy service: name the attributes that make two requests the same, \
             e.g. key: \"{{ sender }} {{ client_address }}\" (every request differs in queue_id, size…)",
        );
    }
    if ttl.is_zero() && negative_ttl.is_zero() && stale_if_error.is_zero() {
        d.warn(path, "ttl, negative_ttl and stale_if_error are all 0: nothing is cached");
        return None;
    }
    Some(CacheSettings { ttl, negative_ttl, stale_if_error, key, max_entries })
}

/// `server.response_cache: {enabled, ttl}`: the window every socket map without a `cache`
/// block gets. `enabled` without `ttl` left the Go pfxhttp's cache off; it does here too, with a
/// warning.
pub(super) fn go_response_cache(path: &str, v: &Value, d: &mut Diagnostics) -> Option<Duration> {
    let mut t = Table::open(v, path, d)?;
    let enabled = t.take("enabled").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(false);
    let ttl = t.take("ttl").and_then(|(p, v)| tree::duration(&p, v, d));
    t.finish(d, &[]);
    match (enabled, ttl) {
        (true, Some(ttl)) if !ttl.is_zero() => Some(ttl),
        (true, _) => {
            d.warn(path, "enabled without a ttl: the cache stays off (as in the Go pfxhttp); set ttl, e.g. 1h");
            None
        }
        (false, _) => None,
    }
}
