//! `pfxhttp policy`: SMTPD policy delegation against a real HTTP backend (`docs/design.md`:
//! protocols, failure rules, requests, logging).

use std::time::Duration;

use crate::support::*;

/// Bound for every run and read.
const T: Duration = Duration::from_secs(5);

/// The built-in default action, framed.
const DEFER: &[u8] = b"action=DEFER_IF_PERMIT Service temporarily unavailable\n\n";

/// A typical request.
const REQ: &[u8] = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n\
sender=a@b.example\nrecipient=ok@x\n\n";

/// What the backend must receive for [`REQ`] with the default payload.
const REQ_JSON: &str = r#"{"client_address":"192.0.2.1","protocol_state":"RCPT","recipient":"ok@x","request":"smtpd_access_policy","sender":"a@b.example"}"#;

/// One service `pol` at `target` (see [`Config::policy`]); `extra` holds more keys of the
/// entry, one `key: value` line each (may be empty).
fn pol_cfg(target: &str, extra: &str) -> Config {
    extra.lines().fold(Config::bare().policy("pol", target), |conf, line| conf.line(line))
}

/// `pfxhttp --config CFG policy ARGS...` fed `stdin`; checked with [`assert_clean`].
fn serve(cfg: &Config, args: &[&str], stdin: &[u8]) -> Output {
    cfg.run_serving(&[&["policy"], args].concat(), stdin, T)
}

/// The reply to [`REQ`] when the backend always answers `reply`; `extra` as in [`pol_cfg`].
fn reply_to(reply: Reply, extra: &str) -> Vec<u8> {
    let b = Backend::fixed(reply);
    let cfg = pol_cfg(&b.url("/policy"), extra);
    serve(&cfg, &[], REQ).stdout
}

/// The syslog severity (PRI & 7) of a datagram.
fn severity(line: &str) -> Option<u8> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    rest[..end].parse::<u16>().ok().map(|p| (p & 7) as u8)
}

/// Decodes `%XX` escapes.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("bad %XX"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

// ------------------------------------------------------------------ payload

/// The default payload is every attribute as one JSON object of strings with sorted keys.
#[test]
fn default_payload_is_the_sorted_attribute_object() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "");
    let out = serve(&cfg, &[], REQ);
    assert_eq!(text(&out.stdout), "action=DUNNO\n\n");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path(), "/policy");
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[0].body_str(), REQ_JSON);
}

