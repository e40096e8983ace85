//! `pfxhttp socketmap`: socketmap_table(5) netstrings on stdin/stdout against a real HTTP(S)
//! backend on 127.0.0.1 (`docs/design.md`: protocols, failure rules, requests, logging).
//!
//! Every serving run checks the spawn(8) rules: nothing on stderr, exit status 0.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::http::gunzip;
use crate::support::*;

/// Upper bound for one pfxhttp run (start, all lookups, exit).
const RUN: Duration = Duration::from_secs(10);
/// Upper bound for one reply read from an interactive child.
const READ: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ config

/// A config with one map `demo` asking `target` (see [`Config::map`]); `set` and `unset` change
/// the map added last.
fn conf(target: &str) -> Config {
    Config::new().map("demo", target)
}

/// How these tests run a config: `pfxhttp --config FILE socketmap`.
trait Socketmap {
    /// Runs it with `stdin`, checks the spawn rules, returns stdout.
    fn serve(&self, stdin: &[u8]) -> Vec<u8>;
    /// Like [`Socketmap::serve`], returning the whole output (for its timing).
    fn run(&self, stdin: &[u8]) -> Output;
    /// Like [`Socketmap::serve`] with extra environment variables.
    fn serve_env(&self, env: &[(&str, &str)], stdin: &[u8]) -> Vec<u8>;
    /// An interactive run.
    fn child(&self) -> Child;
}

impl Socketmap for Config {
    fn serve(&self, stdin: &[u8]) -> Vec<u8> {
        self.run(stdin).stdout
    }

    fn run(&self, stdin: &[u8]) -> Output {
        self.run_serving(&["socketmap"], stdin, RUN)
    }

    fn serve_env(&self, env: &[(&str, &str)], stdin: &[u8]) -> Vec<u8> {
        let path = self.arg();
        let out = run_env(&["--config", &path, "socketmap"], env, stdin, RUN);
        assert_clean(&out);
        out.stdout
    }

    fn child(&self) -> Child {
        self.spawn(&["socketmap"])
    }
}

// ------------------------------------------------------------------ running and checking

fn serve_file(path: &Path, stdin: &[u8]) -> Vec<u8> {
    let out = run(&["--config", path.to_str().unwrap(), "socketmap"], stdin, RUN);
    assert_clean(&out);
    out.stdout
}

/// A socketmap request netstring `<map> <key>`.
fn req(map: &str, key: &str) -> Vec<u8> {
    netstring(format!("{map} {key}").as_bytes())
}

/// Several `demo` requests in one stream.
fn reqs(keys: &[&str]) -> Vec<u8> {
    keys.iter().flat_map(|k| req("demo", k)).collect()
}

/// The replies `payloads`, each framed as a netstring, concatenated.
fn replies(payloads: &[&str]) -> Vec<u8> {
    payloads.iter().flat_map(|p| netstring(p.as_bytes())).collect()
}

/// Checks that `out` is exactly one well-framed netstring and returns its payload.
#[track_caller]
fn single_reply(out: &[u8]) -> String {
    let colon = out.iter().position(|&b| b == b':').unwrap_or_else(|| panic!("no netstring: {}", show(out)));
    let len: usize = std::str::from_utf8(&out[..colon])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad netstring length: {}", show(out)));
    assert_eq!(out.len(), colon + 1 + len + 1, "not exactly one netstring: {}", show(out));
    assert_eq!(out.last(), Some(&b','), "netstring not terminated by ',': {}", show(out));
    String::from_utf8(out[colon + 1..colon + 1 + len].to_vec()).expect("reply is UTF-8")
}

/// Checks that `out` is one netstring whose payload starts with `prefix`; returns the payload.
#[track_caller]
fn assert_reply_starts(out: &[u8], prefix: &str) -> String {
    let payload = single_reply(out);
    assert!(payload.starts_with(prefix), "reply should start with {prefix:?}, got {payload:?}");
    if !prefix.contains("configuration error") {
        assert!(!payload.contains("pfxhttp configuration error"), "the test config did not load: {payload:?}");
    }
    payload
}

