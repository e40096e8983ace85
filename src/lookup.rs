//! One lookup: render the HTTP request for an entry, send it to the entry's hosts within the
//! deadline (retries as [`failover`] decides), and interpret the answer.

use crate::answer::{self, Outcome};
use crate::auth::{AuthError, Token, Tokens};
use crate::config::{Entry, Level};
use crate::failover;
use crate::failover::Hosts;
use crate::http::{self, Attempt, HttpError, Request, Transport};
use crate::log;
use crate::state::Store;
use reqwest::header::{self, HeaderName, HeaderValue};
use std::io::Write as _;
use std::time::Instant;

mod cached;
pub mod sasl;
mod target;
mod transcript;

pub use cached::{CacheUse, Lookup, cached};

/// What happened, for the reply and the log line.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    /// `host:port` that gave the final answer (or was tried last).
    pub host: Option<String>,
    pub attempts: u32,
    pub status: Option<u16>,
    /// Sent to the backend as `X-Request-Id`.
    pub request_id: Option<String>,
    /// The HTTP exchange as text, when asked for (`query -v`); secrets masked.
    pub transcript: Vec<String>,
    /// The final answer's `Cache-Control` values.
    pub cache_control: Vec<String>,
    /// What the response cache did, for entries that have one.
    pub cache: Option<CacheUse>,
}

impl Report {
    /// A report for a lookup that made no HTTP request.
    pub fn without_request(outcome: Outcome, request_id: &str) -> Report {
        Report {
            outcome,
            host: None,
            attempts: 0,
            status: None,
            request_id: Some(request_id.to_string()),
            transcript: Vec::new(),
            cache_control: Vec::new(),
            cache: None,
        }
    }
}

/// The last attempt's host and result; `None` when the deadline left no time for one.
pub type Last = Option<(String, Result<http::Response, HttpError>)>;

/// Runs the lookup for `entry` with template variables `vars`.
pub fn run(
    entry: &Entry,
    vars: &upon::Value,
    request_id: &str,
    transport: &dyn Transport,
    store: &Store,
    verbose: bool,
) -> Report {
    // Every path below sets the outcome; should one not, the lookup fails rather than answers.
    let mut report = Report::without_request(Outcome::temporary("no attempt was made"), request_id);
    report.outcome = match send(entry, vars, transport, store, verbose, &mut report) {
        Ok(last) => outcome(entry, last, &mut report.cache_control),
        Err(failed) => failed,
    };
    report
}

/// Sends `entry`'s request with template variables `vars` to its hosts, with a token when the
/// entry needs one (renewed once on a 401), within its deadline; returns the last attempt, or
/// the failure when no request could be sent. `report` gets the attempts and the transcript;
/// its request id is sent as `X-Request-Id`.
pub fn send(
    entry: &Entry,
    vars: &upon::Value,
    transport: &dyn Transport,
    store: &Store,
    verbose: bool,
    report: &mut Report,
) -> Result<Last, Outcome> {
    let deadline = Instant::now() + entry.retry.deadline;
    let request_id = report.request_id.clone().unwrap_or_default();
    let (mut headers, body) = prepare(entry, vars, &request_id).map_err(Outcome::temporary)?;
    let urls = (0..entry.targets.len()).map(|index| target_url(entry, index, vars)).collect::<Result<Vec<_>, _>>()?;
    let hosts = Hosts::new(entry, urls, store);
    let Some(tokens) = Tokens::for_entry(entry, store, transport, deadline) else {
        return Ok(attempts(entry, &hosts, &headers, &body, deadline, transport, report, verbose));
    };
    tokens
        .send(
            |token| {
                set_bearer(&mut headers, token);
                attempts(entry, &hosts, &headers, &body, deadline, transport, report, verbose)
            },
            |last| last.as_ref().and_then(|(_, r)| r.as_ref().ok()).map(|r| r.status),
        )
        .map_err(auth_failure)
}

/// No token: a temporary failure, or a timeout when the deadline ran out.
fn auth_failure(e: AuthError) -> Outcome {
    match e {
        AuthError::TimedOut(text) => Outcome::timeout(text),
        AuthError::Failed(text) => Outcome::temporary(text),
    }
}

/// Replaces any `Authorization` header with the bearer token.
fn set_bearer(headers: &mut http::Headers, token: &Token) {
    headers.retain(|(n, _)| *n != header::AUTHORIZATION);
    if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.access)) {
        value.set_sensitive(true);
        headers.push((header::AUTHORIZATION, value));
    }
}

