//! The response cache's rows: one per (entry, cache key), shared by every process through the
//! state database (or kept in an in-memory database of the process's own with `:memory:`).
//!
//! What is stored, and when a row may answer, is decided by the lookup (the cache's rules); this
//! module only keeps rows. Keys are not stored in clear: a row's key is an HMAC-SHA256 of the entry and
//! the rendered cache key under a random secret kept in the database (`meta.cache_secret`), so
//! that reading the file does not list the addresses looked up. Values are stored as the API gave
//! them. See `docs/design.md#response-cache`.
//!
//! The cache never stands in a lookup's way: a write that meets another process's lock is
//! skipped, a read that meets one is a miss, and any other error (a damaged or foreign table) is
//! logged once and turns the cache off for this process, which then asks the API every time. The
//! table is never dropped or recreated here.

use super::Store;
use crate::log;
use rusqlite::{Connection, OptionalExtension, params};
use std::cell::Cell;

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `Some(value)` for a found value, `None` for "not found".
    pub value: Option<String>,
    /// Unix ms when the API gave the answer.
    pub stored_at: i64,
    /// Unix ms until which it answers without asking the API.
    pub fresh_until: i64,
    /// Unix ms until which a found value answers when the API fails.
    pub stale_until: i64,
}

/// The key of a row: the entry (`map:NAME`, `policy:NAME`) and the keyed hash of its cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    entry: String,
    hash: Vec<u8>,
}

/// One entry's rows, for `pfxhttp cache stats`. Times are unix ms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub entry: String,
    pub rows: u64,
    pub found: u64,
    pub not_found: u64,
    /// When the oldest and the newest answer were stored.
    pub oldest: i64,
    pub newest: i64,
    /// Bytes of stored values and keys.
    pub bytes: u64,
}

/// How many writes (by any process) pass, on average, between two sweeps of an entry's expired
/// and surplus rows: 64, or a 64th of `max_entries` when that is more. A sweep counts the
/// entry's rows, so its cost grows with `max_entries` (a few milliseconds at the default
/// 100000): sweeping that much less often keeps its cost per write the same, and the entry at
/// most a 64th over `max_entries`.
fn sweep_every(max_entries: u64) -> i64 {
    i64::try_from(max_entries / 64).unwrap_or(i64::MAX).max(64)
}

/// How long a cache write waits for another process's lock before it gives way.
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The cache's own state within a [`Store`].
#[derive(Default)]
pub(super) struct CacheState {
    /// The HMAC key, read (or made) on first use; `None` inside once the cache is off.
    secret: std::cell::OnceCell<Option<ring::hmac::Key>>,
    /// Set once an error turned the cache off for this process.
    off: Cell<bool>,
    /// The in-memory database used with `:memory:`.
    memory: std::cell::OnceCell<Option<Connection>>,
}

/// The face of the cache: `store.cache()`.
pub struct Cache<'a> {
    store: &'a Store,
}

impl Store {
    /// The response cache of this store.
    pub fn cache(&self) -> Cache<'_> {
        Cache { store: self }
    }
}

