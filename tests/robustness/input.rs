//! Bad client input (`docs/design.md#process-model`, rule 6; `#protocols`), against the built binary,
//! for socketmap, tcp_table and policy alike.
//!
//! Every case runs in a process of its own under the peak-RSS parent and must give its defined
//! reply (byte for byte) or a clean close, with nothing on stderr, exit 0, a peak RSS under
//! [`MAX_RSS_KIB`], and exactly one log line for each request answered and one for the end of
//! the connection. Megabytes of garbage must be refused after a bounded read.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// `server.limits.idle_timeout` in the bad-input tests.
const IDLE: Duration = Duration::from_secs(2);
/// How late a stalled connection may end after the idle timeout (the log line says why it
/// ended; this only shows that nothing else, much later, ended it).
const STALL_MARGIN: Duration = Duration::from_secs(5);
/// Peak RSS allowed (a debug build serving one lookup: about 13 MiB).
const MAX_RSS_KIB: u64 = 32 * 1024;

// ------------------------------------------------------------------ cases

/// One bad-input case.
struct Case {
    what: &'static str,
    input: Vec<u8>,
    /// Close stdin after the input; otherwise pfxhttp must end the connection by itself.
    eof: bool,
    /// Everything pfxhttp writes, exactly.
    reply: Vec<u8>,
    /// The keys the backend must be asked, in order.
    asked: &'static [&'static str],
    /// One entry per log line, in order: fragments the line must contain.
    logs: &'static [&'static [&'static str]],
}

impl Case {
    fn new(what: &'static str, input: &[u8], eof: bool) -> Case {
        Case { what, input: input.to_vec(), eof, reply: Vec::new(), asked: &[], logs: &[] }
    }

    fn reply(mut self, reply: &[u8]) -> Case {
        self.reply = reply.to_vec();
        self
    }

    fn asked(mut self, keys: &'static [&'static str]) -> Case {
        self.asked = keys;
        self
    }

    fn logs(mut self, logs: &'static [&'static [&'static str]]) -> Case {
        self.logs = logs;
        self
    }
}

/// Runs every case at once, each in a process of its own with `idle_timeout: 2s`: the reply
/// bytes, the keys asked, the log lines, exit 0, an empty stderr and the peak RSS. A stalled
/// case must end after the idle timeout (and not much later); every other case that leaves
/// stdin open must end before it, by itself.
fn bad_input(proto: Proto, cases: Vec<Case>) {
    let _machine = crate::shared();
    thread::scope(|s| {
        for case in &cases {
            s.spawn(move || {
                let b = echo_backend();
                let setup =
                    Setup::new(&b.url("/lookup")).server(&format!("limits: {{ idle_timeout: {}s }}", IDLE.as_secs()));
                let mut m = setup.measured(proto);
                let started = Instant::now();
                m.child.send(&case.input);
                if case.eof {
                    m.child.close_stdin();
                }
                let (out, kib) = m.wait(T);
                let took = started.elapsed();
                let what = format!("{proto:?}: {}", case.what);
                assert_clean(&out);
                assert!(
                    out.stdout == case.reply,
                    "{what}: reply {} instead of {}",
                    show(&out.stdout),
                    show(&case.reply)
                );
                assert_eq!(asked(&b), case.asked, "{what}: keys asked");
                assert_logs(&what, &setup.logs(), case.logs);
                assert!(kib < MAX_RSS_KIB, "{what}: peak RSS {kib} KiB");
                let stalled = case.logs.iter().any(|l| l.iter().any(|f| f.contains("stopped sending")));
                if stalled {
                    assert!(took >= IDLE, "{what}: ended after {took:?}, before the idle timeout");
                    assert!(took < IDLE + STALL_MARGIN, "{what}: ended after {took:?}");
                } else if !case.eof {
                    assert!(took < IDLE, "{what}: ended after {took:?}: it waited for the idle timeout");
                }
            });
        }
    });
}

const CLOSED: &str = "connection closed: ";

