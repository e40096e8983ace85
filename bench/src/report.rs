//! Statistics over the samples, the ratios against the targets, and the dated results table.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Samples of one variant, kept per round so the spread between rounds can be shown.
#[derive(Default)]
pub struct Series(Vec<Vec<Duration>>);

impl Series {
    pub fn push(&mut self, round: usize, d: Duration) {
        if self.0.len() <= round {
            self.0.resize_with(round + 1, Vec::new);
        }
        self.0[round].push(d);
    }

    fn all(&self) -> Vec<Duration> {
        let mut v: Vec<Duration> = self.0.iter().flatten().copied().collect();
        v.sort();
        v
    }
}

#[derive(Default)]
pub struct Samples {
    pub floor_a: Series,
    pub cold_http: Series,
    pub cold_https: Series,
    pub idle: Series,
    pub floor_b: Series,
    pub floor_b_current: Series,
    pub floor_c: Series,
    pub warm: Series,
    pub cold_https_cached: Series,
    pub cache_hit: Series,
    pub cache_miss: Series,
    /// Warm lookups with `server.metrics` on and off, measured side by side.
    pub warm_metrics: Series,
    pub warm_no_metrics: Series,
    /// Wall time per lookup of the concurrent runs (one sample per run).
    pub concurrent_plain: Series,
    pub concurrent_cached: Series,
    /// The same as `concurrent_plain` with the `--baseline` binary (empty without one).
    pub concurrent_baseline: Series,
    pub rss_kib: Vec<u64>,
}

/// Median, p10, p90 and the lowest and highest of the rounds' medians, in microseconds.
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub round_min: f64,
    pub round_max: f64,
}

fn pick(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

impl Summary {
    fn of(series: &Series) -> Summary {
        let all = series.all();
        let rounds: Vec<f64> = series
            .0
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| {
                let mut r = r.clone();
                r.sort();
                pick(&r, 0.5)
            })
            .collect();
        Summary {
            n: all.len(),
            median: pick(&all, 0.5),
            p10: pick(&all, 0.1),
            p90: pick(&all, 0.9),
            round_min: rounds.iter().copied().fold(f64::INFINITY, f64::min),
            round_max: rounds.iter().copied().fold(0.0, f64::max),
        }
    }
}

pub struct Stats {
    pub floor_a: Summary,
    pub cold_http: Summary,
    pub cold_https: Summary,
    pub idle: Summary,
    pub floor_b: Summary,
    pub floor_b_current: Summary,
    pub floor_c: Summary,
    pub warm: Summary,
    pub cold_https_cached: Summary,
    pub cache_hit: Summary,
    pub cache_miss: Summary,
    pub warm_metrics: Summary,
    pub warm_no_metrics: Summary,
    pub concurrent_plain: Summary,
    pub concurrent_cached: Summary,
    pub concurrent_baseline: Option<Summary>,
    pub rss_median_kib: u64,
    pub rss_max_kib: u64,
    pub binary_bytes: u64,
}

impl Stats {
    pub fn from(s: &Samples, binary_bytes: u64) -> Stats {
        let mut rss = s.rss_kib.clone();
        rss.sort();
        Stats {
            floor_a: Summary::of(&s.floor_a),
            cold_http: Summary::of(&s.cold_http),
            cold_https: Summary::of(&s.cold_https),
            idle: Summary::of(&s.idle),
            floor_b: Summary::of(&s.floor_b),
            floor_b_current: Summary::of(&s.floor_b_current),
            floor_c: Summary::of(&s.floor_c),
            warm: Summary::of(&s.warm),
            cold_https_cached: Summary::of(&s.cold_https_cached),
            cache_hit: Summary::of(&s.cache_hit),
            cache_miss: Summary::of(&s.cache_miss),
            warm_metrics: Summary::of(&s.warm_metrics),
            warm_no_metrics: Summary::of(&s.warm_no_metrics),
            concurrent_plain: Summary::of(&s.concurrent_plain),
            concurrent_cached: Summary::of(&s.concurrent_cached),
            concurrent_baseline: (!s.concurrent_baseline.all().is_empty()).then(|| Summary::of(&s.concurrent_baseline)),
            rss_median_kib: rss[rss.len() / 2],
            rss_max_kib: *rss.last().expect("RSS samples"),
            binary_bytes,
        }
    }
}

/// The targets of the benchmark, response cache and start-up issues: upper limits, but for
/// `cache_concurrent` and `startup.concurrent`, lower ones.
pub struct Targets {
    pub cold_http: f64,
    pub cold_https: f64,
    pub warm: f64,
    pub rss_mib: f64,
    pub binary_mb: f64,
    pub cache_hit: f64,
    pub cache_miss: f64,
    pub cache_cold: f64,
    pub cache_concurrent: f64,
    pub metrics: f64,
    pub startup: Startup,
}

