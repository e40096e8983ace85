//! Where a serving process's log lines go: syslog or Postfix's postlogd socket, with the line
//! postlogd writes to `maillog_file` as it is, and a new connection when the socket appears
//! late or is made again (the daemon restarted).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(5);

/// A socketmap on `b` logging with `logging` (flow style), and a state database of its own.
fn cfg(b: &Backend, logging: &str) -> Config {
    let c = Config::bare().map("demo", &b.url("/map"));
    let db = c.dir().join("state.db").display().to_string();
    c.server(&format!("logging: {{ {logging} }}")).state_db(&db)
}

/// A datagram socket bound at `path`, as syslogd or postlogd binds theirs.
fn daemon(path: &Path) -> UnixDatagram {
    let sock = UnixDatagram::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
    sock.set_read_timeout(Some(T)).unwrap();
    sock
}

/// The first datagram on `sock` that holds `needle` (each within [`T`]), as text. The line of
/// the lookup before may come first: a request is logged after its reply is written.
fn line_with(sock: &UnixDatagram, needle: &str) -> String {
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("no log line with {needle:?} within 5 s: {e}"));
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains(needle) {
            return line;
        }
    }
    panic!("no log line with {needle:?} among the next three")
}

/// Looks `key` up through the running process and checks the answer.
fn lookup(child: &mut Child, key: &str) {
    child.send(&netstring(format!("demo {key}").as_bytes()));
    assert_eq!(child.read_netstring(T), b"9:OK mapped,", "lookup of {key}");
}

fn backend() -> Backend {
    Backend::fixed(Reply::json(200, r#"{"result":"mapped"}"#))
}

/// Whether `line` starts `Mmm dd hh:mm:ss `.
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 16
        && b[..3].iter().all(u8::is_ascii_alphabetic)
        && b[3] == b' '
        && b[4..6].iter().all(u8::is_ascii_digit)
        && line[6..16].chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).eq(" 99:99:99 ".chars())
}

/// `target: postlog` sends what Postfix's own programs send to postlogd: `Mmm dd hh:mm:ss host
/// pfxhttp[pid]: text`, no syslog priority, no newline. A socket made after the process started
/// gets the next line; so does a socket removed and made again.
#[test]
fn postlog_lines_and_a_socket_made_again() {
    let b = backend();
    let dir = temp_dir();
    let path = dir.path().join("postlog");
    let c = cfg(&b, &format!("target: postlog, postlog_socket: {}", q(&path.display().to_string())));
    let mut child = c.spawn(&["socketmap"]);
    lookup(&mut child, "early");
    let sock = daemon(&path);
    lookup(&mut child, "first");
    let line = line_with(&sock, " key=first ");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim().split('.').next().unwrap();
    let head = format!(" {host} pfxhttp[{}]: ", child.id());
    assert!(stamped(&line) && line[15..].starts_with(&head), "{line:?} (want a stamp, then {head:?})");
    assert!(line.contains(" map=demo key=first ") && line.contains(" reply=OK "), "{line:?}");
    drop(sock);
    std::fs::remove_file(&path).unwrap();
    let sock = daemon(&path);
    lookup(&mut child, "second");
    let line = line_with(&sock, " key=second ");
    assert!(line.contains(" map=demo key=second "), "after the socket was made again: {line:?}");
    child.close_stdin();
    assert_clean(&child.wait(T));
}

/// `target: syslog`: a process that started before the syslog socket existed logs once it does,
/// and again after the daemon made its socket anew (rsyslog restarted); the line is the RFC 3164
/// one with facility mail.
#[test]
fn syslog_socket_made_late_and_again() {
    let b = backend();
    let dir = temp_dir();
    let path = dir.path().join("log");
    let c = cfg(&b, &format!("target: syslog, syslog_socket: {}", q(&path.display().to_string())));
    let mut child = c.spawn(&["socketmap"]);
    lookup(&mut child, "early");
    let sock = daemon(&path);
    lookup(&mut child, "first");
    let line = line_with(&sock, " key=first ");
    let head = format!(" pfxhttp[{}]: ", child.id());
    assert!(line.starts_with("<22>") && stamped(&line[4..]) && line[19..].starts_with(&head), "{line:?}");
    assert!(line.contains(" map=demo key=first "), "{line:?}");
    drop(sock);
    std::fs::remove_file(&path).unwrap();
    let sock = daemon(&path);
    lookup(&mut child, "second");
    assert!(line_with(&sock, " key=second ").contains(" map=demo key=second "));
    child.close_stdin();
    assert_clean(&child.wait(T));
}

/// `target: auto` takes the postlog socket when there is no syslog socket.
#[test]
fn auto_falls_back_to_postlog() {
    let b = backend();
    let dir = temp_dir();
    let (syslog, postlog) = (dir.path().join("log"), dir.path().join("postlog"));
    let sock = daemon(&postlog);
    let c = cfg(
        &b,
        &format!(
            "syslog_socket: {}, postlog_socket: {}",
            q(&syslog.display().to_string()),
            q(&postlog.display().to_string())
        ),
    );
    let mut child = c.spawn(&["socketmap"]);
    lookup(&mut child, "k");
    let line = line_with(&sock, " key=k ");
    assert!(stamped(&line) && !line.starts_with('<') && line.contains(" map=demo key=k "), "{line:?}");
    child.close_stdin();
    assert_clean(&child.wait(T));
}

/// `target: stderr` writes a command run by hand's lines to stderr; a serving process never
/// writes to stderr, whatever the target.
#[test]
fn stderr_only_for_commands_run_by_hand() {
    let b = backend();
    let c = cfg(&b, "target: stderr, level: debug");
    let out = c.run_command(&["query", "demo", "k"], b"", T);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stderr_str().lines().any(|l| l.starts_with("pfxhttp: demo attempt 1 to 127.0.0.1:")), "{out:?}");
    let out = c.run_serving(&["socketmap"], &netstring(b"demo k"), T);
    assert_eq!(out.stdout, b"9:OK mapped,");
}
