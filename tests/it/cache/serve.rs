//! Fresh hits: a row one process stored answers the next without any request, whichever way the
//! entry is asked (socketmap, tcp_table, `query`); keys are not in the file in clear.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A token endpoint that counts its requests and gives a token valid an hour.
fn token_endpoint(count: Arc<AtomicUsize>) -> Backend {
    Backend::start(move |_| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(200, &format!(r#"{{"token":"tok-{n}","expires_in":3600}}"#))
    })
}

#[test]
fn a_fresh_hit_in_a_second_process_makes_no_request_and_fetches_no_token() {
    let api = Api::new(found("alice@mail.example"));
    let tokens = Arc::new(AtomicUsize::new(0));
    let ts = token_endpoint(tokens.clone());
    let sink = SyslogSink::new();
    let auth = format!("{{ token_endpoint: {}, credentials: {{ username: u, password: p }} }}", q(&ts.url("/token")));
    let conf = users(api.url(), &sink, "{ ttl: 60s }").set("jwt_auth", &auth);
    let h = host(&api);

    let line = lookup(&conf, &sink, "alice", "OK alice@mail.example");
    assert_line(
        &line,
        &format!("proto=socketmap map=users key=alice host={h} attempts=1 status=200 cache=miss reply=OK"),
        0..=0,
    );
    assert_eq!((api.requests(), tokens.load(Ordering::SeqCst)), (1, 1));

    let line = lookup(&conf, &sink, "alice", "OK alice@mail.example");
    assert_line(&line, "proto=socketmap map=users key=alice attempts=0 cache=hit age=# reply=OK", 0..=SLACK);
    assert_eq!(api.requests(), 1, "a fresh hit makes no request");
    assert_eq!(tokens.load(Ordering::SeqCst), 1, "a fresh hit fetches no token");

    // Another key is a miss, asked with the token the first process left.
    lookup(&conf, &sink, "bob", "OK alice@mail.example");
    assert_eq!((api.requests(), tokens.load(Ordering::SeqCst)), (2, 1));
}

#[test]
fn socketmap_and_tcp_table_share_one_row() {
    let api = Api::new(found("v1"));
    let sink = SyslogSink::new();
    let conf = users(api.url(), &sink, "{ ttl: 60s }");

    lookup(&conf, &sink, "alice", "OK v1");
    sink.clear();
    let out = conf.run_serving(&["tcp", "users"], b"get alice\n", RUN);
    assert_wire(&out.stdout, b"200 v1\n");
    assert_line(
        &one_request_line(&sink),
        "proto=tcp map=users key=alice attempts=0 cache=hit age=# reply=200",
        0..=SLACK,
    );
    assert_eq!(api.requests(), 1, "tcp answered from the row socketmap stored");

    // And the other way round.
    sink.clear();
    let out = conf.run_serving(&["tcp", "users"], b"get bob\n", RUN);
    assert_wire(&out.stdout, b"200 v1\n");
    assert!(one_request_line(&sink).contains(" cache=miss "));
    let line = lookup(&conf, &sink, "bob", "OK v1");
    assert!(line.contains(" cache=hit age="), "{line}");
    assert_eq!(api.requests(), 2);
    assert_eq!(rows(&conf), 2, "one row per key, whichever protocol asked");
}

#[test]
fn query_shows_what_the_cache_did_and_no_cache_neither_reads_nor_writes() {
    let api = Api::new(found("v1"));
    let sink = SyslogSink::new();
    let conf = users(api.url(), &sink, "{ ttl: 60s }");
    lookup(&conf, &sink, "alice", "OK v1");

    let out = command(&conf, &["query", "users", "alice"]);
    assert_eq!((out.code(), out.stdout_str().as_str()), (Some(0), "OK v1\n"), "{out:?}");
    let stderr = out.stderr_str();
    let age = stderr.strip_prefix("cache: hit (age ").and_then(|s| s.strip_suffix("s)\n"));
    assert!(age.and_then(|a| a.parse::<u64>().ok()).is_some_and(|a| a <= SLACK), "{stderr:?}");
    assert_eq!(api.requests(), 1, "query answered from the row the serving process stored");

    // A miss by query is stored for serving processes.
    let out = command(&conf, &["query", "users", "carol"]);
    assert_eq!((out.stdout_str().as_str(), out.stderr_str().as_str()), ("OK v1\n", "cache: miss\n"));
    assert_eq!(api.requests(), 2);
    assert!(lookup(&conf, &sink, "carol", "OK v1").contains(" cache=hit "));

    // --no-cache: the API is asked although a fresh row exists, and what it says is not stored.
    api.set(found("v2"));
    let out = command(&conf, &["query", "--no-cache", "users", "alice"]);
    assert_eq!((out.code(), out.stdout_str().as_str(), out.stderr_str().as_str()), (Some(0), "OK v2\n", ""));
    let out = command(&conf, &["query", "--no-cache", "users", "dave"]);
    assert_eq!((out.stdout_str().as_str(), out.stderr_str().as_str()), ("OK v2\n", ""));
    assert_eq!(api.requests(), 4);
    assert_eq!(rows(&conf), 2, "--no-cache wrote nothing");
    assert!(lookup(&conf, &sink, "alice", "OK v1").contains(" cache=hit "), "the old row is untouched");
    assert!(lookup(&conf, &sink, "dave", "OK v2").contains(" cache=miss "), "dave was not stored");
}

#[test]
fn keys_are_not_in_the_database_file_in_clear() {
    const KEY: &str = "very.secret.recipient@hidden.example";
    let api = Api::new(found("stored-value"));
    let sink = SyslogSink::new();
    let conf = users(api.url(), &sink, "{ ttl: 60s, negative_ttl: 60s, stale_if_error: 1h }");
    lookup(&conf, &sink, KEY, "OK stored-value");
    api.set(not_found());
    lookup(&conf, &sink, &format!("{KEY}.nx"), "NOTFOUND ");
    assert_eq!(rows(&conf), 2);

    let db = conf.db_path();
    let mut bytes = std::fs::read(&db).expect("read the database");
    bytes.extend(std::fs::read(format!("{}-wal", db.display())).unwrap_or_default());
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"stored-value"), "the test reads the file's rows (the value is stored as given)");
    assert!(!has(KEY.as_bytes()) && !has(b"hidden.example"), "a key is in the database file in clear");
    let mode = std::fs::metadata(&db).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the database stays 0600");
}