/// The start-up targets: a process per connection close to an empty program.
pub struct Startup {
    pub idle: f64,
    pub cold_http: f64,
    pub cold_https: f64,
    /// warm / floor B′.
    pub warm: f64,
    pub rss_mib: f64,
    /// 64 processes, lookups/s against the `--baseline` binary's.
    pub concurrent: f64,
}

impl Default for Targets {
    fn default() -> Targets {
        Targets {
            cold_http: 3.0,
            cold_https: 5.0,
            warm: 1.3,
            rss_mib: 6.0,
            binary_mb: 5.0,
            cache_hit: 0.3,
            cache_miss: 1.10,
            cache_cold: 1.1,
            cache_concurrent: 1.0,
            metrics: 1.03,
            startup: Startup { idle: 1.3, cold_http: 1.5, cold_https: 2.5, warm: 1.15, rss_mib: 4.0, concurrent: 1.15 },
        }
    }
}

fn verdict(value: f64, limit: f64) -> &'static str {
    if value <= limit { "met" } else { "**missed**" }
}

fn verdict_at_least(value: f64, limit: f64) -> &'static str {
    if value >= limit { "met" } else { "**missed**" }
}

/// The dated section for `bench/RESULTS.md` (also printed).
pub fn render(s: &Stats, t: &Targets, notes: &[String], how: &str) -> String {
    let mut o = String::new();
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d %H:%M %Z")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    writeln!(o, "## {date}\n").unwrap();
    writeln!(o, "Machine: {}.  ", machine()).unwrap();
    for note in notes {
        writeln!(o, "{note}.  ").unwrap();
    }
    writeln!(o, "Run: {how}.\n").unwrap();
    variants(&mut o, s);
    writeln!(o, "\n| measure | value | target | |").unwrap();
    writeln!(o, "|---|---|---|---|").unwrap();
    for (name, value, target, verdict) in measures(s, t) {
        writeln!(o, "| {name} | {value} | {target} | {verdict} |").unwrap();
    }
    o
}

/// The table of the variants' timings.
fn variants(o: &mut String, s: &Stats) {
    writeln!(o, "| variant | n | median µs | p10 µs | p90 µs | rounds' medians µs |").unwrap();
    writeln!(o, "|---|---|---|---|---|---|").unwrap();
    let rows = [
        ("floor A: exec `fn main(){}`, exit", &s.floor_a),
        ("cold HTTP: start, 1 lookup, first reply", &s.cold_http),
        ("cold HTTPS: start, 1 lookup, first reply", &s.cold_https),
        ("cold HTTPS from the cache: start, 1 lookup answered from a stored row, first reply", &s.cold_https_cached),
        ("idle: start, EOF, exit", &s.idle),
        ("floor B: 1 keep-alive request, reqwest alone (blocking client)", &s.floor_b),
        ("floor B′: the same, reqwest on the calling thread as in pfxhttp", &s.floor_b_current),
        ("floor C: 1 request on a kept connection to a process that answers at once (the pipes)", &s.floor_c),
        ("warm: 1 lookup on a kept pfxhttp connection", &s.warm),
        ("cache hit: the same, `ttl: 1h`, one key (fresh row)", &s.cache_hit),
        ("cache miss: the same, `stale_if_error: 1h`, a new key each (a row stored each)", &s.cache_miss),
        ("warm, metrics on (`server.metrics`, the default), side by side with the next", &s.warm_metrics),
        ("warm, metrics off (`server.metrics: false`)", &s.warm_no_metrics),
        ("64 processes, 50 % popular keys, no cache: wall time per lookup", &s.concurrent_plain),
        ("the same with `ttl: 1h` (the popular keys fresh hits)", &s.concurrent_cached),
    ];
    let baseline = s.concurrent_baseline.as_ref().map(|b| ("the same without cache, the `--baseline` binary", b));
    for (name, x) in rows.into_iter().chain(baseline) {
        writeln!(
            o,
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1}–{:.1} |",
            x.n, x.median, x.p10, x.p90, x.round_min, x.round_max
        )
        .unwrap();
    }
}

/// A target with one decimal, or two when it has them: 3.0, 1.3, 0.3.
fn limit_text(limit: f64) -> String {
    if ((limit * 10.0).round() - limit * 10.0).abs() < 1e-9 { format!("{limit:.1}") } else { format!("{limit:.2}") }
}

