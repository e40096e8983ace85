//! `pfxhttp stats`: the metrics' totals in the Prometheus text format, on stdout or in a file for
//! node_exporter's textfile collector; `--reset` zeroes them.

use super::admin::Setup;
use crate::config::{Config, Format, StateDb};
use crate::metrics::{self, Live};
use crate::state::{self, metrics as stored};
use crate::text::printable;
use crate::{exit, http};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What `pfxhttp stats` was asked to do.
pub(super) struct Options {
    pub textfile: Option<PathBuf>,
    pub reset: bool,
    pub yes: bool,
}

pub(super) fn run(path: Result<PathBuf, String>, format: Format, options: Options) -> u8 {
    let config_path = path.clone().ok();
    let setup = match Setup::load(path, format) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let db_path = match &setup.config.state_db {
        StateDb::Memory => {
            eprintln!("pfxhttp: server.state_db is :memory:: each process's counts end with it; nothing to show");
            return exit::TEMPFAIL;
        }
        StateDb::File(p) if !p.exists() => {
            eprintln!("pfxhttp: no state database at {} (pfxhttp state init creates it)", p.display());
            return exit::TEMPFAIL;
        }
        StateDb::File(p) => p.clone(),
    };
    if options.reset && !options.yes && !confirmed(&db_path) {
        eprintln!("pfxhttp: nothing reset");
        return exit::USAGE;
    }
    let text = match (&options.textfile, config_path) {
        // Root reads the database as its directory's owner, for good, and that user may not
        // write the textfile's directory: the reading is done by a child process.
        (Some(_), Some(config)) if rustix::process::geteuid().is_root() => read_in_child(&config, format),
        _ => read(&setup.config, &db_path, options.reset),
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!("pfxhttp: {}", printable(&e));
            return exit::TEMPFAIL;
        }
    };
    match &options.textfile {
        Some(file) => match write_atomically(file, text.as_bytes()) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("pfxhttp: cannot write {}: {e}", file.display());
                exit::TEMPFAIL
            }
        },
        None => {
            print!("{text}");
            exit::OK
        }
    }
}

/// Asks on the terminal whether to zero the counters.
fn confirmed(db: &Path) -> bool {
    eprint!("Zero every pfxhttp counter in {}? [y/N] ", db.display());
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// The totals as text, read as the state directory's owner (run as root, this takes that
/// identity for good); with `reset`, they are zeroed after the reading.
fn read(config: &Config, db_path: &Path, reset: bool) -> Result<String, String> {
    let db = state::try_open(db_path).map_err(|e| e.to_string())?;
    let failed = |e: rusqlite::Error| format!("metrics in {}: {e}", db_path.display());
    let totals = stored::totals(&db).map_err(failed)?;
    let down = stored::down_hosts(&db).map_err(failed)?;
    let live = Live { hosts: hosts(config, &down), connections: stored::live_processes(&db).map_err(failed)? };
    if reset {
        stored::reset(&db).map_err(failed)?;
    }
    Ok(metrics::render(&totals, &live))
}

/// The totals as text, from `pfxhttp stats` run as a child process.
fn read_in_child(config: &Path, format: Format) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find pfxhttp itself: {e}"))?;
    let format = clap::ValueEnum::to_possible_value(&format).map(|v| v.get_name().to_string()).unwrap_or_default();
    let out = std::process::Command::new(exe)
        .arg("--config")
        .arg(config)
        .args(["--format", &format, "stats"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run pfxhttp stats: {e}"))?;
    if !out.status.success() {
        return Err(format!("pfxhttp stats failed ({})", out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| "pfxhttp stats printed something that is not UTF-8".into())
}

/// Each host of each entry with two or more hosts (those whose health is kept), with whether it
/// is marked down; hosts marked down that no entry names now come with an empty name.
fn hosts(config: &Config, down: &[String]) -> Vec<(String, String, bool)> {
    let entries = config.maps.iter().chain(&config.policies).chain(config.sasl.iter().map(|s| &s.entry));
    let mut out: Vec<(String, String, bool)> = Vec::new();
    let mut named = Vec::new();
    for entry in entries.filter(|e| e.targets.len() > 1) {
        for url in entry.targets.iter().filter_map(|t| t.fixed.as_ref()) {
            let origin = http::origin_of(url);
            out.push((entry.name.clone(), http::host_of(url), down.contains(&origin)));
            named.push(origin);
        }
    }
    for origin in down.iter().filter(|o| !named.contains(o)) {
        let host = reqwest::Url::parse(origin).map_or_else(|_| origin.clone(), |u| http::host_of(&u));
        out.push((String::new(), host, true));
    }
    out.dedup();
    out
}

/// Writes `bytes` to a temporary file in `file`'s directory, then renames it over `file`, so that
/// a reader never sees half of it.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = file.file_name().ok_or_else(|| std::io::Error::other("it names no file"))?;
    let temp = file.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&temp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}
