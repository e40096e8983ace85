//! `stale_if_error` and `negative_ttl`: a found value answers every failure the API may recover
//! from while its window lasts; a "not found" is stored only with `negative_ttl`, never answers
//! a failure, and removes a stored value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use super::*;

/// Stores `OK v1` for alice (`cache=miss`), then checks that a lookup made after `fail` answers
/// `OK v1` with `cache=stale` and the failure `failure`, and that it asked the API `asked` more
/// times.
#[track_caller]
fn check_stale(
    conf: &Config,
    sink: &SyslogSink,
    api: &mut Api,
    fail: impl FnOnce(&mut Api),
    failure: &str,
    asked: usize,
) {
    let h = host(api);
    let line = lookup(conf, sink, "alice", "OK v1");
    assert_line(
        &line,
        &format!("proto=socketmap map=users key=alice host={h} attempts=1 status=200 cache=miss reply=OK"),
        0..=0,
    );
    fail(api);
    let before = api.requests();
    let line = lookup(conf, sink, "alice", "OK v1");
    let (got, age) = fields(&line);
    assert!(got.contains(" cache=stale age=# failure="), "{line}");
    assert!(got.ends_with(&format!(" cache=stale age=# failure={failure} reply=OK")), "{line}");
    assert!(age.is_some_and(|a| a <= SLACK), "{line}");
    assert_eq!(api.requests() - before, asked, "requests during the failure");
}

#[test]
fn every_kind_of_api_failure_is_answered_with_the_stored_value() {
    let cache = "{ stale_if_error: 1h }";
    let cases: Vec<(&str, Reply, &str)> = vec![
        ("5xx", Reply::json(503, "{}"), "\"unexpected HTTP status 503\""),
        ("429", Reply::json(429, "{}"), "\"unexpected HTTP status 429\""),
        ("unparsable", Reply::json(200, "<html>oops</html>"), "\"invalid backend response: not JSON (syntax error)\""),
    ];
    for (what, reply, failure) in cases {
        let sink = SyslogSink::new();
        let mut api = Api::new(found("v1"));
        let conf = users(api.url(), &sink, cache);
        println!("{what}");
        check_stale(&conf, &sink, &mut api, |api| api.set(reply), failure, 1);
    }

    // Refused: nothing listens on the port any more.
    let sink = SyslogSink::new();
    let mut api = Api::new(found("v1"));
    let conf = users(api.url(), &sink, cache);
    let h = host(&api);
    let line = lookup(&conf, &sink, "alice", "OK v1");
    assert!(line.contains(" cache=miss "), "{line}");
    api.refuse();
    let line = lookup(&conf, &sink, "alice", "OK v1");
    let (got, _) = fields(&line);
    assert!(
        got.starts_with(&format!("proto=socketmap map=users key=alice host={h} attempts=1 cache=stale age=# failure=")),
        "{line}"
    );
    assert!(got.contains(&format!(" failure=\"{h}: ")) && got.ends_with(" reply=OK"), "{line}");

    // Timeout: the API accepts and never answers.
    let sink = SyslogSink::new();
    let mut api = Api::new(found("v1"));
    let conf = users(api.url(), &sink, cache).set("timeout", "1s");
    let hang = Reply::Hang(Duration::from_secs(30));
    let failure = format!("\"no answer from {} in time\"", host(&api));
    check_stale(&conf, &sink, &mut api, |api| api.set(hang), &failure, 1);
}