/// Sends the request to the hosts, in order and again as [`failover`] allows, within the
/// deadline; returns the last attempt.
#[allow(clippy::too_many_arguments)]
fn attempts(
    entry: &Entry,
    hosts: &Hosts,
    headers: &http::Headers,
    body: &Option<Vec<u8>>,
    deadline: Instant,
    transport: &dyn Transport,
    report: &mut Report,
    verbose: bool,
) -> Last {
    let mut last: Last = None;
    for attempt in 0..entry.retry.max_attempts {
        let index = hosts.pick(attempt);
        if let Some((_, result)) = &last {
            let wait = failover::wait_before(attempt, hosts.len(), result);
            if Instant::now().checked_add(wait).is_none_or(|at| at >= deadline) {
                break;
            }
            std::thread::sleep(wait);
        }
        let Some(remaining) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            break;
        };
        let request = Request {
            method: entry.request.method.clone(),
            url: hosts.url(index).clone(),
            headers: headers.clone(),
            body: body.clone(),
        };
        let limits = Attempt {
            client: entry.client,
            timeout: entry.retry.timeout.min(remaining),
            max_response_bytes: entry.answer.max_response_bytes,
            gunzip: entry.answer.compression,
        };
        let host = http::host_of(&request.url);
        if verbose {
            transcript::describe_request(&request, &mut report.transcript);
        }
        report.attempts += 1;
        report.host = Some(host.clone());
        let result = transport.send(&request, limits);
        if verbose {
            match &result {
                Ok(response) => transcript::describe_response(response, &mut report.transcript),
                Err(e) => report.transcript.push(format!("! {host}: {e}")),
            }
        }
        report.status = result.as_ref().ok().map(|r| r.status);
        if log::enabled(Level::Debug) {
            let said = match &result {
                Ok(response) => format!("HTTP {}", response.status),
                Err(e) => e.to_string(),
            };
            log::debug(&format!("{} attempt {} to {host}: {said}", entry.name, attempt + 1));
        }
        hosts.record(entry, index, &result, limits.timeout < entry.retry.timeout);
        let again = failover::retryable(entry, &result);
        last = Some((host, result));
        if !again {
            break;
        }
    }
    last
}

/// The outcome of the last attempt; its `Cache-Control` values go to `cache_control`.
fn outcome(entry: &Entry, last: Last, cache_control: &mut Vec<String>) -> Outcome {
    match last {
        Some((_, Ok(response))) => {
            let values = response.headers.get_all(header::CACHE_CONTROL).iter();
            cache_control.extend(values.filter_map(|v| v.to_str().ok()).map(str::to_string));
            answer::interpret(entry, &response)
        }
        Some((host, Err(e))) => failure(&host, e),
        None => Outcome::timeout(format!("deadline of {} ms passed", entry.retry.deadline.as_millis())),
    }
}

/// The outcome when the last attempt got no answer.
fn failure(host: &str, error: HttpError) -> Outcome {
    match error {
        HttpError::Timeout => Outcome::timeout(format!("no answer from {host} in time")),
        e @ (HttpError::TooLarge(_) | HttpError::Body(_)) => {
            Outcome::temporary(format!("invalid backend response from {host}: {e}"))
        }
        e => Outcome::temporary(format!("{host}: {e}")),
    }
}

/// Renders headers and body once for all attempts.
fn prepare(entry: &Entry, vars: &upon::Value, request_id: &str) -> Result<(http::Headers, Option<Vec<u8>>), String> {
    let mut headers: http::Headers = Vec::new();
    let mut set = |name: HeaderName, value: HeaderValue| {
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value));
    };
    // The reason names the header, never the value: it may hold a credential, and it goes into
    // the reply and the log line.
    let value = |name: &HeaderName, s: &str| {
        HeaderValue::from_str(s).map_err(|_| format!("header {name}: the value holds a byte that cannot be sent"))
    };
    set(header::USER_AGENT, value(&header::USER_AGENT, &entry.request.user_agent)?);
    let request_id_header = HeaderName::from_static("x-request-id");
    set(request_id_header.clone(), value(&request_id_header, request_id)?);
    let mut body = None;
    if let Some(payload) = &entry.request.payload {
        let rendered = payload.render(vars).map_err(|e| format!("payload template: {e}"))?;
        set(header::CONTENT_TYPE, value(&header::CONTENT_TYPE, &entry.request.content_type)?);
        body = Some(if entry.request.compression {
            set(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gzip(rendered.as_bytes())
        } else {
            rendered.into_bytes()
        });
    }
    if entry.answer.compression {
        set(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(auth) = &entry.request.basic_auth {
        let mut v = value(&header::AUTHORIZATION, &auth.0)?;
        v.set_sensitive(true);
        set(header::AUTHORIZATION, v);
    }
    for (name, tpl) in &entry.request.headers {
        let rendered = tpl.render(vars).map_err(|e| format!("header {name} template: {e}"))?;
        let mut v = value(name, &rendered)?;
        v.set_sensitive(!transcript::is_harmless_header(name));
        set(name.clone(), v);
    }
    Ok((headers, body))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Renders target `index`. A key that would change the path on parsing (form a `.` or `..`
/// segment, or hide one with characters the parser drops) is refused: see [`target`].
fn target_url(entry: &Entry, index: usize, vars: &upon::Value) -> Result<reqwest::Url, Outcome> {
    let target = &entry.targets[index];
    if let Some(url) = &target.fixed {
        return Ok(url.clone());
    }
    let rendered = target.template.render(vars).map_err(|e| Outcome::temporary(format!("target template: {e}")))?;
    target::parse(&rendered)
}

/// A fresh request id: 16 hex digits, sent to the backend as `X-Request-Id` and logged.
pub fn request_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            run(&e, &vars, "id", &fake, &store, false).outcome,
            Outcome::permanent("unexpected HTTP status 403")
        );
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
}