/// A backend that answers every request with `{"result": <value>}` (value is raw JSON).
fn value_backend(value_json: &str) -> Backend {
    Backend::fixed(Reply::json(200, &format!(r#"{{"result":{value_json}}}"#)))
}

/// A backend whose answer depends on the `key` field of the JSON request body.
fn keyed<F>(f: F) -> Backend
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    Backend::start(move |r| {
        let body = r.body_json();
        f(body["key"].as_str().unwrap_or(""))
    })
}

// ------------------------------------------------------------------ reply table

/// Accepted status and a value: `OK <value>`, framed with the right length.
#[test]
fn value_found_is_ok() {
    let b = value_backend(r#""mapped-ok""#);
    let out = conf(&b.url("/lookup")).serve(&req("demo", "user@example.org"));
    assert_wire(&out, b"12:OK mapped-ok,");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path(), "/lookup");
    assert_eq!(reqs[0].body_json(), json!({"key": "user@example.org"}));
}

/// Accepted status and no value (field absent, null, "", {}, []): `NOTFOUND `.
#[test]
fn no_value_is_notfound() {
    let b = keyed(|key| {
        let body = match key {
            "absent" => r#"{"other":"x"}"#,
            "null" => r#"{"result":null}"#,
            "empty" => r#"{"result":""}"#,
            "object" => r#"{"result":{}}"#,
            "array" => r#"{"result":[]}"#,
            _ => r#"{"result":"unexpected key"}"#,
        };
        Reply::json(200, body)
    });
    let out = conf(&b.url("/lookup")).serve(&reqs(&["absent", "null", "empty", "object", "array"]));
    assert_wire(&out, &b"9:NOTFOUND ,".repeat(5));
    assert_eq!(b.request_count(), 5);
}

/// A status listed in `not_found_status` means NOTFOUND; the same status without it is PERM.
#[test]
fn not_found_status_is_notfound() {
    let b = Backend::fixed(Reply::json(404, r#"{"error":"no such user"}"#));
    let out = conf(&b.url("/lookup")).set("not_found_status", "[404]").serve(&req("demo", "nobody"));
    assert_wire(&out, b"9:NOTFOUND ,");
    let out = conf(&b.url("/lookup")).serve(&req("demo", "nobody"));
    assert_wire(&out, &netstring(b"PERM unexpected HTTP status 404"));
}

/// `error_field` set to something other than empty, false or `no_error_value`: `PERM backend
/// error: <text>`; otherwise the value is used.
#[test]
fn error_field_says_error() {
    let b = keyed(|key| {
        let body = match key {
            "boom" => r#"{"error":"boom","result":"v"}"#,
            "none" => r#"{"error":"none","result":"v"}"#,
            "empty" => r#"{"error":"","result":"v"}"#,
            "false" => r#"{"error":false,"result":"v"}"#,
            "absent" => r#"{"result":"v"}"#,
            _ => r#"{"error":"unexpected key"}"#,
        };
        Reply::json(200, body)
    });
    let out = conf(&b.url("/lookup"))
        .set("error_field", "error")
        .set("no_error_value", "none")
        .serve(&reqs(&["boom", "none", "empty", "false", "absent"]));
    assert_wire(&out, &replies(&["PERM backend error: boom", "OK v", "OK v", "OK v", "OK v"]));
}

/// An unexpected 4xx is `PERM unexpected HTTP status <code>`.
#[test]
fn unexpected_4xx_is_perm() {
    let b = Backend::fixed(Reply::json(403, r#"{"result":"v"}"#));
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_wire(&out, &netstring(b"PERM unexpected HTTP status 403"));
}

/// A 5xx is `TEMP unexpected HTTP status <code>`, never NOTFOUND, even with a value in the body.
#[test]
fn status_5xx_is_temp() {
    let b = Backend::fixed(Reply::json(503, r#"{"result":"v"}"#));
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_wire(&out, &netstring(b"TEMP unexpected HTTP status 503"));
}

/// A redirect is not followed: `TEMP unexpected HTTP status 302`, one request only.
#[test]
fn redirect_is_temp_and_not_followed() {
    let b = Backend::start(|r| {
        if r.path() == "/lookup" {
            Reply::status(302, "").with_header("Location", "/elsewhere")
        } else {
            Reply::json(200, r#"{"result":"followed"}"#)
        }
    });
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_wire(&out, &netstring(b"TEMP unexpected HTTP status 302"));
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1, "redirect must not be followed: {reqs:?}");
    assert_eq!(reqs[0].path(), "/lookup");
}

/// 429 means "busy": a temporary failure, not PERM like other 4xx.
#[test]
fn status_429_is_temp() {
    let b = Backend::fixed(Reply::json(429, r#"{"result":"v"}"#));
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    let payload = assert_reply_starts(&out, "TEMP ");
    assert!(payload.contains("429"), "reason should name the status: {payload:?}");
}

/// An HTML error page with status 200 is `TEMP invalid backend response…`, never NOTFOUND.
#[test]
fn html_body_is_temp_invalid() {
    let b = Backend::fixed(
        Reply::status(200, "<html><body>Gateway error</body></html>").with_header("Content-Type", "text/html"),
    );
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_reply_starts(&out, "TEMP invalid backend response");
}

/// A JSON document of the wrong shape (a string where `data.result` needs an object) is
/// `TEMP invalid backend response…`.
#[test]
fn wrong_json_shape_is_temp_invalid() {
    let b = Backend::fixed(Reply::json(200, r#""just a string""#));
    let out = conf(&b.url("/lookup")).set("value_field", "data.result").serve(&req("demo", "k"));
    assert_reply_starts(&out, "TEMP invalid backend response");
}

/// Connection refused is a temporary failure.
#[test]
fn connection_refused_is_temp() {
    let out = conf(&closed_url("/lookup")).serve(&req("demo", "k"));
    assert_reply_starts(&out, "TEMP ");
}

/// The failure reason never carries credentials from the target URL.
#[test]
fn failure_reason_hides_url_credentials() {
    let url = closed_url("/lookup").replace("http://", "http://someuser:url-pass-9c1e@");
    let out = conf(&url).serve(&req("demo", "k"));
    let payload = assert_reply_starts(&out, "TEMP ");
    assert!(!payload.contains("url-pass-9c1e"), "credentials in the reply: {payload:?}");
}

/// A body over `max_response_bytes` is a temporary failure, even if it holds a value.
#[test]
fn body_over_max_response_bytes_is_temp() {
    let big = format!(r#"{{"result":"{}"}}"#, "x".repeat(500));
    let b = Backend::fixed(Reply::json(200, &big));
    let out = conf(&b.url("/lookup")).set("max_response_bytes", "100").serve(&req("demo", "k"));
    assert_reply_starts(&out, "TEMP invalid backend response");
    // The same body under the limit is a value: the limit is what made the difference.
    let out = conf(&b.url("/lookup")).set("max_response_bytes", "1000").serve(&req("demo", "k"));
    assert_reply_starts(&out, "OK xxx");
}

/// A backend slower than `timeout` gives `TIMEOUT …`, well before the backend would answer.
#[test]
fn slow_backend_is_timeout() {
    let b = Backend::fixed(Reply::Hang(Duration::from_secs(20)));
    let out = conf(&b.url("/lookup")).set("timeout", "300ms").run(&req("demo", "k"));
    assert_reply_starts(&out.stdout, "TIMEOUT ");
    assert!(out.elapsed < Duration::from_secs(5), "TIMEOUT came too late: {:?}", out.elapsed);
    assert!(b.request_count() >= 1, "the backend was never asked");
}

/// A body that trickles in slower than `timeout` also gives `TIMEOUT …` in time: the attempt
/// timeout covers reading the body.
#[test]
fn slow_body_is_timeout() {
    let body = br#"{"result":"v"}"#.to_vec();
    let b = Backend::fixed(Reply::Trickle { status: 200, body, every: Duration::from_millis(500) });
    let out = conf(&b.url("/lookup")).set("timeout", "300ms").run(&req("demo", "k"));
    assert_reply_starts(&out.stdout, "TIMEOUT ");
    assert!(out.elapsed < Duration::from_secs(5), "TIMEOUT came too late: {:?}", out.elapsed);
}

/// The entry's `deadline` bounds the whole request even when `timeout` is longer.
#[test]
fn deadline_bounds_the_request() {
    let b = Backend::fixed(Reply::Hang(Duration::from_secs(20)));
    let out = conf(&b.url("/lookup")).set("timeout", "10s").set("deadline", "500ms").run(&req("demo", "k"));
    assert_reply_starts(&out.stdout, "TIMEOUT ");
    assert!(out.elapsed < Duration::from_secs(4), "TIMEOUT came too late: {:?}", out.elapsed);
}

/// A body cut short (fewer bytes than `Content-Length`, then close) is a temporary failure, even
/// when the bytes that came parse as a value.
#[test]
fn truncated_body_is_temp() {
    let b = Backend::fixed(Reply::Respond {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Content-Length".into(), "100".into()),
            ("Connection".into(), "close".into()),
        ],
        body: br#"{"result":"v"}"#.to_vec(),
    });
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_reply_starts(&out, "TEMP ");
}

/// A reply payload longer than `server.socketmap_max_reply_size` (Postfix's limit, which counts
/// the `OK `) is `PERM value too long (<n> bytes)`; a reply of exactly that size is sent.
#[test]
fn value_over_max_reply_size_is_perm() {
    let b = keyed(|key| {
        let n = if key == "long" { 8 } else { 7 };
        Reply::json(200, &format!(r#"{{"result":"{}"}}"#, "v".repeat(n)))
    });
    let out = conf(&b.url("/lookup")).server("socketmap_max_reply_size: 10").serve(&reqs(&["long", "exact"]));
    assert_wire(&out, &replies(&["PERM value too long (8 bytes)", "OK vvvvvvv"]));
}

/// An unknown map name is `PERM unknown map <name>`, without a backend request.
#[test]
fn unknown_map_is_perm() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).serve(&req("nosuch", "k"));
    assert_wire(&out, b"23:PERM unknown map nosuch,");
    assert_eq!(b.request_count(), 0);
}

/// An empty key is NOTFOUND without a backend request.
#[test]
fn empty_key_is_notfound_without_request() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).serve(b"5:demo ,");
    assert_wire(&out, b"9:NOTFOUND ,");
    assert_eq!(b.request_count(), 0, "no backend request for an empty key");
}

/// Map names match ASCII case-insensitively, both ways.
#[test]
fn map_names_are_case_insensitive() {
    let b = value_backend(r#""ok""#);
    let conf = conf(&b.url("/lookup")).map("DemoMap", &b.url("/other"));
    let out = conf.serve(&[req("DEMO", "ok"), req("demomap", "k"), req("DEMOMAP", "k")].concat());
    assert_wire(&out, &replies(&["OK ok", "OK ok", "OK ok"]));
    let paths: Vec<String> = b.requests().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(paths, ["/lookup", "/other", "/other"]);
}

// ------------------------------------------------------------------ value conversion

/// Numbers as JSON writes them, booleans as words, arrays joined with `,`.
#[test]
fn scalar_and_array_values_convert() {
    let b = keyed(|key| {
        let v = match key {
            "int" => "42",
            "float" => "3.5",
            "bool" => "true",
            "array" => r#"["a@x","b@y",3]"#,
            _ => "null",
        };
        Reply::json(200, &format!(r#"{{"result":{v}}}"#))
    });
    let out = conf(&b.url("/lookup")).serve(&reqs(&["int", "float", "bool", "array"]));
    assert_wire(&out, &replies(&["OK 42", "OK 3.5", "OK true", "OK a@x,b@y,3"]));
}

/// `value_separator` joins array values.
#[test]
fn value_separator_joins_arrays() {
    let b = value_backend(r#"["a@x","b@y"]"#);
    let out = conf(&b.url("/lookup")).set("value_separator", "' '").serve(&req("demo", "k"));
    assert_wire(&out, &netstring(b"OK a@x b@y"));
}

/// `value_field` as a dot path, a dot path with an array index, and a JSON Pointer.
#[test]
fn value_field_paths() {
    let b = Backend::fixed(Reply::json(
        200,
        r#"{"result":"top","data":{"result":"nested"},"items":[{"address":"first"},{"address":"second"}]}"#,
    ));
    for (field, want) in [("data.result", "OK nested"), ("items.1.address", "OK second"), ("/data/result", "OK nested")]
    {
        let out = conf(&b.url("/lookup")).set("value_field", &q(field)).serve(&req("demo", "k"));
        assert_wire(&out, &netstring(want.as_bytes()));
    }
}

/// A bare name missing at the top level is searched breadth-first in document order: the
/// shallower match wins over an earlier, deeper one.
#[test]
fn bare_name_is_found_breadth_first() {
    let b = Backend::fixed(Reply::json(200, r#"{"a":{"x":{"result":"deep"}},"b":{"result":"shallow"}}"#));
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_wire(&out, b"10:OK shallow,");
}

/// CR, LF, NUL and other control characters are removed from values.
#[test]
fn control_characters_are_removed_from_values() {
    let b = value_backend(r#""a\r\nb\u0000c\td""#);
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_wire(&out, b"7:OK abcd,");
}

/// A reply over 65535 bytes is framed with its full length.
#[test]
fn large_reply_is_framed_with_full_length() {
    let value = "x".repeat(70_000);
    let b = value_backend(&format!("\"{value}\""));
    let out = conf(&b.url("/lookup")).server("socketmap_max_reply_size: 200000").serve(&req("demo", "k"));
    let mut want = b"70003:OK ".to_vec();
    want.extend_from_slice(value.as_bytes());
    want.push(b',');
    assert_wire(&out, &want);
}

// ------------------------------------------------------------------ templates

/// Keys that would break out of a JSON string stay inside it.
const HOSTILE_KEYS: &[&str] = &[r#"a"b\c"#, r#"x", "admin": true"#, "line\nbreak", "two words"];

/// Runs the hostile keys through `conf` and returns the recorded request bodies.
fn hostile_lookups(conf: &Config, b: &Backend) -> Vec<Recorded> {
    let stdin: Vec<u8> = HOSTILE_KEYS.iter().flat_map(|k| req("demo", k)).collect();
    let out = conf.serve(&stdin);
    assert_wire(&out, &b"9:OK mapped,".repeat(HOSTILE_KEYS.len()));
    let reqs = b.requests();
    assert_eq!(reqs.len(), HOSTILE_KEYS.len());
    reqs
}

/// In a JSON payload the key is JSON-escaped: the body parses with `key` equal to the exact key
/// and nothing else (no injected members); the request splits at the first space only.
#[test]
fn key_is_json_escaped_in_payload() {
    let b = value_backend(r#""mapped""#);
    let reqs = hostile_lookups(&conf(&b.url("/lookup")), &b);
    for (r, key) in reqs.iter().zip(HOSTILE_KEYS) {
        assert_eq!(r.body_json(), json!({ "key": key }), "body {:?}", r.body_str());
    }
}

/// The Go pfxhttp payload `{{ .Key }}` gives the same escaped body.
#[test]
fn go_style_payload_is_escaped_the_same() {
    let b = value_backend(r#""mapped""#);
    let conf = conf(&b.url("/lookup")).set("payload", &q(r#"{"key":"{{ .Key }}"}"#));
    let reqs = hostile_lookups(&conf, &b);
    for (r, key) in reqs.iter().zip(HOSTILE_KEYS) {
        assert_eq!(r.body_json(), json!({ "key": key }), "body {:?}", r.body_str());
    }
}

/// `{{ key | json }}` writes a complete, quoted JSON value.
#[test]
fn json_filter_writes_a_quoted_value() {
    let b = value_backend(r#""mapped""#);
    let conf = conf(&b.url("/lookup")).set("payload", &q(r#"{"k":{{ key | json }},"n":{{ name | json }}}"#));
    let reqs = hostile_lookups(&conf, &b);
    for (r, key) in reqs.iter().zip(HOSTILE_KEYS) {
        assert_eq!(r.body_json(), json!({ "k": key, "n": "demo" }), "body {:?}", r.body_str());
    }
}

/// In a URL template the key is percent-encoded (a `/` stays inside the path segment).
#[test]
fn key_is_percent_encoded_in_url() {
    let b = value_backend(r#""found""#);
    let target = format!("http://127.0.0.1:{}/users/{{{{ key }}}}", b.port());
    let out = conf(&target).set("method", "GET").unset("payload").serve(&req("demo", "a b/c"));
    assert_wire(&out, b"8:OK found,");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].target, "/users/a%20b%2Fc");
    assert!(reqs[0].body.is_empty(), "GET without payload has no body: {:?}", reqs[0].body_str());
}

/// A key that would form a `.` or `..` path segment is refused without a request.
#[test]
fn dot_segment_keys_are_refused_in_url() {
    let b = value_backend(r#""found""#);
    let target = format!("http://127.0.0.1:{}/users/{{{{ key }}}}", b.port());
    let out = conf(&target).set("method", "GET").unset("payload").serve(&reqs(&["..", "."]));
    let perm = "PERM key not usable in a URL path";
    assert_wire(&out, &replies(&[perm, perm]));
    assert_eq!(b.request_count(), 0, "no request for a path-traversal key");
}

/// With `| raw` the key is not encoded, and the URL parser turns `\` into `/` and drops tabs and
/// line feeds: keys built on that are refused like a plain `..`, and no request reaches the path
/// they aim at. A key whose bytes only get percent-encoded by the parser is sent as before.
#[test]
fn raw_keys_cannot_form_dot_segments_after_parsing() {
    let b = value_backend(r#""found""#);
    let target = format!("http://127.0.0.1:{}/users/{{{{ key | raw }}}}", b.port());
    let conf = conf(&target).set("method", "GET").unset("payload");
    let out = conf.serve(&reqs(&["..\\admin", ".\t./admin", "%2e\n%2e/admin"]));
    let perm = "PERM key not usable in a URL path";
    assert_wire(&out, &replies(&[perm, perm, perm]));
    let paths: Vec<String> = b.requests().iter().map(|r| r.path().to_string()).collect();
    assert!(paths.is_empty(), "requests made: {paths:?}");
    let out = conf.serve(&req("demo", "a b/c"));
    assert_wire(&out, b"8:OK found,");
    assert_eq!(b.requests()[0].target, "/users/a%20b/c");
}

// ------------------------------------------------------------------ headers

/// Default headers: `User-Agent: pfxhttp/<version>`, a 16-hex-digit `X-Request-Id`,
/// `Content-Type: application/json`.
#[test]
fn default_request_headers() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).serve(&reqs(&["k1", "k2"]));
    assert_wire(&out, &replies(&["OK v", "OK v"]));
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.header("user-agent"), Some(format!("pfxhttp/{}", env!("CARGO_PKG_VERSION")).as_str()));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let id = r.header("x-request-id").expect("X-Request-Id sent");
        assert!(id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()), "X-Request-Id {id:?}");
    }
    assert_ne!(reqs[0].header("x-request-id"), reqs[1].header("x-request-id"), "a fresh id per request");
}

/// `content_type` sets the request's Content-Type.
#[test]
fn content_type_is_configurable() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup"))
        .set("content_type", "text/plain")
        .set("payload", &q("lookup {{ key }}"))
        .serve(&req("demo", "u@x"));
    assert_wire(&out, b"4:OK v,");
    let r = &b.requests()[0];
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.body_str(), "lookup u@x");
}

/// `custom_headers`: a repeated name sends the last value only; values are templates with CR/LF
/// removed from the key.
#[test]
fn custom_headers_last_wins_and_strip_control_characters() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup"))
        .set("custom_headers", r#"["X-Test: one", "X-Test: two", "X-Key: {{ key }}"]"#)
        .serve(&reqs(&["user@example.org", "a\r\nX-Evil: 1\r\nb"]));
    assert_wire(&out, &replies(&["OK v", "OK v"]));
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.header_all("x-test"), ["two"]);
        assert!(r.header("x-evil").is_none(), "header injected: {:?}", r.headers);
    }
    assert_eq!(reqs[0].header_all("x-key"), ["user@example.org"]);
    assert_eq!(reqs[1].header_all("x-key"), ["aX-Evil: 1b"]);
}

/// `http_auth_basic: "user:pw"` sends `Authorization: Basic dXNlcjpwdw==`.
#[test]
fn http_auth_basic_header() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).set("http_auth_basic", "'user:pw'").serve(&req("demo", "k"));
    assert_wire(&out, b"4:OK v,");
    assert_eq!(b.requests()[0].header_all("authorization"), ["Basic dXNlcjpwdw=="]);
}

// ------------------------------------------------------------------ response modes

/// `response: text`: the trimmed body is the value; an empty body is NOTFOUND.
#[test]
fn response_text_mode() {
    let b = keyed(|key| if key == "empty" { Reply::text(200, " \n") } else { Reply::text(200, "  plain value \n") });
    let out = conf(&b.url("/lookup")).set("response", "text").unset("value_field").serve(&reqs(&["full", "empty"]));
    assert_wire(&out, &replies(&["OK plain value", "NOTFOUND "]));
}

/// `response: header`: the value is read from the response header named by `value_field`.
#[test]
fn response_header_mode() {
    let b = keyed(|key| {
        let r = Reply::json(200, r#"{"result":"from-body"}"#);
        if key == "none" { r } else { r.with_header("X-Result", "from-header") }
    });
    let out = conf(&b.url("/lookup"))
        .set("response", "header")
        .set("value_field", "X-Result")
        .serve(&reqs(&["with", "none"]));
    assert_wire(&out, &replies(&["OK from-header", "NOTFOUND "]));
}

// ------------------------------------------------------------------ compression

/// `http_request_compression: true` gzips the body and says so in `Content-Encoding`.
#[test]
fn request_compression_gzips_the_body() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).set("http_request_compression", "true").serve(&req("demo", "u@x"));
    assert_wire(&out, b"4:OK v,");
    let r = &b.requests()[0];
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&r.body), br#"{"key":"u@x"}"#);
}

/// `http_response_compression: true` sends `Accept-Encoding: gzip` and decodes a gzip answer.
#[test]
fn response_compression_decodes_gzip() {
    let b = Backend::fixed(Reply::gzip_json(200, r#"{"result":"zipped"}"#));
    let out = conf(&b.url("/lookup")).set("http_response_compression", "true").serve(&req("demo", "k"));
    assert_wire(&out, b"9:OK zipped,");
    let r = &b.requests()[0];
    assert!(
        r.header("accept-encoding").is_some_and(|v| v.split(',').any(|t| t.trim() == "gzip")),
        "Accept-Encoding: {:?}",
        r.header("accept-encoding")
    );
}

/// `max_response_bytes` limits the decoded body: a small gzip answer that inflates past it is a
/// temporary failure.
#[test]
fn gzip_answer_over_max_response_bytes_is_temp() {
    let body = format!(r#"{{"result":"{}"}}"#, "z".repeat(50_000));
    let b = Backend::fixed(Reply::gzip_json(200, &body));
    let out = conf(&b.url("/lookup"))
        .set("http_response_compression", "true")
        .set("max_response_bytes", "1000")
        .serve(&req("demo", "k"));
    assert_reply_starts(&out, "TEMP invalid backend response");
}

// ------------------------------------------------------------------ connection handling

/// Three requests in one write get three replies, in order.
#[test]
fn pipelined_requests_answered_in_order() {
    let b = keyed(|key| Reply::json(200, &format!(r#"{{"result":"v-{key}"}}"#)));
    let conf = conf(&b.url("/lookup"));
    let mut child = conf.child();
    child.send(&reqs(&["one", "two", "three"]));
    let got: Vec<u8> = (0..3).flat_map(|_| child.read_netstring(READ)).collect();
    assert_wire(&got, &replies(&["OK v-one", "OK v-two", "OK v-three"]));
    let out = child.finish(RUN);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "extra output: {}", show(&out.stdout));
}

/// Lookups on one pfxhttp process reuse one keep-alive backend connection.
#[test]
fn keep_alive_uses_one_backend_connection() {
    let b = value_backend(r#""v""#);
    let conf = conf(&b.url("/lookup"));
    let mut child = conf.child();
    for i in 0..5 {
        child.send(&req("demo", &format!("k{i}")));
        assert_wire(&child.read_netstring(READ), b"4:OK v,");
    }
    let out = child.finish(RUN);
    assert_clean(&out);
    assert_eq!(b.request_count(), 5);
    assert_eq!(b.connections(), 1, "one TCP connection for all lookups");
}

/// On a connect error the next target is tried.
#[test]
fn failover_to_next_target_on_connect_error() {
    let b = value_backend(r#""second""#);
    let target = format!("[{}, {}]", q(&closed_url("/lookup")), q(&b.url("/lookup")));
    let out = conf("unused").set("target", &target).serve(&req("demo", "k"));
    assert_wire(&out, b"9:OK second,");
    assert_eq!(b.request_count(), 1);
}

/// Malformed netstrings close the connection: no reply, exit 0, empty stderr.
#[test]
fn malformed_netstrings_close_the_connection() {
    let b = value_backend(r#""v""#);
    let conf = conf(&b.url("/lookup"));
    for bad in [&b"-1:,"[..], b"x7:demo ok,", b"7:demo ok;", b"4:demo,", b" 7:demo ok,"] {
        assert_malformed_closes(conf.child(), &b, bad);
    }
}

/// A huge length prefix is refused at once, without waiting for (or allocating) the body.
#[test]
fn huge_length_prefix_refused_promptly() {
    let b = value_backend(r#""v""#);
    assert_malformed_closes(conf(&b.url("/lookup")).child(), &b, b"100000000000000:");
}

/// A length just over `max_request_bytes` is refused at once; exactly the limit is served.
#[test]
fn max_request_bytes_is_enforced() {
    let b = value_backend(r#""v""#);
    let conf = conf(&b.url("/lookup")).server("limits: { max_request_bytes: 1000 }");
    assert_malformed_closes(conf.child(), &b, b"1001:demo ");
    let at_limit = format!("demo {}", "k".repeat(995));
    let out = conf.serve(&netstring(at_limit.as_bytes()));
    assert_wire(&out, b"4:OK v,");
}

/// After a malformed request nothing more is read: the good request before it is answered, the
/// one after it is not.
#[test]
fn malformed_request_ends_the_session() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).serve(&[req("demo", "a"), b"7:demo ok;".to_vec(), req("demo", "b")].concat());
    assert_wire(&out, b"4:OK v,");
    assert_eq!(b.request_count(), 1);
}

// ------------------------------------------------------------------ retries

/// A backend whose first `failures` requests get `first`, the rest `{"result":"v"}`.
fn fails_first(failures: usize, first: Reply) -> Backend {
    let seen = std::sync::atomic::AtomicUsize::new(0);
    Backend::start(move |_| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures {
            first.clone()
        } else {
            Reply::json(200, r#"{"result":"v"}"#)
        }
    })
}

/// With one host, a 5xx is retried on the same host (max_attempts defaults to 2): a backend
/// that fails once and then answers gives `OK`.
#[test]
fn single_host_5xx_is_retried() {
    let b = fails_first(1, Reply::json(503, "{}"));
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_wire(&out, b"4:OK v,");
    assert_eq!(b.request_count(), 2);
}

/// 429 ("busy") is retried like a 5xx.
#[test]
fn single_host_429_is_retried() {
    let b = fails_first(1, Reply::json(429, "{}"));
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_wire(&out, b"4:OK v,");
    assert_eq!(b.request_count(), 2);
}

/// A 4xx other than 429 is never retried.
#[test]
fn client_error_is_not_retried() {
    let b = fails_first(1, Reply::json(400, "{}"));
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_wire(&out, &netstring(b"PERM unexpected HTTP status 400"));
    assert_eq!(b.request_count(), 1);
}

/// `max_attempts: 1` turns retries off.
#[test]
fn max_attempts_one_does_not_retry() {
    let b = fails_first(1, Reply::json(503, "{}"));
    let out = conf(&b.url("/lookup")).set("max_attempts", "1").serve(&req("demo", "k"));
    assert_wire(&out, &netstring(b"TEMP unexpected HTTP status 503"));
    assert_eq!(b.request_count(), 1);
}

// ------------------------------------------------------------------ TLS

/// A server-level `tls.root_ca` trusts the test CA.
#[test]
fn tls_with_root_ca() {
    let tls = make_tls_files();
    let b = Backend::fixed_tls(&tls, Reply::json(200, r#"{"result":"secure"}"#));
    let out = conf(&b.url("/lookup"))
        .server(&format!("tls: {{ root_ca: {} }}", q(&tls.ca_pem.display().to_string())))
        .serve(&req("demo", "k"));
    assert_wire(&out, b"9:OK secure,");
}

/// Without `root_ca` the system bundle is used, which does not know the test CA: TEMP.
#[test]
fn tls_unknown_ca_is_temp() {
    let tls = make_tls_files();
    let b = Backend::fixed_tls(&tls, Reply::json(200, r#"{"result":"secure"}"#));
    let out = conf(&b.url("/lookup")).serve(&req("demo", "k"));
    assert_reply_starts(&out, "TEMP ");
    assert_eq!(b.request_count(), 0);
}

/// `tls.skip_verify: true` accepts the unknown certificate.
#[test]
fn tls_skip_verify() {
    let tls = make_tls_files();
    let b = Backend::fixed_tls(&tls, Reply::json(200, r#"{"result":"secure"}"#));
    let out = conf(&b.url("/lookup")).server("tls: { skip_verify: true }").serve(&req("demo", "k"));
    assert_wire(&out, b"9:OK secure,");
}

/// An entry's `tls` overrides the server's; an entry without one inherits the server's.
#[test]
fn tls_entry_overrides_server() {
    let tls = make_tls_files();
    let other = make_tls_files();
    let b = Backend::fixed_tls(&tls, Reply::json(200, r#"{"result":"secure"}"#));
    let out = conf(&b.url("/lookup"))
        .set("tls", &format!("{{ root_ca: {} }}", q(&tls.ca_pem.display().to_string())))
        .map("inherit", &b.url("/lookup"))
        .server(&format!("tls: {{ root_ca: {} }}", q(&other.ca_pem.display().to_string())))
        .serve(&[req("demo", "k"), req("inherit", "k")].concat());
    let first = b"9:OK secure,";
    assert!(out.starts_with(first), "entry-level root_ca should be used: {}", show(&out));
    assert_reply_starts(&out[first.len()..], "TEMP ");
    assert_eq!(b.request_count(), 1, "the inheriting map must not get through");
}

/// A client certificate is presented when `cert` and `key` are set; without them the backend
/// that requires one refuses: TEMP.
#[test]
fn tls_client_certificate() {
    let tls = make_tls_files();
    let b = Backend::start_tls_client_auth(&tls, |_| Reply::json(200, r#"{"result":"mutual"}"#));
    let ca = q(&tls.ca_pem.display().to_string());
    let with_cert = format!(
        "tls: {{ root_ca: {ca}, cert: {}, key: {} }}",
        q(&tls.client_cert_pem.display().to_string()),
        q(&tls.client_key_pem.display().to_string())
    );
    let out = conf(&b.url("/lookup")).server(&with_cert).serve(&req("demo", "k"));
    assert_wire(&out, b"9:OK mutual,");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    let presented = reqs[0].client_cert.as_ref().expect("client certificate presented");
    let expected = crate::support::tls::load_certs(&tls.client_cert_pem);
    assert_eq!(presented.as_slice(), expected[0].as_ref());

    let out = conf(&b.url("/lookup")).server(&format!("tls: {{ root_ca: {ca} }}")).serve(&req("demo", "k"));
    assert_reply_starts(&out, "TEMP ");
    assert_eq!(b.request_count(), 1, "no request without a client certificate");
}

/// The system-bundle path honours `SSL_CERT_FILE`.
#[test]
fn tls_ssl_cert_file_env() {
    let tls = make_tls_files();
    let b = Backend::fixed_tls(&tls, Reply::json(200, r#"{"result":"secure"}"#));
    let ca = tls.ca_pem.display().to_string();
    let out = conf(&b.url("/lookup")).serve_env(&[("SSL_CERT_FILE", &ca)], &req("demo", "k"));
    assert_wire(&out, b"9:OK secure,");
}

/// A serving process keeps the CA bundle's index beside its state database (mode 0600, one
/// file), and the next process, reading it, trusts what the bundle trusts and nothing else: a
/// bundle of the system's certificates and the test CA; another CA's server is refused.
#[test]
fn tls_bundle_index_is_kept_for_the_next_process() {
    use std::os::unix::fs::MetadataExt;
    let (tls, other) = (make_tls_files(), make_tls_files());
    let b = Backend::fixed_tls(&tls, Reply::json(200, r#"{"result":"secure"}"#));
    let stranger = Backend::fixed_tls(&other, Reply::json(200, r#"{"result":"secure"}"#));
    let bundle = tls.dir.path().join("bundle.pem");
    let system = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    std::fs::write(&bundle, system + &std::fs::read_to_string(&tls.ca_pem).unwrap()).unwrap();
    let c = conf(&b.url("/lookup")).map("stranger", &stranger.url("/lookup"));
    let env = [("SSL_CERT_FILE", bundle.to_str().unwrap())];
    let index = || -> Vec<std::path::PathBuf> {
        let files = std::fs::read_dir(c.dir()).unwrap().map(|e| e.unwrap().path());
        files.filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("ca-index-")).collect()
    };
    for run in 0..2 {
        let out = c.serve_env(&env, &[req("demo", "k"), req("stranger", "k")].concat());
        assert!(out.starts_with(b"9:OK secure,"), "run {run}: {}", show(&out));
        assert_reply_starts(&out[b"9:OK secure,".len()..], "TEMP ");
        let kept = index();
        assert_eq!(kept.len(), 1, "run {run}: {kept:?}");
        assert_eq!(std::fs::metadata(&kept[0]).unwrap().mode() & 0o777, 0o600);
    }
    assert_eq!(stranger.request_count(), 0);
}

// ------------------------------------------------------------------ broken config

/// A broken config keeps serving: every request is `TEMP pfxhttp configuration error: …` naming
/// the key path; exit 0, stderr empty; no backend request.
#[test]
fn broken_config_answers_temp_naming_the_key() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).set("bogus_key", "1").serve(&reqs(&["a", "b"]));
    let split = single_reply_prefix_len(&out);
    for part in [&out[..split], &out[split..]] {
        let payload = assert_reply_starts(part, "TEMP pfxhttp configuration error: ");
        assert!(payload.contains("socket_maps.demo.bogus_key"), "reason should name the key path: {payload:?}");
    }
    assert_eq!(b.request_count(), 0);
}

/// A missing config file: every request is `TEMP pfxhttp configuration error: …` naming it.
#[test]
fn missing_config_file_answers_temp() {
    let out = serve_file(Path::new("/nonexistent/pfxhttp.yml"), &[req("demo", "a"), req("demo", "b")].concat());
    let one = single_reply_prefix_len(&out);
    for part in [&out[..one], &out[one..]] {
        let payload = assert_reply_starts(part, "TEMP pfxhttp configuration error: ");
        assert!(payload.contains("/nonexistent/pfxhttp.yml"), "reason should name the file: {payload:?}");
    }
}

/// The byte length of the first netstring in `out`.
fn single_reply_prefix_len(out: &[u8]) -> usize {
    let colon = out.iter().position(|&c| c == b':').unwrap_or_else(|| panic!("no netstring: {}", show(out)));
    let n: usize = std::str::from_utf8(&out[..colon]).ok().and_then(|s| s.parse().ok()).expect("length");
    (colon + n + 2).min(out.len())
}

// ------------------------------------------------------------------ logging

/// The syslog priority of a datagram (`<PRI>…`).
fn priority(line: &str) -> Option<u32> {
    line.strip_prefix('<')?.split_once('>')?.0.parse().ok()
}

/// One lookup logs exactly one mail.info line with map, key, reply, status and the request id
/// the backend saw.
#[test]
fn one_info_line_per_request() {
    let sink = SyslogSink::new();
    let b = value_backend(r#""mapped""#);
    let out = conf(&b.url("/lookup")).syslog(&sink, ", level: info").serve(&req("demo", "user@example.org"));
    assert_wire(&out, b"9:OK mapped,");
    let id = b.requests()[0].header("x-request-id").expect("X-Request-Id").to_string();
    assert!(sink.wait_for("map=demo", READ).is_some(), "no request line: {:?}", sink.lines());
    std::thread::sleep(Duration::from_millis(200));
    let info: Vec<String> = sink.lines().into_iter().filter(|l| priority(l).is_some_and(|p| p % 8 == 6)).collect();
    assert_eq!(info.len(), 1, "exactly one info line: {:?}", sink.lines());
    let line = &info[0];
    assert_eq!(priority(line), Some(2 * 8 + 6), "facility mail, severity info: {line}");
    assert!(line.contains("pfxhttp"), "ident pfxhttp: {line}");
    for needle in ["map=demo", "key=user@example.org", "reply=", "status=200", &format!("id={id}")] {
        assert!(line.contains(needle), "{needle:?} missing in {line}");
    }
}

/// `log_keys: false` keeps the key out of every log line.
#[test]
fn log_keys_false_hides_the_key() {
    let sink = SyslogSink::new();
    let b = value_backend(r#""mapped""#);
    let key = "hidden-key-5d2e@example.org";
    let out = conf(&b.url("/lookup")).syslog(&sink, ", level: debug, log_keys: false").serve(&req("demo", key));
    assert_wire(&out, b"9:OK mapped,");
    assert!(sink.wait_for("map=demo", READ).is_some(), "no request line: {:?}", sink.lines());
    std::thread::sleep(Duration::from_millis(200));
    for line in sink.lines() {
        assert!(!line.contains("hidden-key-5d2e"), "key logged: {line}");
    }
}

/// A rendered header value that cannot be sent (here a control byte from a `| raw` key next to a
/// bearer token) fails the lookup naming the header: neither the reply nor the log line shows any
/// part of the value.
#[test]
fn unsendable_header_is_named_without_its_value() {
    let sink = SyslogSink::new();
    let b = value_backend(r#""mapped""#);
    let out = conf(&b.url("/lookup"))
        .set("custom_headers", r#"["Authorization: Bearer Hdr-5ecret-9{{ key | raw }}"]"#)
        .syslog(&sink, ", level: debug, log_keys: false")
        .serve(&req("demo", "tail\u{1}end"));
    assert_wire(&out, &replies(&["TEMP header authorization: the value holds a byte that cannot be sent"]));
    assert_eq!(b.request_count(), 0);
    let line = sink.wait_for("map=demo", READ).unwrap_or_else(|| panic!("no request line: {:?}", sink.lines()));
    assert!(line.contains("header authorization"), "header not named: {line}");
    for line in sink.settle(READ) {
        for part in ["Bearer", "Hdr-", "5ecret", "tail", "\u{1}", "\\u{1}"] {
            assert!(!line.contains(part), "{part:?} logged: {line}");
        }
    }
}

/// `http_auth_basic` credentials (clear or base64) never appear in any log line, on success or
/// failure.
#[test]
fn basic_auth_credentials_never_logged() {
    use base64::Engine as _;
    let sink = SyslogSink::new();
    let b = keyed(|key| match key {
        "denied" => Reply::json(401, r#"{"error":"unauthorized"}"#),
        "broken" => Reply::status(200, "<html>"),
        _ => Reply::json(200, r#"{"result":"v"}"#),
    });
    let secret = "s3cr3t-pw-81f0";
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"));
    let creds = q(&format!("user:{secret}"));
    let out = conf(&b.url("/lookup"))
        .syslog(&sink, ", level: debug")
        .set("http_auth_basic", &creds)
        .map("down", &closed_url("/lookup"))
        .set("http_auth_basic", &creds)
        .serve(&[req("demo", "ok"), req("demo", "denied"), req("demo", "broken"), req("down", "x")].concat());
    assert!(out.starts_with(b"4:OK v,"), "{}", show(&out));
    let lines = sink.wait_count(4, READ);
    std::thread::sleep(Duration::from_millis(200));
    assert!(lines.len() >= 4, "one line per request expected: {lines:?}");
    for line in sink.lines() {
        assert!(!line.contains(secret) && !line.contains(&encoded), "credentials logged: {line}");
    }
}

/// A broken config is reported to the configured syslog socket, naming the key path.
#[test]
fn broken_config_is_logged_to_configured_socket() {
    let sink = SyslogSink::new();
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).syslog(&sink, "").set("bogus_key", "1").serve(&req("demo", "a"));
    assert_reply_starts(&out, "TEMP pfxhttp configuration error: ");
    assert!(sink.wait_for("socket_maps.demo.bogus_key", READ).is_some(), "config error not logged: {:?}", sink.lines());
}
