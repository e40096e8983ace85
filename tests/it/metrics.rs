//! Metrics shared through the state database, against the built binary: many serving processes
//! add their counts to one database, `pfxhttp stats` prints the totals in the Prometheus text
//! format (checked with the `prometheus_client` Python package's parser), and every backend
//! request carries a `traceparent` whose trace id is in the request's log line.
//!
//! The flush interval is shortened with the variable `PFXHTTP_METRICS_FLUSH_MS` (read by the
//! serving process) so that the tests of the periodic flush take seconds, not tens of seconds.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::state::{LockHolder, is_root};
use crate::support::*;

const RUN: Duration = Duration::from_secs(30);
const REPLY: Duration = Duration::from_secs(10);

/// A backend answering by the key's first letter: `f…` found, `n…` not found, `i…` 200 with a
/// body that is not JSON, anything else 503.
fn mixed_backend() -> Backend {
    Backend::start(|r| {
        let key = r.body_json()["key"].as_str().unwrap_or_default().to_string();
        match key.chars().next() {
            Some('f') => Reply::json(200, r#"{"result":"v"}"#),
            Some('n') => Reply::json(200, "{}"),
            Some('i') => Reply::text(200, "not json"),
            _ => Reply::json(503, "{}"),
        }
    })
}

/// The map `m` on `backend`, one attempt per lookup, logging to `sink`, with a state database
/// made by `state init`.
fn setup(backend: &Backend, sink: &SyslogSink) -> Config {
    init(Config::new().map("m", &backend.url("/lookup")).set("max_attempts", "1").syslog(sink, ""))
}

/// `conf` with its state database made by `state init`.
fn init(conf: Config) -> Config {
    let args: &[&str] = if is_root() { &["state", "init", "--user", "root"] } else { &["state", "init"] };
    let out = conf.run_command(args, b"", RUN);
    assert_eq!(out.code(), Some(0), "state init: {out:?}");
    conf
}

/// A serving `socketmap` process with `env`.
fn serving(conf: &Config, env: &[(&str, &str)]) -> Child {
    let path = conf.arg();
    Child::spawn_program(&bin(), &["--config", &path, "socketmap"], env)
}

/// Sends a lookup of `key` in `m` and reads its reply: exactly one netstring, whose payload is
/// returned.
#[track_caller]
fn ask(child: &mut Child, key: &str) -> String {
    child.send(&netstring(format!("m {key}").as_bytes()));
    crate::failover::single_reply(&child.read_netstring(REPLY))
}

/// `pfxhttp stats` parsed with prometheus_client: `name{label=value,…}` (labels sorted) to the
/// value. The parser missing is a failure, never a skip.
#[track_caller]
fn stats(conf: &Config) -> BTreeMap<String, f64> {
    let out = conf.run_command(&["stats"], b"", RUN);
    assert_eq!(out.code(), Some(0), "pfxhttp stats: {out:?}");
    parse(&out.stdout)
}

#[track_caller]
fn parse(text: &[u8]) -> BTreeMap<String, f64> {
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n\
        \x20       print(json.dumps([s.name + '{' + labels + '}', s.value]))\n";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the prometheus_client parser checks the output)");
    child.stdin.take().unwrap().write_all(text).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "the Python package prometheus_client is missing: `pip install prometheus_client` (.ci/run installs it)"
    );
    assert!(out.status.success(), "prometheus_client refused the output: {stderr}\n{}", String::from_utf8_lossy(text));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<(String, f64)>(line).expect("parser output"))
        .collect()
}

fn value(stats: &BTreeMap<String, f64>, key: &str) -> f64 {
    stats.get(key).copied().unwrap_or(0.0)
}

fn requests(stats: &BTreeMap<String, f64>, outcome: &str) -> f64 {
    value(stats, &format!("pfxhttp_requests_total{{kind=socketmap,name=m,outcome={outcome}}}"))
}

