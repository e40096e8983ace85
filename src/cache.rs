//! The response cache's rules: which answers may be stored, for how long a stored answer answers
//! without asking the API (fresh), and for how long a found value answers when the API fails
//! (stale). Pure functions of the entry's settings, the API's `Cache-Control` and the clock; the
//! rows themselves are kept by [`crate::state::cache`]. See `docs/design.md#response-cache`.
//!
//! The API's directives can only shorten what the config allows, never lengthen it:
//! `no-store` stores nothing; `no-cache` and `max-age=0` are never served fresh; `max-age=N` caps
//! the fresh lifetime; `stale-if-error=N` (RFC 5861) caps the stale window at the answer's own
//! fresh lifetime plus N; `must-revalidate` allows no stale answer. A "not found" is never served
//! stale: an outage must never turn into a reject.

use crate::config::CacheSettings;
use crate::state::cache::Row;
use std::time::Duration;

/// What the API's `Cache-Control` header says (directive names case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub must_revalidate: bool,
    pub max_age: Option<u64>,
    pub stale_if_error: Option<u64>,
}

/// Reads every `Cache-Control` header value given.
pub fn directives<'a>(values: impl IntoIterator<Item = &'a str>) -> Directives {
    let mut d = Directives::default();
    for part in values.into_iter().flat_map(|v| v.split(',')) {
        let (name, arg) = match part.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (part.trim(), None),
        };
        let seconds = || arg.and_then(|a| a.parse::<u64>().ok());
        match name.to_ascii_lowercase().as_str() {
            "no-store" => d.no_store = true,
            "no-cache" => d.no_cache = true,
            "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
            // Several values: the shortest counts.
            "max-age" | "s-maxage" => d.max_age = min_some(d.max_age, seconds().or(Some(0))),
            "stale-if-error" => d.stale_if_error = min_some(d.stale_if_error, seconds().or(Some(0))),
            _ => {}
        }
    }
    d
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a definitive answer does to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// Keep this row.
    Put(Row),
    /// Remove any stored row (a "not found" that is not to be kept, or an answer the API said
    /// not to store): an outage must not bring back what the API has since taken back.
    Remove,
}

/// What to do with a definitive answer (`Some(value)` found, `None` not found) given at `now`
/// (unix ms).
pub fn on_answer(value: Option<&str>, rules: &CacheSettings, d: &Directives, now: i64) -> Store {
    if d.no_store {
        return Store::Remove;
    }
    let ms = |t: Duration| i64::try_from(t.as_millis()).unwrap_or(i64::MAX / 4);
    let api_fresh = if d.no_cache { Some(0) } else { d.max_age };
    let fresh_for = |ttl: Duration| api_fresh.map_or(ms(ttl), |s| ms(ttl).min(secs_ms(s)));
    match value {
        Some(v) => {
            let fresh = fresh_for(rules.ttl);
            let mut stale = if d.must_revalidate { 0 } else { ms(rules.stale_if_error) };
            if let Some(n) = d.stale_if_error {
                // RFC 5861 counts from the answer's own expiry.
                let own = api_fresh.map_or(ms(rules.ttl), secs_ms);
                stale = stale.min(own.saturating_add(secs_ms(n)));
            }
            if fresh == 0 && stale == 0 {
                return Store::Remove;
            }
            Store::Put(Row {
                value: Some(v.to_string()),
                stored_at: now,
                fresh_until: now.saturating_add(fresh),
                stale_until: now.saturating_add(stale),
            })
        }
        None => match fresh_for(rules.negative_ttl) {
            0 => Store::Remove,
            fresh => Store::Put(Row { value: None, stored_at: now, fresh_until: now + fresh, stale_until: now }),
        },
    }
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX / 4)
}

/// Whether `row` answers at `now` without asking the API.
pub fn is_fresh(row: &Row, now: i64) -> bool {
    now < row.fresh_until
}

/// Whether `row` answers at `now` when the API fails: found values only.
pub fn serves_stale(row: &Row, now: i64) -> bool {
    row.value.is_some() && now < row.stale_until
}

