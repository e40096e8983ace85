//! Many pfxhttp processes at once, as Postfix runs them under load: one kept connection each,
//! each driven by a thread of its own, all started and warmed up before the clock runs.
//!
//! Every other lookup asks for one of a few popular keys (a hit once the cache holds them);
//! the others ask for keys never asked before (a miss, which a caching map then stores). The
//! same key sequence goes to a map with a cache and to one without, so the two runs compare the
//! cache's cost under contention for the state database against what its hits save.

use crate::{check_reply, netstring, read_netstring};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// How many distinct popular keys the hits are spread over.
const HOT_KEYS: usize = 8;

/// One concurrent run.
pub struct Load<'a> {
    pub pfxhttp: &'a Path,
    pub config: &'a Path,
    pub env: &'a [(&'a str, &'a Path)],
    pub processes: usize,
    /// Timed lookups per process.
    pub per_process: usize,
    /// Makes the miss keys of this run differ from every other run's.
    pub run: usize,
}

/// The key of process `p`'s lookup `i` (`None`: its warm-up, which asks a popular key).
fn key(load: &Load<'_>, p: usize, i: Option<usize>) -> String {
    match i {
        None => format!("hot{}@example.org", p % HOT_KEYS),
        Some(i) if i.is_multiple_of(2) => format!("hot{}@example.org", (p + i / 2) % HOT_KEYS),
        Some(i) => format!("user{i}-{p}@run{}.example.org", load.run),
    }
}

/// Runs the load against `map`; returns the wall time per lookup (the inverse of lookups/s).
pub fn run(load: &Load<'_>, map: &str) -> Duration {
    let start_line = Barrier::new(load.processes + 1);
    let finish_line = Barrier::new(load.processes + 1);
    std::thread::scope(|scope| {
        for p in 0..load.processes {
            let (start_line, finish_line) = (&start_line, &finish_line);
            scope.spawn(move || process(load, map, p, start_line, finish_line));
        }
        start_line.wait();
        let start = Instant::now();
        finish_line.wait();
        let took = start.elapsed();
        took / u32::try_from(load.processes * load.per_process).expect("lookup count")
    })
}

/// One process: started, warmed up, then its timed lookups between the two barriers.
fn process(load: &Load<'_>, map: &str, p: usize, start_line: &Barrier, finish_line: &Barrier) {
    let mut child = Command::new(load.pfxhttp)
        .args(["--config", load.config.to_str().expect("utf-8 path"), "socketmap"])
        .envs(load.env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pfxhttp");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut lookup = |key: String| {
        stdin.write_all(&netstring(&format!("{map} {key}"))).expect("write");
        check_reply(&read_netstring(&mut stdout));
    };
    lookup(key(load, p, None));
    start_line.wait();
    for i in 0..load.per_process {
        lookup(key(load, p, Some(i)));
    }
    finish_line.wait();
    drop(stdin);
    let status = child.wait().expect("wait for pfxhttp");
    assert!(status.success(), "pfxhttp exited with {status}");
}
