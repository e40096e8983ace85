//! The benchmark driver: measures pfxhttp against the floors, interleaved, and reports ratios.
//!
//! Started by `bench/run`, which builds the release binaries and runs nginx (HTTP and HTTPS) on
//! 127.0.0.1. Every pfxhttp run is started the way Postfix's spawn(8) starts it: exec with the
//! connection on stdin/stdout (here a pipe pair), a socketmap request, the reply, EOF, exit.
//!
//! Variants, interleaved sample by sample in every round so that machine noise hits all alike:
//! floor A (`floor-a`, an empty `fn main`), cold HTTP and cold HTTPS (start, one lookup, first
//! reply), idle (start and EOF), then per round floor B (`floor-b`, keep-alive requests with
//! reqwest's blocking client alone), floor B' (the same with reqwest driven on the calling
//! thread, as pfxhttp does), floor C (`floor-c`, requests on a kept connection answered at
//! once, the pipes' own cost) and warm (lookups on one kept pfxhttp connection).
//!
//! The response cache, through the state database in the driver's temporary directory: a cold
//! HTTPS start answered from a row stored before the rounds (in the cold loop), fresh hits and
//! misses on a kept connection (after warm), and 64 processes at once with half of their
//! lookups hits, against the same load without a cache ([`concurrent`]); with `--baseline`, the
//! same load without a cache on another pfxhttp binary (the one before a change).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod concurrent;
mod report;
use report::{Stats, Targets};

/// Processes of the concurrent runs.
const PROCESSES: usize = 64;

/// Command-line settings (see `usage`).
struct Args {
    pfxhttp: PathBuf,
    floor_a: PathBuf,
    floor_b: PathBuf,
    floor_c: PathBuf,
    /// `peak-rss`, through which pfxhttp's peak RSS is measured.
    peak_rss: PathBuf,
    /// Another pfxhttp binary (the one before a change), measured in the 64-process run too.
    baseline: Option<PathBuf>,
    http_url: String,
    https_url: String,
    ca_bundle: PathBuf,
    rounds: usize,
    cold: usize,
    warm: usize,
    report: Option<PathBuf>,
    notes: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench-driver --pfxhttp BIN --floor-a BIN --floor-b BIN --floor-c BIN --peak-rss BIN --http-url URL --https-url URL \
         --ca-bundle FILE [--baseline BIN] [--rounds N] [--cold N] [--warm N] [--report FILE] [--note TEXT]..."
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        pfxhttp: PathBuf::new(),
        floor_a: PathBuf::new(),
        floor_b: PathBuf::new(),
        floor_c: PathBuf::new(),
        peak_rss: PathBuf::new(),
        baseline: None,
        http_url: String::new(),
        https_url: String::new(),
        ca_bundle: PathBuf::new(),
        rounds: 5,
        cold: 40,
        warm: 2000,
        report: None,
        notes: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let number = || value.parse::<usize>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--pfxhttp" => a.pfxhttp = value.into(),
            "--floor-a" => a.floor_a = value.into(),
            "--floor-b" => a.floor_b = value.into(),
            "--floor-c" => a.floor_c = value.into(),
            "--peak-rss" => a.peak_rss = value.into(),
            "--baseline" => a.baseline = Some(value.into()),
            "--http-url" => a.http_url = value,
            "--https-url" => a.https_url = value,
            "--ca-bundle" => a.ca_bundle = value.into(),
            "--rounds" => a.rounds = number(),
            "--cold" => a.cold = number(),
            "--warm" => a.warm = number(),
            "--report" => a.report = Some(value.into()),
            "--note" => a.notes.push(value),
            _ => usage(),
        }
    }
    if a.floor_c.as_os_str().is_empty()
        || a.peak_rss.as_os_str().is_empty()
        || a.http_url.is_empty()
        || a.https_url.is_empty()
        || a.rounds == 0
        || a.cold == 0
        || a.warm == 0
    {
        usage()
    }
    a
}

/// One started process: time to its first reply (or exit), to its exit, and what it wrote on
/// standard error.
struct Run {
    first: Duration,
    exit: Duration,
    stderr: String,
}

