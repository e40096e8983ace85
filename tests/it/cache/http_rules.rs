//! The API's `Cache-Control` can only shorten what the entry's cache block allows.

use std::thread;

use super::*;

/// `found("v1")` with `Cache-Control: value`.
fn found_cc(value: &str) -> Reply {
    found("v1").with_header("Cache-Control", value)
}

/// A config whose API answers `reply`, with the cache block `cache`.
fn setup(reply: Reply, cache: &str) -> (Api, SyslogSink, Config) {
    let api = Api::new(reply);
    let sink = SyslogSink::new();
    let conf = users(api.url(), &sink, cache);
    (api, sink, conf)
}

/// What the cache did, from a request line.
fn cache_field(line: &str) -> &str {
    line.split(' ').find_map(|w| w.strip_prefix("cache=")).unwrap_or_else(|| panic!("no cache= in {line}"))
}

#[test]
fn no_store_is_not_stored() {
    let (api, sink, conf) = setup(found_cc("no-store"), "{ ttl: 60s, stale_if_error: 1h }");
    lookup(&conf, &sink, "alice", "OK v1");
    assert_eq!(cache_field(&lookup(&conf, &sink, "alice", "OK v1")), "miss");
    assert_eq!((api.requests(), rows(&conf)), (2, 0));
    api.set(Reply::json(503, "{}"));
    let line = lookup(&conf, &sink, "alice", "TEMP unexpected HTTP status 503");
    assert_eq!(cache_field(&line), "miss", "nothing to answer an outage with");

    // A no-store answer also removes what an earlier answer stored.
    let (api, sink, conf) = setup(found("v1"), "{ stale_if_error: 1h }");
    lookup(&conf, &sink, "bob", "OK v1");
    assert_eq!(rows(&conf), 1);
    api.set(found_cc("private, No-Store"));
    lookup(&conf, &sink, "bob", "OK v1");
    assert_eq!(rows(&conf), 0);
    api.set(Reply::json(503, "{}"));
    assert_eq!(cache_field(&lookup(&conf, &sink, "bob", "TEMP unexpected HTTP status 503")), "miss");
}

#[test]
fn no_cache_and_max_age_0_are_not_fresh_but_answer_an_outage() {
    for cc in ["no-cache", "max-age=0"] {
        let (api, sink, conf) = setup(found_cc(cc), "{ ttl: 60s, stale_if_error: 1h }");
        lookup(&conf, &sink, "alice", "OK v1");
        assert_eq!(cache_field(&lookup(&conf, &sink, "alice", "OK v1")), "miss", "{cc}: not fresh");
        assert_eq!(api.requests(), 2, "{cc}");
        api.set(Reply::json(503, "{}"));
        let line = lookup(&conf, &sink, "alice", "OK v1");
        assert_eq!(cache_field(&line), "stale", "{cc}: {line}");
        assert_eq!(api.requests(), 3, "{cc}");
    }
}

#[test]
fn max_age_caps_the_ttl() {
    let (api, sink, conf) = setup(found_cc("max-age=1"), "{ ttl: 60s }");
    lookup(&conf, &sink, "alice", "OK v1");
    assert_eq!(cache_field(&lookup(&conf, &sink, "alice", "OK v1")), "hit");
    assert_eq!(api.requests(), 1);
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(cache_field(&lookup(&conf, &sink, "alice", "OK v1")), "miss", "max-age=1 is over");
    assert_eq!(api.requests(), 2);

    // A longer max-age never lengthens the ttl.
    let (api, sink, conf) = setup(found_cc("max-age=3600"), "{ ttl: 1s }");
    lookup(&conf, &sink, "alice", "OK v1");
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(cache_field(&lookup(&conf, &sink, "alice", "OK v1")), "miss");
    assert_eq!(api.requests(), 2);
}

#[test]
fn stale_if_error_caps_the_stale_window() {
    // ttl 0: the answer's own fresh lifetime is 0, so the window is stale-if-error's 1 s.
    let (api, sink, conf) = setup(found_cc("stale-if-error=1"), "{ stale_if_error: 1h }");
    lookup(&conf, &sink, "alice", "OK v1");
    lookup(&conf, &sink, "bob", "OK v1");
    api.set(Reply::json(503, "{}"));
    assert_eq!(cache_field(&lookup(&conf, &sink, "alice", "OK v1")), "stale", "within the window");
    thread::sleep(Duration::from_millis(1500));
    let line = lookup(&conf, &sink, "bob", "TEMP unexpected HTTP status 503");
    assert_eq!(cache_field(&line), "miss", "stale-if-error=1 is over");

    // A longer stale-if-error never lengthens the entry's window.
    let (api, sink, conf) = setup(found_cc("stale-if-error=3600"), "{ stale_if_error: 1s }");
    lookup(&conf, &sink, "alice", "OK v1");
    api.set(Reply::json(503, "{}"));
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(cache_field(&lookup(&conf, &sink, "alice", "TEMP unexpected HTTP status 503")), "miss");
}

#[test]
fn must_revalidate_allows_no_stale_answer() {
    let (api, sink, conf) = setup(found_cc("max-age=60, must-revalidate"), "{ ttl: 1s, stale_if_error: 1h }");
    lookup(&conf, &sink, "alice", "OK v1");
    assert_eq!(cache_field(&lookup(&conf, &sink, "alice", "OK v1")), "hit", "still fresh for ttl");
    thread::sleep(Duration::from_millis(1500));
    api.set(Reply::json(503, "{}"));
    let line = lookup(&conf, &sink, "alice", "TEMP unexpected HTTP status 503");
    assert_eq!(cache_field(&line), "miss", "{line}");
    assert_eq!(api.requests(), 2);
}
