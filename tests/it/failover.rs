//! Hosts, retries, deadline and shared host health (`docs/design.md#failover-and-host-health`): `target` lists against
//! real HTTP backends on 127.0.0.1 that refuse, hang, trickle or answer with an error status.
//!
//! Every serving run checks the spawn(8) rules: nothing on stderr, exit status 0. Every test has
//! a state database of its own (a file in its temp dir, or `:memory:`), so host health never
//! leaks between tests. Time limits are upper bounds with a generous margin for a noisy machine.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// Upper bound for one pfxhttp run (start, all lookups, exit).
pub(crate) const RUN: Duration = Duration::from_secs(20);
/// Upper bound for waiting on syslog lines.
pub(crate) const LOG_WAIT: Duration = Duration::from_secs(5);
/// What a noisy machine may add to a time limit.
const MARGIN: Duration = Duration::from_millis(1500);
/// How long a hanging backend keeps a connection without answering (cut short when dropped).
const HANG: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ config

/// A config with the map `demo` (also served by `pfxhttp tcp demo`, see [`Config::map`]) asking
/// the hosts `targets`. The state database is `state.db` in the config's temp dir unless set
/// otherwise.
pub(crate) fn map_on(targets: &[&str]) -> Config {
    Config::new().map("demo", "").targets(targets)
}

/// A config with the policy service `pol` (see [`Config::policy`]) asking the hosts `targets`.
fn policy_on(targets: &[&str]) -> Config {
    Config::new().policy("pol", "").targets(targets)
}

/// How these tests run a config; every serving run is checked with [`assert_clean`].
pub(crate) trait Serve {
    /// `pfxhttp socketmap` fed `stdin`.
    fn socketmap(&self, stdin: &[u8]) -> Output;
    /// One socketmap lookup of `key` in `demo`: the reply payload (checked to be exactly one
    /// netstring) and the run.
    fn lookup(&self, key: &str) -> (String, Output);
    /// `pfxhttp tcp demo` fed `stdin`.
    fn tcp(&self, stdin: &[u8]) -> Output;
    /// `pfxhttp policy` fed `stdin`.
    fn policy_run(&self, stdin: &[u8]) -> Output;
    /// `pfxhttp state check` (not a serving command: output not checked here).
    fn state_check(&self) -> Output;
}

impl Serve for Config {
    fn socketmap(&self, stdin: &[u8]) -> Output {
        self.run_serving(&["socketmap"], stdin, RUN)
    }

    fn lookup(&self, key: &str) -> (String, Output) {
        let out = self.socketmap(&req(key));
        (single_reply(&out.stdout), out)
    }

    fn tcp(&self, stdin: &[u8]) -> Output {
        self.run_serving(&["tcp", "demo"], stdin, RUN)
    }

    fn policy_run(&self, stdin: &[u8]) -> Output {
        self.run_serving(&["policy"], stdin, RUN)
    }

    fn state_check(&self) -> Output {
        self.run_command(&["state", "check"], b"", RUN)
    }
}

// ------------------------------------------------------------------ hosts

/// `host:port` of a `http://host:port/...` URL, as pfxhttp names hosts in replies and logs.
pub(crate) fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").split('/').next().unwrap().to_string()
}

/// `http://host:port` of a URL: the key under which host health is kept.
pub(crate) fn origin(url: &str) -> String {
    format!("http://{}", host_port(url))
}

/// The JSON a good backend answers with: `value` for socketmap/tcp, `OK value` for policy.
fn good_json(value: &str) -> String {
    format!(r#"{{"result":"{value}","action":"OK {value}"}}"#)
}

/// A backend that answers every request with [`good_json`]`(value)`.
pub(crate) fn answering(value: &str) -> Backend {
    Backend::fixed(Reply::json(200, &good_json(value)))
}

/// A backend that reads the request and never answers.
pub(crate) fn hanging() -> Backend {
    Backend::fixed(Reply::Hang(HANG))
}

/// A backend that answers [`good_json`]`(value)` while `up` is true, and otherwise hangs.
pub(crate) fn switchable(value: &str, up: Arc<AtomicBool>) -> Backend {
    let body = good_json(value);
    Backend::start(move |_| if up.load(Ordering::SeqCst) { Reply::json(200, &body) } else { Reply::Hang(HANG) })
}

/// How a failing host fails.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Nothing listens.
    Refuse,
    /// Accepts, reads the request, never answers (the entry has `timeout: 500ms`).
    Hang,
    /// Answers with this status.
    Status(u16),
}

