//! Load: 200 pfxhttp processes started at once, as spawn(8) starts one per
//! Postfix connection (empty environment, the connection on stdin/stdout), each serving 100
//! socketmap lookups, against loopback backends that answer a value derived from the key.
//!
//! The map has two hosts and a `jwt_auth` token, so every lookup reads host health from the one
//! shared state database and goes through the shared token cache. The first host answers 503
//! to one key in twenty: the lookup moves on to the second host, and the first is marked down
//! (and later found up again) in the shared database by whichever processes see it fail or
//! answer, many at once.
//!
//! No reply may be lost, doubled or belong to another key; every key is answered by a backend
//! exactly once; every process exits 0 with nothing on stderr; exactly one token is fetched;
//! nothing is logged at warning level or above (no state-database error in particular). The map
//! keeps every answer in the response cache, so the 200 processes also write rows at once, after
//! each reply: at least 99 % of the rows must be stored (a write gives way after a second).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const CONNECTIONS: usize = 200;
const LOOKUPS: usize = 100;
/// Upper bound for the whole run (about 20 s in a debug build on two cores).
const LIMIT: Duration = Duration::from_secs(120);
/// Upper bound for one reply.
const READ: Duration = Duration::from_secs(60);

/// The key of lookup `l` on connection `c`: unique across the run.
fn key(c: usize, l: usize) -> String {
    format!("c{c:03}-l{l:03}@load.example")
}

/// The value the backends give for `key`; checking it proves the reply belongs to the key.
fn value_for(key: &str) -> String {
    format!("{}-{}", key.chars().rev().collect::<String>(), key.len())
}

/// Whether the first host answers 503 to `key`: one lookup in twenty.
fn fails_on_first(key: &str) -> bool {
    // "cCCC-lLLL@load.example"
    key.get(6..9).and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l % 20 == 19)
}

/// The key a request asked for.
fn key_of(r: &Recorded) -> String {
    r.body_json()["key"].as_str().unwrap_or("?").to_string()
}

