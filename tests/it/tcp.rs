//! `pfxhttp tcp MAP`: tcp_table(5) `get <key>\n` lines against a real HTTP backend on 127.0.0.1
//! (`docs/design.md`: protocols, failure rules).
//!
//! Every serving run checks the spawn(8) rules: nothing on stderr, exit status 0.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// Upper bound for one pfxhttp run (start, all lookups, exit).
const RUN: Duration = Duration::from_secs(10);
/// Upper bound for one reply line read from an interactive child.
const READ: Duration = Duration::from_secs(5);
/// The longest reply line Postfix accepts, newline included.
const MAX_LINE: usize = 4096;

// ------------------------------------------------------------------ config

/// A config with one map `demo` asking `target` (see [`Config::map`]).
fn conf(target: &str) -> Config {
    Config::new().map("demo", target)
}

/// How these tests run a config: `pfxhttp --config FILE tcp demo`.
trait Tcp {
    /// Runs it with `stdin`, checks the spawn rules, returns stdout.
    fn serve(&self, stdin: &[u8]) -> Vec<u8>;
    /// Like [`Tcp::serve`], returning the whole output (for its timing).
    fn run(&self, stdin: &[u8]) -> Output;
    /// An interactive run.
    fn child(&self) -> Child;
}

impl Tcp for Config {
    fn serve(&self, stdin: &[u8]) -> Vec<u8> {
        serve_map(self, "demo", stdin)
    }

    fn run(&self, stdin: &[u8]) -> Output {
        self.run_serving(&["tcp", "demo"], stdin, RUN)
    }

    fn child(&self) -> Child {
        self.spawn(&["tcp", "demo"])
    }
}

// ------------------------------------------------------------------ running and checking

/// Runs `pfxhttp --config FILE tcp MAP`, checks the spawn rules, returns stdout.
fn serve_map(conf: &Config, map: &str, stdin: &[u8]) -> Vec<u8> {
    conf.run_serving(&["tcp", map], stdin, RUN).stdout
}

/// Checks that `out` is exactly one reply line of at most 4096 bytes starting with `400 `.
#[track_caller]
fn assert_one_400(out: &[u8]) {
    assert!(out.starts_with(b"400 "), "expected a 400 line, got {}", show(out));
    assert!(out.ends_with(b"\n"), "reply line not terminated: {}", show(out));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "not exactly one line: {}", show(out));
    assert!(out.len() <= MAX_LINE, "reply line of {} bytes", out.len());
}

/// Like [`assert_one_400`], for a lookup failure: the config must have loaded.
#[track_caller]
fn assert_lookup_400(out: &[u8]) {
    assert_one_400(out);
    assert!(!out.starts_with(b"400 pfxhttp configuration error"), "the test config did not load: {}", show(out));
}

/// A backend that answers every request with `{"result": <value>}` (value is raw JSON).
fn value_backend(value_json: &str) -> Backend {
    Backend::fixed(Reply::json(200, &format!(r#"{{"result":{value_json}}}"#)))
}

// ------------------------------------------------------------------ replies

/// The `%XX`-encoded key is decoded before the lookup; the value goes back `%XX`-encoded like
/// Postfix's hex_quote (space, `%` and non-ASCII bytes).
#[test]
fn get_decodes_key_and_encodes_value() {
    let b = value_backend(r#""a b%é@x""#);
    let out = conf(&b.url("/lookup")).serve(b"get user%40example.org\n");
    assert_wire(&out, b"200 a%20b%25%C3%A9@x\n");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body_json(), json!({"key": "user@example.org"}));
}

/// Escaped spaces, `%` and UTF-8 in the key arrive decoded at the backend.
#[test]
fn escaped_key_bytes_are_decoded() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).serve(b"get a%20b%25c%C3%A9\n");
    assert_wire(&out, b"200 v\n");
    assert_eq!(b.requests()[0].body_json(), json!({"key": "a b%cé"}));
}

/// A key that is not UTF-8 is refused without a request: converting it lossily could make two
/// keys one lookup and answer one with the other's value.
#[test]
fn key_not_utf8_is_400_without_a_request() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).serve(b"get a%FF\nget a%EF%BF%BD\n");
    assert_wire(&out, b"400 key is not valid UTF-8\n200 v\n");
    assert_eq!(b.requests().len(), 1);
}