/// A host failing as `fault`: its URL and its backend (none for [`Fault::Refuse`]).
fn failing(fault: Fault) -> (String, Option<Backend>) {
    match fault {
        Fault::Refuse => (closed_url("/lookup"), None),
        Fault::Hang => {
            let b = hanging();
            (b.url("/lookup"), Some(b))
        }
        Fault::Status(code) => {
            let b = Backend::fixed(Reply::json(code, &good_json("from-a-failing-host")));
            (b.url("/lookup"), Some(b))
        }
    }
}

// ------------------------------------------------------------------ running and checking

/// A socketmap request netstring `demo <key>`.
pub(crate) fn req(key: &str) -> Vec<u8> {
    netstring(format!("demo {key}").as_bytes())
}

/// Checks that `out` is exactly one well-framed netstring and returns its payload.
#[track_caller]
pub(crate) fn single_reply(out: &[u8]) -> String {
    assert_eq!(parse_netstring_len(out), Some(out.len()), "not exactly one netstring: {}", show(out));
    let colon = out.iter().position(|&b| b == b':').unwrap();
    String::from_utf8(out[colon + 1..out.len() - 1].to_vec()).expect("reply is UTF-8")
}

/// The length of the netstring at the start of `b`, if it is a complete one.
fn parse_netstring_len(b: &[u8]) -> Option<usize> {
    crate::support::run::parse_netstring(b).ok().flatten()
}

/// Checks that the reply payload starts with `prefix`.
#[track_caller]
fn assert_starts(payload: &str, prefix: &str) {
    assert!(payload.starts_with(prefix), "reply should start with {prefix:?}, got {payload:?}");
}

/// Checks that a run took less than `limit`.
#[track_caller]
fn assert_within(out: &Output, limit: Duration, what: &str) {
    assert!(out.elapsed < limit, "{what}: answered after {:?}, limit {limit:?}: {out:?}", out.elapsed);
}

/// The syslog severity (PRI & 7) of a datagram.
pub(crate) fn severity(line: &str) -> Option<u8> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    rest[..end].parse::<u16>().ok().map(|p| (p & 7) as u8)
}