/// A target: 401 without the bearer token issued, 503 on the first host for
/// [`fails_on_first`] keys, else `{"result": value_for(key)}`.
fn target(first: bool) -> Backend {
    Backend::start(move |r| {
        if !r.header("authorization").is_some_and(|a| a.starts_with("Bearer load-token-")) {
            return Reply::json(401, r#"{"error":"no token"}"#);
        }
        let key = key_of(r);
        if first && fails_on_first(&key) {
            return Reply::json(503, r#"{"error":"busy"}"#);
        }
        Reply::json(200, &json!({ "result": value_for(&key) }).to_string())
    })
}

/// Sends the lookups of connection `c` to `child` (pipelined, or one at a time waiting for
/// each reply) and returns the problems found.
fn converse(c: usize, child: &mut Child, pipelined: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |l: usize, reply: Result<Vec<u8>, ReadError>| {
        let k = key(c, l);
        let expected = netstring(format!("OK {}", value_for(&k)).as_bytes());
        match reply {
            Ok(r) if r == expected => {}
            Ok(r) => problems.push(format!("{k}: {} instead of {}", show(&r), show(&expected))),
            Err(e) => problems.push(format!("{k}: no reply: {e}")),
        }
    };
    if pipelined {
        let all: Vec<u8> = (0..LOOKUPS).flat_map(|l| netstring(format!("demo {}", key(c, l)).as_bytes())).collect();
        child.send(&all);
        for l in 0..LOOKUPS {
            check(l, child.try_read_netstring(READ));
        }
    } else {
        for l in 0..LOOKUPS {
            child.send(&netstring(format!("demo {}", key(c, l)).as_bytes()));
            check(l, child.try_read_netstring(READ));
        }
    }
    problems
}

#[test]
fn two_hundred_connections_of_a_hundred_lookups() {
    let _machine = crate::alone();
    assert_eq!((0..LOOKUPS).filter(|l| fails_on_first(&key(7, *l))).count(), LOOKUPS / 20);
    let fetched = Arc::new(AtomicUsize::new(0));
    let f = fetched.clone();
    let tokens = Backend::start(move |_| {
        let n = f.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(200, &json!({"token": format!("load-token-{n}"), "expires_in": 3600}).to_string())
    });
    let (a, b) = (target(true), target(false));
    let sink = SyslogSink::new();
    let jwt = format!(
        "{{ token_endpoint: {}, credentials: {{ username: postfix, password: load }} }}",
        q(&tokens.url("/token"))
    );
    let conf = Config::new().syslog(&sink, ", level: warn").map("demo", "");
    let conf = conf.targets(&[&a.url("/lookup"), &b.url("/lookup")]).set("jwt_auth", &jwt);
    // Every lookup also stores its answer in the response cache: 200 processes writing at once.
    let conf = conf.set("cache", "{ stale_if_error: 1h }");
    let cfg = conf.arg();
    let cfg = cfg.as_str();

    // The database made beforehand, as `pfxhttp state init` makes it for the spawn service.
    let init = conf.run_command(&["state", "init", "--user", "root"], b"", LIMIT);
    assert_eq!(init.code(), Some(0), "{init:?}");
    let started = Instant::now();
    let children: Vec<Child> = (0..CONNECTIONS).map(|_| Child::spawn(&["--config", cfg, "socketmap"])).collect();
    let spawned = started.elapsed();
    // One thread per connection, as Postfix has one client per connection: even connections
    // pipeline their lookups, odd ones wait for each reply.
    let results: Vec<(Vec<String>, Output)> = thread::scope(|s| {
        let handles: Vec<_> = children
            .into_iter()
            .enumerate()
            .map(|(c, mut child)| {
                s.spawn(move || {
                    let problems = converse(c, &mut child, c % 2 == 0);
                    (problems, child.finish(LIMIT))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let took = started.elapsed();

    let mut problems: Vec<String> = Vec::new();
    for (c, (wrong, out)) in results.iter().enumerate() {
        problems.extend(wrong.iter().cloned());
        if !out.stderr.is_empty() || out.code() != Some(0) || !out.stdout.is_empty() {
            problems.push(format!("connection {c}: {out:?}"));
        }
    }
    // Every key answered by a backend exactly once; every 503 followed by the second host.
    let mut answered: HashMap<String, usize> = HashMap::new();
    let mut refused = Vec::new();
    for r in a.requests() {
        let k = key_of(&r);
        if fails_on_first(&k) {
            refused.push(k);
        } else {
            *answered.entry(k).or_default() += 1;
        }
    }
    for r in b.requests() {
        *answered.entry(key_of(&r)).or_default() += 1;
    }
    let doubled: Vec<_> = answered.iter().filter(|(_, n)| **n > 1).map(|(k, n)| format!("{k} ×{n}")).collect();
    let unanswered: Vec<_> = refused.iter().filter(|k| !answered.contains_key(*k)).collect();
    let lines = sink.settle(Duration::from_secs(10));
    eprintln!(
        "load: {CONNECTIONS} processes × {LOOKUPS} lookups = {} in {took:?} (spawning {spawned:?}); {} + {} requests \
         on {} + {} connections, {} answered 503; {} token(s); {} problem(s); {} log line(s)",
        CONNECTIONS * LOOKUPS,
        a.request_count(),
        b.request_count(),
        a.connections(),
        b.connections(),
        refused.len(),
        fetched.load(Ordering::SeqCst),
        problems.len(),
        lines.len(),
    );
    assert!(
        problems.is_empty(),
        "{} problem(s), the first:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    assert_eq!(answered.len(), CONNECTIONS * LOOKUPS, "keys answered");
    assert!(doubled.is_empty(), "keys answered more than once: {doubled:?}");
    assert!(unanswered.is_empty(), "503s not followed by the second host: {unanswered:?}");
    assert!(!refused.is_empty(), "the first host never failed: the shared host health was not exercised");
    assert!(lines.is_empty(), "warnings or errors logged: {lines:#?}");
    assert_eq!(fetched.load(Ordering::SeqCst), 1, "one token for all processes");
    assert!(took < LIMIT, "took {took:?}");
    let db = rusqlite::Connection::open(conf.db_path()).expect("the state database");
    let rows: i64 = db.query_row("SELECT count(*) FROM response_cache", [], |r| r.get(0)).expect("count rows");
    // A cache write gives way after waiting a second for the lock: with 200 processes on a small
    // machine a handful may (a cache keeps no promise to store), never a reply.
    let answers = CONNECTIONS * LOOKUPS;
    assert!(rows as usize <= answers && rows as usize >= answers * 99 / 100, "{rows} of {answers} answers stored");
}