#[test]
fn socketmap_bad_input() {
    let ok = |k: &str| netstring(format!("OK {}", echo_value(k)).as_bytes());
    bad_input(
        Proto::Socketmap,
        vec![
            Case::new("non-digit length", b"x7:demo ok,", false).logs(&[&[
                "connection closed: malformed request: byte 0x78 where a netstring length digit was expected",
            ]]),
            Case::new("negative length", b"-1:,", false).logs(&[&[CLOSED, "byte 0x2d where a netstring length digit"]]),
            Case::new("overlong length", b"0000000000000000000007:demo ok,", false)
                .logs(&[&[CLOSED, "netstring length has more than 6 digits"]]),
            Case::new("oversized length", b"100001:demo ", false)
                .logs(&[&[CLOSED, "netstring length over the limit of 100000 bytes"]]),
            Case::new("huge length", b"18446744073709551617:", false)
                .logs(&[&[CLOSED, "netstring length over the limit of 100000 bytes"]]),
            Case::new("short body, then EOF", b"9:demo ok", true)
                .logs(&[&["connection closed: client closed the connection in the middle of a request"]]),
            Case::new("wrong terminator", b"7:demo ok;", false)
                .logs(&[&[CLOSED, "netstring of 7 bytes not terminated by ',' (found byte 0x3b)"]]),
            Case::new("missing terminator, next request", b"7:demo ok7:demo ok,", false)
                .logs(&[&[CLOSED, "netstring of 7 bytes not terminated by ',' (found byte 0x37)"]]),
            Case::new("no space in the payload", b"4:demo,", false)
                .logs(&[&[CLOSED, "socketmap request without a space between map name and key"]]),
            Case::new("NUL in the key", b"8:demo a\0b,", true)
                .reply(&ok("a\0b"))
                .asked(&["a\0b"])
                .logs(&[&["proto=socketmap map=demo key=\"a\\u0000b\" ", "reply=OK"]]),
            Case::new("invalid UTF-8 in the key", b"7:demo \xff\xfe,", true)
                .reply(&netstring(b"PERM key is not valid UTF-8"))
                .logs(&[&[
                    "proto=socketmap map=demo key=\u{fffd}\u{fffd} ",
                    "reply=PERM reason=\"key is not valid UTF-8\"",
                ]]),
            Case::new("NUL in the map name", b"7:de\0mo k,", true)
                .reply(&netstring(b"PERM unknown map de?mo"))
                .logs(&[&["proto=socketmap map=\"de\\u0000mo\" key=k ", "reply=PERM"]]),
            Case::new("invalid UTF-8 in the map name", b"7:de\xffmo k,", true)
                .reply(&netstring("PERM unknown map de\u{fffd}mo".as_bytes()))
                .logs(&[&["proto=socketmap map=de\u{fffd}mo key=k ", "reply=PERM"]]),
            Case::new("stalled in the middle of a request", b"21:demo user@ex", false)
                .logs(&[&["connection closed: client stopped sending in the middle of a request"]]),
            Case::new("pipelined requests", &[netstring(b"demo one"), netstring(b"demo two")].concat(), true)
                .reply(&[ok("one"), ok("two")].concat())
                .asked(&["one", "two"])
                .logs(&[&["key=one ", "reply=OK"], &["key=two ", "reply=OK"]]),
            Case::new("pipelined, then garbage", &[netstring(b"demo one"), b"x".to_vec()].concat(), false)
                .reply(&ok("one"))
                .asked(&["one"])
                .logs(&[&["key=one ", "reply=OK"], &[CLOSED, "byte 0x78"]]),
        ],
    );
}