/// Waits until `n` per-request lines (`proto=...`) arrived; returns them in order.
#[track_caller]
pub(crate) fn request_lines(sink: &SyslogSink, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let lines: Vec<String> = sink.lines().into_iter().filter(|l| l.contains("proto=")).collect();
        if lines.len() >= n {
            return lines;
        }
        if Instant::now() >= deadline {
            panic!("expected {n} request log line(s), got: {:?}", sink.lines());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The `down: <origin> ...` line of `state check` output for `origin`, if any.
pub(crate) fn down_line(check: &Output, origin: &str) -> Option<String> {
    let prefix = format!("down: {origin} for ");
    check.stdout_str().lines().find(|l| l.starts_with(&prefix)).map(str::to_string)
}

// ------------------------------------------------------------------ first host fails, next answers

/// `hosts - 1` hosts failing as `fault`, then one answering `OK from-last`: the reply comes from
/// the last host, every failing host got exactly one request (one attempt each), and moving on
/// took no longer than the per-attempt timeouts.
fn next_host_answers(fault: Fault, hosts: usize) {
    let bad: Vec<(String, Option<Backend>)> = (1..hosts).map(|_| failing(fault)).collect();
    let good = answering("from-last");
    let mut urls: Vec<String> = bad.iter().map(|(u, _)| u.clone()).collect();
    urls.push(good.url("/lookup"));
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let conf = map_on(&refs).line("timeout: 500ms");
    let (payload, out) = conf.lookup("user@example.org");
    assert_eq!(payload, "OK from-last", "{fault:?} with {hosts} hosts: {out:?}");
    for (url, backend) in &bad {
        if let Some(b) = backend {
            assert_eq!(b.request_count(), 1, "{fault:?}: failing host {url} must be tried exactly once");
        }
    }
    assert_eq!(good.request_count(), 1, "{fault:?}: the answering host gets one request");
    // Each hanging host costs its 500 ms timeout; nothing else may wait.
    let per_host = if matches!(fault, Fault::Hang) { Duration::from_millis(500) } else { Duration::ZERO };
    let paid = per_host * (hosts as u32 - 1);
    assert!(out.elapsed >= paid, "{fault:?}: answered after {:?}, before the timeouts ran out", out.elapsed);
    assert_within(&out, paid + MARGIN, &format!("{fault:?} with {hosts} hosts"));
}

/// The first host refuses the connection: the second answers.
#[test]
fn refused_first_host_second_answers() {
    next_host_answers(Fault::Refuse, 2);
}

/// Two hosts refuse: the third answers.
#[test]
fn refused_first_two_hosts_third_answers() {
    next_host_answers(Fault::Refuse, 3);
}

/// The first host accepts and never answers (`timeout: 500ms`): the second answers.
#[test]
fn hanging_first_host_second_answers() {
    next_host_answers(Fault::Hang, 2);
}

/// Two hosts hang: the third answers after two timeouts.
#[test]
fn hanging_first_two_hosts_third_answers() {
    next_host_answers(Fault::Hang, 3);
}

/// The first host answers 503: the second answers.
#[test]
fn status_503_first_host_second_answers() {
    next_host_answers(Fault::Status(503), 2);
}

/// Two hosts answer 500 and 503: the third answers.
#[test]
fn status_5xx_first_two_hosts_third_answers() {
    next_host_answers(Fault::Status(500), 3);
    next_host_answers(Fault::Status(502), 3);
}

/// The first host answers 429 with `Retry-After: 1`: the second host is asked at once, since
/// `Retry-After` speaks for the busy host only (the wait is for coming back to it).
#[test]
fn status_429_moves_to_the_next_host_without_waiting() {
    let times: Arc<Mutex<Vec<(char, Instant)>>> = Arc::default();
    let t = times.clone();
    let busy = Backend::start(move |_| {
        t.lock().unwrap().push(('a', Instant::now()));
        Reply::json(429, r#"{"error":"busy"}"#).with_header("Retry-After", "1")
    });
    let t = times.clone();
    let good = Backend::start(move |_| {
        t.lock().unwrap().push(('b', Instant::now()));
        Reply::json(200, &good_json("from-b"))
    });
    let conf = map_on(&[&busy.url("/lookup"), &good.url("/lookup")]);
    let (payload, out) = conf.lookup("k");
    assert_eq!(payload, "OK from-b", "{out:?}");
    assert_eq!((busy.request_count(), good.request_count()), (1, 1));
    let times = times.lock().unwrap().clone();
    assert_eq!(times.iter().map(|(c, _)| *c).collect::<String>(), "ab");
    let gap = times[1].1 - times[0].1;
    assert!(
        gap < Duration::from_millis(800),
        "the second host was asked {gap:?} after the first answered 429 with Retry-After: 1; expected no wait \
         when moving to another host (whole run {:?})",
        out.elapsed
    );
}

/// A 404 is final: no other host is asked, the reply is PERM.
#[test]
fn status_404_is_final() {
    let first = Backend::fixed(Reply::json(404, r#"{"error":"no such thing"}"#));
    let second = answering("from-b");
    let conf = map_on(&[&first.url("/lookup"), &second.url("/lookup")]);
    let out = conf.socketmap(&req("k"));
    assert_wire(&out.stdout, &netstring(b"PERM unexpected HTTP status 404"));
    assert_eq!(first.request_count(), 1);
    assert_eq!(second.request_count(), 0, "a 404 must not be retried on another host");
}

/// 2xx other than the accepted status and 3xx are final too: no other host is asked.
#[test]
fn redirect_and_other_4xx_are_final() {
    for (status, expected) in [
        (302, "TEMP unexpected HTTP status 302"),
        (400, "PERM unexpected HTTP status 400"),
        (403, "PERM unexpected HTTP status 403"),
    ] {
        let first = Backend::fixed(Reply::json(status, "{}").with_header("Location", "/elsewhere"));
        let second = answering("from-b");
        let conf = map_on(&[&first.url("/lookup"), &second.url("/lookup")]);
        let out = conf.socketmap(&req("k"));
        assert_wire(&out.stdout, &netstring(expected.as_bytes()));
        assert_eq!((first.request_count(), second.request_count()), (1, 0), "status {status}");
    }
}

// ------------------------------------------------------------------ every attempt fails

/// Three hosts that hang, `timeout: 2s`, `deadline: 1500ms`: TIMEOUT, within the deadline.
#[test]
fn all_hosts_hang_timeout_within_the_deadline() {
    let hosts = [hanging(), hanging(), hanging()];
    let urls: Vec<String> = hosts.iter().map(|b| b.url("/lookup")).collect();
    let conf = map_on(&[&urls[0], &urls[1], &urls[2]]).line("timeout: 2s").line("deadline: 1500ms");
    let (payload, out) = conf.lookup("k");
    assert_starts(&payload, "TIMEOUT ");
    assert_within(&out, Duration::from_millis(1500) + MARGIN, "three hanging hosts, deadline 1500ms");
    assert!(out.elapsed >= Duration::from_millis(1400), "TIMEOUT before the deadline ran out: {out:?}");
    assert_eq!(hosts[0].request_count(), 1, "the first host is tried");
}

/// Three hosts that refuse: TEMP naming the last host tried and the connect error.
#[test]
fn all_hosts_refuse_temp_names_the_last_error() {
    let urls = [closed_url("/lookup"), closed_url("/lookup"), closed_url("/lookup")];
    let conf = map_on(&[&urls[0], &urls[1], &urls[2]]);
    let (payload, out) = conf.lookup("k");
    assert_starts(&payload, &format!("TEMP {}: cannot connect: ", host_port(&urls[2])));
    assert_within(&out, MARGIN, "three refusing hosts");
}

/// Three hosts answering 5xx: the last answer is interpreted, each host asked once.
#[test]
fn all_hosts_5xx_last_answer_is_interpreted() {
    let hosts = [
        Backend::fixed(Reply::json(500, "{}")),
        Backend::fixed(Reply::json(502, "{}")),
        Backend::fixed(Reply::json(503, "{}")),
    ];
    let conf = map_on(&[&hosts[0].url("/l"), &hosts[1].url("/l"), &hosts[2].url("/l")]);
    let out = conf.socketmap(&req("k"));
    assert_wire(&out.stdout, &netstring(b"TEMP unexpected HTTP status 503"));
    let counts: Vec<usize> = hosts.iter().map(Backend::request_count).collect();
    assert_eq!(counts, [1, 1, 1]);
}

/// `max_attempts` caps the attempts: with 2, the third host is never asked.
#[test]
fn max_attempts_caps_the_attempts() {
    let hosts = [
        Backend::fixed(Reply::json(503, "{}")),
        Backend::fixed(Reply::json(502, "{}")),
        Backend::fixed(Reply::json(200, &good_json("from-c"))),
    ];
    let conf = map_on(&[&hosts[0].url("/l"), &hosts[1].url("/l"), &hosts[2].url("/l")]).line("max_attempts: 2");
    let out = conf.socketmap(&req("k"));
    assert_wire(&out.stdout, &netstring(b"TEMP unexpected HTTP status 502"));
    let counts: Vec<usize> = hosts.iter().map(Backend::request_count).collect();
    assert_eq!(counts, [1, 1, 0]);
}

// ------------------------------------------------------------------ one host

/// One host answering 503 then 200: tried again after a short backoff, `OK`, two requests.
#[test]
fn single_host_503_then_200_is_retried() {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let b = Backend::start(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::json(503, "{}")
        } else {
            Reply::json(200, &good_json("second-time"))
        }
    });
    let conf = map_on(&[&b.url("/lookup")]);
    let out = conf.socketmap(&req("k"));
    assert_wire(&out.stdout, &netstring(b"OK second-time"));
    assert_eq!(b.request_count(), 2);
    assert_within(&out, MARGIN, "503 then 200 on one host");
}

/// One host, `max_attempts: 3`, always 503: three requests, spread by the backoff.
#[test]
fn single_host_backoff_between_attempts() {
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t = times.clone();
    let b = Backend::start(move |_| {
        t.lock().unwrap().push(Instant::now());
        Reply::json(503, "{}")
    });
    let conf = map_on(&[&b.url("/lookup")]).line("max_attempts: 3");
    let out = conf.socketmap(&req("k"));
    assert_wire(&out.stdout, &netstring(b"TEMP unexpected HTTP status 503"));
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    // Jittered backoff: 50–150 ms, then 100–300 ms (the lower bounds are what can be checked).
    let (g1, g2) = (times[1] - times[0], times[2] - times[1]);
    assert!(g1 >= Duration::from_millis(45), "first backoff {g1:?}");
    assert!(g2 >= Duration::from_millis(95), "second backoff {g2:?}");
    assert_within(&out, MARGIN, "three attempts on one host");
}

/// 429 with `Retry-After: 30` and `deadline: 2s`: the wait does not fit, so one request and a
/// TEMP answer at once.
#[test]
fn retry_after_beyond_the_deadline_answers_at_once() {
    let b = Backend::fixed(Reply::json(429, "{}").with_header("Retry-After", "30"));
    let conf = map_on(&[&b.url("/lookup")]).line("deadline: 2s");
    let out = conf.socketmap(&req("k"));
    assert_wire(&out.stdout, &netstring(b"TEMP unexpected HTTP status 429"));
    assert_eq!(b.request_count(), 1);
    // Waiting until the deadline (2 s) instead would fail this.
    assert_within(&out, Duration::from_millis(1500), "Retry-After beyond the deadline");
}

/// A short `Retry-After` that fits the deadline is honoured on the way back to the one host.
#[test]
fn retry_after_within_the_deadline_is_honoured() {
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t = times.clone();
    let b = Backend::start(move |_| {
        let mut t = t.lock().unwrap();
        t.push(Instant::now());
        if t.len() == 1 {
            Reply::json(429, "{}").with_header("Retry-After", "1")
        } else {
            Reply::json(200, &good_json("after-wait"))
        }
    });
    let conf = map_on(&[&b.url("/lookup")]).line("deadline: 5s");
    let out = conf.socketmap(&req("k"));
    assert_wire(&out.stdout, b"13:OK after-wait,");
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(950), "Retry-After: 1 not honoured: second request after {gap:?}");
    assert_within(&out, Duration::from_secs(1) + MARGIN, "Retry-After: 1");
}

/// A body trickling in past the deadline: TIMEOUT, in time.
#[test]
fn trickling_body_past_the_deadline_is_timeout() {
    let b = Backend::fixed(Reply::Trickle {
        status: 200,
        body: good_json("slow").into_bytes(),
        every: Duration::from_millis(200),
    });
    let conf = map_on(&[&b.url("/lookup")]).line("deadline: 1500ms");
    let (payload, out) = conf.lookup("k");
    assert_eq!(payload, format!("TIMEOUT no answer from {} in time", host_port(&b.url(""))));
    assert_within(&out, Duration::from_millis(1500) + MARGIN, "trickling body");
}

// ------------------------------------------------------------------ the deadline always wins

/// One host at `url` that fails, `deadline: 1s` and room for many attempts: the reply
/// starts with `prefix` and arrives before 1 s + margin.
fn deadline_wins(url: &str, prefix: &str) {
    let conf = map_on(&[url]).line("deadline: 1s").line("max_attempts: 100");
    let (payload, out) = conf.lookup("k");
    assert_starts(&payload, prefix);
    assert_within(&out, Duration::from_secs(1) + MARGIN, &format!("deadline 1s, reply {payload:?}"));
}

#[test]
fn deadline_wins_over_a_refusing_host() {
    let url = closed_url("/lookup");
    deadline_wins(&url, &format!("TEMP {}: cannot connect: ", host_port(&url)));
}

#[test]
fn deadline_wins_over_a_hanging_host() {
    let b = hanging();
    deadline_wins(&b.url("/lookup"), &format!("TIMEOUT no answer from {} in time", host_port(&b.url(""))));
}

#[test]
fn deadline_wins_over_a_trickling_host() {
    let b = Backend::fixed(Reply::Trickle {
        status: 200,
        body: good_json("slow").into_bytes(),
        every: Duration::from_millis(200),
    });
    deadline_wins(&b.url("/lookup"), "TIMEOUT ");
}

#[test]
fn deadline_wins_over_an_answer_after_the_deadline() {
    let b = Backend::start(|_| {
        thread::sleep(Duration::from_secs(3));
        Reply::json(200, &good_json("too-late"))
    });
    deadline_wins(&b.url("/lookup"), "TIMEOUT ");
}

// ------------------------------------------------------------------ policy and tcp_table

/// A policy request.
const POLICY_REQ: &[u8] = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n\
sender=a@b.example\nrecipient=r@x.example\n\n";

#[test]
fn policy_first_host_down_second_answers() {
    let b = answering("from-b");
    let conf =
        policy_on(&[&closed_url("/lookup"), &b.url("/policy")]).line(&format!("default_action: {}", q("DEFER down")));
    let out = conf.policy_run(POLICY_REQ);
    assert_wire(&out.stdout, b"action=OK from-b\n\n");
    assert_eq!(b.request_count(), 1);
}

#[test]
fn policy_all_hosts_down_gives_the_default_action() {
    let hung = hanging();
    let conf = policy_on(&[&closed_url("/lookup"), &hung.url("/policy")])
        .line("timeout: 500ms")
        .line(&format!("default_action: {}", q("DEFER_IF_PERMIT all backends down")));
    let out = conf.policy_run(POLICY_REQ);
    assert_wire(&out.stdout, b"action=DEFER_IF_PERMIT all backends down\n\n");
    assert_within(&out, Duration::from_millis(500) + MARGIN, "policy, all hosts down");
}

#[test]
fn tcp_first_host_down_second_answers() {
    let b = answering("from-b");
    let conf = map_on(&[&closed_url("/lookup"), &b.url("/lookup")]);
    let out = conf.tcp(b"get user%40example.org\n");
    assert_wire(&out.stdout, b"200 from-b\n");
    assert_eq!(b.request_count(), 1);
}

#[test]
fn tcp_all_hosts_down_is_400() {
    let bad = Backend::fixed(Reply::json(503, "{}"));
    let conf = map_on(&[&closed_url("/lookup"), &bad.url("/lookup")]);
    let out = conf.tcp(b"get k\n");
    let line = out.stdout_str();
    assert!(line.starts_with("400 ") && line.ends_with('\n') && line.lines().count() == 1, "tcp reply: {line:?}");
    assert_eq!(bad.request_count(), 1);
}

// ------------------------------------------------------------------ shared host health

/// Process 1 pays for a refusing host A; process 2, started right after, skips A (one attempt,
/// to B); `state check` lists A as down.
#[test]
fn second_process_skips_a_refused_host() {
    let a = closed_url("/lookup");
    let b = answering("from-b");
    let sink = SyslogSink::new();
    let conf = map_on(&[&a, &b.url("/lookup")]).syslog(&sink, "");
    let (first, out1) = conf.lookup("k1");
    assert_eq!(first, "OK from-b");
    let (second, out2) = conf.lookup("k2");
    assert_eq!(second, "OK from-b");
    eprintln!("timing: A refuses: first process {:?}, second process {:?}", out1.elapsed, out2.elapsed);
    let lines = request_lines(&sink, 2);
    let b_host = host_port(&b.url(""));
    assert!(lines[0].contains(&format!("host={b_host} attempts=2")), "first process: {:?}", lines[0]);
    assert!(lines[1].contains(&format!("host={b_host} attempts=1")), "second process must skip A: {:?}", lines[1]);
    assert_eq!(b.request_count(), 2);
    let check = conf.state_check();
    assert_eq!(check.code(), Some(0), "{check:?}");
    let down = down_line(&check, &origin(&a)).unwrap_or_else(|| panic!("A not listed as down: {check:?}"));
    assert!(down.contains("(1 failure(s) in a row, last: cannot connect"), "{down}");
}

/// Process 1 pays for a hanging host A (one connection); process 2 makes no attempt to A; after
/// the 5 s backoff process 3 tries A again and, A answering now, the mark is cleared (a new
/// failure counts from 1 again).
#[test]
fn hanging_host_is_skipped_by_the_next_process_until_the_backoff_passed() {
    let up = Arc::new(AtomicBool::new(false));
    let a = switchable("from-a", up.clone());
    let b = answering("from-b");
    let conf = map_on(&[&a.url("/lookup"), &b.url("/lookup")]).line("timeout: 500ms");

    let (first, out1) = conf.lookup("k1");
    let marked_at = Instant::now();
    assert_eq!(first, "OK from-b");
    assert!(out1.elapsed >= Duration::from_millis(500), "the first process pays A's timeout: {out1:?}");
    assert_eq!((a.connections(), a.request_count()), (1, 1), "the first process tries A once");

    let (second, out2) = conf.lookup("k2");
    assert_eq!(second, "OK from-b");
    eprintln!("timing: A hangs (timeout 500ms): first process {:?}, second process {:?}", out1.elapsed, out2.elapsed);
    assert_eq!((a.connections(), a.request_count()), (1, 1), "the second process must not try A");
    assert_eq!(b.request_count(), 2);
    assert_within(&out2, MARGIN, "the second process skips A");

    let check = conf.state_check();
    assert_eq!(check.code(), Some(0), "{check:?}");
    let down = down_line(&check, &origin(&a.url(""))).unwrap_or_else(|| panic!("A not listed: {check:?}"));
    assert!(down.contains("(1 failure(s) in a row, last: "), "{down}");
    let secs: u64 = down.split(" for ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!((1..=5).contains(&secs), "down for {secs} s more: {down}");
    assert!(down_line(&check, &origin(&b.url(""))).is_none(), "B is healthy: {check:?}");

    // After the backoff, A is tried again, answers, and its mark goes.
    let backoff_over = marked_at + Duration::from_millis(5500);
    thread::sleep(backoff_over.saturating_duration_since(Instant::now()));
    up.store(true, Ordering::SeqCst);
    let (third, out3) = conf.lookup("k3");
    assert_eq!(third, "OK from-a", "after the backoff A is first again: {out3:?}");
    assert_eq!(a.request_count(), 2);
    assert_eq!(b.request_count(), 2, "A answered: B not asked");
    let check = conf.state_check();
    assert_eq!(check.code(), Some(0), "{check:?}");
    assert!(check.stdout_str().contains("no host is marked down"), "{check:?}");

    // A fails once more: counted as its first failure in a row, so the mark was really cleared.
    up.store(false, Ordering::SeqCst);
    let (fourth, _) = conf.lookup("k4");
    assert_eq!(fourth, "OK from-b");
    let check = conf.state_check();
    let down = down_line(&check, &origin(&a.url(""))).unwrap_or_else(|| panic!("A not listed: {check:?}"));
    assert!(down.contains("(1 failure(s) in a row, "), "A's earlier failure must have been cleared: {down}");
}

/// With `state_db: ':memory:'` each process keeps its own health: the second process tries the
/// hanging host again.
#[test]
fn memory_state_is_per_process() {
    let a = hanging();
    let b = answering("from-b");
    let conf = map_on(&[&a.url("/lookup"), &b.url("/lookup")]).line("timeout: 500ms").state_db(":memory:");
    let (first, out1) = conf.lookup("k1");
    let (second, out2) = conf.lookup("k2");
    assert_eq!((first.as_str(), second.as_str()), ("OK from-b", "OK from-b"));
    assert_eq!(a.request_count(), 2, "each process tries A");
    assert!(out2.elapsed >= Duration::from_millis(500), "the second process pays A's timeout too: {out2:?}");
    eprintln!("timing: :memory: state: first process {:?}, second process {:?}", out1.elapsed, out2.elapsed);
    // Within one process the mark holds: the second lookup skips A.
    let out = conf.socketmap(&[req("k3"), req("k4")].concat());
    assert_wire(&out.stdout, &[netstring(b"OK from-b"), netstring(b"OK from-b")].concat());
    assert_eq!(a.request_count(), 3, "one process tries A once, then skips it");
}

/// Hosts that are all marked down are tried anyway, in config order; the one that answers has
/// its mark cleared, the other keeps it.
#[test]
fn all_marked_hosts_are_tried_anyway_in_order() {
    let up = Arc::new(AtomicBool::new(false));
    let mk = |value: &str| {
        let up = up.clone();
        let body = good_json(value);
        Backend::start(
            move |_| if up.load(Ordering::SeqCst) { Reply::json(200, &body) } else { Reply::json(503, "{}") },
        )
    };
    let (a, b) = (mk("from-a"), mk("from-b"));
    let conf = map_on(&[&a.url("/lookup"), &b.url("/lookup")]);
    let out = conf.socketmap(&req("k1"));
    assert_wire(&out.stdout, &netstring(b"TEMP unexpected HTTP status 503"));
    let check = conf.state_check();
    assert!(down_line(&check, &origin(&a.url(""))).is_some(), "{check:?}");
    assert!(down_line(&check, &origin(&b.url(""))).is_some(), "{check:?}");

    up.store(true, Ordering::SeqCst);
    let out = conf.socketmap(&req("k2"));
    assert_wire(&out.stdout, &netstring(b"OK from-a"));
    assert_eq!((a.request_count(), b.request_count()), (2, 1));
    let check = conf.state_check();
    assert!(down_line(&check, &origin(&a.url(""))).is_none(), "A answered, its mark goes: {check:?}");
    assert!(down_line(&check, &origin(&b.url(""))).is_some(), "B was not tried, its mark stays: {check:?}");
}

/// A 429 means "busy", a 404 is the request's fault: neither marks the host down; a 503 does.
#[test]
fn only_real_failures_mark_a_host_down() {
    for (status, marks) in [(429, false), (404, false), (503, true)] {
        let a = Backend::fixed(Reply::json(status, "{}"));
        let b = answering("from-b");
        let conf = map_on(&[&a.url("/lookup"), &b.url("/lookup")]);
        conf.lookup("k");
        let check = conf.state_check();
        assert_eq!(check.code(), Some(0), "{check:?}");
        assert_eq!(down_line(&check, &origin(&a.url(""))).is_some(), marks, "status {status}: {check:?}");
    }
}

// ------------------------------------------------------------------ balance

/// `balance: random` spreads first attempts over healthy hosts.
#[test]
fn random_balance_spreads_first_attempts() {
    let (a, b) = (answering("a"), answering("b"));
    let conf = map_on(&[&a.url("/lookup"), &b.url("/lookup")]).line("balance: random");
    let keys: Vec<u8> = (0..100).flat_map(|i| req(&format!("k{i}"))).collect();
    let out = conf.socketmap(&keys);
    let (on_a, on_b) = (a.request_count(), b.request_count());
    assert_eq!(on_a + on_b, 100, "one attempt per lookup: {out:?}");
    assert!(on_a >= 25 && on_b >= 25, "first attempts: {on_a} on A, {on_b} on B");
}

/// `balance: random` across processes (each process shuffles with a seed of its own): 60
/// single-lookup processes, each host gets at least 25 % of the first attempts.
#[test]
fn random_balance_spreads_across_processes() {
    let (a, b) = (answering("a"), answering("b"));
    let conf = map_on(&[&a.url("/lookup"), &b.url("/lookup")]).line("balance: random");
    for i in 0..60 {
        conf.lookup(&format!("k{i}"));
    }
    let (on_a, on_b) = (a.request_count(), b.request_count());
    assert_eq!(on_a + on_b, 60);
    assert!(on_a >= 15 && on_b >= 15, "first attempts: {on_a} on A, {on_b} on B");
}

/// `balance: failover` (the default) always starts with the first host.
#[test]
fn failover_balance_starts_with_the_first_host() {
    let (a, b) = (answering("a"), answering("b"));
    let conf = map_on(&[&a.url("/lookup"), &b.url("/lookup")]);
    let keys: Vec<u8> = (0..20).flat_map(|i| req(&format!("k{i}"))).collect();
    conf.socketmap(&keys);
    assert_eq!((a.request_count(), b.request_count()), (20, 0));
}

// ------------------------------------------------------------------ logging

/// The request line names the host that answered and the number of attempts.
#[test]
fn request_log_names_the_host_and_the_attempts() {
    let a = closed_url("/lookup");
    let b = answering("from-b");
    let sink = SyslogSink::new();
    let conf = map_on(&[&a, &b.url("/lookup")]).syslog(&sink, "").state_db(":memory:");
    let (payload, _) = conf.lookup("user@example.org");
    assert_eq!(payload, "OK from-b");
    let lines = request_lines(&sink, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&format!("host={} attempts=2", host_port(&b.url("")))), "{}", lines[0]);
}

/// At `level: debug` there is one line per attempt, naming its host.
#[test]
fn debug_log_has_one_line_per_attempt() {
    let a = closed_url("/lookup");
    let b = answering("from-b");
    let sink = SyslogSink::new();
    let conf = map_on(&[&a, &b.url("/lookup")]).syslog(&sink, ", level: debug").state_db(":memory:");
    conf.lookup("k");
    request_lines(&sink, 1);
    let debug: Vec<String> = sink.lines().into_iter().filter(|l| severity(l) == Some(7)).collect();
    let about = |hp: &str| debug.iter().filter(|l| l.contains(hp)).count();
    assert_eq!(about(&host_port(&a)), 1, "one debug line for the attempt to A: {debug:?}");
    assert_eq!(about(&host_port(&b.url(""))), 1, "one debug line for the attempt to B: {debug:?}");
}
