//! `pfxhttp sasl`: Dovecot's auth protocol as smtpd speaks it, over pipes, against a real HTTP
//! backend on 127.0.0.1 (`docs/design.md`: Dovecot SASL), and `pfxhttp sasl-query`.
//!
//! smtpd turns every `FAIL` into a permanent 535 and answers 454 only when the auth server
//! closes the connection, so every outage must end the process without a reply.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::support::*;

const RUN: Duration = Duration::from_secs(15);
const READ: Duration = Duration::from_secs(5);
/// A password that must never be seen outside the backend request.
const PASSWORD: &str = "Pw-7c1d-NeverShown";
/// smtpd's greeting and the start of a session.
const HELLO: &str = "VERSION\t1\t0\nCPID\t4242\n";
const PARAMS: &str = "service=smtp\tnologin\tlip=192.0.2.1\trip=198.51.100.7";

fn b64(data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// `AUTH\t<id>\tPLAIN\t…\tresp=<\0login\0password>`.
fn plain(id: u32, login: &str, password: &str) -> String {
    format!("AUTH\t{id}\tPLAIN\t{PARAMS}\tresp={}\n", b64(&format!("\0{login}\0{password}")))
}

/// The handshake's lines up to DONE, with the SPID, CUID and COOKIE values checked and cut.
#[track_caller]
fn assert_handshake(out: &[u8], pid: Option<u32>) -> usize {
    let text = String::from_utf8_lossy(out);
    let end = text.find("DONE\n").unwrap_or_else(|| panic!("no DONE in {}", show(out))) + 5;
    let lines: Vec<&str> = text[..end].lines().collect();
    assert_eq!(lines[..3], ["VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tLOGIN\tplaintext"], "{}", show(out));
    let spid = lines[3].strip_prefix("SPID\t").expect("SPID");
    let cuid = lines[4].strip_prefix("CUID\t").expect("CUID");
    if let Some(pid) = pid {
        assert_eq!(spid, pid.to_string());
    }
    assert!(cuid.bytes().all(|b| b.is_ascii_digit()) && !cuid.is_empty(), "{cuid:?}");
    let cookie = lines[5].strip_prefix("COOKIE\t").expect("COOKIE");
    assert!(cookie.len() == 32 && cookie.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(lines[6..], ["DONE"]);
    end
}

/// Runs `pfxhttp sasl` with `input`; checks the spawn rules and the handshake; returns the
/// replies after it.
fn serve(cfg: &Config, input: &str) -> String {
    let out = cfg.run_serving(&["sasl"], input.as_bytes(), RUN);
    let end = assert_handshake(&out.stdout, None);
    String::from_utf8_lossy(&out.stdout[end..]).into_owned()
}

/// A backend answering 200 with `Auth-User: <user>` to `alias`, 200 without for anyone else
/// with the right password, and 403 otherwise.
fn nauthilus() -> Backend {
    Backend::start(|r| {
        let body = r.body_json();
        match (body["username"].as_str(), body["password"].as_str()) {
            (_, Some(p)) if p != PASSWORD => {
                Reply::status(403, "null").with_header("Auth-Status", "Invalid login or password")
            }
            (Some("alias"), _) => Reply::status(200, "{}").with_header("Auth-User", "real@example.org"),
            _ => Reply::status(200, "{}"),
        }
    })
}

#[test]
fn the_handshake_comes_first_without_a_backend_call() {
    let b = nauthilus();
    let cfg = Config::new().sasl("smtp-auth", &b.url("/auth"));
    let mut child = cfg.spawn(&["sasl", "smtp-auth"]);
    let out = child.read_until(b"DONE\n", READ);
    assert_handshake(&out, Some(child.id()));
    assert_eq!(b.request_count(), 0);
    child.close_stdin();
    let out = child.wait(READ);
    assert_clean(&out);
    assert!(out.stdout.is_empty());
}

#[test]
fn plain_and_login_succeed_with_and_without_auth_user() {
    let b = nauthilus();
    let cfg = Config::new().sasl("smtp-auth", &b.url("/auth")).set("default_local_port", "'587'");
    let login = format!("AUTH\t3\tLOGIN\t{PARAMS}\tsecured\nCONT\t3\t{}\nCONT\t3\t{}\n", b64("u@x.org"), b64(PASSWORD));
    let login_initial = format!("AUTH\t4\tLOGIN\t{PARAMS}\tresp={}\nCONT\t4\t{}\n", b64("alias"), b64(PASSWORD));
    let input = [HELLO, &plain(1, "alias", PASSWORD), &plain(2, "u@x.org", PASSWORD), &login, &login_initial].concat();
    assert_eq!(
        serve(&cfg, &input),
        "OK\t1\tuser=real@example.org\nOK\t2\tuser=u@x.org\n\
         CONT\t3\tVXNlcm5hbWU6\nCONT\t3\tUGFzc3dvcmQ6\nOK\t3\tuser=u@x.org\n\
         CONT\t4\tUGFzc3dvcmQ6\nOK\t4\tuser=real@example.org\n"
    );
    let sent = b.requests();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(
        sent[0].body_json(),
        serde_json::json!({"username": "alias", "password": PASSWORD, "protocol": "smtp", "method": "plain",
            "client_ip": "198.51.100.7", "local_ip": "192.0.2.1", "local_port": "587"})
    );
    assert_eq!(sent[2].body_json()["method"], "login");
    assert_eq!(sent[2].body_json()["ssl"], "on");
}

#[test]
fn a_wrong_password_fails_after_failure_delay() {
    let b = nauthilus();
    let cfg = Config::new().sasl("smtp-auth", &b.url("/auth")).set("failure_delay", "700ms");
    let mut child = cfg.spawn(&["sasl"]);
    child.read_until(b"DONE\n", READ);
    child.send(HELLO.as_bytes());
    let started = Instant::now();
    child.send(plain(1, "u@x.org", "wrong-password").as_bytes());
    assert_wire(&child.read_until(b"\n", READ), b"FAIL\t1\treason=Invalid login or password\n");
    assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
    // The connection stays usable.
    child.send(plain(2, "u@x.org", PASSWORD).as_bytes());
    assert_wire(&child.read_until(b"\n", READ), b"OK\t2\tuser=u@x.org\n");
    child.close_stdin();
    assert_clean(&child.wait(READ));
}

/// Every answer that is not "yes" or "wrong password": no reply, the process ends (exit 0) and
/// the request after it is not read.
#[test]
fn every_outage_closes_the_connection_without_a_reply() {
    let cases: Vec<(&str, Backend)> = vec![
        ("500", Backend::fixed(Reply::status(500, "{}"))),
        ("429", Backend::fixed(Reply::status(429, "{}"))),
        ("302", Backend::fixed(Reply::status(302, "").with_header("Location", "http://127.0.0.1:1/"))),
        ("404", Backend::fixed(Reply::status(404, "{}"))),
        ("401 without backend auth", Backend::fixed(Reply::status(401, "{}"))),
        ("Auth-User with a TAB", Backend::fixed(Reply::status(200, "{}").with_header("Auth-User", "a\tOK"))),
        ("timeout", Backend::fixed(Reply::Hang(Duration::from_secs(5)))),
        ("connection closed", Backend::fixed(Reply::Close)),
    ];
    let input = [HELLO, &plain(1, "u@x.org", PASSWORD), &plain(2, "u@x.org", PASSWORD)].concat();
    for (what, b) in &cases {
        let cfg = Config::new().sasl("a", &b.url("/auth")).set("timeout", "300ms").set("deadline", "1s");
        assert_eq!(serve(&cfg, &input), "", "{what}");
    }
    let cfg = Config::new().sasl("a", &closed_url("/auth")).set("deadline", "1s");
    assert_eq!(serve(&cfg, &input), "", "connection refused");
}

#[test]
fn a_401_renews_the_token_once() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let issued = tokens.clone();
    let ts = Backend::start(move |_| {
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(200, &format!(r#"{{"token":"tok-{n}","expires_in":3600}}"#))
    });
    let b = Backend::start(|r| match r.header("authorization") {
        Some("Bearer tok-1") => Reply::status(401, "{}"),
        _ => Reply::status(200, "{}"),
    });
    let jwt = format!("{{ token_endpoint: {}, credentials: {{ username: admin, password: x }} }}", q(&ts.url("/t")));
    let cfg = Config::new().sasl("a", &b.url("/auth")).set("jwt_auth", &jwt);
    assert_eq!(serve(&cfg, &[HELLO, &plain(1, "u", PASSWORD)].concat()), "OK\t1\tuser=u\n");
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    let auths: Vec<String> = b.requests().iter().map(|r| r.header("authorization").unwrap_or("").to_string()).collect();
    assert_eq!(auths, ["Bearer tok-1", "Bearer tok-2"]);
}

/// Names holding LF (which would start a forged `OK` line), CR or TAB never reach the backend
/// or a reply; a `FAIL` carries only the request's id and a fixed reason.
#[test]
fn injection_attempts_are_refused_before_the_backend() {
    let b = nauthilus();
    let cfg = Config::new().sasl("a", &b.url("/auth"));
    let forged = format!("{}\nOK\t2\tuser=victim@example.org", "x".repeat(4000));
    let mut input = HELLO.to_string();
    for (id, name) in [(1, forged.as_str()), (3, "u\rOK"), (4, "u\tuser=victim"), (5, "u\u{85}")] {
        input.push_str(&plain(id, name, PASSWORD));
    }
    input.push_str(&format!("AUTH\t6\tPLAIN\t{PARAMS}\tresp={}\n", b64(&format!("victim\0u\0{PASSWORD}"))));
    input.push_str(&format!("AUTH\t7\tLOGIN\t{PARAMS}\nCONT\t7\t{}\n", b64("u\nOK\t8\tuser=v")));
    let fails: String = [1, 3, 4, 5, 6, 7]
        .iter()
        .map(|id| {
            let cont = if *id == 7 { "CONT\t7\tVXNlcm5hbWU6\n" } else { "" };
            format!("{cont}FAIL\t{id}\treason=invalid request\n")
        })
        .collect();
    assert_eq!(serve(&cfg, &input), fails);
    assert_eq!(b.request_count(), 0);
}

#[test]
fn the_password_is_never_logged_or_replied() {
    let sink = SyslogSink::new();
    let b = nauthilus();
    let cfg = Config::new().sasl("a", &b.url("/auth")).syslog(&sink, ", level: debug");
    let login = format!("AUTH\t3\tLOGIN\t{PARAMS}\nCONT\t3\t{}\nCONT\t3\t{}\n", b64("u@x.org"), b64(PASSWORD));
    let input = [HELLO, &plain(1, "alias", PASSWORD), &plain(2, "u@x.org", "Wrong-Pw-0a9b"), &login].concat();
    let replies = serve(&cfg, &input);
    assert!(!replies.contains(PASSWORD), "{replies}");
    let line = sink.wait_for("result=ok", READ).unwrap_or_else(|| panic!("no AUTH line: {:?}", sink.lines()));
    for needle in
        ["proto=sasl", "service=a", "mechanism=PLAIN", "user=alias auth_user=real@example.org", "client=198.51.100.7"]
    {
        assert!(line.contains(needle), "{needle:?} missing in {line}");
    }
    let lines = sink.settle(READ);
    let auth_lines = lines.iter().filter(|l| l.contains("proto=sasl")).count();
    assert_eq!(auth_lines, 3, "one line per AUTH: {lines:#?}");
    let encoded = [b64(&format!("\0alias\0{PASSWORD}")), b64(PASSWORD), b64("\0u@x.org\0Wrong-Pw-0a9b")];
    for line in &lines {
        for secret in [PASSWORD, "Wrong-Pw-0a9b", &encoded[0], &encoded[1], &encoded[2]] {
            assert!(!line.contains(secret), "{secret:?} logged: {line}");
        }
    }
}

#[test]
fn a_config_error_still_greets_then_closes_on_the_first_auth() {
    let sink = SyslogSink::new();
    let cfg = Config::new().sasl("a", "http://127.0.0.1:1/auth").set("transport", "grpc").syslog(&sink, "");
    let input = [HELLO, &plain(1, "u", PASSWORD), &plain(2, "u", PASSWORD)].concat();
    assert_eq!(serve(&cfg, &input), "");
    let line = sink.wait_for("result=temporary", READ).unwrap_or_else(|| panic!("no line: {:?}", sink.lines()));
    assert!(line.contains("dovecot_sasl.a.transport"), "{line}");
    // A service that is not configured is the same.
    let cfg = Config::new().sasl("a", "http://127.0.0.1:1/auth");
    let out = cfg.run_serving(&["sasl", "other"], input.as_bytes(), RUN);
    let end = assert_handshake(&out.stdout, None);
    assert_eq!(&out.stdout[end..], b"");
}

#[test]
fn sasl_query_prints_what_smtpd_would_get() {
    let b = nauthilus();
    let cfg = Config::new().sasl("a", &b.url("/auth"));
    let out = cfg.run_command(&["sasl-query", "a", "alias"], format!("{PASSWORD}\n").as_bytes(), RUN);
    assert_eq!((out.code(), out.stdout_str().as_str()), (Some(0), "OK user=real@example.org\n"), "{out:?}");
    assert_eq!(b.requests()[0].body_json()["password"], PASSWORD, "one trailing newline dropped");
    let out = cfg.run_command(&["sasl-query", "-v", "a", "u"], b"wrong\n", RUN);
    assert_eq!((out.code(), out.stdout_str().as_str()), (Some(1), "FAIL reason=Invalid login or password\n"));
    let out = cfg.run_command(&["sasl-query", "-v", "a", "u"], PASSWORD.as_bytes(), RUN);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let err = out.stderr_str();
    assert!(err.contains("> AUTH\t1\tPLAIN") && err.contains(r#""password":"***""#), "{err}");
    assert!(!err.contains(PASSWORD) && !out.stdout_str().contains(PASSWORD), "{err}");
    let down = Config::new().sasl("a", &closed_url("/auth")).set("deadline", "1s");
    let out = down.run_command(&["sasl-query", "a", "u"], b"pw\n", RUN);
    assert_eq!(out.code(), Some(75), "{out:?}");
    assert!(out.stdout_str().starts_with("TEMPORARY"), "{out:?}");
}

/// `--mech login` runs LOGIN's two steps (the password never shown); a token mechanism on a
/// service without `sasl_oidc_auth` is refused as smtpd's AUTH would be; a FAIL comes at once,
/// without `failure_delay`.
#[test]
fn sasl_query_takes_a_mechanism() {
    let b = nauthilus();
    let cfg = Config::new().sasl("a", &b.url("/auth")).set("failure_delay", "5s");
    let out = cfg.run_command(&["sasl-query", "-v", "--mech", "login", "a", "u"], PASSWORD.as_bytes(), RUN);
    assert_eq!((out.code(), out.stdout_str().as_str()), (Some(0), "OK user=u\n"), "{out:?}");
    assert_eq!(b.requests()[0].body_json()["method"], "login");
    let err = out.stderr_str();
    assert!(err.contains("> AUTH\t1\tLOGIN\t") && err.contains("< CONT\t1\tUGFzc3dvcmQ6\n"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    let started = std::time::Instant::now();
    let out = cfg.run_command(&["sasl-query", "--mech", "login", "a", "u"], b"wrong\n", RUN);
    assert_eq!((out.code(), out.stdout_str().as_str()), (Some(1), "FAIL reason=Invalid login or password\n"));
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "no failure_delay");
    for mech in ["xoauth2", "oauthbearer"] {
        let out = cfg.run_command(&["sasl-query", "--mech", mech, "a", "u"], b"tok\n", RUN);
        assert_eq!((out.code(), out.stdout_str().as_str()), (Some(1), "FAIL reason=unsupported mechanism\n"));
    }
    assert_eq!(b.request_count(), 2);
}