#[test]
fn tcp_bad_input() {
    bad_input(
        Proto::Tcp,
        vec![
            Case::new("not a get", b"put k v\n", false)
                .logs(&[&["connection closed: malformed request: unsupported tcp_table request: put k v"]]),
            Case::new("bad escape", b"get a%zz\n", false).logs(&[&[CLOSED, "bad %XX escape in tcp_table request"]]),
            Case::new("cut escape", b"get a%2\n", false).logs(&[&[CLOSED, "bad %XX escape in tcp_table request"]]),
            Case::new("signed escape", b"get a%+0\n", false).logs(&[&[CLOSED, "bad %XX escape in tcp_table request"]]),
            Case::new("no newline, then EOF", b"get k", true)
                .logs(&[&["connection closed: client closed the connection in the middle of a request"]]),
            Case::new("NUL in the key", b"get a\0b\n", true)
                .reply(b"200 v-a_b\n")
                .asked(&["a\0b"])
                .logs(&[&["proto=tcp map=demo key=\"a\\u0000b\" ", "reply=200"]]),
            Case::new("escaped NUL in the key", b"get a%00b\n", true)
                .reply(b"200 v-a_b\n")
                .asked(&["a\0b"])
                .logs(&[&["proto=tcp map=demo key=\"a\\u0000b\" ", "reply=200"]]),
            Case::new("invalid UTF-8 in the key", b"get a\xffb\nget a%FEb\n", true)
                .reply(b"400 key is not valid UTF-8\n400 key is not valid UTF-8\n")
                .logs(&[
                    &["reply=400 reason=\"key is not valid UTF-8\""],
                    &["reply=400 reason=\"key is not valid UTF-8\""],
                ]),
            Case::new("CRLF line end", b"get k\r\n", true)
                .reply(b"200 v-k\n")
                .asked(&["k"])
                .logs(&[&["key=k ", "reply=200"]]),
            Case::new("stalled in the middle of a line", b"get user@ex", false)
                .logs(&[&["connection closed: client stopped sending in the middle of a request"]]),
            Case::new("pipelined requests", b"get one\nget two\n", true)
                .reply(b"200 v-one\n200 v-two\n")
                .asked(&["one", "two"])
                .logs(&[&["key=one ", "reply=200"], &["key=two ", "reply=200"]]),
        ],
    );
}

#[test]
fn policy_bad_input() {
    const REQ: &[u8] = b"request=smtpd_access_policy\nrecipient=one\n\n";
    bad_input(
        Proto::Policy,
        vec![
            Case::new("no empty line, then EOF", b"request=smtpd_access_policy\nrecipient=a@b\n", true)
                .logs(&[&["connection closed: client closed the connection in the middle of a request"]]),
            Case::new("no empty line, stalled", b"request=smtpd_access_policy\nrecipient=a@b\n", false)
                .logs(&[&["connection closed: client stopped sending in the middle of a request"]]),
            Case::new("empty request", b"\n", false)
                .logs(&[&["connection closed: malformed request: empty policy request"]]),
            Case::new("line without '='", b"request=smtpd_access_policy\nfoo\n\n", false)
                .logs(&[&[CLOSED, "policy request line without '=': foo"]]),
            Case::new("empty name", b"=x\n\n", false).logs(&[&[CLOSED, "policy request line with an empty name: =x"]]),
            Case::new("only garbage bytes", b"\xff\x00\xfe\n\n", false)
                .logs(&[&[CLOSED, "policy request line without '=': \\xff\\x00\\xfe"]]),
            Case::new(
                "NUL and invalid UTF-8 in values and names",
                b"request=smtpd_access_policy\nrecipient=a\0b\xffc\nx\xff\0y=1\n\n",
                true,
            )
            .reply(b"action=v-a_b_c\n\n")
            .asked(&["a\0b\u{fffd}c"])
            .logs(&[&["proto=policy service=pol recipient=\"a\\u0000b\u{fffd}c\" ", "action=v-a_b_c"]]),
            Case::new("pipelined requests", &[REQ, b"request=smtpd_access_policy\nrecipient=two\n\n"].concat(), true)
                .reply(b"action=v-one\n\naction=v-two\n\n")
                .asked(&["one", "two"])
                .logs(&[&["recipient=one ", "action=v-one"], &["recipient=two ", "action=v-two"]]),
            Case::new("pipelined, then garbage", &[REQ, b"garbage\n"].concat(), false)
                .reply(b"action=v-one\n\n")
                .asked(&["one"])
                .logs(&[&["recipient=one ", "action=v-one"], &[CLOSED, "line without '=': garbage"]]),
        ],
    );
}

// ------------------------------------------------------------------ megabytes of garbage

