//! Opening the SQLite file, its schema, and the `state init` / `state check` commands' work.

use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema this pfxhttp writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// How long a statement waits for another process's lock. A lookup waits too, so it is short;
/// it is not shorter, because a crowd of processes writing response cache rows at once, each
/// holding the lock for microseconds but on a machine with far more processes than cores, can
/// keep a process waiting a few hundred milliseconds, and a process that waited its bound out
/// gives the database up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// The wait of each of the few tries to open the database: a lock that outlasts them all is a
/// stuck process, found out once per process.
const OPEN_WAIT: Duration = Duration::from_millis(250);

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS host_health (
    host TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    down_until INTEGER NOT NULL,
    last_error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    key TEXT PRIMARY KEY,
    token TEXT,
    refresh_token TEXT,
    expires_at INTEGER NOT NULL DEFAULT 0,
    refresh_from INTEGER NOT NULL DEFAULT 0,
    fetched_at INTEGER NOT NULL DEFAULT 0,
    lease_pid INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS discovery (
    uri TEXT PRIMARY KEY,
    token_endpoint TEXT NOT NULL,
    fetched_at INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// The response cache's table, added to version 1 without a new version (older pfxhttp never
/// reads it): made by `state init`, or by the first process that uses the cache.
pub(super) const CACHE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS response_cache (
    entry TEXT NOT NULL,
    key BLOB NOT NULL,
    found INTEGER NOT NULL,
    value TEXT NOT NULL,
    stored_at INTEGER NOT NULL,
    fresh_until INTEGER NOT NULL,
    stale_until INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (entry, key)
);
CREATE INDEX IF NOT EXISTS response_cache_age ON response_cache (entry, stored_at);
CREATE INDEX IF NOT EXISTS response_cache_expiry ON response_cache (entry, expires_at);
";

/// The metrics' tables, added to version 1 without a new version as the cache's was (older
/// pfxhttp never reads them): made by `state init`, or by the first flush of a serving process.
/// `metrics` holds the totals, one row per series and label values (a JSON array);
/// `metrics_processes` a row per serving process, while it lives.
pub(super) const METRICS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS metrics (
    series TEXT NOT NULL,
    labels TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (series, labels)
);
CREATE TABLE IF NOT EXISTS metrics_processes (
    pid INTEGER NOT NULL,
    started INTEGER NOT NULL,
    command TEXT NOT NULL,
    PRIMARY KEY (pid, started)
);
";

/// Makes the state database wait up to `bound` for another process's lock (no wait with zero): yields at
/// first, then sleeps of 50 µs. pfxhttp's transactions hold the lock for microseconds, while
/// SQLite's own wait sleeps a whole millisecond at the first conflict and longer at each next
/// one: with a hundred processes writing (the response cache), a process could lose the race for
/// the whole bound and give the database up.
///
/// The wait is installed once per connection (in [`open`]); this sets its bound for what follows.
pub(super) fn wait_for_locks(bound: Duration) {
    WAIT_BOUND.with(|b| b.set(bound));
}

thread_local! {
    /// The bound of the wait [`wait_briefly`] does; each connection is used by one thread.
    static WAIT_BOUND: std::cell::Cell<Duration> = const { std::cell::Cell::new(BUSY_TIMEOUT) };
    /// When the current wait began.
    static WAIT_SINCE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

fn wait_briefly(tries: i32) -> bool {
    let now = std::time::Instant::now();
    let since = WAIT_SINCE.with(|s| match s.get() {
        Some(start) if tries > 0 => start,
        _ => {
            s.set(Some(now));
            now
        }
    });
    if now.duration_since(since) >= WAIT_BOUND.with(std::cell::Cell::get) {
        return false;
    }
    if tries < 8 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
    true
}

/// Whether an error only means that other processes hold a lock right now.
pub fn is_contention(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// A problem with the database: where, what, and what the administrator can do.
#[derive(Debug, thiserror::Error)]
#[error("state database {}: {error}; {fix}", path.display())]
pub struct DbError {
    pub path: PathBuf,
    pub error: String,
    pub fix: String,
}

impl DbError {
    pub(super) fn new(path: &Path, error: impl Into<String>, fix: impl Into<String>) -> DbError {
        DbError { path: path.to_path_buf(), error: error.into(), fix: fix.into() }
    }

    /// Names the fix for an SQLite error.
    pub fn from_sqlite(path: &Path, e: &rusqlite::Error) -> DbError {
        if let rusqlite::Error::SqliteFailure(f, _) = e
            && f.extended_code == rusqlite::ffi::SQLITE_CANTOPEN_SYMLINK
        {
            return DbError::new(path, "its path runs through a symbolic link", NO_SYMLINK_FIX);
        }
        let fix = match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                "another process holds a lock on it for too long; look for a stuck process using it".to_string()
            }
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => format!(
                "it is damaged: move it aside (mv {p} {p}.broken) and run `pfxhttp state init --user USER`; \
                 pfxhttp never deletes it itself",
                p = path.display()
            ),
            Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => writable_fix(path),
            _ => "run `pfxhttp state check` for details".to_string(),
        };
        DbError::new(path, e.to_string(), fix)
    }
}

const NO_SYMLINK_FIX: &str =
    "pfxhttp never follows a symbolic link for its state database; set server.state_db to the real path";

/// Flags for every SQLite open: `NOFOLLOW` refuses a path with a symbolic link anywhere in it
/// (SQLite itself opens the `-wal`/`-shm`/`-journal` files with `O_NOFOLLOW`).
fn flags(access: OpenFlags) -> OpenFlags {
    access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW
}

fn writable_fix(path: &Path) -> String {
    let dir = path.parent().unwrap_or(Path::new("/")).display();
    format!(
        "the file and its directory {dir} must be writable by the user the spawn service runs as \
         (`pfxhttp state init --user USER` sets that up)"
    )
}

/// Opens the database for a serving process, creating the file (mode 0600) in an existing
/// directory if needed, and the schema if it is new.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(DbError::new(
            path,
            format!("directory {} does not exist", dir.display()),
            "create it with `pfxhttp state init --user USER` (USER: the spawn service's user)",
        ));
    }
    if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(DbError::new(path, "it is a symbolic link", NO_SYMLINK_FIX));
    }
    if !path.exists() {
        // Created here rather than by SQLite so that it is private from the start; its -wal and
        // -shm files take the same mode.
        let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        if let Err(e) = created
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(DbError::new(path, format!("cannot create it: {e}"), writable_fix(path)));
        }
    }
    let conn = Connection::open_with_flags(path, flags(OpenFlags::SQLITE_OPEN_READ_WRITE))
        .map_err(|e| DbError::from_sqlite(path, &e))?;
    let mut conn = conn;
    conn.busy_handler(Some(wait_briefly)).map_err(|e| DbError::from_sqlite(path, &e))?;
    // Many processes may open a new file at once: contention there is waited out a few times.
    let mut tries = 0;
    while let Err(e) = prepare(&conn).and_then(|()| schema(&conn)) {
        tries += 1;
        if !is_contention(&e) || tries == 4 {
            return Err(DbError::from_sqlite(path, &e));
        }
        std::thread::sleep(Duration::from_millis(20 * tries));
    }
    wait_for_locks(BUSY_TIMEOUT);
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
        return Err(DbError::new(path, "it can only be opened read-only", writable_fix(path)));
    }
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| DbError::from_sqlite(path, &e))?;
    if version > SCHEMA_VERSION {
        return Err(DbError::new(
            path,
            format!("schema version {version} is newer than this pfxhttp knows ({SCHEMA_VERSION})"),
            "use the pfxhttp version that wrote it, or move the file aside",
        ));
    }
    Ok(conn)
}

