//! The lookup against an in-memory transport: hosts, retries, tokens, URL checks.

use super::*;
use crate::config::{Format, load_str};
use crate::http::Response;
use crate::http::fake::{Fake, ok};

fn entry(yaml_entry: &str) -> Entry {
    let yaml = format!("socket_maps:\n  m: {yaml_entry}\n");
    let mut config = load_str(&yaml, Format::Yaml, "t").config.expect("valid test config");
    config.maps.remove(0)
}

fn lookup(entry: &Entry, key: &str, fake: &Fake) -> Report {
    let store = Store::new(&crate::config::StateDb::Memory);
    run(entry, &crate::template::lookup_vars("m", key, "id1"), "id1", fake, &store, true)
}

#[test]
fn connect_error_moves_to_the_next_host() {
    let e = entry("{ target: ['http://a.test/', 'http://b.test:81/'], value_field: r }");
    let fake = Fake::new(vec![Err(HttpError::Connect("refused".into())), ok(r#"{"r":"v"}"#)]);
    let report = lookup(&e, "k", &fake);
    assert_eq!(report.outcome, Outcome::Found("v".into()));
    assert_eq!((report.attempts, report.host.as_deref()), (2, Some("b.test:81")));
    let hosts: Vec<String> = fake.sent.borrow().iter().map(|r| http::host_of(&r.url)).collect();
    assert_eq!(hosts, ["a.test", "b.test:81"]);
}

#[test]
fn all_hosts_down_is_temporary() {
    let e = entry("{ target: ['http://a.test/', 'http://b.test/'], value_field: r }");
    let fake = Fake::new(vec![Err(HttpError::Connect("refused".into())), Err(HttpError::Tls("bad cert".into()))]);
    assert_eq!(lookup(&e, "k", &fake).outcome, Outcome::temporary("b.test: TLS error: bad cert"));
}

fn status(code: u16, headers: &[(&'static str, &str)]) -> Result<Response, HttpError> {
    let mut map = reqwest::header::HeaderMap::new();
    for (n, v) in headers {
        map.insert(*n, v.parse().unwrap());
    }
    Ok(Response { status: code, headers: map, body: b"{}".to_vec() })
}

fn hosts(fake: &Fake) -> Vec<String> {
    fake.sent.borrow().iter().map(|r| http::host_of(&r.url)).collect()
}

#[test]
fn timeout_and_5xx_move_to_the_next_host() {
    let e = entry("{ target: ['http://a.test/', 'http://b.test/'], value_field: r }");
    for first in [Err(HttpError::Timeout), status(503, &[]), status(429, &[])] {
        let fake = Fake::new(vec![first, ok(r#"{"r":"v"}"#)]);
        let report = lookup(&e, "k", &fake);
        assert_eq!(report.outcome, Outcome::Found("v".into()));
        assert_eq!(hosts(&fake), ["a.test", "b.test"]);
    }
}

#[test]
fn a_failed_host_is_skipped_until_it_recovers() {
    let e = entry("{ target: ['http://a.test/', 'http://b.test/'], value_field: r }");
    let store = Store::new(&crate::config::StateDb::Memory);
    let vars = crate::template::lookup_vars("m", "k", "id");
    let fake = Fake::new(vec![Err(HttpError::Connect("refused".into())), ok("{}"), ok("{}")]);
    run(&e, &vars, "id", &fake, &store, false);
    run(&e, &vars, "id", &fake, &store, false);
    assert_eq!(hosts(&fake), ["a.test", "b.test", "b.test"], "a is skipped while marked");
    // All marked: tried anyway, in order; an answer clears the mark.
    store.failed("http://b.test", "x");
    let fake = Fake::new(vec![ok("{}"), ok("{}")]);
    run(&e, &vars, "id", &fake, &store, false);
    run(&e, &vars, "id", &fake, &store, false);
    assert_eq!(hosts(&fake), ["a.test", "a.test"]);
    assert!(store.marks(&["http://a.test".into()]).is_empty());
}

#[test]
fn other_answers_are_final() {
    let e = entry("{ target: ['http://a.test/', 'http://b.test/'], value_field: r }");
    for (first, expected) in [
        (status(404, &[]), Outcome::permanent("unexpected HTTP status 404")),
        (status(302, &[]), Outcome::temporary("unexpected HTTP status 302")),
        (
            Err(HttpError::Body("reset".into())),
            Outcome::temporary("invalid backend response from a.test: reading the answer failed: reset"),
        ),
    ] {
        let fake = Fake::new(vec![first]);
        assert_eq!(lookup(&e, "k", &fake).outcome, expected);
        assert_eq!(hosts(&fake), ["a.test"]);
    }
}

#[test]
fn one_host_is_tried_twice_by_default() {
    let e = entry("{ target: 'http://a.test/', value_field: r }");
    let fake = Fake::new(vec![Err(HttpError::Connect("refused".into())), ok(r#"{"r":"v"}"#)]);
    let report = lookup(&e, "k", &fake);
    assert_eq!((report.outcome, report.attempts), (Outcome::Found("v".into()), 2));
    let e = entry("{ target: 'http://a.test/', value_field: r, max_attempts: 1 }");
    let fake = Fake::new(vec![status(503, &[])]);
    assert_eq!(lookup(&e, "k", &fake).outcome, Outcome::temporary("unexpected HTTP status 503"));
    assert_eq!(fake.sent.borrow().len(), 1);
}

#[test]
fn retry_after_beyond_the_deadline_stops_retrying() {
    let e = entry("{ target: 'http://a.test/', value_field: r, deadline: 2s }");
    let fake = Fake::new(vec![status(429, &[("retry-after", "5")])]);
    let started = Instant::now();
    assert_eq!(lookup(&e, "k", &fake).outcome, Outcome::temporary("unexpected HTTP status 429"));
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    assert_eq!(fake.sent.borrow().len(), 1);
}

#[test]
fn random_balance_spreads_first_attempts() {
    let e = entry("{ target: ['http://a.test/', 'http://b.test/'], value_field: r, balance: random }");
    let fake = Fake::new((0..200).map(|_| ok("{}")).collect());
    for _ in 0..200 {
        lookup(&e, "k", &fake);
    }
    let on_a = hosts(&fake).iter().filter(|h| *h == "a.test").count();
    assert!((60..=140).contains(&on_a), "{on_a} of 200 first attempts on a.test");
}

#[test]
fn dot_segment_keys_make_no_request() {
    let e = entry("{ target: 'http://a.test/u/{{ key }}', method: GET, value_field: r }");
    let fake = Fake::new(vec![]);
    for key in ["..", "."] {
        let report = lookup(&e, key, &fake);
        assert_eq!(report.outcome, Outcome::permanent("key not usable in a URL path"), "{key}");
    }
    assert!(fake.sent.borrow().is_empty());
    let fake = Fake::new(vec![ok("{}")]);
    lookup(&e, "a/../b", &fake);
    assert_eq!(fake.sent.borrow()[0].url.path(), "/u/a%2F..%2Fb");
}

#[test]
fn headers_and_transcript() {
    let e = entry(
        "{ target: 'http://a.test/', value_field: r, http_auth_basic: 'user:pw', payload: '{\"k\":\"{{ key }}\"}', \
         custom_headers: ['X-A: 1', 'x-a: {{ key }}'] }",
    );
    let fake = Fake::new(vec![ok(r#"{"r":"v"}"#)]);
    let report = lookup(&e, "q\"x", &fake);
    let sent = &fake.sent.borrow()[0];
    let get = |n: &str| sent.headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.to_str().unwrap().to_string());
    assert_eq!(get("authorization").as_deref(), Some("Basic dXNlcjpwdw=="));
    assert_eq!(get("x-request-id").as_deref(), Some("id1"));
    assert_eq!(get("x-a").as_deref(), Some("q\"x"), "a repeated header: the last wins");
    assert_eq!(sent.body.as_deref(), Some(&br#"{"k":"q\"x"}"#[..]));
    let transcript = report.transcript.join("\n");
    assert!(transcript.contains("> authorization: ***"), "{transcript}");
    assert!(!transcript.contains("dXNlcjpwdw=="), "{transcript}");
}

fn jwt_entry() -> Entry {
    entry(
        "{ target: 'http://a.test/', value_field: r, jwt_auth: { token_endpoint: 'http://t.test/token', \
         credentials: { u: p } } }",
    )
}

fn bearer_of(request: &Request) -> Option<String> {
    request.headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.to_str().unwrap().to_string())
}

#[test]
fn token_fetched_once_then_reused() {
    let e = jwt_entry();
    let store = Store::new(&crate::config::StateDb::Memory);
    let vars = crate::template::lookup_vars("m", "k", "id");
    let fake = Fake::new(vec![ok(r#"{"token":"t1","expires_in":3600}"#), ok(r#"{"r":"v"}"#), ok(r#"{"r":"w"}"#)]);
    assert_eq!(run(&e, &vars, "id", &fake, &store, false).outcome, Outcome::Found("v".into()));
    assert_eq!(run(&e, &vars, "id", &fake, &store, false).outcome, Outcome::Found("w".into()));
    let sent = fake.sent.borrow();
    assert_eq!(hosts(&fake), ["t.test", "a.test", "a.test"]);
    assert_eq!(bearer_of(&sent[1]).as_deref(), Some("Bearer t1"));
    assert_eq!(bearer_of(&sent[2]).as_deref(), Some("Bearer t1"));
}

#[test]
fn a_401_gets_one_new_token_and_one_retry() {
    let e = jwt_entry();
    let store = Store::new(&crate::config::StateDb::Memory);
    let vars = crate::template::lookup_vars("m", "k", "id");
    let fake = Fake::new(vec![
        ok(r#"{"token":"old","expires_in":3600}"#),
        status(401, &[]),
        ok(r#"{"token":"new","expires_in":3600}"#),
        ok(r#"{"r":"v"}"#),
    ]);
    assert_eq!(run(&e, &vars, "id", &fake, &store, false).outcome, Outcome::Found("v".into()));
    assert_eq!(bearer_of(&fake.sent.borrow()[3]).as_deref(), Some("Bearer new"));
    let fake = Fake::new(vec![status(401, &[]), ok(r#"{"token":"newer"}"#), status(401, &[])]);
    let out = run(&e, &vars, "id", &fake, &store, false).outcome;
    assert!(matches!(&out, Outcome::Failure(f) if f.kind == crate::answer::FailureKind::Temporary), "{out:?}");
    assert_eq!(fake.sent.borrow().len(), 3, "no third try");
    let fake = Fake::new(vec![status(403, &[])]);
    assert_eq!(run(&e, &vars, "id", &fake, &store, false).outcome, Outcome::permanent("unexpected HTTP status 403"));
}

#[test]
fn token_endpoint_failure_is_temporary_and_names_no_secret() {
    let e = jwt_entry();
    let store = Store::new(&crate::config::StateDb::Memory);
    let fake = Fake::new(vec![status(500, &[])]);
    let out = run(&e, &crate::template::lookup_vars("m", "k", "id"), "id", &fake, &store, false).outcome;
    assert_eq!(out, Outcome::temporary("token endpoint t.test: HTTP 500"));
    assert_eq!(fake.sent.borrow().len(), 1, "the target is not asked without a token");
}
