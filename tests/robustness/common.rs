//! What the robustness tests share: the three protocols, a config written per test, the
//! backend fault matrix (each fault with the answer it must give on the target path and on the
//! token path), and running a matrix with one pfxhttp process per row.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::http::ResetServer;
use crate::support::peak::Measured;
use crate::support::*;

/// Upper bound for one run, and for one reply.
pub(crate) const T: Duration = Duration::from_secs(15);
/// What a busy two-core machine may add to a time limit.
pub(crate) const MARGIN: Duration = Duration::from_millis(2000);
/// The policy entry's default action.
pub(crate) const DEFAULT_ACTION: &str = "DEFER_IF_PERMIT robust test default";
/// The entries' `max_response_bytes`.
pub(crate) const MAX_RESPONSE: usize = 200_000;
/// The largest token endpoint answer pfxhttp reads.
pub(crate) const MAX_TOKEN_RESPONSE: usize = 65_536;
/// In every secret of the secrets test (and in the tokens the fault backend hands out), and
/// nowhere else.
pub(crate) const MARK: &str = "5ecret";

// ------------------------------------------------------------------ protocols

/// The three served protocols, all on the entry `demo` (map) or `pol` (policy service).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Socketmap,
    Tcp,
    Policy,
}

impl Proto {
    pub(crate) const ALL: [Proto; 3] = [Proto::Socketmap, Proto::Tcp, Proto::Policy];

    /// The serving command's arguments.
    pub(crate) fn args(self) -> &'static [&'static str] {
        match self {
            Proto::Socketmap => &["socketmap"],
            Proto::Tcp => &["tcp", "demo"],
            Proto::Policy => &["policy"],
        }
    }

    /// A request for `key` (the policy request's recipient); `key` needs no tcp quoting.
    pub(crate) fn request(self, key: &str) -> Vec<u8> {
        match self {
            Proto::Socketmap => netstring(format!("demo {key}").as_bytes()),
            Proto::Tcp => format!("get {key}\n").into_bytes(),
            Proto::Policy => format!("request=smtpd_access_policy\nrecipient={key}\n\n").into_bytes(),
        }
    }

    /// One reply, read raw.
    pub(crate) fn read_reply(self, child: &mut Child, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        match self {
            Proto::Socketmap => child.try_read_netstring(timeout),
            Proto::Tcp => child.try_read_until(b"\n", timeout),
            Proto::Policy => child.try_read_until(b"\n\n", timeout),
        }
    }

    /// The exact bytes this protocol sends for `expect`.
    pub(crate) fn wire(self, expect: &Expect) -> Vec<u8> {
        match (self, expect) {
            (Proto::Socketmap, Expect::Value(v)) => netstring(format!("OK {v}").as_bytes()),
            (Proto::Socketmap, Expect::NotFound) => netstring(b"NOTFOUND "),
            (Proto::Socketmap, Expect::Fail(word, reason)) => netstring(format!("{word} {reason}").as_bytes()),
            (Proto::Socketmap, Expect::TooLong(n)) => netstring(format!("PERM value too long ({n} bytes)").as_bytes()),
            (Proto::Tcp, Expect::Value(v)) => {
                assert!(v.bytes().all(|b| b.is_ascii_graphic() && b != b'%'), "{v:?} needs quoting");
                format!("200 {v}\n").into_bytes()
            }
            (Proto::Tcp, Expect::NotFound) => b"500 not found\n".to_vec(),
            (Proto::Tcp, Expect::Fail(_, reason)) => format!("400 {reason}\n").into_bytes(),
            (Proto::Tcp, Expect::TooLong(n)) => format!("400 value too long ({n} bytes encoded)\n").into_bytes(),
            (Proto::Policy, Expect::Value(v)) => format!("action={v}\n\n").into_bytes(),
            (Proto::Policy, Expect::NotFound) => b"action=DUNNO\n\n".to_vec(),
            (Proto::Policy, Expect::Fail(..)) => format!("action={DEFAULT_ACTION}\n\n").into_bytes(),
            // The action is capped at 2000 bytes (Postfix reads lines of up to 2048).
            (Proto::Policy, Expect::TooLong(_)) => format!("action={}\n\n", "x".repeat(2000)).into_bytes(),
        }
    }
}