/// Creates the schema if the file has none yet (an older one is never changed behind a newer).
fn schema(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < SCHEMA_VERSION { create_schema(conn) } else { Ok(()) }
}

/// Busy timeout, WAL and a commit that does not wait for the disk (WAL stays consistent).
fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    wait_for_locks(OPEN_WAIT);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Many processes may open a new file at once; one of them switching to WAL is enough.
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => {}
            Err(e) if matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy)) => {}
            Err(e) => return Err(e),
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
}

fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;")).inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// What `pfxhttp state check` found.
pub struct CheckReport {
    /// Facts, one line each.
    pub facts: Vec<String>,
    /// Problems with their fixes; empty when all is well.
    pub problems: Vec<String>,
    /// Hosts marked down now: host, until (unix ms), failures, last error.
    pub down: Vec<(String, super::Mark)>,
}

/// `pfxhttp state check`: reports on the file without changing it.
pub fn check(path: &Path) -> CheckReport {
    let mut report = CheckReport { facts: Vec::new(), problems: Vec::new(), down: Vec::new() };
    let steps = file_facts(path, &mut report.facts).and_then(|()| open_read_only(path)).and_then(|conn| {
        let problems = database_facts(path, &conn, &mut report.facts)?;
        report.problems.extend(problems);
        report.facts.push(metrics_fact(&conn));
        report.down = down_marks(path, &conn)?;
        Ok(())
    });
    if let Err(problem) = steps {
        report.problems.push(problem);
    }
    report
}