/// 50 processes, each answering 2 found, 1 not found and 1 failing lookup, leave exactly those
/// counts; one more process killed with SIGKILL leaves what it counted up to its last flush and
/// nothing after; a live process is counted as a connection, a killed one is not.
#[test]
fn fifty_processes_and_a_killed_one_leave_exact_counts() {
    let backend = mixed_backend();
    let sink = SyslogSink::new();
    let conf = setup(&backend, &sink);

    // A process that stays: its first reply writes its row.
    let mut live = serving(&conf, &[]);
    assert_eq!(ask(&mut live, "f-live"), "OK v");
    // The killed one flushes first 1 to 2 s after its start, then not again for 3 s.
    let mut killed = serving(&conf, &[("PFXHTTP_METRICS_FLUSH_MS", "3000")]);
    assert_eq!(ask(&mut killed, "f-k1"), "OK v");
    assert_eq!(ask(&mut killed, "f-k2"), "OK v");
    std::thread::sleep(Duration::from_millis(3300));
    // The live one's first flush is due 1 to 2 s after its start: after this reply.
    assert_eq!(ask(&mut live, "f-live2"), "OK v");
    // Flushed after this reply (with f-k1 and f-k2), before the next request is read.
    assert_eq!(ask(&mut killed, "f-k3"), "OK v");
    assert_eq!(ask(&mut killed, "n-k4"), "NOTFOUND ");
    assert_eq!(ask(&mut killed, "x-k5"), "TEMP unexpected HTTP status 503");
    let seen = stats(&conf);
    assert_eq!(value(&seen, "pfxhttp_connections_active{}"), 2.0, "{seen:#?}");
    killed.kill();
    let _ = killed.wait(RUN);

    let children: Vec<Child> = (0..50)
        .map(|i| {
            let mut child = serving(&conf, &[]);
            let batch: Vec<u8> = [format!("m f-{i}-a"), format!("m n-{i}"), format!("m f-{i}-b"), format!("m x-{i}")]
                .iter()
                .flat_map(|r| netstring(r.as_bytes()))
                .collect();
            child.send(&batch);
            child.close_stdin();
            child
        })
        .collect();
    for child in children {
        let out = child.wait(RUN);
        let want = [&b"4:OK v,"[..], b"9:NOTFOUND ,", b"4:OK v,", b"31:TEMP unexpected HTTP status 503,"].concat();
        assert_wire(&out.stdout, &want);
    }
    let seen = stats(&conf);
    assert_eq!(value(&seen, "pfxhttp_connections_active{}"), 1.0, "the killed process's row is not counted");
    let _ = live.finish(RUN);

    let seen = stats(&conf);
    let attempts = |result: &str| {
        value(
            &seen,
            &format!("pfxhttp_backend_attempts_total{{host=127.0.0.1:{},name=m,result={result}}}", backend.port()),
        )
    };
    let got = (
        requests(&seen, "found"),
        requests(&seen, "not_found"),
        requests(&seen, "temporary"),
        attempts("ok"),
        attempts("http_5xx"),
        value(&seen, "pfxhttp_processes_total{command=socketmap}"),
        value(&seen, "pfxhttp_request_duration_seconds_count{kind=socketmap,name=m}"),
        value(&seen, "pfxhttp_request_duration_seconds_bucket{kind=socketmap,le=+Inf,name=m}"),
        value(&seen, "pfxhttp_connections_active{}"),
    );
    // found: 100 + the live one's 2 + the killed one's 3 flushed; n-k4 and x-k5 were not.
    assert_eq!(got, (105.0, 50.0, 50.0, 155.0, 50.0, 52.0, 205.0, 205.0, 0.0), "{seen:#?}");
    assert_eq!(backend.request_count(), 207, "every lookup asked the backend once");
}

/// A database whose write lock another process holds: every lookup is answered; a flush that
/// meets the lock gives way and the counts are kept for the next flush; a process that never
/// gets the lock loses its counts and nothing else, with one warning.
#[test]
fn a_locked_database_loses_counts_never_a_lookup() {
    let backend = mixed_backend();
    let sink = SyslogSink::new();
    let conf = setup(&backend, &sink);
    let mut holder = LockHolder::start(&conf.db_path(), false);

    let out = conf.run_serving(&["socketmap"], &[netstring(b"m f-1"), netstring(b"m n-1")].concat(), RUN);
    assert_wire(&out.stdout, &[&b"4:OK v,"[..], b"9:NOTFOUND ,"].concat());

    let mut kept = serving(&conf, &[("PFXHTTP_METRICS_FLUSH_MS", "0")]);
    assert_eq!(ask(&mut kept, "f-2"), "OK v");
    assert_eq!(ask(&mut kept, "x-2"), "TEMP unexpected HTTP status 503");
    holder.stop();
    assert_eq!(ask(&mut kept, "n-2"), "NOTFOUND ");
    let _ = kept.finish(RUN);

    let seen = stats(&conf);
    let got = (requests(&seen, "found"), requests(&seen, "not_found"), requests(&seen, "temporary"));
    assert_eq!(got, (1.0, 1.0, 1.0), "only the second process's counts, all of them: {seen:#?}");
    assert_eq!(value(&seen, "pfxhttp_processes_total{command=socketmap}"), 1.0);
    let warned: Vec<String> =
        sink.settle(Duration::from_secs(3)).into_iter().filter(|l| l.contains("metrics:")).collect();
    assert_eq!(warned.len(), 1, "one warning, from the process whose counts were lost: {warned:#?}");
    assert!(warned[0].contains("database is locked; they are lost"), "{warned:#?}");
}

