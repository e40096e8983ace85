//! Metrics rows: the totals every serving process adds its counts to, and a row per process
//! serving now. See `docs/design.md#metrics`.
//!
//! A serving process counts in memory ([`crate::metrics::Counts`]) and adds its counts to the
//! totals with `value = value + ?` in one short transaction: after a reply 1 to 2 s after its
//! start, then at most every 10 s (after a reply has been written, so no lookup waits on it),
//! and when it ends. Its
//! counts are cleared only once the transaction has committed, so a process killed at any point
//! loses what it counted since its last flush and never adds anything twice. A flush that meets
//! another process's lock gives way (the counts are kept for the next one); any other failure,
//! and a lock at the last flush, is logged once per process. Where there is no database
//! file (before `state init`), nothing is written.

use super::Store;
use crate::config::StateDb;
use crate::log;
use crate::metrics::{Counts, Series, Totals};
use rusqlite::{Connection, params};
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// How long a flush waits for another process's lock: it comes after a reply, but the client
/// may send its next request meanwhile. Counts not written are kept for the next flush.
const FLUSH_WAIT: Duration = Duration::from_millis(200);

/// How long the flush at the end waits: the client is gone, nobody waits on it, and what it
/// does not write is lost.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// The earliest first flush; it comes up to as much again later, at random.
const FIRST_FLUSH: Duration = Duration::from_secs(1);

/// The longest time between two flushes while serving.
const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Tests shorten the flush interval through this variable (milliseconds); it is read once.
const FLUSH_EVERY_VAR: &str = "PFXHTTP_METRICS_FLUSH_MS";

/// The metrics' state within a [`Store`].
#[derive(Default)]
pub(super) struct MetricsState {
    /// The serving command (`socketmap`, `tcp`, `policy`, `sasl`), once counting is on.
    command: Cell<Option<&'static str>>,
    counts: RefCell<Counts>,
    /// When a flush is due next (after a reply).
    due: Cell<Option<Instant>>,
    every: Cell<Duration>,
    /// This process's row: (pid, start time), once written.
    row: Cell<Option<(u32, u64)>>,
    /// Whether a failed flush was logged.
    told: Cell<bool>,
}

/// The face of the metrics: `store.metrics()`.
pub struct Metrics<'a> {
    store: &'a Store,
}

impl Store {
    /// The metrics of this store.
    pub fn metrics(&self) -> Metrics<'_> {
        Metrics { store: self }
    }
}

impl Metrics<'_> {
    fn state(&self) -> &MetricsState {
        &self.store.metrics_state
    }

    /// Turns counting on for serving command `command`; until then every count is dropped
    /// (commands run by hand are not counted).
    pub fn start(&self, command: &'static str) {
        let every = std::env::var(FLUSH_EVERY_VAR).ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
        let every = every.unwrap_or(FLUSH_EVERY);
        // The first flush (which writes the process's row) comes after a reply 1 to 2 s after
        // the start, the moment drawn at random: processes started together (a burst of
        // connections) do not all write at once, and a process that lives less has no row.
        let first = (FIRST_FLUSH + FIRST_FLUSH.mul_f64(fastrand::f64())).min(every);
        self.state().every.set(every);
        self.state().due.set(Some(Instant::now() + first));
        self.state().command.set(Some(command));
    }

    fn on(&self) -> bool {
        self.state().command.get().is_some()
    }

    /// Adds `n` to `series` with `labels`.
    pub fn add(&self, series: Series, labels: &[&str], n: u64) {
        if self.on() {
            self.state().counts.borrow_mut().add(series, labels, n);
        }
    }

    /// Takes back one count of an attempt whose answer turned out unusable.
    pub fn take_back(&self, series: Series, labels: &[&str]) {
        if self.on() {
            self.state().counts.borrow_mut().take_back(series, labels, 1);
        }
    }

    /// Counts one request: its outcome and how long it took.
    pub fn request(&self, kind: &str, name: &str, outcome: &str, took: Duration) {
        if self.on() {
            let mut counts = self.state().counts.borrow_mut();
            counts.add(Series::Requests, &[kind, name, outcome], 1);
            counts.observe(kind, name, took);
        }
    }

    /// Flushes after a reply was written, when a flush is due: the first 1 to 2 s after the
    /// start, then `every` after the last.
    pub fn after_reply(&self) {
        if self.state().due.get().is_some_and(|at| Instant::now() >= at) {
            self.flush(false);
        }
    }

    /// Flushes when the process ends, and removes its row. A process that answered nothing
    /// and never wrote its row has nothing to add: it leaves the database alone, so that a
    /// connection closed without a request costs no database write (and is not counted in
    /// `processes_total`).
    pub fn at_exit(&self) {
        let state = self.state();
        let nothing = state.row.get().is_none() && state.counts.borrow().is_empty();
        if self.on() && !nothing {
            self.flush(true);
        }
    }

    fn flush(&self, last: bool) {
        let state = self.state();
        state.due.set(Some(Instant::now() + state.every.get()));
        let Some(command) = state.command.get() else { return };
        // The metrics never create the database (`state init` does): a process whose lookups
        // need none opens none where there is none.
        match &self.store.setting {
            StateDb::File(path) if path.exists() => {}
            _ => return,
        }
        let row = state.row.get();
        let me = row.unwrap_or_else(|| (std::process::id(), start_time(std::process::id()).unwrap_or(0)));
        let written = self.store.with_db_raw(|db| {
            super::db::wait_for_locks(if last { EXIT_WAIT } else { FLUSH_WAIT });
            let counts = state.counts.borrow();
            let done = with_tables(db, || write(db, &counts, command, me, row.is_none(), last));
            super::db::wait_for_locks(super::db::BUSY_TIMEOUT);
            done
        });
        match written {
            Some(Ok(())) => {
                state.counts.borrow_mut().clear();
                state.row.set(Some(me));
            }
            // Another process's lock only delays a flush (the counts are kept), unless it is the
            // last one.
            Some(Err(e)) if !last && super::db::is_contention(&e) => {
                log::debug(&format!("metrics: {e}; the counts are kept for the next flush"));
            }
            Some(Err(e)) if !state.told.replace(true) => {
                let place = match &self.store.setting {
                    StateDb::File(path) => path.display().to_string(),
                    StateDb::Memory => String::new(),
                };
                let fate = if last { "they are lost" } else { "kept for the next try" };
                log::warn(&format!("metrics: cannot add this process's counts to state database {place}: {e}; {fate}"));
            }
            Some(Err(_)) | None => {}
        }
    }
}