/// `pfxhttp state check`: what the metrics' tables hold, or that they are not made yet.
fn metrics_fact(db: &Connection) -> String {
    let counted =
        db.query_row("SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM metrics_processes)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        });
    match counted {
        Ok((series, processes)) => format!("metrics: {series} stored series, {processes} process row(s)"),
        Err(e) if e.to_string().contains("no such table") => {
            "metrics: no tables yet (state init or the first serving process makes them)".to_string()
        }
        Err(e) => format!("metrics: cannot be read: {e}"),
    }
}

/// The directory's and the file's owner and mode.
fn file_facts(path: &Path, facts: &mut Vec<String>) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let missing =
        |p: &Path, e: std::io::Error| format!("{}: {e}; create it with `pfxhttp state init --user USER`", p.display());
    let m = std::fs::metadata(dir).map_err(|e| missing(dir, e))?;
    facts.push(format!("{}: directory, {}, mode {:04o}", dir.display(), owner(m.uid()), m.mode() & 0o7777));
    let m = std::fs::metadata(path).map_err(|e| missing(path, e))?;
    facts.push(format!("{}: {}, mode {:04o}, {} bytes", path.display(), owner(m.uid()), m.mode() & 0o7777, m.len()));
    Ok(())
}

/// `owner NAME (uid N)`, with the name from /etc/passwd (what master.cf's `user=` says), or
/// `owner uid N` for a uid it does not name.
fn owner(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find_map(|f| (f.len() >= 3 && f[2].parse() == Ok(uid)).then(|| f[0].to_string()));
    match name {
        Some(name) => format!("owner {name} (uid {uid})"),
        None => format!("owner uid {uid}"),
    }
}

fn open_read_only(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(path, flags(OpenFlags::SQLITE_OPEN_READ_ONLY))
        .map_err(|e| DbError::from_sqlite(path, &e).to_string())?;
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    Ok(conn)
}

/// Schema version, journal mode and integrity; the problems among them.
fn database_facts(path: &Path, conn: &Connection, facts: &mut Vec<String>) -> Result<Vec<String>, String> {
    let read = || -> rusqlite::Result<(i64, String, String)> {
        let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let mode = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let integrity = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        Ok((version, mode, integrity))
    };
    let (version, mode, integrity) = read().map_err(|e| DbError::from_sqlite(path, &e).to_string())?;
    facts.push(format!("schema version {version}, journal mode {mode}, integrity {integrity}"));
    let mut problems = Vec::new();
    if version > SCHEMA_VERSION {
        problems.push(format!("schema version {version} is newer than this pfxhttp knows"));
    }
    if integrity != "ok" {
        problems.push(DbError::new(path, integrity, "move it aside and run `pfxhttp state init`").to_string());
    }
    Ok(problems)
}

/// The hosts marked down now.
fn down_marks(path: &Path, conn: &Connection) -> Result<Vec<(String, super::Mark)>, String> {
    let now = super::health::now_ms();
    let down = conn
        .prepare("SELECT host, failures, down_until, last_error FROM host_health WHERE down_until > ?1 ORDER BY host")
        .and_then(|mut stmt| {
            stmt.query_map([now], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    super::Mark { failures: r.get(1)?, down_until: r.get(2)?, last_error: r.get(3)? },
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        });
    match down {
        Ok(rows) => Ok(rows),
        Err(e) if version_zero(&e) => Ok(Vec::new()),
        Err(e) => Err(DbError::from_sqlite(path, &e).to_string()),
    }
}

/// A database without the schema yet has no host_health table.
fn version_zero(e: &rusqlite::Error) -> bool {
    e.to_string().contains("no such table")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::init;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pfxhttp-db-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("state").join("pfxhttp.db")
    }

    #[test]
    fn init_then_open_then_check() {
        let path = temp("init");
        assert!(open(&path).unwrap_err().to_string().contains("does not exist"));
        let done = init(&path, None).unwrap();
        assert!(done[0].ends_with("-init (mode 0755)") && done[1].ends_with("/state (mode 0700)"), "{done:?}");
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777;
        let file_mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!((dir_mode, file_mode), (0o700, 0o600));
        let conn = open(&path).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let report = check(&path);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.facts.iter().any(|f| f.contains("schema version 1")));
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn garbage_file_is_reported_with_the_fix() {
        let path = temp("garbage");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let e = open(&path).unwrap_err().to_string();
        assert!(e.contains("move it aside") && e.contains(&path.display().to_string()), "{e}");
        assert!(!check(&path).problems.is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192], "never rewritten");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn newer_schema_is_refused() {
        let path = temp("newer");
        init(&path, None).unwrap();
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(open(&path).unwrap_err().to_string().contains("newer"));
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