/// Every attempt carries `traceparent: 00-<trace id>-<span id>-01`; the attempts of one request
/// share the trace id (each has its own span id), the next request has another, and the request's
/// log line names it as `trace=`.
#[test]
fn traceparent_is_sent_on_every_attempt_and_logged() {
    let seen = Arc::new(Mutex::new(0u32));
    let count = seen.clone();
    let backend = Backend::start(move |_| {
        let mut n = count.lock().unwrap();
        *n += 1;
        if *n % 2 == 1 { Reply::json(503, "{}") } else { Reply::json(200, r#"{"result":"v"}"#) }
    });
    let sink = SyslogSink::new();
    let conf = Config::new().map("m", &backend.url("/lookup")).set("max_attempts", "2").syslog(&sink, "");
    let out = conf.run_serving(&["socketmap"], &[netstring(b"m a"), netstring(b"m b")].concat(), RUN);
    assert_wire(&out.stdout, &[&b"4:OK v,"[..], b"4:OK v,"].concat());

    let parts: Vec<(String, String)> = backend
        .requests()
        .iter()
        .map(|r| {
            let value = r.header("traceparent").expect("a traceparent header").to_string();
            let fields: Vec<&str> = value.split('-').collect();
            let hex =
                |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            assert!(fields.len() == 4 && fields[0] == "00" && fields[3] == "01", "{value}");
            assert!(hex(fields[1], 32) && hex(fields[2], 16), "{value}");
            assert!(fields[1] != "0".repeat(32) && fields[2] != "0".repeat(16), "{value}");
            (fields[1].to_string(), fields[2].to_string())
        })
        .collect();
    assert_eq!(parts.len(), 4);
    assert_eq!((parts[0].0 == parts[1].0, parts[2].0 == parts[3].0), (true, true), "one trace per request");
    assert_ne!(parts[0].0, parts[2].0, "a fresh trace id per request");
    assert!(parts[0].1 != parts[1].1 && parts[2].1 != parts[3].1, "a span id per attempt");
    let lines: Vec<String> =
        sink.settle(Duration::from_secs(5)).into_iter().filter(|l| l.contains(" proto=")).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for (line, (trace, _)) in lines.iter().zip([&parts[0], &parts[2]]) {
        assert!(line.ends_with(&format!(" trace={trace}")), "{line}");
    }
}

/// `server.metrics: false`: nothing is counted; `stats --reset` asks first and zeroes with
/// `--yes`; `--textfile` writes what `stats` prints, through a temporary file.
#[test]
fn the_switch_reset_and_textfile() {
    let backend = mixed_backend();
    let sink = SyslogSink::new();
    let conf = setup(&backend, &sink);
    conf.run_serving(&["socketmap"], &netstring(b"m f-1"), RUN);
    let off = Config::new()
        .map("m", &backend.url("/lookup"))
        .state_db(&conf.db_path().display().to_string())
        .server("metrics: false");
    off.run_serving(&["socketmap"], &netstring(b"m f-2"), RUN);
    assert_eq!(requests(&stats(&conf), "found"), 1.0, "the process with metrics: false counted nothing");

    let refused = conf.run_command(&["stats", "--reset"], b"n\n", RUN);
    assert_eq!(refused.code(), Some(64), "{refused:?}");
    assert!(refused.stderr_str().contains("Zero every pfxhttp counter in "), "{refused:?}");
    assert_eq!(requests(&stats(&conf), "found"), 1.0, "not reset without a yes");

    let file = conf.dir().join("pfxhttp.prom");
    let out = conf.run_command(&["stats", "--textfile", &file.display().to_string()], b"", RUN);
    assert_eq!((out.code(), out.stdout.len()), (Some(0), 0), "{out:?}");
    let printed = conf.run_command(&["stats"], b"", RUN).stdout;
    assert_eq!(std::fs::read(&file).unwrap(), printed);
    let names: Vec<String> =
        std::fs::read_dir(conf.dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "no temporary file left: {names:?}");

    let out = conf.run_command(&["stats", "--reset", "--yes"], b"", RUN);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let seen = stats(&conf);
    assert!(!seen.keys().any(|k| k.starts_with("pfxhttp_requests_total")), "{seen:#?}");
}

/// Run as root on a database the spawn service's user owns, `stats` reads it as that user (no
/// file of root's appears beside it), and `--textfile` still writes a file where only root may.
#[test]
#[ignore = "needs root"]
fn stats_as_root_reads_as_the_owner_and_writes_as_root() {
    crate::state::assert_root();
    let backend = mixed_backend();
    let db = temp_dir();
    let conf = Config::new().map("m", &backend.url("/lookup"));
    let db_path = conf.dir().join("var/lib/pfxhttp/pfxhttp.db");
    let conf = conf.state_db(&db_path.display().to_string());
    let out = conf.run_command(&["state", "init", "--user", "nobody"], b"", RUN);
    assert_eq!(out.code(), Some(0), "{out:?}");

    let seen = stats(&conf);
    assert_eq!(value(&seen, "pfxhttp_connections_active{}"), 0.0, "{seen:#?}");
    let private = db.path().join("root-only");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let file = private.join("pfxhttp.prom");
    let out = conf.run_command(&["stats", "--textfile", &file.display().to_string()], b"", RUN);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(parse(&std::fs::read(&file).unwrap()), seen);
    for entry in std::fs::read_dir(db_path.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).unwrap());
        assert_ne!(owner, 0, "{} is root's: stats did not read as the owner", path.display());
    }
}