/// Starts `program args` with pipes, sends `request` (if any), reads one netstring reply, closes
/// stdin, reaps it, and then reads its standard error (outside the times).
fn run_once(program: &Path, args: &[&str], env: &[(&str, &Path)], request: Option<&[u8]>) -> Run {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let first = match request {
        Some(request) => {
            stdin.write_all(request).expect("write request");
            let reply = read_netstring(&mut stdout);
            let first = start.elapsed();
            check_reply(&reply);
            first
        }
        None => Duration::ZERO,
    };
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read to EOF");
    assert!(rest.is_empty(), "unexpected output after the reply: {:?}", String::from_utf8_lossy(&rest));
    let status = child.wait().expect("wait");
    let exit = start.elapsed();
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    assert!(status.success(), "{} exited with {status}: {stderr}", program.display());
    Run { first: if request.is_some() { first } else { exit }, exit, stderr }
}

/// pfxhttp's own peak RSS over a cold lookup of `request` and its exit, measured by `peak-rss`
/// (wait4 on a process this driver starts would count the driver's memory: see peak_rss.rs).
fn peak_rss(args: &Args, socketmap: &[&str], env: &[(&str, &Path)], request: &[u8]) -> u64 {
    let pfxhttp = args.pfxhttp.to_str().expect("utf-8 path");
    let argv: Vec<&str> = std::iter::once(pfxhttp).chain(socketmap.iter().copied()).collect();
    let report = run_once(&args.peak_rss, &argv, env, Some(request)).stderr;
    report.trim().parse().unwrap_or_else(|_| panic!("peak-rss reported {report:?}"))
}