#[test]
fn a_token_endpoint_that_is_down_is_answered_with_the_stored_value() {
    let up = Arc::new(AtomicBool::new(true));
    let token_requests = Arc::new(AtomicUsize::new(0));
    let (u, n) = (up.clone(), token_requests.clone());
    let ts = Backend::start(move |_| {
        n.fetch_add(1, Ordering::SeqCst);
        if u.load(Ordering::SeqCst) {
            Reply::json(200, r#"{"token":"tok","expires_in":3600}"#)
        } else {
            Reply::json(503, "{}")
        }
    });
    let sink = SyslogSink::new();
    let mut api = Api::new(found("v1"));
    let auth = format!("{{ token_endpoint: {}, credentials: {{ username: u, password: p }} }}", q(&ts.url("/token")));
    let conf = users(api.url(), &sink, "{ stale_if_error: 1h }").set("jwt_auth", &auth);
    let fail = |_: &mut Api| {
        up.store(false, Ordering::SeqCst);
        // The token the first process stored would do: forget it, so that one must be fetched.
        let db = rusqlite::Connection::open(conf.db_path()).expect("open the state database");
        db.execute("DELETE FROM tokens", []).expect("forget the token");
    };
    let h = host(&api);
    let line = lookup(&conf, &sink, "alice", "OK v1");
    assert!(line.contains(&format!("host={h} attempts=1 status=200 cache=miss reply=OK")), "{line}");
    fail(&mut api);
    let line = lookup(&conf, &sink, "alice", "OK v1");
    let (got, age) = fields(&line);
    assert!(got.starts_with("proto=socketmap map=users key=alice attempts=0 cache=stale age=# failure="), "{line}");
    assert!(got.ends_with(" reply=OK"), "{line}");
    assert!(age.is_some_and(|a| a <= SLACK), "{line}");
    assert_eq!(api.requests(), 1, "no token: the API is not asked");
    assert!(token_requests.load(Ordering::SeqCst) >= 2, "the second process asked for a token");
}

#[test]
fn a_perm_answer_is_not_answered_with_the_stored_value() {
    let sink = SyslogSink::new();
    let api = Api::new(found("v1"));
    let conf = users(api.url(), &sink, "{ stale_if_error: 1h }").set("error_field", "error");
    let h = host(&api);
    lookup(&conf, &sink, "alice", "OK v1");

    api.set(Reply::json(200, r#"{"error":"no such domain"}"#));
    let line = lookup(&conf, &sink, "alice", "PERM backend error: no such domain");
    assert_line(
        &line,
        &format!(
            "proto=socketmap map=users key=alice host={h} attempts=1 status=200 cache=miss reply=PERM reason=\"backend error: no such domain\""
        ),
        0..=0,
    );
    // 404 without not_found_status: the request itself is wrong.
    api.set(Reply::json(404, "{}"));
    let line = lookup(&conf, &sink, "alice", "PERM unexpected HTTP status 404");
    assert!(line.contains(" status=404 cache=miss reply=PERM "), "{line}");
    assert_eq!(api.requests(), 3);
}

#[test]
fn after_the_stale_window_the_failure_comes_through() {
    let sink = SyslogSink::new();
    let api = Api::new(found("v1"));
    let conf = users(api.url(), &sink, "{ stale_if_error: 1s }");
    let h = host(&api);
    lookup(&conf, &sink, "alice", "OK v1");
    thread::sleep(Duration::from_millis(1500));
    api.set(Reply::json(503, "{}"));
    let line = lookup(&conf, &sink, "alice", "TEMP unexpected HTTP status 503");
    assert_line(
        &line,
        &format!(
            "proto=socketmap map=users key=alice host={h} attempts=1 status=503 cache=miss reply=TEMP reason=\"unexpected HTTP status 503\""
        ),
        0..=0,
    );
}

#[test]
fn not_found_is_stored_only_with_a_negative_ttl() {
    let sink = SyslogSink::new();
    let api = Api::new(not_found());
    let conf = users(api.url(), &sink, "{ ttl: 60s }");
    for _ in 0..2 {
        assert!(lookup(&conf, &sink, "nobody", "NOTFOUND ").contains(" cache=miss reply=NOTFOUND"));
    }
    assert_eq!((api.requests(), rows(&conf)), (2, 0), "negative_ttl 0: not stored");

    let sink = SyslogSink::new();
    let api = Api::new(not_found());
    let conf = users(api.url(), &sink, "{ ttl: 60s, negative_ttl: 60s }");
    assert!(lookup(&conf, &sink, "nobody", "NOTFOUND ").contains(" cache=miss reply=NOTFOUND"));
    let line = lookup(&conf, &sink, "nobody", "NOTFOUND ");
    assert_line(&line, "proto=socketmap map=users key=nobody attempts=0 cache=hit age=# reply=NOTFOUND", 0..=SLACK);
    assert_eq!(api.requests(), 1, "a fresh not found answers without a request");
}

#[test]
fn a_stored_not_found_is_never_answered_when_the_api_fails() {
    let sink = SyslogSink::new();
    let api = Api::new(not_found());
    let conf = users(api.url(), &sink, "{ negative_ttl: 1s, stale_if_error: 1h }");
    lookup(&conf, &sink, "nobody", "NOTFOUND ");
    assert_eq!(rows(&conf), 1);
    thread::sleep(Duration::from_millis(1500));
    api.set(Reply::json(503, "{}"));
    let line = lookup(&conf, &sink, "nobody", "TEMP unexpected HTTP status 503");
    assert!(line.contains(" cache=miss reply=TEMP "), "{line}");
}

#[test]
fn a_definitive_not_found_removes_the_stored_value() {
    let sink = SyslogSink::new();
    let api = Api::new(found("v1"));
    let conf = users(api.url(), &sink, "{ stale_if_error: 1h }");
    lookup(&conf, &sink, "alice", "OK v1");
    assert_eq!(rows(&conf), 1);
    api.set(not_found());
    assert!(lookup(&conf, &sink, "alice", "NOTFOUND ").contains(" cache=miss reply=NOTFOUND"));
    assert_eq!(rows(&conf), 0, "the API has since denied it");
    api.set(Reply::json(503, "{}"));
    let line = lookup(&conf, &sink, "alice", "TEMP unexpected HTTP status 503");
    assert!(line.contains(" cache=miss reply=TEMP "), "an outage must not revive the value: {line}");
    assert_eq!(api.requests(), 3);
}

#[test]
fn the_go_keys_give_every_map_a_stale_window() {
    let sink = SyslogSink::new();
    let mut api = Api::new(found("v1"));
    let conf = users(api.url(), &sink, "").server("response_cache: { enabled: true, ttl: 1h }");
    let out = command(&conf, &["check"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stderr_str().contains("response_cache"), "{out:?}");
    // Stale only: every lookup asks the API.
    lookup(&conf, &sink, "alice", "OK v1");
    assert!(lookup(&conf, &sink, "alice", "OK v1").contains(" cache=miss "));
    assert_eq!(api.requests(), 2);
    api.refuse();
    assert!(lookup(&conf, &sink, "alice", "OK v1").contains(" cache=stale age="));
}

#[test]
fn the_go_keys_enabled_without_ttl_warn_and_cache_nothing() {
    let sink = SyslogSink::new();
    let mut api = Api::new(found("v1"));
    let conf = users(api.url(), &sink, "").server("response_cache: { enabled: true }");
    let out = command(&conf, &["check"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stderr_str().lines().any(|l| l
            == "warning: server.response_cache: enabled without a ttl: the cache stays \
             off (as in the Go pfxhttp); set ttl, e.g. 1h"),
        "{out:?}"
    );
    let line = lookup(&conf, &sink, "alice", "OK v1");
    assert!(!line.contains("cache="), "no cache: {line}");
    api.refuse();
    let (reply, line) = lookup_reply(&conf, &sink, "alice");
    assert!(reply.starts_with(&format!("TEMP {}: ", host(&api))), "{reply}");
    assert!(!line.contains("cache="), "{line}");
}

/// `stored_at` of the only row, read from the database file.
fn stored_at(conf: &Config) -> i64 {
    let db = rusqlite::Connection::open(conf.db_path()).expect("open the state database");
    db.query_row("SELECT stored_at FROM response_cache", [], |r| r.get(0)).expect("one row")
}

#[test]
fn the_same_answer_is_not_written_again_but_a_changed_one_is() {
    let sink = SyslogSink::new();
    let api = Api::new(found("v1"));
    let conf = users(api.url(), &sink, "{ stale_if_error: 1h }");
    lookup(&conf, &sink, "alice", "OK v1");
    let first = stored_at(&conf);
    lookup(&conf, &sink, "alice", "OK v1");
    assert_eq!(stored_at(&conf), first, "ttl 0: the same answer within a minute is not written");

    api.set(found("v2"));
    lookup(&conf, &sink, "alice", "OK v2");
    assert!(stored_at(&conf) > first, "a changed answer is written at once");
    api.set(Reply::json(503, "{}"));
    assert!(lookup(&conf, &sink, "alice", "OK v2").contains(" cache=stale "), "the changed value answers");
    assert_eq!(api.requests(), 4);
}