/// tcp_table, policy and SASL requests are counted under their kinds and outcomes; cache uses,
/// token fetches and host health too.
#[test]
fn every_kind_the_cache_tokens_and_host_health_are_counted() {
    let backend = mixed_backend();
    let policy = Backend::fixed(Reply::json(200, r#"{"action":"REJECT no"}"#));
    let auth = Backend::start(|r| match r.body_json()["password"].as_str() {
        Some("good") => Reply::status(200, "{}"),
        Some("bad") => Reply::status(403, "null").with_header("Auth-Status", "Invalid login or password"),
        _ => Reply::status(503, "{}"),
    });
    let tokens = Backend::fixed(Reply::json(200, r#"{"token":"tok","expires_in":3600}"#));
    let jwt = format!("{{ token_endpoint: {}, credentials: {{ username: u, password: p }} }}", q(&tokens.url("/t")));
    let closed = closed_url("/lookup");
    let closed_host = closed.trim_start_matches("http://").trim_end_matches("/lookup").to_string();
    let conf = init(
        Config::new()
            .map("m", &backend.url("/lookup"))
            .set("max_attempts", "1")
            .map("c", &backend.url("/lookup"))
            .set("cache", "{ ttl: 60s }")
            .set("jwt_auth", &jwt)
            .map("two", &closed)
            .targets(&[&closed, &backend.url("/lookup")])
            .policy("p", &policy.url("/policy"))
            .sasl("smtp-auth", &auth.url("/auth")),
    );
    let out = conf.run_serving(&["tcp", "m"], b"get f-1\nget n-1\nget x-1\nget i-1\n", RUN);
    let replies = String::from_utf8_lossy(&out.stdout).into_owned();
    let replies: Vec<&str> = replies.lines().collect();
    assert_eq!(replies[..3], ["200 v", "500 not found", "400 unexpected HTTP status 503"]);
    assert!(replies.len() == 4 && replies[3].starts_with("400 invalid backend response: "), "{replies:?}");
    let out = conf.run_serving(&["policy", "p"], b"request=smtpd_access_policy\nrecipient=a@b.example\n\n", RUN);
    assert_wire(&out.stdout, b"action=REJECT no\n\n");
    let plain = |id: u32, password: &str| {
        let resp = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("\0u\0{password}"));
        format!("AUTH\t{id}\tPLAIN\tservice=smtp\tnologin\tresp={resp}\n")
    };
    let input = ["VERSION\t1\t0\nCPID\t1\n".to_string(), plain(1, "good"), plain(2, "bad"), plain(3, "down")].concat();
    let out = conf.run_serving(&["sasl"], input.as_bytes(), RUN);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .ends_with("DONE\nOK\t1\tuser=u\nFAIL\t2\treason=Invalid login or password\n")
    );
    for _ in 0..2 {
        let out = conf.run_serving(&["socketmap"], &[netstring(b"c f-1"), netstring(b"two f-2")].concat(), RUN);
        assert_wire(&out.stdout, b"4:OK v,4:OK v,");
    }

    let seen = stats(&conf);
    let got = |key: &str| value(&seen, key);
    let counted: [&str; 19] = [
        "pfxhttp_requests_total{kind=tcp,name=m,outcome=found}",
        "pfxhttp_requests_total{kind=tcp,name=m,outcome=not_found}",
        "pfxhttp_requests_total{kind=tcp,name=m,outcome=temporary}",
        &format!("pfxhttp_backend_attempts_total{{host=127.0.0.1:{},name=m,result=ok}}", backend.port()),
        &format!("pfxhttp_backend_attempts_total{{host=127.0.0.1:{},name=m,result=invalid}}", backend.port()),
        "pfxhttp_requests_total{kind=policy,name=p,outcome=action}",
        "pfxhttp_requests_total{kind=sasl,name=smtp-auth,outcome=ok}",
        "pfxhttp_requests_total{kind=sasl,name=smtp-auth,outcome=fail}",
        "pfxhttp_requests_total{kind=sasl,name=smtp-auth,outcome=temporary}",
        "pfxhttp_processes_total{command=tcp}",
        "pfxhttp_processes_total{command=policy}",
        "pfxhttp_processes_total{command=sasl}",
        "pfxhttp_cache_total{name=c,result=miss}",
        "pfxhttp_cache_total{name=c,result=hit}",
        "pfxhttp_token_fetches_total{name=c,result=ok}",
        &format!("pfxhttp_backend_attempts_total{{host={closed_host},name=two,result=connect}}"),
        "pfxhttp_requests_total{kind=socketmap,name=two,outcome=found}",
        &format!("pfxhttp_host_down{{host={closed_host},name=two}}"),
        &format!("pfxhttp_host_down{{host=127.0.0.1:{},name=two}}", backend.port()),
    ];
    let values: Vec<f64> = counted.iter().map(|k| got(k)).collect();
    assert_eq!(
        values,
        [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 0.0],
        "{seen:#?}"
    );
}

/// A database made before the metrics existed (no metrics tables): `state check` says so, the
/// first flush makes them, and the counts are there.
#[test]
fn a_database_without_the_metrics_tables_gets_them_on_the_first_flush() {
    let backend = mixed_backend();
    let sink = SyslogSink::new();
    let conf = setup(&backend, &sink);
    let drop = Command::new("python3")
        .args(["-c", "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.executescript('DROP TABLE metrics; DROP TABLE metrics_processes')\n"])
        .arg(conf.db_path())
        .output()
        .expect("python3 runs");
    assert!(drop.status.success(), "{drop:?}");
    let check = conf.run_command(&["state", "check"], b"", RUN);
    assert!(check.stdout_str().contains("metrics: no tables yet"), "{check:?}");
    let seen = stats(&conf);
    assert_eq!(value(&seen, "pfxhttp_connections_active{}"), 0.0, "stats reads a database without them");

    conf.run_serving(&["socketmap"], &[netstring(b"m f-1"), netstring(b"m n-1")].concat(), RUN);
    assert_eq!((requests(&stats(&conf), "found"), requests(&stats(&conf), "not_found")), (1.0, 1.0));
    let check = conf.run_command(&["state", "check"], b"", RUN);
    // Two requests, their durations (one or two buckets, the sum, the count), the attempts, the
    // process.
    let line = check.stdout_str().lines().find(|l| l.starts_with("metrics: ")).map(str::to_string);
    let series =
        line.as_deref().and_then(|l| l.strip_prefix("metrics: ")?.strip_suffix(" stored series, 0 process row(s)"));
    assert!(series.is_some_and(|n| n == "7" || n == "8"), "{check:?}");
}

/// A connection closed without a request leaves the database as it was: no write at exit (the
/// cost of an idle start stays that of a start), so no process is counted for it; the next
/// process that answers is.
#[test]
fn a_process_that_answered_nothing_writes_nothing() {
    let backend = mixed_backend();
    let sink = SyslogSink::new();
    let conf = setup(&backend, &sink);
    let wal = std::path::PathBuf::from(format!("{}-wal", conf.db_path().display()));
    let before = (std::fs::read(conf.db_path()).unwrap(), wal.exists());
    let out = conf.run_serving(&["socketmap"], b"", RUN);
    assert_eq!((out.code(), out.stdout.as_slice()), (Some(0), &b""[..]), "{out:?}");
    let after = (std::fs::read(conf.db_path()).unwrap(), wal.exists());
    assert!(after == before, "the database file is unchanged, and no -wal file was made");
    let seen = stats(&conf);
    assert!(!seen.keys().any(|k| k.starts_with("pfxhttp_processes_total")), "{seen:#?}");

    let out = conf.run_serving(&["socketmap"], &netstring(b"m f-1"), RUN);
    assert_wire(&out.stdout, b"4:OK v,");
    assert_eq!(value(&stats(&conf), "pfxhttp_processes_total{command=socketmap}"), 1.0);
}