/// The measures: name, value, target, verdict.
fn measures(s: &Stats, t: &Targets) -> Vec<(String, String, String, &'static str)> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let ratio = |name: &str, value: f64, limit: f64| {
        (name.to_string(), format!("{value:.2}"), format!("≤ {}", limit_text(limit)), verdict(value, limit))
    };
    let rss = mib(s.rss_max_kib);
    let size = s.binary_bytes as f64 / 1e6;
    let per_second = |x: &Summary| 1e6 / x.median;
    let (plain, cached) = (per_second(&s.concurrent_plain), per_second(&s.concurrent_cached));
    vec![
        ratio("cold HTTP first reply / floor A", s.cold_http.median / s.floor_a.median, t.cold_http),
        ratio("cold HTTPS first reply / floor A", s.cold_https.median / s.floor_a.median, t.cold_https),
        ratio("warm lookup / floor B", s.warm.median / s.floor_b.median, t.warm),
        ratio(
            "warm lookup / floor B′ (the same client as pfxhttp's: pfxhttp's own overhead)",
            s.warm.median / s.floor_b_current.median,
            t.warm,
        ),
        (
            format!("peak RSS, cold HTTPS (max of {}; median {:.2})", s.cold_https.n, mib(s.rss_median_kib)),
            format!("{rss:.2} MiB"),
            format!("≤ {:.0} MiB", t.rss_mib),
            verdict(rss, t.rss_mib),
        ),
        (
            "release binary".to_string(),
            format!("{size:.2} MB"),
            format!("≤ {:.0} MB", t.binary_mb),
            verdict(size, t.binary_mb),
        ),
        ratio("cache: fresh hit on a kept connection / floor B", s.cache_hit.median / s.floor_b.median, t.cache_hit),
        (
            "cache: the same, without the pipes' own cost: (fresh hit − floor C) / floor B".to_string(),
            format!("{:.2}", (s.cache_hit.median - s.floor_c.median) / s.floor_b.median),
            "(for information)".to_string(),
            "",
        ),
        ratio(
            "cache: miss on a kept connection / warm lookup without cache",
            s.cache_miss.median / s.warm.median,
            t.cache_miss,
        ),
        ratio(
            "metrics: warm lookup with metrics on / off",
            s.warm_metrics.median / s.warm_no_metrics.median,
            t.metrics,
        ),
        ratio(
            "cache: cold HTTPS answered from the cache / cold HTTP without cache",
            s.cold_https_cached.median / s.cold_http.median,
            t.cache_cold,
        ),
        (
            format!("cache: 64 processes, 50 % hits, lookups/s with / without cache ({cached:.0} / {plain:.0})"),
            format!("{:.2}", cached / plain),
            format!("≥ {}", limit_text(t.cache_concurrent)),
            verdict_at_least(cached / plain, t.cache_concurrent),
        ),
    ]
    .into_iter()
    .chain(startup_measures(s, &t.startup))
    .collect()
}

/// The start-up targets' measures (the ones above keep their earlier targets).
fn startup_measures(s: &Stats, t: &Startup) -> Vec<(String, String, String, &'static str)> {
    let ratio = |name: &str, value: f64, limit: f64| {
        (format!("start-up: {name}"), format!("{value:.2}"), format!("≤ {}", limit_text(limit)), verdict(value, limit))
    };
    let rss = s.rss_max_kib as f64 / 1024.0;
    let mut out = vec![
        ratio("idle (start, EOF, exit) / floor A", s.idle.median / s.floor_a.median, t.idle),
        ratio("cold HTTP first reply / floor A", s.cold_http.median / s.floor_a.median, t.cold_http),
        ratio("cold HTTPS first reply / floor A", s.cold_https.median / s.floor_a.median, t.cold_https),
        ratio("warm lookup / floor B′", s.warm.median / s.floor_b_current.median, t.warm),
        (
            "start-up: peak RSS, cold HTTPS (max)".to_string(),
            format!("{rss:.2} MiB"),
            format!("≤ {:.0} MiB", t.rss_mib),
            verdict(rss, t.rss_mib),
        ),
    ];
    let now = 1e6 / s.concurrent_plain.median;
    out.push(match &s.concurrent_baseline {
        Some(b) => {
            let before = 1e6 / b.median;
            (
                format!(
                    "start-up: 64 processes, no cache, lookups/s / the `--baseline` binary's ({now:.0} / {before:.0})"
                ),
                format!("{:.2}", now / before),
                format!("≥ {}", limit_text(t.concurrent)),
                verdict_at_least(now / before, t.concurrent),
            )
        }
        None => (
            format!("start-up: 64 processes, no cache, lookups/s ({now:.0}) / before"),
            "not measured".to_string(),
            format!("≥ {} (BENCH_BASELINE)", limit_text(t.concurrent)),
            "",
        ),
    });
    out
}

/// CPU model, cores, memory, kernel and OS, read from /proc and /etc.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| format!("{:.0} GiB", k / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem}, Linux {kernel}, {os}")
}

/// Puts `section` at the top of the results (after the file's introduction, before older runs).
pub fn write_results(path: &Path, section: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let (intro, runs) = match old.find("\n## ") {
        Some(i) => old.split_at(i + 1),
        None if old.is_empty() => ("# Benchmark results\n\nWritten by `bench/run`; newest first.\n\n", ""),
        None => (old.as_str(), ""),
    };
    let intro = if intro.ends_with("\n\n") { intro.to_string() } else { format!("{intro}\n") };
    std::fs::write(path, format!("{intro}{section}\n{runs}"))
}
