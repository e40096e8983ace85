//! Tests of the test harness itself; none depends on pfxhttp's behaviour.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::http::{RawResponse, gunzip, read_response};
use crate::support::*;

const T: Duration = Duration::from_secs(5);

fn connect(b: &Backend) -> TcpStream {
    let s = TcpStream::connect_timeout(&b.addr(), T).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s
}

fn exchange(s: &mut TcpStream, buf: &mut Vec<u8>, req: &[u8]) -> RawResponse {
    s.write_all(req).unwrap();
    read_response(s, buf).expect("response")
}

/// Read until EOF; panics on timeout (the socket has a read timeout).
fn read_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to EOF");
    out
}

#[test]
fn netstring_encodes() {
    assert_eq!(netstring(b"hello"), b"5:hello,");
    assert_eq!(netstring(b""), b"0:,");
}

#[test]
fn write_config_writes_pfxhttp_yml() {
    let dir = temp_dir();
    let p = write_config(dir.path(), "a: 1\n");
    assert_eq!(p, dir.path().join("pfxhttp.yml"));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 1\n");
}

#[test]
fn http_answers_and_records_a_request() {
    let b = Backend::start(|r| {
        if r.path() == "/lookup" {
            Reply::json(200, r#"{"ok":true}"#).with_header("X-Extra", "1")
        } else {
            Reply::text(404, "nope")
        }
    });
    assert!(b.url("/x").starts_with("http://127.0.0.1:"));
    let mut s = connect(&b);
    let mut buf = Vec::new();
    let body = br#"{"key":"a@b"}"#;
    let req = format!(
        "POST /lookup?k=v%20w HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nX-Two: a\r\nX-Two: b\r\nContent-Length: {}\r\n\r\n",
        b.addr(),
        body.len()
    );
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    let resp = exchange(&mut s, &mut buf, &raw);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("x-extra"), Some("1"));
    assert_eq!(resp.header("content-length"), Some("11"));
    assert_eq!(resp.body, br#"{"ok":true}"#);

    let reqs = b.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/lookup?k=v%20w");
    assert_eq!(r.path(), "/lookup");
    assert_eq!(r.query(), Some("k=v%20w"));
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header_all("x-two"), vec!["a", "b"]);
    assert_eq!(r.headers[0].0, "host");
    assert_eq!(r.body_json()["key"], "a@b");
    assert_eq!(r.body_str(), r#"{"key":"a@b"}"#);
    assert!(r.client_cert.is_none());

    let resp = exchange(&mut s, &mut buf, b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.body_str(), "nope");
    assert_eq!(read_eof(&mut s), b"");
}

#[test]
fn http_keep_alive_reuses_one_connection() {
    let b = Backend::fixed(Reply::json(200, "{}"));
    let mut s = connect(&b);
    let mut buf = Vec::new();
    for i in 0..3 {
        let r = exchange(&mut s, &mut buf, format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None);
    }
    // Two pipelined requests in one write.
    s.write_all(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf).unwrap().status, 200);
    assert_eq!(read_response(&mut s, &mut buf).unwrap().status, 200);
    assert_eq!(b.connections(), 1);
    let reqs = b.requests();
    assert_eq!(reqs.len(), 5);
    assert!(reqs.iter().all(|r| r.connection == 1));
    assert_eq!(reqs[4].target, "/p2");

    let r = exchange(&mut s, &mut buf, b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(read_eof(&mut s), b"");

    // HTTP/1.0 without keep-alive closes too.
    let mut s2 = connect(&b);
    let r = exchange(&mut s2, &mut Vec::new(), b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(read_eof(&mut s2), b"");
    assert_eq!(b.connections(), 2);
    assert_eq!(b.wait_requests(7, T)[6].connection, 2);
}

#[test]
fn http_decodes_chunked_bodies_and_answers_continue() {
    let b = Backend::fixed(Reply::status(204, ""));
    let mut s = connect(&b);
    let mut buf = Vec::new();
    let r = exchange(
        &mut s,
        &mut buf,
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(b.requests()[0].body, b"hello, world");

    // Expect: 100-continue gets an interim response before the body.
    s.write_all(b"PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").unwrap();
    let interim = read_response(&mut s, &mut buf).unwrap();
    assert_eq!(interim.status, 100);
    s.write_all(b"abc").unwrap();
    assert_eq!(read_response(&mut s, &mut buf).unwrap().status, 204);
    assert_eq!(b.requests()[1].body, b"abc");
    assert_eq!(b.connections(), 1);
}

#[test]
fn http_gzip_reply() {
    let b = Backend::fixed(Reply::gzip_json(200, r#"{"a":1}"#));
    let mut s = connect(&b);
    let r = exchange(&mut s, &mut Vec::new(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(gunzip(&r.body), br#"{"a":1}"#);
}

#[test]
fn http_close_hang_and_trickle() {
    let b = Backend::start(|r| match r.path() {
        "/close" => Reply::Close,
        "/hang" => Reply::Hang(Duration::from_millis(300)),
        _ => Reply::Trickle { status: 200, body: b"abcde".to_vec(), every: Duration::from_millis(30) },
    });

    let mut s = connect(&b);
    s.write_all(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_eof(&mut s), b"");

    let mut s = connect(&b);
    let t0 = Instant::now();
    s.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_eof(&mut s), b"");
    let e = t0.elapsed();
    assert!(e >= Duration::from_millis(290), "hang too short: {e:?}");
    assert!(e < Duration::from_secs(3), "hang too long: {e:?}");

    let mut s = connect(&b);
    let t0 = Instant::now();
    s.write_all(b"GET /trickle HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new()).unwrap();
    let e = t0.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"abcde");
    assert!(e >= Duration::from_millis(140), "trickle too fast: {e:?}");
    assert_eq!(b.requests().len(), 3);
    assert_eq!(b.connections(), 3);
}

#[test]
fn http_rejects_oversized_head_and_bad_requests() {
    let b = Backend::fixed(Reply::json(200, "{}"));
    let mut s = connect(&b);
    s.write_all(b"NONSENSE\r\n\r\n").unwrap();
    assert_eq!(read_eof(&mut s), b"");
    let mut s = connect(&b);
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(70 * 1024));
    // The server may close before we finish writing: ignore write errors.
    let _ = s.write_all(big.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty());
    assert_eq!(b.requests().len(), 0);
}

#[test]
fn http_drop_stops_everything_promptly() {
    let b =
        Backend::start(
            |r| {
                if r.path() == "/hang" { Reply::Hang(Duration::from_secs(60)) } else { Reply::json(200, "{}") }
            },
        );
    let addr = b.addr();
    let mut idle = connect(&b);
    let r = exchange(&mut idle, &mut Vec::new(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    let mut hung = connect(&b);
    hung.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(b.wait_requests(2, T).len(), 2);

    let t0 = Instant::now();
    drop(b);
    let e = t0.elapsed();
    assert!(e < Duration::from_secs(2), "drop took {e:?}");
    // Both the idle keep-alive connection and the hanging one were closed.
    assert_eq!(read_eof(&mut idle), b"");
    assert_eq!(read_eof(&mut hung), b"");
    // The listener is gone.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

fn tls_get(config: std::sync::Arc<rustls::ClientConfig>, b: &Backend, name: &str) -> std::io::Result<RawResponse> {
    let mut s = crate::support::tls::connect(config, b.addr(), name);
    s.write_all(b"GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    read_response(&mut s, &mut Vec::new())
}

#[test]
fn tls_backend_with_test_ca() {
    let files = make_tls_files();
    for p in [&files.ca_pem, &files.leaf_cert_pem, &files.leaf_key_pem, &files.client_cert_pem, &files.client_key_pem] {
        assert!(p.starts_with(files.dir.path()) && p.exists());
    }
    let b = Backend::fixed_tls(&files, Reply::json(200, r#"{"tls":true}"#));
    assert!(b.url("/a").starts_with("https://127.0.0.1:"));
    let cfg = crate::support::tls::client_config(&files, false);
    for name in ["localhost", "127.0.0.1"] {
        let r = tls_get(cfg.clone(), &b, name).expect("TLS request");
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), r#"{"tls":true}"#);
    }
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header(CLIENT_CERT), None);

    // A client trusting another CA refuses the server.
    let other = make_tls_files();
    let bad = crate::support::tls::client_config(&other, false);
    assert!(tls_get(bad, &b, "localhost").is_err());
    assert_eq!(b.requests().len(), 2);
    let errs = b.wait_tls_errors(1, T);
    assert_eq!(errs.len(), 1, "{errs:?}");
}

const CLIENT_CERT: &str = crate::support::http::CLIENT_CERT_HEADER;

#[test]
fn tls_backend_requiring_client_cert() {
    let files = make_tls_files();
    let b = Backend::start_tls_client_auth(&files, |_| Reply::text(200, "hi"));
    let with = crate::support::tls::client_config(&files, true);
    let r = tls_get(with, &b, "localhost").expect("TLS request with client cert");
    assert_eq!(r.body_str(), "hi");
    let reqs = b.requests();
    assert_eq!(reqs[0].header(CLIENT_CERT), Some("present"));
    assert!(reqs[0].client_cert.is_some());

    let without = crate::support::tls::client_config(&files, false);
    assert!(tls_get(without, &b, "localhost").is_err());
    assert_eq!(b.requests().len(), 1);
    let errs = b.wait_tls_errors(1, T);
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn syslog_sink_collects_datagrams() {
    let sink = SyslogSink::new();
    let tx = UnixDatagram::unbound().unwrap();
    tx.send_to(b"<22>pfxhttp[1]: first", sink.path()).unwrap();
    tx.send_to(b"<22>pfxhttp[1]: second \xff", sink.path()).unwrap();
    let got = sink.wait_for("second", T).expect("datagram");
    assert!(got.ends_with("second \u{fffd}"));
    assert_eq!(sink.lines().len(), 2);
    assert_eq!(sink.lines()[0], "<22>pfxhttp[1]: first");
    assert_eq!(sink.wait_for("never", Duration::from_millis(50)), None);
    let path = sink.path().to_path_buf();
    let t0 = Instant::now();
    drop(sink);
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(!path.exists());
}

#[test]
fn bin_is_built() {
    assert!(bin().exists(), "{}", bin().display());
}

#[test]
fn run_program_gets_only_path_in_env() {
    let out = run_program(Path::new("/usr/bin/env"), &[], &[("EXTRA", "1")], b"", T);
    assert_eq!(out.code(), Some(0));
    let mut vars: Vec<String> = out.stdout_str().lines().map(|l| l.to_string()).collect();
    vars.sort();
    assert_eq!(vars.len(), 2, "{vars:?}");
    assert_eq!(vars[0], "EXTRA=1");
    assert!(vars[1].starts_with("PATH="));
}

#[test]
fn run_program_feeds_stdin_and_collects_output() {
    let out = run_program(Path::new("/bin/sh"), &["-c", "cat; echo oops >&2; exit 3"], &[], b"in\x00put", T);
    assert_eq!(out.stdout, b"in\x00put");
    assert_eq!(out.stderr_str(), "oops\n");
    assert_eq!(out.code(), Some(3));
    assert!(out.elapsed < T);
}

#[test]
fn run_program_kills_on_timeout() {
    let t0 = Instant::now();
    let r = std::panic::catch_unwind(|| {
        run_program(Path::new("/bin/sh"), &["-c", "echo started; exec sleep 30"], &[], b"", Duration::from_millis(300))
    });
    let msg = *r.expect_err("must panic").downcast::<String>().unwrap();
    assert!(msg.contains("did not exit within"), "{msg}");
    assert!(msg.contains("started"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn child_reads_netstrings_and_lines() {
    let mut c = Child::spawn_program(Path::new("/bin/cat"), &[], &[]);
    assert_eq!(c.try_read_netstring(Duration::from_millis(50)), Err(ReadError::Timeout { partial: vec![] }));
    // A netstring split over two writes, then a second one right behind it.
    c.send(b"11:hello");
    c.send(b" world,3:abc,");
    assert_eq!(c.read_netstring(T), b"11:hello world,");
    assert_eq!(c.read_netstring(T), b"3:abc,");
    c.send(b"request=smtpd_access_policy\nsender=a@b\n\nx\n");
    assert_eq!(c.read_until(b"\n\n", T), b"request=smtpd_access_policy\nsender=a@b\n\n");
    assert_eq!(c.read_until(b"\n", T), b"x\n");
    c.send(b"5x");
    assert!(matches!(c.try_read_netstring(T), Err(ReadError::Malformed { .. })));
    c.close_stdin();
    let out = c.wait(T);
    assert_eq!(out.code(), Some(0));
    assert_eq!(out.stdout, b"5x");
}

#[test]
fn child_eof_is_reported_and_drop_kills() {
    let mut c = Child::spawn_program(Path::new("/bin/sh"), &["-c", "printf 3:ab"], &[]);
    assert_eq!(c.try_read_netstring(T), Err(ReadError::Eof { partial: b"3:ab".to_vec() }));
    let _ = c.wait(T);

    let c = Child::spawn_program(Path::new("/bin/sleep"), &["30"], &[]);
    let pid = c.id();
    drop(c);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn fd3_child_gets_socket_on_fd3_like_systemd() {
    let script = r#"printf 'pid=%s listen_pid=%s fds=%s names=%s\n' "$$" "$LISTEN_PID" "$LISTEN_FDS" "$LISTEN_FDNAMES" >&3
IFS= read -r line <&3
printf 'echo:%s\n' "$line" >&3
if read -r x; then echo "stdin not empty" >&2; else echo "stdin eof" >&2; fi"#;
    let (c, stream) = spawn_fd3_program(Path::new("/bin/sh"), &["-c", script], &[]);
    let pid = c.id();
    let mut conn = Conn::new(stream);
    let hello = conn.read_until(b"\n", T);
    assert_eq!(String::from_utf8(hello).unwrap(), format!("pid={pid} listen_pid={pid} fds=1 names=connection\n"));
    conn.send(b"ping\n");
    assert_eq!(conn.read_until(b"\n", T), b"echo:ping\n");
    let out = c.wait(T);
    assert_eq!(out.code(), Some(0));
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout_str());
    assert_eq!(out.stderr_str(), "stdin eof\n");
    // The child's end is closed once it exits.
    assert_eq!(conn.read_to_eof(T), b"");
}

#[test]
fn peak_rss_is_that_of_the_measured_program() {
    use crate::support::peak::{Measured, python};
    // Two python3 starts: a generous bound, for a busy machine.
    const RUN: Duration = Duration::from_secs(30);
    // 64 MiB written (not just reserved), then exit 3: both must come through.
    let m = Measured::spawn_program(python(), &["-c", "import os; b = b'x' * (64 << 20); os._exit(3)"]);
    let (out, kib) = m.wait(RUN);
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(kib > 64 * 1024, "peak RSS {kib} KiB after writing 64 MiB");
    let m = Measured::spawn_program(Path::new("/bin/true"), &[]);
    let (out, kib) = m.wait(RUN);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(kib < 32 * 1024, "peak RSS {kib} KiB for /bin/true: the measuring parent weighs too much");
}