/// What the backend's answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// It gave this value (as sent, once control characters are removed).
    Value(&'static str),
    /// It said "no value".
    NotFound,
    /// A failure: the socketmap word (`TEMP`, `TIMEOUT`, `PERM`) and the reason every protocol
    /// but policy shows.
    Fail(&'static str, String),
    /// A value of this many `x`, longer than a socketmap or tcp_table reply may be.
    TooLong(usize),
}

// ------------------------------------------------------------------ config

/// An entry's `timeout` (per attempt) and `deadline` (per request).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) timeout: Duration,
    pub(crate) deadline: Duration,
}

/// For the fault rows that fail by making pfxhttp wait (hang, trickle), on one host: the
/// deadline cuts the second attempt short, so the reply must come right at the deadline.
pub(crate) const TIGHT: Timing = Timing { timeout: Duration::from_millis(1000), deadline: Duration::from_millis(1500) };

/// For everything else: generous, so that no answer depends on how busy the machine is (an
/// answer that comes at once is not made any slower by it).
pub(crate) const RELAXED: Timing = Timing { timeout: Duration::from_secs(5), deadline: Duration::from_secs(8) };

/// A config with the map `demo` and the policy service `pol` on the same target(s), logging to
/// a sink of its own, with a state database in its own temp dir.
pub(crate) struct Setup {
    conf: Config,
    pub(crate) sink: SyslogSink,
    hosts: usize,
    timing: Timing,
}

impl Setup {
    pub(crate) fn new(target: &str) -> Setup {
        Setup::hosts(&[target])
    }

    /// Several hosts: `target` is a list.
    pub(crate) fn hosts(targets: &[&str]) -> Setup {
        let sink = SyslogSink::new();
        let conf = Config::new().syslog(&sink, ", level: info");
        let conf = conf.entry("socket_maps", "demo").set("payload", &q(r#"{"key":"{{ key }}"}"#));
        let conf = conf.entry("policy_services", "pol").set("default_action", &q(DEFAULT_ACTION));
        let target = match targets {
            [one] => q(one),
            all => format!("[{}]", all.iter().map(|t| q(t)).collect::<Vec<_>>().join(", ")),
        };
        let conf = conf.set_all("target", &target).set_all("value_field", "data.result");
        let setup = Setup {
            conf: conf.set_all("max_response_bytes", &MAX_RESPONSE.to_string()),
            sink,
            hosts: targets.len(),
            timing: RELAXED,
        };
        setup.timing(RELAXED)
    }

    /// `server.logging.level`.
    pub(crate) fn level(mut self, level: &'static str) -> Setup {
        self.conf = self.conf.syslog(&self.sink, &format!(", level: {level}"));
        self
    }

    /// The entries' `timeout` and `deadline` ([`RELAXED`] unless set).
    pub(crate) fn timing(mut self, timing: Timing) -> Setup {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        self.conf = self.conf.set_all("timeout", &ms(timing.timeout)).set_all("deadline", &ms(timing.deadline));
        self.timing = timing;
        self
    }

    /// `slow` for a row that fails by making pfxhttp wait ([`Fault::slow`]), else [`RELAXED`].
    pub(crate) fn timing_for(self, row: &Fault, slow: Timing) -> Setup {
        self.timing(if row.slow { slow } else { RELAXED })
    }

    /// A line in `server:`, e.g. `limits: { idle_timeout: 1s }`.
    pub(crate) fn server(mut self, line: &str) -> Setup {
        self.conf = self.conf.server(line);
        self
    }

    /// A line in both entries, e.g. `http_auth_basic: 'u:p'`.
    pub(crate) fn entry(mut self, line: &str) -> Setup {
        let (key, yaml) = line.split_once(':').unwrap_or_else(|| panic!("not a `key: value` line: {line:?}"));
        self.conf = self.conf.set_all(key.trim(), yaml.trim());
        self
    }

    /// The entries' deadline.
    pub(crate) fn deadline(&self) -> Duration {
        self.timing.deadline
    }

    /// The least time a TIMEOUT can take: the deadline, or every attempt's full timeout when
    /// they all fit into it (the default number of attempts: the hosts, at least 2).
    pub(crate) fn least_timeout(&self) -> Duration {
        let attempts = self.hosts.max(2) as u32;
        self.timing.deadline.min(self.timing.timeout * attempts)
    }

    /// Writes the file and returns its path.
    pub(crate) fn path(&self) -> String {
        self.conf.arg()
    }

    /// `pfxhttp --config FILE ARGS...`, interactive.
    pub(crate) fn child(&self, proto: Proto) -> Child {
        self.conf.spawn(proto.args())
    }

    /// The same under the peak-RSS parent.
    pub(crate) fn measured(&self, proto: Proto) -> Measured {
        let path = self.path();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(proto.args());
        Measured::spawn(&args)
    }

    /// The messages (the text after `pfxhttp[PID]: `) of every line the sink got. Call it once
    /// the processes have exited: then every line they sent is in.
    pub(crate) fn logs(&self) -> Vec<String> {
        self.sink.settle(Duration::from_secs(5)).iter().map(|l| message(l).to_string()).collect()
    }

    /// The bytes of the state database's files (database, WAL, shared memory), for a search.
    pub(crate) fn state_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.conf.dir()).expect("read the temp dir").flatten() {
            if entry.file_name().to_string_lossy().starts_with("state.db") {
                all.extend(std::fs::read(entry.path()).unwrap_or_default());
            }
        }
        all
    }
}

