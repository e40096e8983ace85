//! A client that sends requests but never reads the replies: writing a reply is bounded by
//! `idle_timeout`, after which the process logs one line and exits 0, whichever way the
//! connection was given (a socket or pipes on stdin/stdout under spawn(8), a socket on fd 3 under
//! systemd).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Requests pipelined at once.
const REQUESTS: usize = 200;
/// Bytes in each reply's value: a few of them fill any socket or pipe buffer.
const VALUE: usize = 60_000;
/// Upper bound for the process to exit: the lookups before the write stalls, `idle_timeout`
/// (1 s), and slack for a loaded machine.
const EXIT_WITHIN: Duration = Duration::from_secs(5);
/// What the one log line says.
const LOGGED: &str = "client stopped reading replies";

/// How the connection reaches the process.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// One socket as stdin and stdout (spawn(8)).
    Socket,
    /// A pipe for stdin, another for stdout.
    Pipes,
    /// A socket on fd 3 (systemd `Accept=yes`).
    Fd3,
}

/// Map `demo` on `b` (see [`Config::map`]) without its payload, logging to `sink`, idle timeout 1 s.
fn config(b: &Backend, sink: &SyslogSink) -> Config {
    let conf = Config::bare().syslog(sink, "").server("limits: { idle_timeout: 1s }");
    conf.map("demo", &b.url("/map")).unset("payload")
}

/// The process with its connection on stdin and stdout: one socket, or two pipes. Returns the
/// client's side: where to write the requests, and what must stay open but unread.
fn start_stdio(socket: bool, config: &str) -> (std::process::Child, Box<dyn Write + Send>, Box<dyn Send>) {
    let mut cmd = Command::new(bin());
    cmd.args(["--config", config, "socketmap"]).env_clear().env("PATH", crate::support::run::child_path());
    cmd.stderr(Stdio::piped());
    if socket {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let input = theirs.try_clone().expect("clone socket");
        cmd.stdin(Stdio::from(OwnedFd::from(input))).stdout(Stdio::from(OwnedFd::from(theirs)));
        let child = cmd.spawn().expect("start pfxhttp");
        // The Command holds the child's ends: without them, the child's exit closes the socket.
        drop(cmd);
        let writer = ours.try_clone().expect("clone socket");
        (child, Box::new(writer), Box::new(ours))
    } else {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("start pfxhttp");
        let writer = child.stdin.take().expect("stdin");
        let unread = child.stdout.take().expect("stdout");
        (child, Box::new(writer), Box::new(unread))
    }
}

/// Waits up to `limit` for `child` to exit; kills it and panics if it does not.
fn wait_exit(child: &mut std::process::Child, limit: Duration, via: Via) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{via:?}: pfxhttp still blocked {limit:?} after the client stopped reading; killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The requests, written on a thread of their own: once the process stops reading, the writes
/// block until it exits.
fn send_all(mut to: Box<dyn Write + Send>) -> std::thread::JoinHandle<()> {
    let requests: Vec<u8> = (0..REQUESTS).flat_map(|i| netstring(format!("demo k{i}").as_bytes())).collect();
    std::thread::spawn(move || {
        let _ = to.write_all(&requests);
    })
}

fn never_reads(via: Via) {
    let sink = SyslogSink::new();
    let value = "v".repeat(VALUE);
    let b = Backend::start(move |_| Reply::json(200, &format!(r#"{{"result":"{value}"}}"#)));
    let conf = config(&b, &sink);
    let cfg = conf.arg();
    let started = Instant::now();
    let (status, stderr, writer) = match via {
        Via::Fd3 => {
            let (child, stream) = spawn_fd3(&["--config", &cfg, "socketmap"]);
            let writer = send_all(Box::new(stream.try_clone().expect("clone socket")));
            let out = child.wait(EXIT_WITHIN);
            drop(stream);
            (out.status, out.stderr, writer)
        }
        _ => {
            let (mut child, to, unread) = start_stdio(matches!(via, Via::Socket), &cfg);
            let writer = send_all(to);
            let status = wait_exit(&mut child, EXIT_WITHIN, via);
            drop(unread);
            let mut stderr = Vec::new();
            child.stderr.take().expect("stderr").read_to_end(&mut stderr).expect("read stderr");
            (status, stderr, writer)
        }
    };
    let elapsed = started.elapsed();
    writer.join().expect("writer thread");
    assert_eq!(status.code(), Some(0), "{via:?}: exit status {status}");
    assert!(stderr.is_empty(), "{via:?}: stderr {}", text(&stderr));
    assert!(elapsed >= Duration::from_millis(900), "{via:?}: left before idle_timeout: {elapsed:?}");
    let requests = b.request_count();
    assert!((2..REQUESTS).contains(&requests), "{via:?}: {requests} lookups; the write should stall early");
    let lines = sink.settle(Duration::from_secs(5));
    let said: Vec<&String> = lines.iter().filter(|l| l.contains(LOGGED)).collect();
    assert_eq!(said.len(), 1, "{via:?}: one line saying so: {lines:#?}");
    assert!(said[0].contains("idle_timeout"), "{via:?}: {}", said[0]);
}

/// One socket as stdin and stdout, as spawn(8) gives it.
#[test]
fn unread_replies_end_the_process_on_a_socket() {
    never_reads(Via::Socket);
}

/// Pipes on stdin and stdout.
#[test]
fn unread_replies_end_the_process_on_pipes() {
    never_reads(Via::Pipes);
}

/// The connection on fd 3, as systemd gives it.
#[test]
fn unread_replies_end_the_process_on_fd3() {
    never_reads(Via::Fd3);
}
