//! Integration-test support harness for pfxhttp.
//!
//! * [`http`]: a hand-written HTTP/1.1 (and HTTPS) backend that records requests.
//! * [`tls`]: a throw-away test CA, server leaf and client certificate.
//! * [`syslog`]: a Unix datagram sink standing in for `/dev/log`.
//! * [`run`]: running the built binary the way Postfix spawn(8) or systemd does.
//! * [`peak`]: a pfxhttp run whose peak memory is measured.
//! * [`config`]: the builder of the `pfxhttp.yml` files the tests run against.
//!
//! A library of its own (`pfxhttp-test-support`, a dev-dependency): the two test binaries (`it`
//! and `robustness`) each use a part of it.

pub mod config;
pub mod http;
pub mod peak;
pub mod run;
pub mod syslog;
pub mod tls;

use std::path::{Path, PathBuf};

pub use config::Config;
pub use http::{Backend, Recorded, Reply};
pub use run::{Child, Conn, Output, ReadError, Reader, bin, run, run_env, run_program, spawn_fd3, spawn_fd3_program};
pub use syslog::SyslogSink;
pub use tls::{TlsFiles, make_tls_files};

/// Encode `payload` as a netstring: `<len>:<payload>,`.
pub fn netstring(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.push(b',');
    out
}

/// Write `yaml` to `dir/pfxhttp.yml` and return that path.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("pfxhttp.yml");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("cannot write config {}: {e}", path.display()));
    path
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("pfxhttp-test-").tempdir().expect("cannot create temp dir")
}

/// The spawn(8) rules for a serving run: nothing on stderr (under spawn it is the client's
/// socket), exit status 0.
#[track_caller]
pub fn assert_clean(out: &Output) {
    assert!(out.stderr.is_empty(), "a serving command wrote to stderr: {:?}\n{out:?}", out.stderr_str());
    assert_eq!(out.code(), Some(0), "serving command must exit 0: {out:?}");
}

/// Bytes as escaped text, shortened for messages.
pub fn show(b: &[u8]) -> String {
    let s = b.escape_ascii().to_string();
    if s.len() > 400 { format!("{}… ({} bytes)", &s[..400], b.len()) } else { s }
}

/// Byte-exact comparison of what went over the wire.
#[track_caller]
pub fn assert_wire(actual: &[u8], expected: &[u8]) {
    assert!(actual == expected, "wire bytes differ\n  expected: {}\n  actual:   {}", show(expected), show(actual));
}

/// A YAML single-quoted string.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Bytes as text (lossy), to compare with expected replies.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A URL on 127.0.0.1 with `path` where nothing listens (a port bound, then closed).
pub fn closed_url(path: &str) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}{path}")
}

/// Sends `bytes` to `child` without closing its stdin and checks that pfxhttp closes the
/// connection by itself: exit 0 promptly, nothing on stdout or stderr, no request at `backend`.
#[track_caller]
pub fn assert_malformed_closes(mut child: Child, backend: &Backend, bytes: &[u8]) {
    child.send(bytes);
    let out = child.wait(std::time::Duration::from_secs(5));
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "input {}: reply bytes {}", show(bytes), show(&out.stdout));
    assert_eq!(backend.request_count(), 0, "input {}: backend was asked", show(bytes));
}

/// The commands `pfxhttp --help` lists (without `help` itself).
pub fn help_commands(help: &str) -> Vec<&str> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect()
}