impl Cache<'_> {
    /// The row key for `text` (the rendered cache key) of `entry`; `None` when the cache is off.
    pub fn key(&self, entry: &str, text: &str) -> Option<Key> {
        let secret = self.store.cache_state.secret.get_or_init(|| self.run(read_or_make_secret)).as_ref()?;
        Some(Key { entry: entry.to_string(), hash: keyed_hash(secret, entry, text) })
    }

    /// The row for `key`, if any (a lock held by another process reads as none).
    pub fn get(&self, key: &Key) -> Option<Row> {
        // Statements are prepared once per process: parsing them costs more than running them.
        self.run(|db| {
            db.prepare_cached(
                "SELECT found, value, stored_at, fresh_until, stale_until FROM response_cache
                 WHERE entry = ?1 AND key = ?2",
            )?
            .query_row(params![key.entry, key.hash], |r| {
                let found: bool = r.get(0)?;
                Ok(Row {
                    value: if found { Some(r.get(1)?) } else { None },
                    stored_at: r.get(2)?,
                    fresh_until: r.get(3)?,
                    stale_until: r.get(4)?,
                })
            })
            .optional()
        })
        .flatten()
    }

    /// Stores `row` under `key`; now and then (every 64th write, or every `max_entries / 64`th
    /// when that is more) also removes the entry's expired rows and its oldest beyond
    /// `max_entries`.
    pub fn put(&self, key: &Key, row: &Row, max_entries: u64) {
        self.run(|db| {
            // Writes come after the reply (see `lookup::CacheWrite`), so they may wait longer for
            // the lock than a lookup could: a crowd of processes writing at once loses fewer rows.
            super::db::wait_for_locks(WRITE_WAIT);
            let written = Self::write(db, key, row, max_entries);
            super::db::wait_for_locks(super::db::BUSY_TIMEOUT);
            written
        });
    }

    fn write(db: &Connection, key: &Key, row: &Row, max_entries: u64) -> rusqlite::Result<()> {
        {
            db.prepare_cached(
                "INSERT OR REPLACE INTO response_cache
                 (entry, key, found, value, stored_at, fresh_until, stale_until, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, max(?6, ?7))",
            )?
            .execute(params![
                key.entry,
                key.hash,
                row.value.is_some(),
                row.value.as_deref().unwrap_or(""),
                row.stored_at,
                row.fresh_until,
                row.stale_until
            ])?;
            // Every write takes a new rowid, whichever process makes it.
            if db.last_insert_rowid() % sweep_every(max_entries) == 0 {
                sweep(db, &key.entry, row.stored_at, max_entries)?;
            }
            Ok(())
        }
    }

    /// Removes the row for `key`, if any.
    pub fn remove(&self, key: &Key) {
        self.run(|db| {
            db.prepare_cached("DELETE FROM response_cache WHERE entry = ?1 AND key = ?2")?
                .execute(params![key.entry, key.hash])
                .map(drop)
        });
    }

    /// Runs `f` on the cache's database; `None` when the cache is off, on contention, or on an
    /// error (which turns the cache off, with one log line).
    fn run<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let state = &self.store.cache_state;
        if state.off.get() {
            return None;
        }
        let result = match &self.store.setting {
            crate::config::StateDb::Memory => {
                let db = state.memory.get_or_init(|| open_memory().inspect_err(|e| self.fail(e)).ok());
                db.as_ref().map(f)?
            }
            crate::config::StateDb::File(_) => self.store.with_db_raw(|db| f(db))?,
        };
        match result {
            Ok(value) => Some(value),
            Err(e) if super::db::is_contention(&e) => {
                log::debug(&format!("response cache: {e}; skipped"));
                None
            }
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }

    fn fail(&self, e: &rusqlite::Error) {
        self.store.cache_state.off.set(true);
        let place = match &self.store.setting {
            crate::config::StateDb::File(path) => format!("state database {}", path.display()),
            crate::config::StateDb::Memory => "in-memory state".to_string(),
        };
        log::error(&format!(
            "response cache in {place}: {e}; every lookup asks the API (`pfxhttp cache flush` run by the \
             administrator recreates the cache table)"
        ));
    }
}

/// `pfxhttp cache stats`: one [`Stats`] per entry that has rows (`at`: now, unix ms).
pub fn stats(db: &Connection) -> rusqlite::Result<Vec<Stats>> {
    let mut stmt = db.prepare(
        "SELECT entry, count(*), total(found), min(stored_at), max(stored_at),
                total(length(CAST(value AS BLOB)) + length(key) + length(CAST(entry AS BLOB)))
         FROM response_cache GROUP BY entry ORDER BY entry",
    )?;
    let rows = stmt.query_map([], |r| {
        let rows: i64 = r.get(1)?;
        let found: f64 = r.get(2)?;
        let bytes: f64 = r.get(5)?;
        Ok(Stats {
            entry: r.get(0)?,
            rows: rows as u64,
            found: found as u64,
            not_found: (rows as u64).saturating_sub(found as u64),
            oldest: r.get(3)?,
            newest: r.get(4)?,
            bytes: bytes as u64,
        })
    })?;
    rows.collect()
}

/// What `pfxhttp cache flush` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// This many rows went.
    Rows(usize),
    /// The table was damaged or not pfxhttp's, and was made anew (empty).
    Recreated,
}

