//! Many processes writing one cache at once, and the bound on its rows.

use std::thread;

use super::*;

/// An API answering `{"result": "v-KEY"}` for the key in the request body.
fn per_key() -> Backend {
    Backend::start(|r| found(&format!("v-{}", r.body_json()["key"].as_str().unwrap_or_default())))
}

#[test]
fn fifty_processes_at_once_lose_no_reply_and_log_no_database_error() {
    const PROCESSES: usize = 50;
    const LOOKUPS: usize = 20;
    let api = per_key();
    let sink = SyslogSink::new();
    // ttl 0: every lookup asks the API and may write its row (stale-only refresh). Warnings and
    // errors only: the sink's queue would drop request lines from fifty processes, not these.
    let conf = users(&api.url("/lookup"), &sink, "{ stale_if_error: 1h }").syslog(&sink, ", level: warn");
    // One process first, so that the database exists before the crowd comes.
    let out = conf.run_serving(&["socketmap"], &netstring(b"users k0"), RUN);
    assert_wire(&out.stdout, &netstring(b"OK v-k0"));

    let keys = |p: usize| (0..LOOKUPS).map(move |i| format!("k{}", (p * 7 + i) % 30));
    let outputs: Vec<(usize, Output)> = thread::scope(|s| {
        let handles: Vec<_> = (0..PROCESSES)
            .map(|p| {
                let conf = &conf;
                let stdin: Vec<u8> = keys(p).flat_map(|k| netstring(format!("users {k}").as_bytes())).collect();
                s.spawn(move || (p, conf.run_command(&["socketmap"], &stdin, Duration::from_secs(120))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("runner thread")).collect()
    });
    for (p, out) in &outputs {
        assert_clean(out);
        let expected: Vec<u8> = keys(*p).flat_map(|k| netstring(format!("OK v-{k}").as_bytes())).collect();
        assert_wire(&out.stdout, &expected);
    }
    assert_eq!(api.request_count(), 1 + PROCESSES * LOOKUPS, "ttl 0: every lookup asked the API");
    let lines = sink.settle(LOG_WAIT);
    assert!(lines.is_empty(), "warnings or errors (a database error?) logged: {lines:#?}");
    assert_eq!(rows(&conf), 30, "every key has its row");

    // The rows answer an outage, whoever wrote them.
    drop(api);
    for k in ["k0", "k17", "k29"] {
        let out = command(&conf, &["query", "users", k]);
        assert_eq!(out.stdout_str(), format!("OK v-{k}\n"), "{out:?}");
        assert!(out.stderr_str().starts_with("cache: stale (age "), "{out:?}");
    }
}

#[test]
fn max_entries_bounds_the_rows_and_the_oldest_go_first() {
    let api = per_key();
    let sink = SyslogSink::new();
    let conf = users(&api.url("/lookup"), &sink, "{ ttl: 1h, max_entries: 50 }");
    let keys: Vec<String> = (0..500).map(|i| format!("key{i:03}")).collect();
    let stdin: Vec<u8> = keys.iter().flat_map(|k| netstring(format!("users {k}").as_bytes())).collect();
    let out = conf.run_serving(&["socketmap"], &stdin, Duration::from_secs(120));
    let expected: Vec<u8> = keys.iter().flat_map(|k| netstring(format!("OK v-{k}").as_bytes())).collect();
    assert_wire(&out.stdout, &expected);
    assert_eq!(api.request_count(), 500);

    let n = rows(&conf);
    assert!((50..=50 + 64).contains(&n), "{n} rows for max_entries 50");
    assert!(lookup(&conf, &sink, "key499", "OK v-key499").contains(" cache=hit "), "the newest stays");
    assert!(lookup(&conf, &sink, "key000", "OK v-key000").contains(" cache=miss "), "the oldest went");
}