/// Sends `head`, then `filler` up to `size` bytes in all, to a measured pfxhttp (stdin stays
/// open: pfxhttp must hang up by itself) and returns its output, its peak RSS (KiB) and how much
/// of the garbage it took before hanging up. The setup has `idle_timeout: 2s`, so a pfxhttp that
/// kept reading would still end, with too much memory or the wrong log line.
fn flood(setup: &Setup, proto: Proto, head: &[u8], filler: &[u8], size: usize) -> (Output, u64, usize) {
    const CHUNK: usize = 64 * 1024;
    let mut m = setup.measured(proto);
    let mut sent = 0;
    let fill: Vec<u8> = filler.iter().copied().cycle().take(CHUNK).collect();
    let mut chunks = head.chunks(CHUNK).chain(std::iter::repeat(fill.as_slice()));
    while sent < size {
        let chunk = chunks.next().expect("endless");
        if m.child.try_send(chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let (out, kib) = m.wait(T);
    (out, kib, sent)
}

/// One flood of `size` bytes: no reply, a clean exit, exactly the one log line `expected`, the
/// peak RSS under the bound, and far less than the flood taken in.
fn flood_is_refused(proto: Proto, what: &str, head: &[u8], filler: &[u8], size: usize, expected: &str) {
    let b = echo_backend();
    let setup = Setup::new(&b.url("/lookup")).server("limits: { idle_timeout: 2s }");
    let started = Instant::now();
    let (out, kib, sent) = flood(&setup, proto, head, filler, size);
    let what = format!("{proto:?}: {what}");
    eprintln!("{what}: peak RSS {kib} KiB, {sent} bytes written before the hang-up, {:?}", started.elapsed());
    assert_clean(&out);
    assert!(out.stdout.is_empty(), "{what}: reply {}", show(&out.stdout));
    assert_logs(&what, &setup.logs(), &[&[expected]]);
    assert!(kib < MAX_RSS_KIB, "{what}: peak RSS {kib} KiB, more than {MAX_RSS_KIB} KiB");
    assert!(sent < size / 4, "{what}: pfxhttp took {sent} bytes before hanging up");
    assert_eq!(b.request_count(), 0, "{what}: the backend was asked");
}

const MIB: usize = 1 << 20;

#[test]
fn socketmap_garbage_floods_stay_small() {
    let _machine = crate::shared();
    flood_is_refused(
        Proto::Socketmap,
        "40 MiB after a length at the limit",
        b"99999:",
        b"x",
        40 * MIB,
        "connection closed: malformed request: netstring of 99999 bytes not terminated by ',' (found byte 0x78)",
    );
    flood_is_refused(
        Proto::Socketmap,
        "40 MiB of zeros (a length that never ends)",
        b"",
        b"0",
        40 * MIB,
        "connection closed: malformed request: netstring length has more than 6 digits",
    );
}

#[test]
fn tcp_garbage_flood_stays_small() {
    let _machine = crate::shared();
    flood_is_refused(
        Proto::Tcp,
        "a 40 MiB line",
        b"get ",
        b"k",
        40 * MIB,
        "connection closed: malformed request: tcp_table request over the limit of 100000 bytes",
    );
}

#[test]
fn policy_garbage_floods_stay_small() {
    let _machine = crate::shared();
    flood_is_refused(
        Proto::Policy,
        "a 10 MB line",
        b"request=smtpd_access_policy\nrecipient=",
        b"x",
        10_000_000,
        "connection closed: malformed request: policy request over the limit of 100000 bytes",
    );
    let attrs: Vec<u8> = (0..100_000).flat_map(|i| format!("attr{i:06}=value\n").into_bytes()).collect();
    let size = attrs.len() + 7;
    flood_is_refused(
        Proto::Policy,
        "100 000 attributes",
        &attrs,
        b"more=x\n",
        size,
        "connection closed: malformed request: policy request has more than 1000 attributes",
    );
}

/// 40 MiB of well-formed requests of the largest size allowed, for a map that does not exist:
/// every one is answered (PERM, no backend call) and the memory stays bounded all along.
#[test]
fn socketmap_flood_of_largest_requests_stays_small() {
    let _machine = crate::shared();
    let b = echo_backend();
    let setup = Setup::new(&b.url("/lookup")).level("warn");
    let payload = format!("nosuch {}", "k".repeat(100_000 - 7));
    let request = netstring(payload.as_bytes());
    let count = 40 * MIB / request.len();
    let mut m = setup.measured(Proto::Socketmap);
    let started = Instant::now();
    // The replies are small and read by the child's reader thread, so the writes never block
    // on a full stdout pipe.
    for _ in 0..count {
        m.child.send(&request);
    }
    m.child.close_stdin();
    let (out, kib) = m.wait(T);
    eprintln!("{count} requests of 100000 bytes: peak RSS {kib} KiB, {:?}", started.elapsed());
    assert_clean(&out);
    assert_wire(&out.stdout, &netstring(b"PERM unknown map nosuch").repeat(count));
    assert!(kib < MAX_RSS_KIB, "peak RSS {kib} KiB, more than {MAX_RSS_KIB} KiB");
    assert_eq!(b.request_count(), 0);
    assert_eq!(setup.logs(), Vec::<String>::new(), "nothing to warn about");
}

/// A request trickling in a byte at a time, each byte well within the idle timeout: the request
/// as a whole gets `idle_timeout` from its first byte, so the process hangs up about then
/// rather than waiting for the bytes to run out (which could take days).
#[test]
fn a_trickling_request_is_cut_off_at_the_idle_timeout() {
    let _machine = crate::shared();
    let b = echo_backend();
    let setup = Setup::new(&b.url("/lookup")).server(&format!("limits: {{ idle_timeout: {}s }}", IDLE.as_secs()));
    let mut child = setup.child(Proto::Socketmap);
    let request = netstring(format!("demo {}", "k".repeat(200)).as_bytes());
    let started = Instant::now();
    let mut sent = 0;
    // One byte every IDLE / 8: the whole request would take 25 idle timeouts.
    for byte in &request {
        if child.try_send(std::slice::from_ref(byte)).is_err() {
            break;
        }
        sent += 1;
        if started.elapsed() > IDLE + STALL_MARGIN {
            break;
        }
        thread::sleep(IDLE / 8);
    }
    let out = child.wait(T);
    let took = started.elapsed();
    assert_clean(&out);
    assert_eq!(out.stdout, b"", "no reply to a request that never arrived");
    assert!(sent < request.len(), "the whole request got through in {took:?}");
    assert!(took >= IDLE, "cut off after {took:?}, before the idle timeout");
    assert!(took < IDLE + STALL_MARGIN, "cut off only after {took:?}");
    assert_eq!(b.request_count(), 0);
    assert_logs("trickle", &setup.logs(), &[&["connection closed: client stopped sending in the middle of a request"]]);
}

// ------------------------------------------------------------------ the client hangs up early

/// A client that sends a request and closes the connection before the reply (the backend
/// answers only once the client is gone): the lookup is made, the process ends with exit 0 and
/// an empty stderr, and logs the request and the lost connection, one line each.
#[test]
fn client_closing_before_the_reply() {
    let _machine = crate::shared();
    for proto in Proto::ALL {
        let gone = std::sync::Arc::new(Gate::default());
        let g = gone.clone();
        let b = Backend::start(move |_| {
            assert!(g.wait(T), "the client did not close");
            Reply::json(200, r#"{"data":{"result":"late"}}"#)
        });
        let setup = Setup::new(&b.url("/lookup"));
        let path = setup.path();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(proto.args());
        let (child, mut stream) = spawn_fd3(&args);
        std::io::Write::write_all(&mut stream, &proto.request("k")).unwrap();
        drop(stream);
        gone.open();
        let out = child.wait(T);
        assert_clean(&out);
        assert!(out.stdout.is_empty(), "{proto:?}: {out:?}");
        assert_eq!(b.request_count(), 1, "{proto:?}: the request was looked up");
        let done = if proto == Proto::Policy { "action=late" } else { "reply=" };
        let lost = "connection lost: connection error: Broken pipe (os error 32)";
        assert_logs(&format!("{proto:?}"), &setup.logs(), &[&["proto=", done], &[lost]]);
    }
}