/// `pfxhttp cache flush`: removes every row, `entry`'s rows, or the row for the rendered cache
/// key `text` of `entry`. A table that cannot be read is made anew: only this command, run by
/// the administrator, ever does that.
pub fn flush(db: &Connection, entry: Option<&str>, text: Option<&str>) -> rusqlite::Result<Flushed> {
    // A foreign table named `response_cache` would take a plain DELETE without complaint and stay
    // unusable: its shape is checked first, so that such a table is made anew too.
    let deleted = db.execute_batch(super::db::CACHE_SCHEMA).and_then(|()| db.prepare(PROBE).map(drop));
    let deleted = deleted.and_then(|()| match (entry, text) {
        (Some(entry), Some(text)) => read_or_make_secret(db).and_then(|secret| {
            let hash = keyed_hash(&secret, entry, text);
            db.execute("DELETE FROM response_cache WHERE entry = ?1 AND key = ?2", params![entry, hash])
        }),
        (Some(entry), None) => db.execute("DELETE FROM response_cache WHERE entry = ?1", [entry]),
        (None, _) => db.execute("DELETE FROM response_cache", []),
    });
    match deleted {
        Ok(n) => Ok(Flushed::Rows(n)),
        Err(e) if super::db::is_contention(&e) => Err(e),
        Err(_) => {
            db.execute_batch(&format!(
                "BEGIN IMMEDIATE; DROP TABLE IF EXISTS response_cache; {} COMMIT;",
                super::db::CACHE_SCHEMA
            ))?;
            Ok(Flushed::Recreated)
        }
    }
}

/// Every column the cache reads and writes: a table without them is not pfxhttp's.
const PROBE: &str =
    "SELECT entry, key, found, value, stored_at, fresh_until, stale_until, expires_at FROM response_cache LIMIT 0";

fn keyed_hash(secret: &ring::hmac::Key, entry: &str, text: &str) -> Vec<u8> {
    let mut ctx = ring::hmac::Context::with_key(secret);
    ctx.update(entry.as_bytes());
    ctx.update(&[0]);
    ctx.update(text.as_bytes());
    ctx.sign().as_ref().to_vec()
}

/// The per-database HMAC secret: 32 random bytes in `meta`, made by the first process that needs
/// it. A random source that fails is an error: a predictable secret is never stored.
fn read_or_make_secret(db: &Connection) -> rusqlite::Result<ring::hmac::Key> {
    const READ: &str = "SELECT value FROM meta WHERE name = 'cache_secret'";
    db.execute_batch(super::db::CACHE_SCHEMA)?;
    let secret: Vec<u8> = match db.query_row(READ, [], |r| r.get(0)).optional()? {
        Some(secret) => secret,
        None => {
            let mut fresh = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
                .map_err(|_| rusqlite::Error::ToSqlConversionFailure("the system's random source failed".into()))?;
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('cache_secret', ?1)", [&fresh[..]])?;
            db.query_row(READ, [], |r| r.get(0))?
        }
    };
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
}

fn open_memory() -> rusqlite::Result<Connection> {
    let db = Connection::open_in_memory()?;
    db.execute_batch(super::db::SCHEMA)?;
    db.execute_batch(super::db::CACHE_SCHEMA)?;
    Ok(db)
}

