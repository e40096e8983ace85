//! The shared state database (`server.state_db`): `pfxhttp state init|check`, and serving
//! processes that carry on with per-process state when the database cannot be used
//! (`docs/design.md#state-database`).
//!
//! Fault cases all use the same lookup: host A refuses, host B answers, so the database would be
//! needed. Each checks that the lookup is still answered from B, that exactly one error line
//! about the database (with its path and a fix) reaches syslog, and the spawn(8) rules. Tests
//! that need another user run pfxhttp as `nobody` (uid 65534); they need root, and are
//! `#[ignore = "needs root"]` so that they run only when asked for (`--include-ignored`).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::failover::{RUN, Serve, answering, down_line, host_port, map_on, origin, req, request_lines, severity};
use crate::support::*;

/// uid and gid of `nobody`.
const NOBODY: u32 = 65534;

// ------------------------------------------------------------------ helpers

/// Whether the tests run as root (`id -u` says 0).
pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Fails at once, saying why, when the tests do not run as root. For the tests marked
/// `#[ignore = "needs root"]`: they run only when asked for (`--include-ignored`, as CI does).
#[track_caller]
pub(crate) fn assert_root() {
    assert!(is_root(), "this test needs root: run the tests as root, or without --include-ignored");
}

/// `pfxhttp --config F state ARGS...`.
fn state(conf: &Config, args: &[&str]) -> Output {
    conf.run_command(&[&["state"], args].concat(), b"", RUN)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).mode() & 0o7777
}

fn uid(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).uid()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// `path` with `suffix` appended (`-wal`, `-shm`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// The database file's header, read directly: (is SQLite, WAL mode, user_version).
fn header_facts(path: &Path) -> (bool, bool, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= 100, "{} is only {} bytes", path.display(), bytes.len());
    let sqlite = bytes.starts_with(b"SQLite format 3\0");
    // Bytes 18 and 19: file format write/read version, 2 = WAL.
    let wal = bytes[18] == 2 && bytes[19] == 2;
    let user_version = u32::from_be_bytes(bytes[60..64].try_into().unwrap());
    (sqlite, wal, user_version)
}

/// The fault-case lookup: A refuses, B answers. `conf` gets the targets; `sink` the logs.
struct Setup {
    conf: Config,
    b: Backend,
    sink: SyslogSink,
}

/// A config with hosts [refusing A, answering B], logging to a sink, its state database at
/// `db` (relative paths are taken inside the config's temp dir).
fn setup(db: impl FnOnce(&Path) -> PathBuf) -> Setup {
    let b = answering("from-b");
    let sink = SyslogSink::new();
    let a = closed_url("/lookup");
    let conf = map_on(&[&a, &b.url("/lookup")]).syslog(&sink, "");
    let path = db(conf.dir());
    let conf = conf.state_db(&path.display().to_string());
    Setup { conf, b, sink }
}

impl Setup {
    /// Checks a finished run of two lookups in one process: both answered from B (the first
    /// after A failed, the second skipping A thanks to per-process state), and exactly one error
    /// line about the database naming its path and containing `fix`. Returns that line.
    #[track_caller]
    fn check_answered_and_logged_once(&self, out: &Output, fix: &str) -> String {
        assert_clean(out);
        let replies = [netstring(b"OK from-b"), netstring(b"OK from-b")].concat();
        assert!(out.stdout == replies, "replies: {:?}", out.stdout_str());
        let lines = request_lines(&self.sink, 2);
        let b_host = host_port(&self.b.url(""));
        assert!(lines[0].contains(&format!("host={b_host} attempts=2")), "first lookup: {}", lines[0]);
        assert!(
            lines[1].contains(&format!("host={b_host} attempts=1")),
            "second lookup must skip A (per-process state): {}",
            lines[1]
        );
        // Lines arrive in order: everything logged before the last request line is here now.
        let errors: Vec<String> =
            self.sink.lines().into_iter().filter(|l| severity(l).is_some_and(|s| s <= 3)).collect();
        assert_eq!(errors.len(), 1, "exactly one error line: {:?}", self.sink.lines());
        let line = errors[0].clone();
        let db = self.conf.db_path().display().to_string();
        assert!(line.contains(&db), "the error line names the path {db}: {line}");
        assert!(line.contains(fix), "the error line gives the fix ({fix:?}): {line}");
        assert!(
            self.sink.lines().iter().all(|l| !l.contains("proto=") || !l.contains("reply=TEMP")),
            "no lookup may fail: {:?}",
            self.sink.lines()
        );
        line
    }