/// The message of a syslog datagram: what follows `]: ` (the whole line if there is none).
pub(crate) fn message(line: &str) -> &str {
    line.split_once("]: ").map_or(line, |(_, m)| m)
}

/// Checks that `logs` are exactly one line per entry of `expected`, each containing its
/// fragments.
#[track_caller]
pub(crate) fn assert_logs(what: &str, logs: &[String], expected: &[&[&str]]) {
    assert_eq!(logs.len(), expected.len(), "{what}: expected {} log line(s), got {logs:#?}", expected.len());
    for (line, fragments) in logs.iter().zip(expected) {
        for f in *fragments {
            assert!(line.contains(f), "{what}: log line {line:?} lacks {f:?}");
        }
    }
}

/// A backend answering `{"data":{"result":"v-<key>"}}` with the key's non-alphanumerics as `_`
/// (the policy request's key is its recipient).
pub(crate) fn echo_backend() -> Backend {
    Backend::start(|r| {
        let body = r.body_json();
        let key = body["key"].as_str().or(body["recipient"].as_str()).unwrap_or("").to_string();
        Reply::json(200, &json!({"data": {"result": echo_value(&key)}}).to_string())
    })
}

pub(crate) fn echo_value(key: &str) -> String {
    format!("v-{}", key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>())
}

/// The keys (or recipients) the backend was asked for, in order.
pub(crate) fn asked(b: &Backend) -> Vec<String> {
    b.requests()
        .iter()
        .map(|r| {
            let body = r.body_json();
            body["key"].as_str().or(body["recipient"].as_str()).unwrap_or("?").to_string()
        })
        .collect()
}

// ------------------------------------------------------------------ the fault matrix

/// Where a fault row points.
enum Where {
    /// `/fault/NAME` on the scripted backend.
    Backend,
    /// A port where nothing listens.
    Refused,
    /// The [`ResetServer`].
    Reset,
}

/// One row of the fault matrix.
pub(crate) struct Fault {
    pub(crate) name: &'static str,
    pub(crate) url: String,
    /// The answer when the row is the lookup's target (one host).
    pub(crate) expect: Expect,
    /// Requests one lookup makes at the row's URL, when that is certain (one host).
    pub(crate) requests: Option<usize>,
    /// Whether the lookup moves on to the next host (or tries again) after it.
    pub(crate) retry: bool,
    /// Whether it fails by making pfxhttp wait for its timeout (see [`Setup::timing_for`]).
    pub(crate) slow: bool,
    /// The answer when the row is the token endpoint of `jwt_auth` or `backend_oidc_auth` and
    /// the target is `/target` on the scripted backend.
    pub(crate) token: Expect,
}