/// Removes the entry's rows that can no longer answer, then its oldest beyond `max_entries`.
fn sweep(db: &Connection, entry: &str, now: i64, max_entries: u64) -> rusqlite::Result<()> {
    db.execute("DELETE FROM response_cache WHERE entry = ?1 AND expires_at <= ?2", params![entry, now])?;
    let rows: i64 = db.query_row("SELECT count(*) FROM response_cache WHERE entry = ?1", [entry], |r| r.get(0))?;
    let surplus = rows - max_entries as i64;
    if surplus > 0 {
        db.execute(
            "DELETE FROM response_cache WHERE rowid IN
             (SELECT rowid FROM response_cache WHERE entry = ?1 ORDER BY stored_at LIMIT ?2)",
            params![entry, surplus],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateDb;

    fn file_store(dir: &tempfile::TempDir) -> Store {
        Store::new(&StateDb::File(dir.path().join("state.db")))
    }

    fn row(value: Option<&str>, at: i64) -> Row {
        Row { value: value.map(str::to_string), stored_at: at, fresh_until: at + 10, stale_until: at + 20 }
    }

    #[test]
    fn two_stores_on_one_file_share_rows_under_hashed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (file_store(&dir), file_store(&dir));
        let key = a.cache().key("map:users", "alice@example.org").unwrap();
        assert_eq!(b.cache().key("map:users", "alice@example.org"), Some(key.clone()), "one secret per database");
        assert_ne!(a.cache().key("map:other", "alice@example.org"), Some(key.clone()));
        a.cache().put(&key, &row(Some("v"), 5), 100);
        assert_eq!(b.cache().get(&key), Some(row(Some("v"), 5)));
        b.cache().put(&key, &row(None, 6), 100);
        assert_eq!(a.cache().get(&key), Some(row(None, 6)));
        a.cache().remove(&key);
        assert_eq!(b.cache().get(&key), None);
        let bytes = std::fs::read(dir.path().join("state.db")).unwrap_or_default();
        let wal = std::fs::read(dir.path().join("state.db-wal")).unwrap_or_default();
        let needle = b"alice@example.org";
        assert!(!bytes.windows(needle.len()).chain(wal.windows(needle.len())).any(|w| w == needle), "key in clear");
    }

    #[test]
    fn memory_setting_keeps_a_cache_of_its_own() {
        let (a, b) = (Store::new(&StateDb::Memory), Store::new(&StateDb::Memory));
        let key = a.cache().key("map:users", "k").unwrap();
        a.cache().put(&key, &row(Some("v"), 1), 100);
        assert_eq!(a.cache().get(&key), Some(row(Some("v"), 1)));
        let other = b.cache().key("map:users", "k").unwrap();
        assert_eq!(b.cache().get(&other), None);
    }

    #[test]
    fn sweeping_keeps_max_entries_and_drops_expired_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir);
        let cache = store.cache();
        for i in 0..300 {
            let key = cache.key("map:m", &format!("k{i}")).unwrap();
            let at = 1_000 + i;
            cache.put(&key, &Row { value: Some("v".into()), stored_at: at, fresh_until: at, stale_until: 1_400 }, 50);
        }
        let db = Connection::open(dir.path().join("state.db")).unwrap();
        // Another entry is never swept by this one's writes.
        cache.put(&cache.key("map:n", "x").unwrap(), &row(Some("v"), 0), 50);
        sweep(&db, "map:m", 1_000, 50).unwrap();
        let count = |e: &str| {
            db.query_row("SELECT count(*) FROM response_cache WHERE entry = ?1", [e], |r| r.get::<_, i64>(0)).unwrap()
        };
        assert_eq!(count("map:m"), 50);
        let oldest: i64 =
            db.query_row("SELECT min(stored_at) FROM response_cache WHERE entry = 'map:m'", [], |r| r.get(0)).unwrap();
        assert_eq!(oldest, 1_250, "the oldest went first");
        sweep(&db, "map:m", 1_500, 50).unwrap();
        assert_eq!(count("map:m"), 0, "expired rows went");
        assert_eq!(count("map:n"), 1);
    }

    /// With a large `max_entries` the sweeps come less often, and the entry still stays within a
    /// 64th of it (here 65 × 64 rows kept, a sweep every 65 writes).
    #[test]
    fn a_large_entry_stays_within_a_64th_over_max_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir);
        let max: u64 = 65 * 64;
        let mut most = 0;
        let db = Connection::open(dir.path().join("state.db")).unwrap();
        for i in 0..max as i64 + 300 {
            let key = store.cache().key("map:m", &format!("k{i}")).unwrap();
            store.cache().put(
                &key,
                &Row { value: Some("v".into()), stored_at: i, fresh_until: i64::MAX / 4, stale_until: 0 },
                max,
            );
            if i >= max as i64 - 1 {
                let rows: i64 = db.query_row("SELECT count(*) FROM response_cache", [], |r| r.get(0)).unwrap();
                most = most.max(rows as u64);
            }
        }
        assert!((max..max + 65).contains(&most), "at most {most} rows for max_entries {max}");
    }

    #[test]
    fn a_foreign_table_turns_the_cache_off_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::new(&StateDb::File(path.clone()));
        drop(store.cache().key("map:m", "k"));
        let db = Connection::open(&path).unwrap();
        db.execute_batch("DROP TABLE response_cache; CREATE TABLE response_cache (x TEXT); INSERT INTO response_cache VALUES ('mine');").unwrap();
        let store = Store::new(&StateDb::File(path.clone()));
        assert_eq!(store.cache().key("map:m", "k"), None, "no key: the cache is off");
        assert!(store.cache_state.off.get(), "off after the first error");
        let x: String = db.query_row("SELECT x FROM response_cache", [], |r| r.get(0)).unwrap();
        assert_eq!(x, "mine", "never dropped or recreated");
        let still = store.with_db(|db| db.query_row("SELECT count(*) FROM host_health", [], |r| r.get::<_, i64>(0)));
        assert_eq!(still, Some(0), "the rest of the state database is still used");
        // The administrator's flush of every row makes it anew, though a plain DELETE would do.
        assert_eq!(flush(&db, None, None).unwrap(), Flushed::Recreated);
        assert_eq!(flush(&db, None, None).unwrap(), Flushed::Rows(0));
    }
}
