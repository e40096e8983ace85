//! `pfxhttp cache stats|flush`, and a cache table that is not pfxhttp's.

use std::thread;

use super::*;

/// An API answering `{"result": "v-KEY"}` for the key in the request body, or `{}` for keys
/// starting with `nx`.
fn per_key() -> Backend {
    Backend::start(|r| {
        let key = r.body_json()["key"].as_str().unwrap_or_default().to_string();
        if key.starts_with("nx") { not_found() } else { found(&format!("v-{key}")) }
    })
}

/// `users` and `other` on `api`, both cached; `other` never looked up.
fn two_maps(api: &Backend, sink: &SyslogSink) -> Config {
    users(&api.url("/lookup"), sink, "{ ttl: 60s, negative_ttl: 60s }")
        .map("other", &api.url("/lookup"))
        .set("cache", "{ stale_if_error: 1h }")
}

/// Parses `NAME rows=N found=N not_found=N oldest=N newest=N bytes=N` strictly.
#[track_caller]
fn parse_stats(line: &str) -> (String, [u64; 6]) {
    let words: Vec<&str> = line.split(' ').collect();
    let names = ["rows", "found", "not_found", "oldest", "newest", "bytes"];
    assert_eq!(words.len(), 7, "{line:?}");
    let mut numbers = [0u64; 6];
    for (i, name) in names.iter().enumerate() {
        let value = words[i + 1].strip_prefix(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {line:?}"));
        numbers[i] = value.parse().unwrap_or_else(|_| panic!("{name} is not a number in {line:?}"));
    }
    (words[0].to_string(), numbers)
}

#[test]
fn stats_print_one_line_per_entry_and_json() {
    let api = per_key();
    let sink = SyslogSink::new();
    let conf = two_maps(&api, &sink);
    lookup(&conf, &sink, "k1", "OK v-k1");
    thread::sleep(Duration::from_millis(1100));
    lookup(&conf, &sink, "k22", "OK v-k22");
    lookup(&conf, &sink, "nx1", "NOTFOUND ");

    let out = stats(&conf);
    let mut lines: Vec<(String, [u64; 6])> = out.lines().map(parse_stats).collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{out}");
    // An entry with a cache and no rows yet is shown too.
    assert_eq!(lines[0], ("other".to_string(), [0; 6]), "{out}");
    // Bytes: each row's value, its 32-byte key hash and its entry name `map:users`.
    let bytes = (4 + 32 + 9) + (5 + 32 + 9) + (32 + 9);
    let (name, [rows, found, not_found, oldest, newest, b]) = lines[1].clone();
    assert_eq!((name.as_str(), rows, found, not_found, b), ("users", 3, 2, 1, bytes), "{out}");
    assert!((1..=SLACK + 1).contains(&oldest) && newest <= SLACK && newest < oldest, "{out}");

    let one = command(&conf, &["cache", "stats", "users"]);
    assert_eq!(one.stdout_str().lines().count(), 1, "{one:?}");
    assert!(one.stdout_str().starts_with("users rows=3 found=2 not_found=1 oldest="), "{one:?}");

    let json = command(&conf, &["cache", "stats", "--json", "users"]);
    assert_eq!(json.code(), Some(0), "{json:?}");
    let v: serde_json::Value = serde_json::from_str(json.stdout_str().trim_end()).expect("one JSON object");
    assert_eq!(
        (&v["name"], &v["kind"], &v["rows"], &v["found"], &v["not_found"], &v["bytes"]),
        (&"users".into(), &"map".into(), &3.into(), &2.into(), &1.into(), &bytes.into()),
        "{v}"
    );
    assert!(v["oldest"].as_u64().is_some_and(|o| o >= 1) && v["newest"].as_u64().is_some(), "{v}");

    let unknown = command(&conf, &["cache", "stats", "nosuch"]);
    assert_eq!(unknown.code(), Some(64), "{unknown:?}");
    assert_eq!(unknown.stderr_str(), "pfxhttp: no socket map or policy service called nosuch\n");
}

#[test]
fn flush_removes_one_row_an_entrys_rows_or_all() {
    let api = per_key();
    let sink = SyslogSink::new();
    let conf = two_maps(&api, &sink);
    for key in ["k1", "k2", "k3"] {
        lookup(&conf, &sink, key, &format!("OK v-{key}"));
    }
    sink.clear();
    let out = conf.run_serving(&["tcp", "other"], b"get k1\nget k2\n", RUN);
    assert_wire(&out.stdout, b"200 v-k1\n200 v-k2\n");
    assert_eq!(rows(&conf), 5);

    let flush = |args: &[&str], said: &str| {
        let out = command(&conf, &[&["cache", "flush"], args].concat());
        assert_eq!((out.code(), out.stdout_str().as_str(), out.stderr_str().as_str()), (Some(0), said, ""), "{args:?}");
    };
    flush(&["users", "k2"], "removed 1 row(s)\n");
    assert_eq!(rows(&conf), 4);
    assert!(lookup(&conf, &sink, "k1", "OK v-k1").contains(" cache=hit "), "k1 stays");
    assert!(lookup(&conf, &sink, "k2", "OK v-k2").contains(" cache=miss "), "k2 went");
    flush(&["users", "nosuch"], "removed 0 row(s)\n");
    flush(&["users"], "removed 3 row(s)\n");
    assert_eq!(rows(&conf), 2, "the other map's rows stay");
    flush(&[], "removed 2 row(s)\n");
    assert_eq!(rows(&conf), 0);
}

#[test]
fn a_foreign_cache_table_is_survived_and_left_alone_until_flush() {
    let api = per_key();
    let sink = SyslogSink::new();
    let conf = users(&api.url("/lookup"), &sink, "{ ttl: 60s }");
    lookup(&conf, &sink, "k1", "OK v-k1");
    let db = rusqlite::Connection::open(conf.db_path()).expect("open the state database");
    db.execute_batch(
        "DROP TABLE response_cache; CREATE TABLE response_cache(x); INSERT INTO response_cache VALUES ('mine');",
    )
    .expect("replace the table");
    drop(db);

    sink.clear();
    let stdin = [netstring(b"users k1"), netstring(b"users k1")].concat();
    let out = conf.run_serving(&["socketmap"], &stdin, RUN);
    assert_wire(&out.stdout, &[netstring(b"OK v-k1"), netstring(b"OK v-k1")].concat());
    assert_eq!(api.request_count(), 3, "both lookups asked the API");
    let lines = sink.settle(LOG_WAIT);
    let errors: Vec<&String> = lines.iter().filter(|l| severity(l).is_some_and(|s| s <= 3)).collect();
    assert_eq!(errors.len(), 1, "one error line: {lines:?}");
    let path = conf.db_path().display().to_string();
    assert!(errors[0].contains(&format!("response cache in state database {path}: ")), "{}", errors[0]);
    assert!(errors[0].contains("`pfxhttp cache flush`"), "{}", errors[0]);
    let requests: Vec<&String> = lines.iter().filter(|l| l.contains(" proto=")).collect();
    assert_eq!(requests.len(), 2, "{lines:?}");
    assert!(requests.iter().all(|l| l.contains(" reply=OK ") && !l.contains("cache=")), "{requests:?}");

    let db = rusqlite::Connection::open(conf.db_path()).expect("open the state database");
    let kept: Vec<String> = db
        .prepare("SELECT x FROM response_cache")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("the foreign table is still there");
    assert_eq!(kept, ["mine"], "a serving process never drops or recreates the table");

    let out = command(&conf, &["cache", "flush"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str(), "the cache table was damaged or not pfxhttp's: made anew, empty\n");
    lookup(&conf, &sink, "k1", "OK v-k1");
    assert!(lookup(&conf, &sink, "k1", "OK v-k1").contains(" cache=hit "), "the cache works again");
    assert_eq!(api.request_count(), 4);
}