/// Runs `write`, first creating the metrics' tables when it finds them missing (a database
/// from before the metrics): checked by the statements themselves, as creating them at every
/// flush cost every process two CREATE TABLE statements at exit.
fn with_tables(db: &Connection, write: impl Fn() -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    match write() {
        Err(e) if e.to_string().contains("no such table") => {
            db.execute_batch(super::db::METRICS_SCHEMA)?;
            write()
        }
        done => done,
    }
}

/// One transaction: this process's row (and its count in `processes_total`) when `register`,
/// the counts, and the row's removal when `last`.
fn write(
    db: &Connection,
    counts: &Counts,
    command: &str,
    me: (u32, u64),
    register: bool,
    last: bool,
) -> rusqlite::Result<()> {
    db.execute_batch("BEGIN IMMEDIATE")?;
    let done = (|| {
        if register {
            // A process whose first flush is its last would add its row and remove it in this
            // one transaction, where no reader sees it: it writes neither.
            if !last {
                db.execute(
                    "INSERT OR REPLACE INTO metrics_processes (pid, started, command) VALUES (?1, ?2, ?3)",
                    params![me.0, me.1 as i64, command],
                )?;
            }
            add(db, Series::Processes, &[command.to_string()], 1)?;
        }
        for (series, labels, n) in counts.iter() {
            add(db, series, &labels, n)?;
        }
        if last && !register {
            db.execute("DELETE FROM metrics_processes WHERE pid = ?1 AND started = ?2", params![me.0, me.1 as i64])?;
        }
        db.execute_batch("COMMIT")
    })();
    if done.is_err() {
        let _ = db.execute_batch("ROLLBACK");
    }
    done
}

fn add(db: &Connection, series: Series, labels: &[String], n: u64) -> rusqlite::Result<()> {
    let labels = serde_json::to_string(labels).unwrap_or_default();
    db.prepare_cached(
        "INSERT INTO metrics (series, labels, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (series, labels) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(params![series.row_name(), labels, i64::try_from(n).unwrap_or(i64::MAX)])
    .map(drop)
}

/// `pfxhttp stats`: the stored totals (none when no process has flushed yet).
pub fn totals(db: &Connection) -> rusqlite::Result<Totals> {
    let mut totals = Totals::new();
    let mut stmt = match db.prepare("SELECT series, labels, value FROM metrics") {
        Ok(stmt) => stmt,
        Err(e) if e.to_string().contains("no such table") => return Ok(totals),
        Err(e) => return Err(e),
    };
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (name, labels, value): (String, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let labels: Option<Vec<String>> = serde_json::from_str(&labels).ok();
        if let (Some(series), Some(labels)) = (Series::from_row_name(&name), labels) {
            totals.insert((series, labels), u64::try_from(value).unwrap_or(0));
        }
    }
    Ok(totals)
}

/// `pfxhttp stats`: the processes serving now. Rows of processes that are gone (killed) are
/// removed; a pid taken by a new process does not count, as its start time differs.
pub fn live_processes(db: &Connection) -> rusqlite::Result<u64> {
    let rows: Vec<(u32, i64)> = match db.prepare("SELECT pid, started FROM metrics_processes") {
        Ok(mut stmt) => stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?,
        Err(e) if e.to_string().contains("no such table") => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut live = 0;
    for (pid, started) in rows {
        if start_time(pid).is_some_and(|s| s as i64 == started) {
            live += 1;
        } else {
            db.execute("DELETE FROM metrics_processes WHERE pid = ?1 AND started = ?2", params![pid, started])?;
        }
    }
    Ok(live)
}

/// `pfxhttp stats`: the hosts (URL origins) marked down now.
pub fn down_hosts(db: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = match db.prepare("SELECT host FROM host_health WHERE down_until > ?1 ORDER BY host") {
        Ok(stmt) => stmt,
        Err(e) if e.to_string().contains("no such table") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    stmt.query_map([super::now_ms()], |r| r.get(0))?.collect()
}

/// `pfxhttp stats --reset`: every total back to nothing (the process rows stay).
pub fn reset(db: &Connection) -> rusqlite::Result<usize> {
    db.execute_batch(super::db::METRICS_SCHEMA)?;
    db.execute("DELETE FROM metrics", [])
}

/// A process's start time (clock ticks after boot, field 22 of `/proc/PID/stat`); `None` when
/// there is no such process, or it is a zombie (it has ended; its parent has not reaped it).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the fields after it follow
    // the last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_start_time_is_read_and_a_missing_one_is_none() {
        let mine = start_time(std::process::id());
        assert!(mine.is_some_and(|t| t > 0), "{mine:?}");
        assert_eq!(start_time(std::process::id()), mine, "stable");
        assert_eq!(start_time(u32::MAX), None);
    }
}