/// Whether `new` is worth writing over `old`: a changed answer always is; the same one only
/// when `old` is older than half the fresh lifetime (a minute when the entry keeps answers for
/// outages only), so that a busy key costs a write now and then, not one per lookup.
pub fn worth_writing(old: Option<&Row>, new: &Row, rules: &CacheSettings) -> bool {
    let Some(old) = old else { return true };
    if old.value != new.value {
        return true;
    }
    let interval = if rules.ttl.is_zero() { Duration::from_secs(60) } else { rules.ttl / 2 };
    new.stored_at - old.stored_at >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;

    fn rules(ttl: u64, negative: u64, stale: u64) -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_secs(ttl),
            negative_ttl: Duration::from_secs(negative),
            stale_if_error: Duration::from_secs(stale),
            key: None,
            max_entries: 100,
        }
    }

    fn put(value: Option<&str>, r: &CacheSettings, cc: &str) -> (i64, i64) {
        match on_answer(value, r, &directives([cc]), NOW) {
            Store::Put(row) => ((row.fresh_until - NOW) / 1000, (row.stale_until - NOW) / 1000),
            Store::Remove => panic!("nothing stored for {value:?} with {cc:?}"),
        }
    }

    #[test]
    fn directives_are_read_case_insensitively_and_the_shortest_wins() {
        let d = directives(["Max-Age=600, stale-if-error=\"1200\"", "max-age=30, MUST-REVALIDATE"]);
        assert_eq!(d.max_age, Some(30));
        assert_eq!(d.stale_if_error, Some(1200));
        assert!(d.must_revalidate && !d.no_store && !d.no_cache);
        assert_eq!(directives(["max-age=junk"]).max_age, Some(0), "an unreadable max-age is 0");
    }

    #[test]
    fn config_lifetimes_without_directives() {
        let r = rules(60, 30, 3600);
        assert_eq!(put(Some("v"), &r, ""), (60, 3600));
        assert_eq!(put(None, &r, ""), (30, 0), "not found: fresh only, never stale");
    }

    #[test]
    fn directives_only_shorten() {
        let r = rules(60, 30, 3600);
        assert_eq!(put(Some("v"), &r, "max-age=10"), (10, 3600));
        assert_eq!(put(Some("v"), &r, "max-age=100000"), (60, 3600), "never longer than ttl");
        assert_eq!(put(Some("v"), &r, "no-cache"), (0, 3600), "no-cache: still kept for outages");
        assert_eq!(put(Some("v"), &r, "max-age=0"), (0, 3600));
        assert_eq!(put(Some("v"), &r, "max-age=600, stale-if-error=1200"), (60, 1800));
        assert_eq!(put(Some("v"), &r, "stale-if-error=100000"), (60, 3600), "never longer than config");
        assert_eq!(put(Some("v"), &r, "max-age=10, must-revalidate"), (10, 0));
        assert_eq!(put(None, &r, "max-age=5"), (5, 0));
        assert_eq!(on_answer(Some("v"), &r, &directives(["no-store"]), NOW), Store::Remove);
        assert_eq!(on_answer(None, &r, &directives(["no-cache"]), NOW), Store::Remove);
    }

    #[test]
    fn not_found_without_negative_ttl_removes() {
        assert_eq!(on_answer(None, &rules(60, 0, 3600), &Directives::default(), NOW), Store::Remove);
        assert_eq!(on_answer(Some("v"), &rules(0, 0, 0), &Directives::default(), NOW), Store::Remove);
    }

    #[test]
    fn fresh_and_stale() {
        let row = Row { value: Some("v".into()), stored_at: NOW, fresh_until: NOW + 10, stale_until: NOW + 20 };
        assert!(is_fresh(&row, NOW + 9) && !is_fresh(&row, NOW + 10));
        assert!(serves_stale(&row, NOW + 19) && !serves_stale(&row, NOW + 20));
        let not_found = Row { value: None, ..row };
        assert!(!serves_stale(&not_found, NOW), "a not found is never served stale");
    }

    #[test]
    fn the_same_answer_is_written_now_and_then() {
        let r = rules(0, 0, 3600);
        let old = Row { value: Some("v".into()), stored_at: NOW, fresh_until: NOW, stale_until: NOW + 3_600_000 };
        let later = |ms: i64, v: &str| Row { value: Some(v.into()), stored_at: NOW + ms, ..old.clone() };
        assert!(!worth_writing(Some(&old), &later(59_999, "v"), &r));
        assert!(worth_writing(Some(&old), &later(60_000, "v"), &r));
        assert!(worth_writing(Some(&old), &later(1, "w"), &r), "a changed value at once");
        assert!(worth_writing(None, &old, &r));
        let r = rules(600, 0, 0);
        assert!(!worth_writing(Some(&old), &later(299_999, "v"), &r));
        assert!(worth_writing(Some(&old), &later(300_000, "v"), &r));
    }
}