    /// Two lookups in one `pfxhttp socketmap` run as the current user.
    fn serve_two(&self) -> Output {
        let path = self.conf.path();
        run(&["--config", path.to_str().unwrap(), "socketmap"], &[req("k1"), req("k2")].concat(), RUN)
    }
}

/// Runs pfxhttp as `nobody` (uid and gid 65534) with an empty environment except `PATH`, feeds
/// it `stdin`, and collects its output; kills it and panics after `timeout`.
fn run_as_nobody(args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pfxhttp as nobody");
    let mut sin = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    thread::spawn(move || {
        let _ = sin.write_all(&data);
    });
    let mut stdout = Reader::spawn(child.stdout.take().unwrap());
    let mut stderr = Reader::spawn(child.stderr.take().unwrap());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pfxhttp as nobody did not exit within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let rest = |r: &mut Reader| match r.try_read_to_eof(Duration::from_secs(5)) {
        Ok(v) => v,
        Err(ReadError::Timeout { partial } | ReadError::Eof { partial }) => partial,
        Err(ReadError::Malformed { data, .. }) => data,
    };
    Output { stdout: rest(&mut stdout), stderr: rest(&mut stderr), status, elapsed }
}

/// A serving process run by the spawn user keeps the CA bundle's index in its state directory
/// (one file, the user's, 0600), and the next process, reading it, trusts what the bundle
/// trusts and nothing else. Run by root (an administrator's lookup by hand) it leaves that
/// directory alone: it is another user's.
#[test]
#[ignore = "needs root"]
fn the_spawn_user_keeps_the_ca_bundle_index_root_leaves_it_alone() {
    assert_root();
    let (tls, other) = (make_tls_files(), make_tls_files());
    let b = Backend::fixed_tls(&tls, Reply::json(200, r#"{"result":"secure"}"#));
    let stranger = Backend::fixed_tls(&other, Reply::json(200, r#"{"result":"secure"}"#));
    let conf = Config::new();
    let bundle = conf.dir().join("bundle.pem");
    let system = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    std::fs::write(&bundle, system + &std::fs::read_to_string(&tls.ca_pem).unwrap()).unwrap();
    let root_ca = format!("{{ root_ca: '{}' }}", bundle.display());
    let state = conf.dir().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
    let conf = conf
        .map("demo", &b.url("/lookup"))
        .set("tls", &root_ca)
        .map("stranger", &stranger.url("/lookup"))
        .set("tls", &root_ca)
        .state_db(&state.join("pfxhttp.db").display().to_string());
    chmod(conf.dir(), 0o755);
    chmod(&conf.path(), 0o644);
    chmod(&bundle, 0o644);
    let index = || -> Vec<PathBuf> {
        let files = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().path());
        files.filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("ca-index-")).collect()
    };
    let requests = [netstring(b"demo k"), netstring(b"stranger k")].concat();
    let path = conf.path();
    let args = ["--config", path.to_str().unwrap(), "socketmap"];
    let by_root = conf.run_serving(&["socketmap"], &requests, RUN);
    assert!(by_root.stdout_str().starts_with("9:OK secure,"), "{by_root:?}");
    assert_eq!(index(), Vec::<PathBuf>::new(), "root writes nothing in nobody's directory");
    for run in 0..2 {
        let out = run_as_nobody(&args, &requests, RUN);
        let replies = out.stdout_str();
        assert!(replies.starts_with("9:OK secure,") && replies.contains(":TEMP "), "run {run}: {out:?}");
        let kept = index();
        assert_eq!(kept.len(), 1, "run {run}: {kept:?}");
        assert_eq!((uid(&kept[0]), mode(&kept[0])), (NOBODY, 0o600));
    }
    assert_eq!(stranger.request_count(), 0);
}

/// Makes the config, its directory and the syslog sink usable by `nobody`.
fn open_for_nobody(s: &Setup) {
    chmod(s.conf.dir(), 0o755);
    chmod(&s.conf.path(), 0o644);
    chmod(s.sink.path().parent().unwrap(), 0o755);
    chmod(s.sink.path(), 0o666);
}

/// A python3 process holding `BEGIN EXCLUSIVE` on a database; killed when dropped.
pub(crate) struct LockHolder {
    child: std::process::Child,
}

impl LockHolder {
    /// Starts the holder and waits (bounded) until it has the lock. `create` first makes a
    /// table, so that a new file becomes a database (rollback journal).
    pub(crate) fn start(db: &Path, create: bool) -> LockHolder {
        let script = format!(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             {}\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(30)\n",
            if create { "c.execute('CREATE TABLE t (x)')\n" } else { "" }
        );
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3 (needed to hold a SQLite lock)");
        let mut out = Reader::spawn(child.stdout.take().unwrap());
        let mut holder = LockHolder { child };
        if let Err(e) = out.try_read_until(b"locked\n", Duration::from_secs(10)) {
            let err = holder.child.stderr.take().map(|mut s| {
                let mut v = String::new();
                let _ = std::io::Read::read_to_string(&mut s, &mut v);
                v
            });
            holder.stop();
            panic!("python3 did not take the lock: {e}; stderr: {err:?}");
        }
        holder
    }

    fn still_holding(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------ state init

/// As root, `state init` without `--user` refuses (exit 64) and creates nothing.
#[test]
#[ignore = "needs root"]
fn init_as_root_without_user_is_refused() {
    assert_root();
    let conf = map_on(&["http://127.0.0.1:9/"]);
    let db = conf.dir().join("var/lib/pfxhttp/pfxhttp.db");
    let conf = conf.state_db(&db.display().to_string());
    let out = state(&conf, &["init"]);
    assert_eq!(out.code(), Some(64), "{out:?}");
    assert!(out.stderr_str().contains("--user"), "the message names --user: {out:?}");
    assert!(!db.parent().unwrap().exists(), "nothing may be created: {out:?}");
}

/// `state init --user nobody` creates the directory (0700) and the database (0600, WAL, schema
/// version 1), owned by nobody; `state check` is happy with it.
#[test]
#[ignore = "needs root"]
fn init_for_nobody_then_check() {
    assert_root();
    let conf = map_on(&["http://127.0.0.1:9/"]);
    let db = conf.dir().join("var/lib/pfxhttp/pfxhttp.db");
    let conf = conf.state_db(&db.display().to_string());
    let out = state(&conf, &["init", "--user", "nobody"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let dir = db.parent().unwrap();
    assert_eq!((mode(dir), uid(dir)), (0o700, NOBODY), "directory mode and owner");
    assert_eq!((mode(&db), uid(&db)), (0o600, NOBODY), "database mode and owner");
    assert_eq!(std::fs::metadata(&db).unwrap().gid(), NOBODY, "database group");
    for suffix in ["-wal", "-shm"] {
        let p = with_suffix(&db, suffix);
        if p.exists() {
            assert_eq!(uid(&p), NOBODY, "{} must be nobody's too", p.display());
        }
    }
    assert_eq!(header_facts(&db), (true, true, 1), "SQLite file, WAL mode, user_version 1");

    let check = state(&conf, &["check"]);
    assert_eq!(check.code(), Some(0), "{check:?}");
    let text = check.stdout_str();
    assert!(text.contains("schema version 1, journal mode wal, integrity ok"), "{check:?}");
    assert!(text.contains("no host is marked down"), "{check:?}");
    assert!(text.contains(&format!("owner nobody (uid {NOBODY}), mode 0600")), "{check:?}");
    assert!(check.stderr.is_empty(), "no problem to report: {check:?}");
}

/// `state init` on an existing, usable database keeps it (and its marks).
#[test]
#[ignore = "needs root"]
fn init_keeps_an_existing_database() {
    assert_root();
    let s = setup(|dir| dir.join("state.db"));
    let out = s.serve_two();
    assert_clean(&out);
    let before = state(&s.conf, &["check"]);
    let a_down = before.stdout_str().lines().filter(|l| l.starts_with("down: ")).count();
    assert_eq!(a_down, 1, "{before:?}");
    let out = state(&s.conf, &["init", "--user", "root"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let after = state(&s.conf, &["check"]);
    assert_eq!(after.stdout_str().lines().filter(|l| l.starts_with("down: ")).count(), 1, "{after:?}");
}

// ------------------------------------------------------------------ state check

/// `state check` on a missing file: exit 1, the fix on stderr.
#[test]
fn check_on_a_missing_file_fails_with_the_fix() {
    let conf = map_on(&["http://127.0.0.1:9/"]);
    let db = conf.dir().join("missing.db");
    let conf = conf.state_db(&db.display().to_string());
    let out = state(&conf, &["check"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let err = out.stderr_str();
    assert!(err.contains(&db.display().to_string()), "names the file: {err}");
    assert!(err.contains("pfxhttp state init"), "gives the fix: {err}");
    assert!(!db.exists(), "check must not create the file");
}

/// `state check` on a missing directory: exit 1, the fix on stderr, nothing created.
#[test]
fn check_on_a_missing_directory_fails_with_the_fix() {
    let conf = map_on(&["http://127.0.0.1:9/"]);
    let db = conf.dir().join("nowhere/pfxhttp.db");
    let conf = conf.state_db(&db.display().to_string());
    let out = state(&conf, &["check"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr_str().contains("pfxhttp state init"), "{out:?}");
    assert!(!db.parent().unwrap().exists());
}

/// `state check` on a garbage file: exit 1, the problem on stderr, the file unchanged.
#[test]
fn check_on_a_garbage_file_fails() {
    let conf = map_on(&["http://127.0.0.1:9/"]);
    let db = conf.dir().join("garbage.db");
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();
    let conf = conf.state_db(&db.display().to_string());
    let out = state(&conf, &["check"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr_str().contains(&db.display().to_string()), "{out:?}");
    assert_eq!(std::fs::read(&db).unwrap(), vec![b'x'; 8192], "check must not change the file");
}

/// After a failing lookup, `state check` lists the failed host as down, with its origin, the
/// time left, the failure count and the last error; the healthy host is not listed.
#[test]
fn check_lists_a_host_marked_down() {
    let s = setup(|dir| dir.join("state.db"));
    let out = s.serve_two();
    assert_clean(&out);
    let check = state(&s.conf, &["check"]);
    assert_eq!(check.code(), Some(0), "{check:?}");
    let text = check.stdout_str();
    assert!(text.contains("schema version 1, journal mode wal, integrity ok"), "{check:?}");
    let a = text
        .lines()
        .find(|l| l.starts_with("down: http://127.0.0.1:") && !l.contains(&origin(&s.b.url(""))))
        .unwrap_or_else(|| panic!("no down line for A: {check:?}"));
    let rest = a.strip_prefix("down: http://127.0.0.1:").unwrap();
    let (port, rest) = rest.split_once(" for ").unwrap_or_else(|| panic!("{a}"));
    assert!(port.parse::<u16>().is_ok(), "origin http://127.0.0.1:PORT: {a}");
    let (secs, rest) = rest.split_once(" s more (").unwrap_or_else(|| panic!("{a}"));
    let secs: u64 = secs.parse().unwrap_or_else(|_| panic!("{a}"));
    assert!((1..=5).contains(&secs), "down for 5 s at most: {a}");
    assert!(rest.starts_with("1 failure(s) in a row, last: cannot connect"), "{a}");
    assert!(rest.ends_with(')'), "{a}");
    assert!(down_line(&check, &origin(&s.b.url(""))).is_none(), "B is healthy: {check:?}");
    assert!(!text.contains("no host is marked down"), "{check:?}");
}

/// Text in the database reaches the terminal with its control characters escaped: a planted
/// host row whose error holds a screen-clearing sequence, a carriage return and a forged
/// `down:` line shows as one line with the escapes spelled out.
#[test]
fn check_escapes_control_characters_from_the_database() {
    let s = setup(|dir| dir.join("state.db"));
    assert_clean(&s.serve_two());
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1])\n\
                  c.execute('INSERT INTO host_health VALUES (?, 1, 9999999999999, ?)', \
                  ('http://evil\\x1b]0;owned\\x07', 'x\\x1b[2J\\r\\ndown: http://forged for 1 s more'))\n\
                  c.commit()\n";
    let py = Command::new("python3").arg("-c").arg(script).arg(s.conf.db_path()).output().expect("python3");
    assert!(py.status.success(), "{py:?}");
    let check = state(&s.conf, &["check"]);
    assert_eq!(check.code(), Some(0), "{check:?}");
    let text = check.stdout_str();
    assert!(!text.bytes().any(|b| b == 0x1b || b == b'\r' || b == 0x07), "raw control bytes: {text:?}");
    assert!(!text.lines().any(|l| l.starts_with("down: http://forged")), "a forged line: {text}");
    let evil = text.lines().find(|l| l.starts_with("down: http://evil")).unwrap_or_else(|| panic!("{text}"));
    assert!(evil.starts_with("down: http://evil\\u{1b}]0;owned\\u{7} for "), "{evil}");
    assert!(evil.ends_with("last: x\\u{1b}[2J\\r\\ndown: http://forged for 1 s more)"), "{evil}");
}

// ------------------------------------------------------------------ serving processes

/// A serving process creates the database (mode 0600) in an existing directory; `jwt_db_path`
/// is an alias of `state_db`.
#[test]
fn serving_process_creates_the_database_private() {
    let b = answering("from-b");
    let conf = map_on(&[&closed_url("/lookup"), &b.url("/lookup")]);
    let db = conf.dir().join("jwt.db");
    let conf = conf.server(&format!("jwt_db_path: '{}'", db.display()));
    let (payload, _) = conf.lookup("k");
    assert_eq!(payload, "OK from-b");
    assert!(db.exists(), "the serving process creates the database");
    assert_eq!(mode(&db), 0o600);
    assert_eq!(header_facts(&db), (true, true, 1), "SQLite file, WAL mode, user_version 1");
    let check = state(&conf, &["check"]);
    assert_eq!(check.code(), Some(0), "{check:?}");
    assert_eq!(check.stdout_str().lines().filter(|l| l.starts_with("down: ")).count(), 1, "{check:?}");
}

/// A single host never needs the database: no file is created.
#[test]
fn single_host_never_opens_the_database() {
    let b = answering("v");
    let conf = map_on(&[&b.url("/lookup")]);
    let (payload, _) = conf.lookup("k");
    assert_eq!(payload, "OK v");
    assert!(!conf.db_path().exists(), "the database is only for entries with 2+ targets");
}

// ------------------------------------------------------------------ faults: carry on

/// The database's directory does not exist: answered, one error line, nothing created.
#[test]
fn fault_missing_directory() {
    let s = setup(|dir| dir.join("no/such/dir/pfxhttp.db"));
    let out = s.serve_two();
    let line = s.check_answered_and_logged_once(&out, "state init");
    assert!(line.contains("does not exist"), "{line}");
    assert!(!s.conf.db_path().parent().unwrap().exists(), "a serving process creates no directory");
}

/// A garbage file (8 KiB of `x`): answered, one error line, the file unchanged byte for byte.
#[test]
fn fault_garbage_file_is_left_alone() {
    let s = setup(|dir| dir.join("state.db"));
    let garbage = vec![b'x'; 8192];
    std::fs::write(s.conf.db_path(), &garbage).unwrap();
    let out = s.serve_two();
    s.check_answered_and_logged_once(&out, "move it aside");
    assert!(std::fs::read(s.conf.db_path()).unwrap() == garbage, "the file must be left unchanged");
}

/// A WAL database (made by `state init`) locked by another process with `BEGIN EXCLUSIVE`:
/// answered, one error line.
#[test]
fn fault_locked_wal_database() {
    let s = setup(|dir| dir.join("state.db"));
    let init = if is_root() { state(&s.conf, &["init", "--user", "root"]) } else { state(&s.conf, &["init"]) };
    assert_eq!(init.code(), Some(0), "{init:?}");
    let mut holder = LockHolder::start(&s.conf.db_path(), false);
    let out = s.serve_two();
    assert!(holder.still_holding(), "the lock holder ended early");
    s.check_answered_and_logged_once(&out, "stuck process");
    assert_within_ms(&out, 2500, "a locked database must cost a lookup little time");
}

/// A database in rollback-journal mode locked with `BEGIN EXCLUSIVE` (readers blocked too):
/// answered, one error line.
#[test]
fn fault_locked_rollback_database() {
    let s = setup(|dir| dir.join("state.db"));
    let mut holder = LockHolder::start(&s.conf.db_path(), true);
    let out = s.serve_two();
    assert!(holder.still_holding(), "the lock holder ended early");
    s.check_answered_and_logged_once(&out, "stuck process");
    assert_within_ms(&out, 2500, "a locked database must cost a lookup little time");
}

#[track_caller]
fn assert_within_ms(out: &Output, ms: u64, what: &str) {
    assert!(out.elapsed < Duration::from_millis(ms), "{what}: took {:?}", out.elapsed);
}

/// A database owned by root with mode 0600, pfxhttp running as nobody: answered, one error
/// line, the file unchanged.
#[test]
#[ignore = "needs root"]
fn fault_foreign_owned_database() {
    assert_root();
    foreign_database(0o600);
}

/// A database owned by root with mode 0644 (readable, not writable) in a directory nobody cannot
/// write, pfxhttp running as nobody: answered, one error line.
#[test]
#[ignore = "needs root"]
fn fault_read_only_database() {
    assert_root();
    foreign_database(0o644);
}

fn foreign_database(file_mode: u32) {
    let s = setup(|dir| dir.join("state.db"));
    let init = state(&s.conf, &["init", "--user", "root"]);
    assert_eq!(init.code(), Some(0), "{init:?}");
    chmod(&s.conf.db_path(), file_mode);
    open_for_nobody(&s);
    let before = std::fs::read(s.conf.db_path()).unwrap();
    let path = s.conf.path();
    let out = run_as_nobody(&["--config", path.to_str().unwrap(), "socketmap"], &[req("k1"), req("k2")].concat(), RUN);
    s.check_answered_and_logged_once(&out, "writable");
    assert!(std::fs::read(s.conf.db_path()).unwrap() == before, "the database must be left unchanged");
    assert_eq!(uid(&s.conf.db_path()), 0, "still root's");
    assert!(!with_suffix(&s.conf.db_path(), "-wal").exists() || uid(&with_suffix(&s.conf.db_path(), "-wal")) == 0);
}

/// The token cache on a database owned by another user (root, 0600), pfxhttp running as nobody:
/// both lookups are answered with a token of the process's own (one token request), and one
/// error line names the database.
#[test]
#[ignore = "needs root"]
fn fault_foreign_owned_database_with_a_token() {
    assert_root();
    let tokens = Backend::start(|_| Reply::json(200, r#"{"token":"tok-1","expires_in":3600}"#));
    let b = Backend::start(|r| {
        if r.header("authorization") == Some("Bearer tok-1") {
            Reply::json(200, r#"{"result":"from-b"}"#)
        } else {
            Reply::json(401, "{}")
        }
    });
    let sink = SyslogSink::new();
    let conf = map_on(&[&closed_url("/lookup"), &b.url("/lookup")]).syslog(&sink, "").line(&format!(
        "jwt_auth: {{ token_endpoint: {}, credentials: {{ username: u, password: p }} }}",
        q(&tokens.url("/token"))
    ));
    let db = conf.dir().join("state.db");
    let conf = conf.state_db(&db.display().to_string());
    let s = Setup { conf, b, sink };
    let init = state(&s.conf, &["init", "--user", "root"]);
    assert_eq!(init.code(), Some(0), "{init:?}");
    open_for_nobody(&s);
    let path = s.conf.path();
    let out = run_as_nobody(&["--config", path.to_str().unwrap(), "socketmap"], &[req("k1"), req("k2")].concat(), RUN);
    s.check_answered_and_logged_once(&out, "writable");
    assert_eq!(tokens.request_count(), 1, "one token for the process, kept in its own state");
}

/// The nobody runner itself works: with a database nobody owns, no error is logged.
#[test]
#[ignore = "needs root"]
fn nobody_with_its_own_database_logs_no_error() {
    assert_root();
    let s = setup(|dir| dir.join("db/state.db"));
    let init = state(&s.conf, &["init", "--user", "nobody"]);
    assert_eq!(init.code(), Some(0), "{init:?}");
    open_for_nobody(&s);
    let path = s.conf.path();
    let out = run_as_nobody(&["--config", path.to_str().unwrap(), "socketmap"], &[req("k1"), req("k2")].concat(), RUN);
    assert_clean(&out);
    assert!(out.stdout == [netstring(b"OK from-b"), netstring(b"OK from-b")].concat(), "{out:?}");
    request_lines(&s.sink, 2);
    let errors: Vec<String> = s.sink.lines().into_iter().filter(|l| severity(l).is_some_and(|v| v <= 3)).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let check = state(&s.conf, &["check"]);
    assert_eq!(check.stdout_str().lines().filter(|l| l.starts_with("down: ")).count(), 1, "{check:?}");
}
