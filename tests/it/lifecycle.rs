//! Process lifecycle under spawn(8) and systemd: fd-3 activation, idle timeout, lifetime, and
//! nothing ever on stderr (`docs/design.md#process-model`).

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::*;

/// Bound for every run and read.
const T: Duration = Duration::from_secs(5);

const POLICY_REQ: &[u8] = b"request=smtpd_access_policy\nrecipient=a@b.example\n\n";

/// Map `demo` and policy service `pol` on `b` (see [`Config::map`], [`Config::policy`]);
/// `limits` is the body of `server.limits` (flow style, may be empty).
fn cfg(b: &Backend, limits: &str) -> Config {
    Config::bare()
        .server(&format!("limits: {{ {limits} }}"))
        .map("demo", &b.url("/map"))
        .policy("pol", &b.url("/policy"))
}

/// Answers `/map` with `{"result":"mapped"}` and `/policy` with `{"action":"DUNNO"}`.
fn backend() -> Backend {
    Backend::start(|r| {
        if r.path() == "/map" {
            Reply::json(200, r#"{"result":"mapped"}"#)
        } else {
            Reply::json(200, r#"{"action":"DUNNO"}"#)
        }
    })
}

/// The payload of the one netstring that is all of `stdout`.
fn only_netstring(stdout: &[u8]) -> String {
    let total = crate::support::run::parse_netstring(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(stdout)))
        .unwrap_or_else(|| panic!("incomplete netstring: {}", text(stdout)));
    assert_eq!(total, stdout.len(), "exactly one reply: {}", text(stdout));
    let colon = stdout.iter().position(|&c| c == b':').unwrap();
    text(&stdout[colon + 1..total - 1])
}

// ------------------------------------------------------------------ fd 3

/// systemd activation: a socketmap lookup is answered on the fd-3 socket, stdout stays empty, and
/// the process exits 0 once the client closes.
#[test]
fn fd3_socketmap_is_served_on_the_socket() {
    let b = backend();
    let c = cfg(&b, "");
    let (mut child, stream) = spawn_fd3(&["--config", &c.arg(), "socketmap"]);
    let mut conn = Conn::new(stream);
    conn.send(&netstring(b"demo user@example.org"));
    assert_eq!(text(&conn.read_netstring(T)), text(&netstring(b"OK mapped")));
    conn.send(&netstring(b"demo other@example.org"));
    assert_eq!(text(&conn.read_netstring(T)), text(&netstring(b"OK mapped")));
    assert!(child.read_available(Duration::from_millis(100)).is_empty(), "stdout must stay empty");
    conn.shutdown_write();
    let out = child.wait(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(conn.read_to_eof(T), b"", "nothing after the replies");
    assert_eq!(b.request_count(), 2);
}

/// systemd activation for policy: the reply goes to the fd-3 socket only.
#[test]
fn fd3_policy_is_served_on_the_socket() {
    let b = backend();
    let c = cfg(&b, "");
    let (mut child, stream) = spawn_fd3(&["--config", &c.arg(), "policy"]);
    let mut conn = Conn::new(stream);
    conn.send(POLICY_REQ);
    assert_eq!(text(&conn.read_until(b"\n\n", T)), "action=DUNNO\n\n");
    assert!(child.read_available(Duration::from_millis(100)).is_empty(), "stdout must stay empty");
    conn.shutdown_write();
    let out = child.wait(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(conn.read_to_eof(T), b"");
    assert_eq!(b.request_count(), 1);
}

// ------------------------------------------------------------------ idle timeout

/// With `idle_timeout: 1s`, a process that never gets a request exits 0 by itself.
#[test]
fn idle_timeout_without_any_request() {
    let b = backend();
    let c = cfg(&b, "idle_timeout: 1s");
    let child = Child::spawn(&["--config", &c.arg(), "socketmap"]);
    let out = child.wait(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(900), "left too early: {:?}", out.elapsed);
    assert!(out.elapsed <= Duration::from_millis(3500), "left too late: {:?}", out.elapsed);
}

/// The idle timeout also ends a process that served a request and then got nothing.
#[test]
fn idle_timeout_after_a_request() {
    let b = backend();
    let c = cfg(&b, "idle_timeout: 1s");
    let mut child = Child::spawn(&["--config", &c.arg(), "policy"]);
    child.send(POLICY_REQ);
    assert_eq!(text(&child.read_until(b"\n\n", T)), "action=DUNNO\n\n");
    let replied = Instant::now();
    let out = child.wait(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "{out:?}");
    let idle = replied.elapsed();
    assert!(idle >= Duration::from_millis(800), "left too early: {idle:?}");
    assert!(idle <= Duration::from_millis(3500), "left too late: {idle:?}");
}

/// A client that stalls in the middle of a policy request: the process gives up after the idle
/// timeout without a reply or a backend call.
#[test]
fn idle_timeout_when_stalled_mid_policy_request() {
    let b = backend();
    let c = cfg(&b, "idle_timeout: 1s");
    let mut child = Child::spawn(&["--config", &c.arg(), "policy"]);
    child.send(b"request=smtpd_access_policy\nrecip");
    let out = child.wait(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "no reply to half a request: {out:?}");
    assert!(out.elapsed >= Duration::from_millis(900), "{:?}", out.elapsed);
    assert!(out.elapsed <= Duration::from_millis(3500), "{:?}", out.elapsed);
    assert_eq!(b.request_count(), 0);
}

/// The same for half a netstring.
#[test]
fn idle_timeout_when_stalled_mid_netstring() {
    let b = backend();
    let c = cfg(&b, "idle_timeout: 1s");
    let mut child = Child::spawn(&["--config", &c.arg(), "socketmap"]);
    child.send(b"21:demo user@ex");
    let out = child.wait(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "no reply to half a request: {out:?}");
    assert!(out.elapsed <= Duration::from_millis(3500), "{:?}", out.elapsed);
    assert_eq!(b.request_count(), 0);
}

// ------------------------------------------------------------------ lifetime

/// With `max_lifetime: 1s`, requests before that are answered; the process ends between
/// requests once it is older, so a request sent at 1.5 s meets EOF, and the exit is 0.
#[test]
fn max_lifetime_ends_the_process_between_requests() {
    let b = backend();
    let c = cfg(&b, "idle_timeout: 30s, max_lifetime: 1s");
    let mut child = Child::spawn(&["--config", &c.arg(), "policy"]);
    let t0 = Instant::now();
    child.send(POLICY_REQ);
    assert_eq!(text(&child.read_until(b"\n\n", T)), "action=DUNNO\n\n");
    std::thread::sleep(Duration::from_millis(150));
    child.send(POLICY_REQ);
    assert_eq!(text(&child.read_until(b"\n\n", T)), "action=DUNNO\n\n");
    assert!(t0.elapsed() < Duration::from_millis(900), "machine too slow for this test: {:?}", t0.elapsed());
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(t0.elapsed()));
    // The process is gone: the write may fail (EPIPE), the read must see EOF.
    let _ = child.try_send(POLICY_REQ);
    match child.try_read_until(b"\n\n", T) {
        Err(ReadError::Eof { partial }) => assert!(partial.is_empty(), "{}", text(&partial)),
        other => panic!("expected EOF, got {other:?}"),
    }
    let out = child.wait(T);
    assert_clean(&out);
    assert_eq!(b.request_count(), 2, "the late request must not reach the backend");
}

// ------------------------------------------------------------------ stderr stays empty

/// Malformed input never panics or writes to stderr: the connection is closed, exit 0, no reply.
#[test]
fn malformed_requests_close_quietly() {
    let b = backend();
    let c = cfg(&b, "");
    let cases: [(&str, &[u8]); 9] = [
        ("socketmap", b"abc"),
        ("socketmap", b"99999999999999999999999:x,"),
        ("socketmap", b"5:ab"),
        ("socketmap", b"3:abc;"),
        ("socketmap", b"-1:,"),
        ("socketmap", b"\xff\xfe\x00\x01"),
        ("policy", b"foo\n\n"),
        ("policy", b"\n"),
        ("policy", b"\xff\x00\xfe\n\n"),
    ];
    for (command, input) in cases {
        let out = run(&["--config", &c.arg(), command], input, T);
        assert_clean(&out);
        assert!(out.stdout.is_empty(), "{command} {input:?}: {out:?}");
    }
    assert_eq!(b.request_count(), 0);
}

/// A broken config while serving: a temporary failure naming the problem, nothing on stderr.
#[test]
fn broken_config_is_answered_not_printed() {
    let dir = temp_dir();
    let bad =
        write_config(dir.path(), "socket_maps:\n  demo:\n    target: 'http://127.0.0.1:1/x'\n    value_field: [\n");
    let bad = bad.to_str().unwrap();
    let missing = dir.path().join("missing.yml");
    let missing = missing.to_str().unwrap();
    for config in [bad, missing] {
        let out = run(&["--config", config, "socketmap"], &netstring(b"demo user@example.org"), T);
        assert_clean(&out);
        let reply = only_netstring(&out.stdout);
        assert!(reply.starts_with("TEMP pfxhttp configuration error: "), "{config}: {reply}");

        let out = run(&["--config", config, "policy"], POLICY_REQ, T);
        assert_clean(&out);
        assert_eq!(text(&out.stdout), "action=DEFER_IF_PERMIT Service temporarily unavailable\n\n");
    }
}

/// A command-line error in a serving command is answered on the connection as
/// `TEMP pfxhttp command line: …`, never printed to stderr.
#[test]
fn command_line_error_is_answered_not_printed() {
    let out = run(&["--bogus", "socketmap"], &netstring(b"demo user@example.org"), T);
    assert_clean(&out);
    let reply = only_netstring(&out.stdout);
    assert!(reply.starts_with("TEMP pfxhttp command line: "), "{reply}");
    assert!(reply.contains("--bogus"), "{reply}");
}

/// The same for policy (the built-in default action) and tcp with its MAP missing (`400`).
#[test]
fn command_line_error_policy_and_tcp() {
    let out = run(&["policy", "--bogus"], POLICY_REQ, T);
    assert_clean(&out);
    assert_eq!(text(&out.stdout), "action=DEFER_IF_PERMIT Service temporarily unavailable\n\n");

    let out = run(&["tcp"], b"get user@example.org\n", T);
    assert_clean(&out);
    let line = text(&out.stdout);
    assert!(line.starts_with("400 ") && line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
}

/// An interactive command whose arguments happen to contain a protocol word is a usage error on
/// the terminal, not a serving session.
#[test]
fn protocol_word_as_an_argument_is_not_a_serving_command() {
    let out = run(&["query", "tcp"], b"get x\n", T);
    assert_eq!(out.code(), Some(64));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(out.stderr_str().contains("<KEY>"), "{}", out.stderr_str());
}

/// Start a server on fd 3, send `request`, close the socket at once: the backend answers only
/// after the client is gone. The process must still exit 0 with nothing on stderr.
fn close_before_reply(command: &str, request: &[u8]) {
    let b = Backend::start(|r| {
        std::thread::sleep(Duration::from_millis(300));
        if r.path() == "/map" {
            Reply::json(200, r#"{"result":"mapped"}"#)
        } else {
            Reply::json(200, r#"{"action":"DUNNO"}"#)
        }
    });
    let c = cfg(&b, "");
    let (child, mut stream) = spawn_fd3(&["--config", &c.arg(), command]);
    stream.write_all(request).unwrap();
    drop(stream);
    let out = child.wait(T);
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(b.wait_requests(1, T).len(), 1, "the request was looked up after the client left");
}

/// A client that closes before reading the reply: exit 0, stderr empty (socketmap and policy).
#[test]
fn client_closing_before_the_reply() {
    close_before_reply("socketmap", &netstring(b"demo user@example.org"));
    close_before_reply("policy", POLICY_REQ);
}