/// No value, or a `not_found_status`, is `500 not found`.
#[test]
fn not_found_is_500() {
    let b = Backend::fixed(Reply::json(200, r#"{"other":"x"}"#));
    assert_wire(&conf(&b.url("/lookup")).serve(b"get k\n"), b"500 not found\n");
    let b = Backend::fixed(Reply::json(404, r#"{"error":"no such key"}"#));
    let out = conf(&b.url("/lookup")).line("not_found_status: [404]").serve(b"get k\n");
    assert_wire(&out, b"500 not found\n");
}

/// Control characters are removed from values before encoding.
#[test]
fn control_characters_are_removed() {
    let b = value_backend(r#""a\r\nb\u0000c""#);
    assert_wire(&conf(&b.url("/lookup")).serve(b"get k\n"), b"200 abc\n");
}

/// A 5xx is a `400` line, never `500 not found`.
#[test]
fn status_5xx_is_400() {
    let b = Backend::fixed(Reply::json(503, r#"{"result":"v"}"#));
    assert_lookup_400(&conf(&b.url("/lookup")).serve(b"get k\n"));
}

/// An unexpected 4xx is a `400` line too.
#[test]
fn unexpected_4xx_is_400() {
    let b = Backend::fixed(Reply::json(404, r#"{"result":"v"}"#));
    assert_lookup_400(&conf(&b.url("/lookup")).serve(b"get k\n"));
}

/// An error field that says error is a `400` line.
#[test]
fn error_field_is_400() {
    let b = Backend::fixed(Reply::json(200, r#"{"error":"boom","result":"v"}"#));
    assert_lookup_400(&conf(&b.url("/lookup")).line("error_field: error").serve(b"get k\n"));
}

/// Connection refused is a `400` line.
#[test]
fn connection_refused_is_400() {
    assert_lookup_400(&conf(&closed_url("/lookup")).serve(b"get k\n"));
}

/// A non-JSON body with status 200 is a `400` line.
#[test]
fn non_json_body_is_400() {
    let b = Backend::fixed(Reply::status(200, "<html>oops</html>").with_header("Content-Type", "text/html"));
    assert_lookup_400(&conf(&b.url("/lookup")).serve(b"get k\n"));
}

/// A backend slower than `timeout` gives a `400` line well before it would answer.
#[test]
fn timeout_is_400() {
    let b = Backend::fixed(Reply::Hang(Duration::from_secs(20)));
    let out = conf(&b.url("/lookup")).line("timeout: 300ms").run(b"get k\n");
    assert_lookup_400(&out.stdout);
    assert!(b.request_count() >= 1, "the backend was never asked");
    assert!(out.elapsed < Duration::from_secs(5), "answer came too late: {:?}", out.elapsed);
}

/// A map argument naming no entry answers every request with a `400` line.
#[test]
fn unknown_map_argument_is_400() {
    let b = value_backend(r#""v""#);
    let conf = conf(&b.url("/lookup"));
    let out = serve_map(&conf, "nosuch", b"get k\n");
    assert_lookup_400(&out);
    assert_eq!(b.request_count(), 0);
}

/// A broken config keeps serving: every request is a `400` line; exit 0, stderr empty.
#[test]
fn broken_config_is_400() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).line("bogus_key: 1").serve(b"get a\nget b\n");
    let split = out.iter().position(|&c| c == b'\n').map_or(out.len(), |p| p + 1);
    assert_one_400(&out[..split]);
    assert_one_400(&out[split..]);
    assert!(String::from_utf8_lossy(&out).contains("bogus_key"), "reason should name the key: {}", show(&out));
    assert_eq!(b.request_count(), 0);
}

/// The reply line may be 4096 bytes with its newline: a value that encodes to 4091 bytes is
/// sent, one byte more (or one whose encoding grows past the limit) is a `400` line.
#[test]
fn reply_line_limit_counts_the_encoded_value() {
    let b = Backend::start(|r| {
        let key = r.body_json()["key"].as_str().unwrap_or("").to_string();
        let value = match key.as_str() {
            "fits" => "x".repeat(4091),
            "over" => "x".repeat(4092),
            _ => "é".repeat(700), // 1400 bytes, 4200 encoded
        };
        Reply::json(200, &json!({ "result": value }).to_string())
    });
    let out = conf(&b.url("/lookup")).serve(b"get fits\n");
    let mut want = b"200 ".to_vec();
    want.extend_from_slice(&[b'x'; 4091]);
    want.push(b'\n');
    assert_eq!(want.len(), MAX_LINE);
    assert_wire(&out, &want);
    assert_lookup_400(&conf(&b.url("/lookup")).serve(b"get over\n"));
    assert_lookup_400(&conf(&b.url("/lookup")).serve(b"get grows\n"));
}

// ------------------------------------------------------------------ connection handling

/// Several `get` lines in one write are answered in order on one connection.
#[test]
fn pipelined_gets_answered_in_order() {
    let b = Backend::start(|r| {
        let key = r.body_json()["key"].as_str().unwrap_or("").to_string();
        if key == "missing" {
            Reply::json(200, "{}")
        } else {
            Reply::json(200, &json!({ "result": format!("v {key}") }).to_string())
        }
    });
    let conf = conf(&b.url("/lookup"));
    let mut child = conf.child();
    child.send(b"get one\nget missing\nget three\n");
    let got: Vec<u8> = (0..3).flat_map(|_| child.read_until(b"\n", READ)).collect();
    assert_wire(&got, b"200 v%20one\n500 not found\n200 v%20three\n");
    let out = child.finish(RUN);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "extra output: {}", show(&out.stdout));
    assert_eq!(b.connections(), 1, "one backend connection for the session");
}

/// Requests other than `get`, and bad `%XX` escapes, close the connection without a reply.
#[test]
fn malformed_requests_close_the_connection() {
    let b = value_backend(r#""v""#);
    let conf = conf(&b.url("/lookup"));
    for bad in [&b"put x\n"[..], b"get a%zz\n", b"get a%2\n"] {
        assert_malformed_closes(conf.child(), &b, bad);
    }
}

/// A line longer than `max_request_bytes` is refused as soon as it is over the limit, without
/// waiting for its end.
#[test]
fn over_long_line_is_refused_promptly() {
    let b = value_backend(r#""v""#);
    let conf = conf(&b.url("/lookup")).server("limits: { max_request_bytes: 100 }");
    let mut long = b"get ".to_vec();
    long.extend_from_slice(&[b'k'; 300]);
    assert_malformed_closes(conf.child(), &b, &long);
    // A line well under the limit is served with the same config.
    assert_wire(&conf.serve(b"get short\n"), b"200 v\n");
}

/// After a malformed line nothing more is read: the good line before it is answered, the one
/// after it is not.
#[test]
fn malformed_line_ends_the_session() {
    let b = value_backend(r#""v""#);
    let out = conf(&b.url("/lookup")).serve(b"get a\nput x\nget b\n");
    assert_wire(&out, b"200 v\n");
    assert_eq!(b.request_count(), 1);
}