/// The Go payloads `{{ .Key }}` and `{"policy_request": {{ key }} }` carry the same object.
#[test]
fn go_key_payloads_give_the_same_object() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "    payload: '{{ .Key }}'\n");
    assert_eq!(text(&serve(&cfg, &[], REQ).stdout), "action=DUNNO\n\n");
    let cfg = pol_cfg(&b.url("/policy"), "    payload: '{\"policy_request\": {{ key }} }'\n");
    assert_eq!(text(&serve(&cfg, &[], REQ).stdout), "action=DUNNO\n\n");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body_str(), REQ_JSON);
    assert_eq!(reqs[1].body_str(), format!(r#"{{"policy_request": {REQ_JSON} }}"#));
    let inner: serde_json::Value = serde_json::from_str(REQ_JSON).unwrap();
    assert_eq!(reqs[1].body_json(), serde_json::json!({ "policy_request": inner }));
}

// ------------------------------------------------------------------ replies

/// The action is the `value_field` of the backend's JSON answer.
#[test]
fn action_comes_from_value_field() {
    assert_eq!(text(&reply_to(Reply::json(200, r#"{"action":"DUNNO"}"#), "")), "action=DUNNO\n\n");
    assert_eq!(
        text(&reply_to(Reply::json(200, r#"{"action":"REJECT spam detected"}"#), "")),
        "action=REJECT spam detected\n\n"
    );
}

/// An absent or empty action field means DUNNO.
#[test]
fn absent_or_empty_action_is_dunno() {
    assert_eq!(text(&reply_to(Reply::json(200, r#"{"nothing":1}"#), "")), "action=DUNNO\n\n");
    assert_eq!(text(&reply_to(Reply::json(200, r#"{"action":""}"#), "")), "action=DUNNO\n\n");
}

/// Unexpected statuses (5xx, 4xx, 3xx, not followed) and unparseable bodies give the default
/// action, never DUNNO or a REJECT.
#[test]
fn backend_failures_give_the_default_action() {
    let cases = [
        ("503", Reply::json(503, r#"{"action":"REJECT from an error page"}"#)),
        ("404", Reply::json(404, r#"{"action":"REJECT from an error page"}"#)),
        ("html 200", Reply::status(200, "<html><body>oops</body></html>").with_header("Content-Type", "text/html")),
        ("empty 200", Reply::json(200, "")),
        ("truncated json", Reply::json(200, r#"{"action":"REJECT"#)),
    ];
    for (what, reply) in cases {
        assert_eq!(text(&reply_to(reply, "")), text(DEFER), "{what}");
    }
}

/// A 302 is a failure and is not followed.
#[test]
fn redirect_gives_the_default_action_and_is_not_followed() {
    let b = Backend::start(|r| {
        if r.path() == "/elsewhere" {
            Reply::json(200, r#"{"action":"REJECT followed"}"#)
        } else {
            Reply::status(302, "").with_header("Location", "/elsewhere")
        }
    });
    let cfg = pol_cfg(&b.url("/policy"), "");
    assert_eq!(text(&serve(&cfg, &[], REQ).stdout), text(DEFER));
    assert!(b.requests().iter().all(|r| r.path() == "/policy"), "redirect followed: {:?}", b.requests());
}

/// A backend that refuses connections gives the default action.
#[test]
fn connection_refused_gives_the_default_action() {
    let cfg = pol_cfg(&closed_url("/policy"), "    connect_timeout: 1s\n");
    assert_eq!(text(&serve(&cfg, &[], REQ).stdout), text(DEFER));
}

/// A backend that does not answer within `timeout` gives the default action, in time.
#[test]
fn timeout_gives_the_default_action() {
    let b = Backend::fixed(Reply::Hang(Duration::from_secs(20)));
    let cfg = pol_cfg(&b.url("/policy"), "    timeout: 300ms\n    deadline: 2s\n");
    let out = serve(&cfg, &[], REQ);
    assert_eq!(text(&out.stdout), text(DEFER));
    assert!(out.elapsed < Duration::from_secs(4), "took {:?}", out.elapsed);
    assert!(b.request_count() >= 1);
}

/// `error_field` set to something other than `no_error_value` is a failure; equal to it is not.
#[test]
fn error_field_gives_the_default_action() {
    let extra = "    error_field: error\n    no_error_value: none\n";
    assert_eq!(text(&reply_to(Reply::json(200, r#"{"error":"x","action":"OK"}"#), extra)), text(DEFER));
    assert_eq!(text(&reply_to(Reply::json(200, r#"{"error":"none","action":"OK"}"#), extra)), "action=OK\n\n");
}

/// A configured `default_action` replaces the built-in one on failure.
#[test]
fn configured_default_action_is_used() {
    let extra = "    default_action: \"451 4.3.0 try later\"\n";
    assert_eq!(text(&reply_to(Reply::json(503, "{}"), extra)), "action=451 4.3.0 try later\n\n");
    assert_eq!(text(&reply_to(Reply::status(200, "not json"), extra)), "action=451 4.3.0 try later\n\n");
}

/// A newline in the action cannot inject a protocol line.
#[test]
fn newline_in_action_is_removed() {
    let out = reply_to(Reply::json(200, r#"{"action":"OK\ninjected=1"}"#), "");
    assert_eq!(text(&out), "action=OKinjected=1\n\n");
}

/// Control characters are removed, invalid UTF-8 is replaced, and nothing but the final empty
/// line ends the reply; an action of only control characters is DUNNO.
#[test]
fn control_and_invalid_bytes_never_reach_the_reply() {
    let out = reply_to(Reply::json(200, r#"{"action":"REJECT a\u0000b\rc\u0007d\u001be\n\nf"}"#), "");
    assert_eq!(text(&out), "action=REJECT abcdef\n\n");
    let out = reply_to(Reply::json(200, r#"{"action":"\r\n\u0000"}"#), "");
    assert_eq!(text(&out), "action=DUNNO\n\n");
    let out = reply_to(Reply::status(200, &b"REJECT bad\xff\x01byte\r\n"[..]), "    response: text\n");
    assert_eq!(out, "action=REJECT bad\u{fffd}byte\n\n".as_bytes(), "{}", text(&out));
}

// ------------------------------------------------------------------ parsing

/// CRLF line ends and spaces around `=` are tolerated.
#[test]
fn crlf_and_spacing_are_tolerated() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "");
    let out = serve(&cfg, &[], b"request = smtpd_access_policy\r\nrecipient = ok@x\r\n\r\n");
    assert_eq!(text(&out.stdout), "action=DUNNO\n\n");
    assert_eq!(b.requests()[0].body_str(), r#"{"recipient":"ok@x","request":"smtpd_access_policy"}"#);
}

/// A repeated attribute: the last value wins.
#[test]
fn duplicate_attribute_last_wins() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "");
    let out = serve(&cfg, &[], b"request=smtpd_access_policy\nrecipient=first@x\nrecipient=second@x\n\n");
    assert_eq!(text(&out.stdout), "action=DUNNO\n\n");
    assert_eq!(b.requests()[0].body_str(), r#"{"recipient":"second@x","request":"smtpd_access_policy"}"#);
}

/// A value containing `=` is kept whole.
#[test]
fn values_with_equals_are_kept_whole() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "");
    let out = serve(&cfg, &[], b"request=smtpd_access_policy\nccert_subject=CN=mx,O=Example\nsasl_username=a=b=\n\n");
    assert_eq!(text(&out.stdout), "action=DUNNO\n\n");
    assert_eq!(
        b.requests()[0].body_str(),
        r#"{"ccert_subject":"CN=mx,O=Example","request":"smtpd_access_policy","sasl_username":"a=b="}"#
    );
}

/// Backend answering `REJECT <recipient>`.
fn echo_backend() -> Backend {
    Backend::start(|r| {
        let rcpt = r.body_json()["recipient"].as_str().unwrap_or("none").to_string();
        Reply::json(200, &serde_json::json!({ "action": format!("REJECT {rcpt}") }).to_string())
    })
}

/// Two requests in one write get two replies, in order.
#[test]
fn two_requests_in_one_write_get_two_replies_in_order() {
    let b = echo_backend();
    let cfg = pol_cfg(&b.url("/policy"), "");
    let out = serve(
        &cfg,
        &[],
        b"request=smtpd_access_policy\nrecipient=one@x\n\nrequest=smtpd_access_policy\nrecipient=two@x\n\n",
    );
    assert_eq!(text(&out.stdout), "action=REJECT one@x\n\naction=REJECT two@x\n\n");
    assert_eq!(b.request_count(), 2);
}

/// One process serves several requests on one connection, with exactly one POST per request,
/// and EOF afterwards is a clean exit.
#[test]
fn several_requests_on_one_connection_one_post_each() {
    let b = echo_backend();
    let cfg = pol_cfg(&b.url("/policy"), "");
    let mut child = Child::spawn(&["--config", &cfg.arg(), "policy"]);
    for (i, rcpt) in ["r1@x", "r2@x", "r3@x"].iter().enumerate() {
        child.send(format!("request=smtpd_access_policy\nrecipient={rcpt}\n\n").as_bytes());
        let reply = child.read_until(b"\n\n", T);
        assert_eq!(text(&reply), format!("action=REJECT {rcpt}\n\n"));
        assert_eq!(b.request_count(), i + 1, "exactly one backend request per policy request");
        assert!(child.try_wait().is_none(), "the process must stay for the next request");
    }
    let out = child.finish(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "{out:?}");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 3, "no extra request on EOF: {reqs:?}");
    assert!(reqs.iter().all(|r| r.method == "POST"));
}

/// EOF after a reply (or before any request) ends the process cleanly without a backend call
/// (the Go program posted `{}` on every disconnect).
#[test]
fn eof_between_requests_makes_no_backend_call() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "");
    let out = serve(&cfg, &[], REQ);
    assert_eq!(text(&out.stdout), "action=DUNNO\n\n");
    assert_eq!(b.request_count(), 1);
    let out = serve(&cfg, &[], b"");
    assert!(out.stdout.is_empty(), "{out:?}");
    std::thread::sleep(Duration::from_millis(100));
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
}

/// A line without `=` closes the connection without a reply; earlier requests were answered.
#[test]
fn line_without_equals_closes_without_reply() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "");
    let out = serve(&cfg, &[], b"foo\n\n");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = serve(&cfg, &[], b"request=smtpd_access_policy\nfoo\nrecipient=x@y\n\n");
    assert!(out.stdout.is_empty(), "{out:?}");
    let mut input = REQ.to_vec();
    input.extend_from_slice(b"foo\n\n");
    input.extend_from_slice(REQ);
    let out = serve(&cfg, &[], &input);
    assert_eq!(text(&out.stdout), "action=DUNNO\n\n");
    assert_eq!(b.request_count(), 1);
}

/// More than `max_policy_attributes` attributes closes the connection without a reply.
#[test]
fn too_many_attributes_close_without_reply() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "").server("limits: { max_policy_attributes: 3 }");
    let three = b"request=smtpd_access_policy\nsender=a@b\nrecipient=c@d\n\n";
    let four = b"request=smtpd_access_policy\nsender=a@b\nrecipient=c@d\nhelo_name=h\n\n";
    assert_eq!(text(&serve(&cfg, &[], three).stdout), "action=DUNNO\n\n");
    let mut input = four.to_vec();
    input.extend_from_slice(three);
    let out = serve(&cfg, &[], &input);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(b.request_count(), 1);
}

/// A request of `n` bytes in all (terminating empty line included).
fn request_of_len(n: usize) -> Vec<u8> {
    let head = b"request=smtpd_access_policy\nrecipient=";
    let pad = n - head.len() - 2;
    let mut r = head.to_vec();
    r.extend(std::iter::repeat_n(b'r', pad));
    r.extend_from_slice(b"\n\n");
    assert_eq!(r.len(), n);
    r
}

/// A request over `max_request_bytes` closes the connection without a reply, at once, without
/// waiting for the rest of it.
#[test]
fn over_long_request_closes_without_reply() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "").server("limits: { max_request_bytes: 100 }");
    assert_eq!(text(&serve(&cfg, &[], &request_of_len(100)).stdout), "action=DUNNO\n\n");
    let out = serve(&cfg, &[], &request_of_len(101));
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(b.request_count(), 1);

    // The limit applies before the end of the request: no newline ever comes.
    let mut child = Child::spawn(&["--config", &cfg.arg(), "policy"]);
    let mut line = b"recipient=".to_vec();
    line.extend(std::iter::repeat_n(b'x', 300));
    child.send(&line);
    let out = child.wait(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(b.request_count(), 1);
}

// ------------------------------------------------------------------ templates

/// Attributes are template variables; an absent one renders empty.
#[test]
fn attributes_are_template_variables() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let extra = "    payload: '{\"rcpt\":\"{{ recipient }}\",\"helo\":\"{{ helo_name }}\"}'\n";
    let cfg = pol_cfg(&b.url("/policy"), extra);
    assert_eq!(text(&serve(&cfg, &[], REQ).stdout), "action=DUNNO\n\n");
    assert_eq!(b.requests()[0].body_str(), r#"{"rcpt":"ok@x","helo":""}"#);
}

/// A hostile recipient stays inside its JSON string, in a template and in the default payload.
#[test]
fn hostile_recipient_stays_inside_its_json_string() {
    let hostile = r#"x", "admin": true, "y": "\"#;
    let input = format!("request=smtpd_access_policy\nrecipient={hostile}\n\n");
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "    payload: '{\"rcpt\":\"{{ recipient }}\"}'\n");
    assert_eq!(text(&serve(&cfg, &[], input.as_bytes()).stdout), "action=DUNNO\n\n");
    let cfg = pol_cfg(&b.url("/policy"), "");
    assert_eq!(text(&serve(&cfg, &[], input.as_bytes()).stdout), "action=DUNNO\n\n");
    let reqs = b.requests();
    assert_eq!(reqs[0].body_json(), serde_json::json!({ "rcpt": hostile }));
    assert_eq!(reqs[1].body_json(), serde_json::json!({ "recipient": hostile, "request": "smtpd_access_policy" }));
}

/// The `domain`, `localpart` and `lower` filters.
#[test]
fn filters_domain_localpart_lower() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let extra = "    payload: '{\"d\":\"{{ recipient | domain }}\",\"l\":\"{{ recipient | localpart }}\",\
                 \"s\":\"{{ sender | lower }}\"}'\n";
    let cfg = pol_cfg(&b.url("/policy"), extra);
    let out = serve(
        &cfg,
        &[],
        b"request=smtpd_access_policy\nrecipient=Some.User@Example.ORG\nsender=MiXed@Case.Example\n\n",
    );
    assert_eq!(text(&out.stdout), "action=DUNNO\n\n");
    assert_eq!(b.requests()[0].body_str(), r#"{"d":"Example.ORG","l":"Some.User","s":"mixed@case.example"}"#);
}

/// An attribute in a URL template is percent-encoded: it stays one path segment.
#[test]
fn url_template_is_percent_encoded() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let target = format!("http://127.0.0.1:{}/check/{{{{ recipient }}}}", b.port());
    let cfg = pol_cfg(&target, "    method: GET\n");
    let rcpt = "a b/c@x?y=1#z%";
    let input = format!("request=smtpd_access_policy\nrecipient={rcpt}\n\n");
    assert_eq!(text(&serve(&cfg, &[], input.as_bytes()).stdout), "action=DUNNO\n\n");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    let seg = reqs[0].target.strip_prefix("/check/").unwrap_or_else(|| panic!("target {}", reqs[0].target));
    assert!(!seg.contains(['/', '?', '#', ' ']), "not encoded: {}", reqs[0].target);
    assert_eq!(text(&percent_decode(seg)), rcpt);
}

// ------------------------------------------------------------------ routing

/// Two services `alpha` and `beta` on one backend, each answering with its own name.
fn two_services(b: &Backend) -> Config {
    Config::bare().policy("alpha", &b.url("/alpha")).policy("beta", &b.url("/beta"))
}

fn path_backend() -> Backend {
    Backend::start(|r| Reply::json(200, &format!(r#"{{"action":"PREPEND X-Via: {}"}}"#, r.path())))
}

/// Without a SERVICE argument, `policy_context` selects the service, case-insensitively.
#[test]
fn policy_context_selects_the_service() {
    let b = path_backend();
    let cfg = two_services(&b);
    let out = serve(
        &cfg,
        &[],
        b"request=smtpd_access_policy\npolicy_context=alpha\n\nrequest=smtpd_access_policy\npolicy_context=BETA\n\n\
          request=smtpd_access_policy\npolicy_context=Alpha\n\n",
    );
    assert_eq!(
        text(&out.stdout),
        "action=PREPEND X-Via: /alpha\n\naction=PREPEND X-Via: /beta\n\naction=PREPEND X-Via: /alpha\n\n"
    );
}

/// A SERVICE argument wins over `policy_context`.
#[test]
fn service_argument_wins_over_policy_context() {
    let b = path_backend();
    let cfg = two_services(&b);
    let out =
        serve(&cfg, &["beta"], b"request=smtpd_access_policy\npolicy_context=alpha\n\nrequest=smtpd_access_policy\n\n");
    assert_eq!(text(&out.stdout), "action=PREPEND X-Via: /beta\n\naction=PREPEND X-Via: /beta\n\n");
    assert!(b.requests().iter().all(|r| r.path() == "/beta"));
}

/// With two services and no or an unknown `policy_context`, the built-in default action, no
/// backend call, and an error line naming the context.
#[test]
fn no_service_for_the_context_defers_and_logs() {
    let sink = SyslogSink::new();
    let b = path_backend();
    let cfg = two_services(&b).syslog(&sink, "");
    let out = serve(
        &cfg,
        &[],
        b"request=smtpd_access_policy\npolicy_context=gamma\n\nrequest=smtpd_access_policy\nrecipient=a@b\n\n",
    );
    let mut expected = DEFER.to_vec();
    expected.extend_from_slice(DEFER);
    assert_eq!(text(&out.stdout), text(&expected));
    assert_eq!(b.request_count(), 0);
    let line = sink.wait_for("gamma", T).unwrap_or_else(|| panic!("no log line naming gamma: {:?}", sink.lines()));
    assert_eq!(severity(&line), Some(3), "not an error line: {line}");
    let errors: Vec<String> = sink.wait_count(4, T).into_iter().filter(|l| severity(l) == Some(3)).collect();
    assert_eq!(errors.len(), 2, "one error line per unroutable request: {errors:?}");
    assert!(errors[1].contains("policy_context"), "{errors:?}");
}

/// With only one service, a request without `policy_context` goes to it.
#[test]
fn single_service_needs_no_context() {
    let b = Backend::fixed(Reply::json(200, r#"{"action":"OK"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "");
    let out = serve(&cfg, &[], b"request=smtpd_access_policy\nrecipient=a@b\n\n");
    assert_eq!(text(&out.stdout), "action=OK\n\n");
    assert_eq!(b.request_count(), 1);
}

// ------------------------------------------------------------------ broken config

/// A broken config while serving: every request gets the built-in default action, one error line
/// names the problem, exit 0, stderr empty.
#[test]
fn broken_config_defers_every_request() {
    let sink = SyslogSink::new();
    let b = Backend::fixed(Reply::json(200, r#"{"action":"OK"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "    timeout: soon\n").syslog(&sink, "");
    let out = serve(&cfg, &[], &[REQ, REQ].concat());
    assert_eq!(text(&out.stdout), text(&[DEFER, DEFER].concat()));
    assert_eq!(b.request_count(), 0);
    let line = sink
        .wait_for("policy_services.pol.timeout", T)
        .unwrap_or_else(|| panic!("no line naming the problem: {:?}", sink.lines()));
    assert_eq!(severity(&line), Some(3), "{line}");
    std::thread::sleep(Duration::from_millis(200));
    let errors: Vec<String> = sink.lines().into_iter().filter(|l| severity(l).is_some_and(|s| s <= 3)).collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {errors:?}");
}

// ------------------------------------------------------------------ logging

/// One info line per request with the service, the action sent (`reply=action=…` or
/// `action=…`) and the id sent as X-Request-Id.
#[test]
fn one_info_line_per_request_with_the_request_id() {
    let sink = SyslogSink::new();
    let b = Backend::start(|r| {
        let action = if r.body_json()["recipient"] == "one@x" { "DUNNO" } else { "DISCARD" };
        Reply::json(200, &format!(r#"{{"action":"{action}"}}"#))
    });
    let cfg = pol_cfg(&b.url("/policy"), "").syslog(&sink, "");
    let out = serve(
        &cfg,
        &[],
        b"request=smtpd_access_policy\nrecipient=one@x\n\nrequest=smtpd_access_policy\nrecipient=two@x\n\n",
    );
    assert_eq!(text(&out.stdout), "action=DUNNO\n\naction=DISCARD\n\n");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    sink.wait_count(2, T);
    std::thread::sleep(Duration::from_millis(200));
    let info: Vec<String> = sink.lines().into_iter().filter(|l| severity(l) == Some(6)).collect();
    assert_eq!(info.len(), 2, "one info line per request: {:?}", sink.lines());
    for (line, (req, reply)) in info.iter().zip(reqs.iter().zip(["action=DUNNO", "action=DISCARD"])) {
        let id = req.header("x-request-id").expect("X-Request-Id sent");
        assert!(!id.is_empty());
        assert!(line.contains(&format!("id={id}")), "{line} lacks id={id}");
        assert!(line.contains("service=pol"), "{line} lacks the service name");
        assert!(line.contains(reply), "{line} lacks {reply}");
        assert!(line.contains("pfxhttp["), "{line} lacks the ident");
    }
}

/// With `log_keys: false` no attribute value appears in any log line.
#[test]
fn log_keys_false_hides_attribute_values() {
    let sink = SyslogSink::new();
    let b = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let cfg = pol_cfg(&b.url("/policy"), "").syslog(&sink, ", level: debug, log_keys: false");
    let secrets =
        ["198.51.100.77", "hidden-sender@secret.example", "hidden-rcpt@secret.example", "hidden-helo.example"];
    let input = format!(
        "request=smtpd_access_policy\nclient_address={}\nsender={}\nrecipient={}\nhelo_name={}\n\n",
        secrets[0], secrets[1], secrets[2], secrets[3]
    );
    let out = serve(&cfg, &[], input.as_bytes());
    assert_eq!(text(&out.stdout), "action=DUNNO\n\n");
    sink.wait_for("service=pol", T).unwrap_or_else(|| panic!("no request line: {:?}", sink.lines()));
    std::thread::sleep(Duration::from_millis(200));
    let lines = sink.lines();
    for line in &lines {
        for s in secrets {
            assert!(!line.contains(s), "{s} logged: {line}");
        }
        assert!(!line.contains("secret.example"), "{line}");
    }
}