/// The backends of the fault matrix: the rows for the target path ([`Faults::rows`]) and those
/// for the token path ([`Faults::token_rows`]: the same faults, and a few token answers).
pub(crate) struct Faults {
    backend: Backend,
    _reset: ResetServer,
    pub(crate) rows: Vec<Fault>,
    pub(crate) token_rows: Vec<Fault>,
}

/// A body whose value would be wrong to use: a REJECT, for a policy service.
const WRONG: &str = r#"{"data":{"result":"REJECT must not be used"}}"#;

/// The scripted backend's answer to `/fault/NAME`.
fn fault_reply(name: &str) -> Reply {
    let status_of = |s: &str| s.parse::<u16>().ok();
    match name {
        "ok" => Reply::json(200, r#"{"data":{"result":"v-ok"}}"#),
        "none" => Reply::json(200, r#"{"data":{"result":null}}"#),
        "hang" => Reply::Hang(Duration::from_secs(30)),
        "trickle" => Reply::Trickle { status: 200, body: WRONG.as_bytes().to_vec(), every: Duration::from_millis(300) },
        "html-502" => Reply::status(502, "<html><head><title>502 Bad Gateway</title></head><body>REJECT</body></html>")
            .with_header("Content-Type", "text/html"),
        "not-json" => Reply::text(200, "REJECT this is not JSON"),
        "empty" => Reply::json(200, ""),
        "wrong-shape" => Reply::json(200, r#"{"data":"REJECT wrong shape"}"#),
        "too-large" => Reply::json(
            200,
            &json!({"data": {"result": "REJECT too large"}, "pad": "x".repeat(MAX_RESPONSE)}).to_string(),
        ),
        "cut" => Reply::Respond {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Content-Length".into(), "1000".into()),
                ("Connection".into(), "close".into()),
            ],
            body: WRONG.as_bytes().to_vec(),
        },
        "control" => Reply::json(200, r#"{"data":{"result":"a\r\nb\u0000c\u0007d"}}"#),
        "too-long" => Reply::json(200, &json!({"data": {"result": "x".repeat(100_000)}}).to_string()),
        "204" => Reply::status(204, ""),
        // Token endpoint answers.
        "token" => Reply::json(200, &json!({"token": format!("AccessTok-{MARK}-row"), "expires_in": 3600}).to_string()),
        "tok-expired" => Reply::json(
            200,
            &json!({"access_token": format!("AccessTok-{MARK}-expired"), "refresh_token": format!("RefreshTok-{MARK}-x"),
                    "expires_at": 1})
            .to_string(),
        ),
        "tok-not-text" => Reply::json(
            200,
            &json!({"access_token": {"value": format!("AccessTok-{MARK}-nested")}, "token": 42}).to_string(),
        ),
        "tok-empty" => {
            Reply::json(200, &json!({"access_token": "", "refresh_token": format!("RefreshTok-{MARK}-orphan")}).to_string())
        }
        s if s.starts_with('3') => Reply::json(status_of(s).unwrap_or(300), WRONG).with_header("Location", "/followed"),
        s => match status_of(s) {
            Some(code) => Reply::json(code, WRONG),
            None => Reply::status(400, format!("no such fault row {s}")),
        },
    }
}

/// A row of the table in [`Faults::new`].
type Row<'a> = (&'static str, Where, Expect, Option<usize>, bool, &'a str);

/// What the token path says for an answer without a usable token.
const NO_TOKEN: &str = "the answer has no access_token or token";

impl Faults {
    /// The rows; `extra` answers any path outside `/fault/` and `/target` (token endpoints).
    pub(crate) fn new(extra: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Faults {
        let backend = Backend::start(move |r| match r.path().strip_prefix("/fault/") {
            Some(name) => fault_reply(name),
            None if r.path() == "/target" => {
                if r.header("authorization").is_some_and(|a| a.starts_with("Bearer AccessTok-")) {
                    Reply::json(200, r#"{"data":{"result":"v-target"}}"#)
                } else {
                    Reply::json(401, r#"{"error":"no token"}"#)
                }
            }
            None => extra(r),
        });
        let reset = ResetServer::start(200, WRONG.as_bytes(), 1000, Duration::from_millis(300));
        let refused = closed_url("").trim_start_matches("http://").to_string();
        let host = backend.addr().to_string();
        let reset_host = reset.url("").trim_start_matches("http://").to_string();
        let temp = |r: String| Expect::Fail("TEMP", r);
        let status = |code: u16| {
            let word = if (400..500).contains(&code) && code != 429 { "PERM" } else { "TEMP" };
            Expect::Fail(word, format!("unexpected HTTP status {code}"))
        };
        let refused_why = "cannot connect: Connection refused (os error 111)";
        let reset_why = "reading the answer failed: Connection reset by peer (os error 104)";
        let cut_why = "reading the answer failed: end of file before message length reached";
        let too_large = format!("answer larger than {MAX_TOKEN_RESPONSE} bytes");
        #[rustfmt::skip]
        let table: Vec<Row<'_>> = vec![
            // name, where, target path answer, requests, moves on, token path reason
            ("ok", Where::Backend, Expect::Value("v-ok"), Some(1), false, NO_TOKEN),
            ("none", Where::Backend, Expect::NotFound, Some(1), false, NO_TOKEN),
            ("refused", Where::Refused, temp(format!("{refused}: {refused_why}")), None, true, refused_why),
            ("hang", Where::Backend, Expect::Fail("TIMEOUT", format!("no answer from {host} in time")), None, true, "no answer in time"),
            ("reset", Where::Reset, temp(format!("invalid backend response from {reset_host}: {reset_why}")), None, false, reset_why),
            ("cut", Where::Backend, temp(format!("invalid backend response from {host}: {cut_why}")), Some(1), false, cut_why),
            ("trickle", Where::Backend, Expect::Fail("TIMEOUT", format!("no answer from {host} in time")), None, true, "no answer in time"),
            ("html-502", Where::Backend, status(502), Some(2), true, "HTTP 502"),
            ("not-json", Where::Backend, temp("invalid backend response: not JSON (syntax error)".into()), Some(1), false, "the answer is not JSON"),
            ("empty", Where::Backend, temp("invalid backend response: empty body".into()), Some(1), false, "the answer is not JSON"),
            ("wrong-shape", Where::Backend, temp(r#"invalid backend response: expected an object at "result", found a string"#.into()), Some(1), false, NO_TOKEN),
            ("too-large", Where::Backend, temp(format!("invalid backend response from {host}: answer larger than {MAX_RESPONSE} bytes")), Some(1), false, &too_large),
            ("204", Where::Backend, status(204), Some(1), false, "the answer is not JSON"),
            ("301", Where::Backend, status(301), Some(1), false, "HTTP 301"),
            ("302", Where::Backend, status(302), Some(1), false, "HTTP 302"),
            ("401", Where::Backend, status(401), Some(1), false, "HTTP 401"),
            ("403", Where::Backend, status(403), Some(1), false, "HTTP 403"),
            ("404", Where::Backend, status(404), Some(1), false, "HTTP 404"),
            ("429", Where::Backend, status(429), Some(2), true, "HTTP 429"),
            ("500", Where::Backend, status(500), Some(2), true, "HTTP 500"),
            ("503", Where::Backend, status(503), Some(2), true, "HTTP 503"),
            ("control", Where::Backend, Expect::Value("abcd"), Some(1), false, NO_TOKEN),
            // 100 000 bytes of value: more than a token endpoint answer may have.
            ("too-long", Where::Backend, Expect::TooLong(100_000), Some(1), false, &too_large),
        ];
        let url = |name: &str, place: &Where| match place {
            Where::Backend => backend.url(&format!("/fault/{name}")),
            Where::Refused => format!("http://{refused}/fault/{name}"),
            Where::Reset => reset.url(&format!("/fault/{name}")),
        };
        let host_of = |url: &str| url.trim_start_matches("http://").split('/').next().unwrap_or("").to_string();
        let token_fail = |host: &str, why: &str| temp(format!("token endpoint {host}: {why}"));
        let mut rows = Vec::new();
        let mut token_rows = Vec::new();
        for (name, place, expect, requests, retry, token_why) in table {
            let url = url(name, &place);
            let host = host_of(&url);
            let token = token_fail(&host, token_why);
            let slow = matches!(name, "hang" | "trickle");
            rows.push(Fault { name, url: url.clone(), expect, requests, retry, slow, token: token.clone() });
            let token_requests = matches!(place, Where::Backend).then_some(1);
            token_rows.push(Fault { name, url, expect: token.clone(), requests: token_requests, retry, slow, token });
        }
        for (name, token) in [
            ("token", Expect::Value("v-target")),
            ("tok-expired", token_fail(&host, "the token is already expired")),
            ("tok-not-text", token_fail(&host, NO_TOKEN)),
            ("tok-empty", token_fail(&host, NO_TOKEN)),
        ] {
            let url = backend.url(&format!("/fault/{name}"));
            let f = Fault { name, url, expect: token.clone(), requests: Some(1), retry: false, slow: false, token };
            token_rows.push(f);
        }
        Faults { backend, _reset: reset, rows, token_rows }
    }

    /// `http://127.0.0.1:PORT` of the scripted backend, which serves `extra` too.
    pub(crate) fn base(&self) -> String {
        self.backend.url("")
    }

    /// The target for the token path rows: answers `v-target` to a bearer token, else 401.
    pub(crate) fn target(&self) -> String {
        self.backend.url("/target")
    }

    /// Requests the scripted backend got at `path`.
    pub(crate) fn requests_at(&self, path: &str) -> usize {
        self.backend.requests().iter().filter(|r| r.path() == path).count()
    }

    /// Requests the scripted backend got for row `name`.
    pub(crate) fn requests(&self, name: &str) -> usize {
        self.requests_at(&format!("/fault/{name}"))
    }

    /// Every request the scripted backend got.
    pub(crate) fn recorded(&self) -> Vec<Recorded> {
        self.backend.requests()
    }
}

/// What one row of a matrix run gave.
pub(crate) struct Ran {
    pub(crate) name: &'static str,
    pub(crate) reply: Vec<u8>,
    /// From writing the request (right after the start) to the last byte of the reply.
    pub(crate) elapsed: Duration,
    pub(crate) out: Output,
    pub(crate) logs: Vec<String>,
    /// The state database's bytes after the run.
    pub(crate) state: Vec<u8>,
    /// The setup's deadline, and the least time a TIMEOUT takes with it.
    pub(crate) deadline: Duration,
    pub(crate) least_timeout: Duration,
}

/// Runs every row of `rows` for `proto`, in parallel, one pfxhttp process per row with a setup
/// made by `setup(row)`: one request each, sent as soon as the process is started (as spawn(8)
/// does), and timed from there to the last byte of the reply. Checks the spawn rules for each
/// process (exit 0, nothing on stderr, no stray bytes after the reply).
pub(crate) fn run_matrix(proto: Proto, rows: &[Fault], setup: &(dyn Fn(&Fault) -> Setup + Sync)) -> Vec<Ran> {
    thread::scope(|s| {
        let handles: Vec<_> = rows
            .iter()
            .map(|row| {
                s.spawn(move || {
                    let setup = setup(row);
                    let mut child = setup.child(proto);
                    let started = Instant::now();
                    child.send(&proto.request("user@example.org"));
                    let reply = proto.read_reply(&mut child, T);
                    let elapsed = started.elapsed();
                    let out = child.finish(T);
                    let reply = reply.unwrap_or_else(|e| panic!("{proto:?} {}: no reply: {e}; {out:?}", row.name));
                    assert_clean(&out);
                    assert!(out.stdout.is_empty(), "{proto:?} {}: more after the reply: {out:?}", row.name);
                    Ran {
                        name: row.name,
                        reply,
                        elapsed,
                        out,
                        logs: setup.logs(),
                        state: setup.state_bytes(),
                        deadline: setup.deadline(),
                        least_timeout: setup.least_timeout(),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

// ------------------------------------------------------------------ a gate

/// Holds a backend handler until the test opens it (bounded by a timeout): an order of events
/// without guessing a time.
#[derive(Default)]
pub(crate) struct Gate {
    open: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Gate {
    pub(crate) fn open(&self) {
        *self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    /// Waits until the gate is open or `timeout` passed; whether it opened.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let guard = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |open| !*open)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard
    }
}