/// Reads exactly one netstring from `r`.
pub(crate) fn read_netstring(r: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(colon) = buf.iter().position(|&b| b == b':') {
            let len: usize = std::str::from_utf8(&buf[..colon]).expect("length").parse().expect("length");
            if buf.len() >= colon + len + 2 {
                assert_eq!(buf.len(), colon + len + 2, "more than one reply");
                assert_eq!(buf[colon + len + 1], b',', "reply not terminated");
                return buf[colon + 1..colon + 1 + len].to_vec();
            }
        }
        let n = r.read(&mut chunk).expect("read reply");
        assert!(n > 0, "EOF before the reply; got {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Every measured lookup must be a real answer from the backend, not a fast error.
pub(crate) fn check_reply(reply: &[u8]) {
    assert!(reply.starts_with(b"OK "), "lookup failed: {:?}", String::from_utf8_lossy(reply));
}

pub(crate) fn netstring(payload: &str) -> Vec<u8> {
    format!("{}:{payload},", payload.len()).into_bytes()
}

/// Lookups on one kept pfxhttp connection to `map`: one warm-up, then `args.warm` timed ones;
/// `key(i)` is the key of lookup `i` (0: the warm-up).
fn warm(args: &Args, config: &Path, env: &[(&str, &Path)], map: &str, key: impl Fn(usize) -> String) -> Vec<Duration> {
    let argv = ["--config", config.to_str().expect("utf-8 path"), "socketmap"];
    kept(args, &args.pfxhttp, &argv, env, map, key)
}

/// Requests on one kept connection to `program argv`: one warm-up, then `args.warm` timed ones.
fn kept(
    args: &Args,
    program: &Path,
    argv: &[&str],
    env: &[(&str, &Path)],
    map: &str,
    key: impl Fn(usize) -> String,
) -> Vec<Duration> {
    let mut child = Command::new(program)
        .args(argv)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut times = Vec::with_capacity(args.warm);
    for i in 0..=args.warm {
        let request = netstring(&format!("{map} {}", key(i)));
        let start = Instant::now();
        stdin.write_all(&request).expect("write");
        let reply = read_netstring(&mut stdout);
        let took = start.elapsed();
        check_reply(&reply);
        if i > 0 {
            times.push(took);
        }
    }
    drop(stdin);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{} exited with {status}", program.display());
    times
}

/// floor-b's own timings of `n` keep-alive requests (`mode`: "" or "current-thread").
fn floor_b(args: &Args, mode: &str) -> Vec<Duration> {
    let n = args.warm.to_string();
    let mut argv = vec![args.http_url.as_str(), n.as_str()];
    if !mode.is_empty() {
        argv.push(mode);
    }
    let out = Command::new(&args.floor_b).args(argv).stderr(Stdio::inherit()).output().expect("start floor-b");
    assert!(out.status.success(), "floor-b failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| Duration::from_nanos(l.parse().expect("nanoseconds")))
        .collect()
}

/// A syslog socket that drops what it gets, so pfxhttp logs as it would in production.
fn syslog_sink(path: &Path) -> std::thread::JoinHandle<()> {
    let sock = UnixDatagram::bind(path).expect("bind the syslog sink");
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while sock.recv(&mut buf).is_ok() {}
    })
}

/// The maps measured, by name: without a cache (`http`, `https`), and with one (`hit`, `miss`,
/// `https_hit`, `mix`).
/// `metrics: false` writes the same with the serving processes' counting off; the key is left
/// out when metrics are on (their default), so that a `--baseline` build from before metrics
/// reads the same file.
fn write_config(path: &Path, args: &Args, log: &Path, state_db: &Path, metrics: bool) {
    let mut yaml = String::new();
    writeln!(yaml, "server:\n  logging: {{ syslog_socket: {} }}", log.display()).unwrap();
    if !metrics {
        writeln!(yaml, "  metrics: false").unwrap();
    }
    // The serving processes create the file in this existing directory.
    writeln!(yaml, "  state_db: {}\nsocket_maps:", state_db.display()).unwrap();
    let maps = [
        ("http", &args.http_url, ""),
        ("https", &args.https_url, ""),
        ("hit", &args.http_url, ", cache: { ttl: 1h }"),
        ("miss", &args.http_url, ", cache: { stale_if_error: 1h }"),
        ("https_hit", &args.https_url, ", cache: { ttl: 1h }"),
        ("mix", &args.http_url, ", cache: { ttl: 1h }"),
    ];
    for (name, url, cache) in maps {
        writeln!(
            yaml,
            "  {name}: {{ target: '{url}', payload: '{{\"key\":\"{{{{ key }}}}\"}}', value_field: result{cache} }}"
        )
        .unwrap();
    }
    std::fs::write(path, yaml).expect("write config");
}

fn main() {
    let args = parse_args();
    let dir = std::env::temp_dir().join(format!("pfxhttp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("log.sock");
    let _sink = syslog_sink(&log);
    let config = dir.join("pfxhttp.yml");
    write_config(&config, &args, &log, &dir.join("state.db"), true);
    let no_metrics = dir.join("pfxhttp-no-metrics.yml");
    write_config(&no_metrics, &args, &log, &dir.join("state.db"), false);
    // The default trust settings: the system bundle, here with the harness's CA added to it.
    let env: &[(&str, &Path)] = &[("SSL_CERT_FILE", args.ca_bundle.as_path())];
    let conf = config.to_str().expect("utf-8 path");
    let socketmap = ["--config", conf, "socketmap"];
    // The row the cold starts from the cache answer with, stored (over HTTPS) before the rounds.
    let https_hit_req = netstring("https_hit user@example.org");
    run_once(&args.pfxhttp, &socketmap, env, Some(&https_hit_req));

    let load_before = load_average();
    let mut s = report::Samples::default();
    for round in 0..args.rounds {
        eprint!("round {}/{}: cold", round + 1, args.rounds);
        cold_round(&args, &socketmap, env, round, &mut s);
        eprint!(", warm");
        warm_round(&args, &config, env, round, &mut s);
        eprint!(", metrics off");
        metrics_round(&args, (&config, &no_metrics), env, round, &mut s);
        eprint!(", {PROCESSES} processes");
        concurrent_round(&args, &config, env, round, &mut s);
        eprintln!();
    }
    let _ = std::fs::remove_dir_all(&dir);

    let binary_size = std::fs::metadata(&args.pfxhttp).expect("binary").len();
    let stats = Stats::from(&s, binary_size);
    let how = format!(
        "{}; load average (1, 5, 15 min) {load_before} at the start (other work on the machine shows there), \
         {} at the end (the run's own 64 processes count there too)",
        args_summary(&args),
        load_average()
    );
    let text = report::render(&stats, &Targets::default(), &args.notes, &how);
    println!("{text}");
    if let Some(path) = &args.report {
        report::write_results(path, &text).expect("write the results file");
        eprintln!("results written to {}", path.display());
    }
}

/// The cold variants, interleaved start by start.
fn cold_round(args: &Args, socketmap: &[&str], env: &[(&str, &Path)], round: usize, s: &mut report::Samples) {
    let http_req = netstring("http user@example.org");
    let https_req = netstring("https user@example.org");
    let https_hit_req = netstring("https_hit user@example.org");
    for _ in 0..args.cold {
        s.floor_a.push(round, run_once(&args.floor_a, &[], &[], None).exit);
        s.cold_http.push(round, run_once(&args.pfxhttp, socketmap, env, Some(&http_req)).first);
        let https = run_once(&args.pfxhttp, socketmap, env, Some(&https_req));
        s.cold_https.push(round, https.first);
        s.rss_kib.push(peak_rss(args, socketmap, env, &https_req));
        s.cold_https_cached.push(round, run_once(&args.pfxhttp, socketmap, env, Some(&https_hit_req)).first);
        s.idle.push(round, run_once(&args.pfxhttp, socketmap, env, None).exit);
    }
}

/// The floors B and C and the lookups on a kept connection, without and with the cache.
fn warm_round(args: &Args, config: &Path, env: &[(&str, &Path)], round: usize, s: &mut report::Samples) {
    for t in floor_b(args, "") {
        s.floor_b.push(round, t);
    }
    for t in floor_b(args, "current-thread") {
        s.floor_b_current.push(round, t);
    }
    for t in kept(args, &args.floor_c, &[], &[], "http", |i| format!("user{i}@example.org")) {
        s.floor_c.push(round, t);
    }
    for t in warm(args, config, env, "http", |i| format!("user{i}@example.org")) {
        s.warm.push(round, t);
    }
    // One key: the warm-up lookup stores it, every timed one is a fresh hit.
    for t in warm(args, config, env, "hit", |_| "user@example.org".to_string()) {
        s.cache_hit.push(round, t);
    }
    // A key never asked before in every lookup of every round: each misses and stores a row.
    for t in warm(args, config, env, "miss", |i| format!("user{i}@r{round}.example.org")) {
        s.cache_miss.push(round, t);
    }
}

/// Warm lookups with metrics on and off, the first of the two alternating by round. A process
/// flushes its counts 1 to 2 s after its start and then every 10 s (after a reply, before the
/// next request is read), so this measures the counting a lookup does and, in a long run, a
/// flush or two.
fn metrics_round(args: &Args, configs: (&Path, &Path), env: &[(&str, &Path)], round: usize, s: &mut report::Samples) {
    let key = |i: usize| format!("user{i}@example.org");
    let first = round & 1 == 0;
    for on in [first, !first] {
        let config = if on { configs.0 } else { configs.1 };
        let times = warm(args, config, env, "http", key);
        let series = if on { &mut s.warm_metrics } else { &mut s.warm_no_metrics };
        times.into_iter().for_each(|t| series.push(round, t));
    }
}

/// The concurrent load without and with the cache, the first of the two alternating by round.
fn concurrent_round(args: &Args, config: &Path, env: &[(&str, &Path)], round: usize, s: &mut report::Samples) {
    let load = concurrent::Load {
        pfxhttp: &args.pfxhttp,
        config,
        env,
        processes: PROCESSES,
        per_process: per_process(args),
        run: round,
    };
    // The binary before the change, under the same load without a cache: first in odd rounds,
    // last in even ones, as a run that follows another is faster (the same binary on both
    // sides measured 0.95 when the baseline always went last).
    let baseline = |s: &mut report::Samples| {
        if let Some(baseline) = &args.baseline {
            let load = concurrent::Load { pfxhttp: baseline, ..load };
            s.concurrent_baseline.push(round, concurrent::run(&load, "http"));
        }
    };
    let cached_first = round.is_multiple_of(2);
    if !cached_first {
        baseline(s);
    }
    for cached in [cached_first, !cached_first] {
        if cached {
            s.concurrent_cached.push(round, concurrent::run(&load, "mix"));
        } else {
            s.concurrent_plain.push(round, concurrent::run(&load, "http"));
        }
    }
    if cached_first {
        baseline(s);
    }
}

/// Timed lookups per process in a concurrent run: as many in all as a warm run has, times 4.
fn per_process(args: &Args) -> usize {
    (args.warm * 4 / PROCESSES).max(4)
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn args_summary(a: &Args) -> String {
    format!(
        "{} rounds; per round {} starts of each cold variant (interleaved), {} warm lookups of each kept-connection \
         variant and {} requests of each floor B, and {PROCESSES} processes × {} lookups without and with the cache",
        a.rounds,
        a.cold,
        a.warm,
        a.warm,
        per_process(a)
    )
}
