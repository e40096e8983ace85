//! The shared state database: one SQLite file that every pfxhttp process uses for host health,
//! the token cache, the response cache and the metrics' totals.
//!
//! It is an optimisation, never a requirement. It is opened on first need only (a lookup with a
//! single host never needs it), in WAL mode with a short busy timeout. Whatever goes wrong with
//! it (missing directory, read-only, owned by someone else, corrupt, locked) is logged once with
//! the path, the error and the fix, and the process carries on with state of its own. pfxhttp
//! never deletes or recreates the file by itself.

pub mod cache;
mod db;
mod documents;
mod health;
mod init;
pub mod metrics;
mod tokens;
mod walk;

pub use db::{CheckReport, DbError, SCHEMA_VERSION};
pub use health::{Mark, backoff, now_ms};
pub use init::init;
pub use tokens::{Token, TokenRow};
pub use walk::{Owner, become_owner_as_root as act_as_owner};

use crate::config::StateDb;
use crate::log;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;

/// Opens the database at `path` for an admin command. Run as root, this first takes the
/// identity of the state directory's owner for good, so call it after everything
/// that needs root.
pub fn try_open(path: &std::path::Path) -> Result<rusqlite::Connection, DbError> {
    walk::become_owner_as_root(path)?;
    db::open(path)
}

/// The directory a serving process keeps files in beside the state database (the CA bundle's
/// index), open; `None` for `:memory:` or when it cannot be opened safely (see `walk`).
pub fn files_dir(setting: &StateDb) -> Option<std::os::fd::OwnedFd> {
    let StateDb::File(path) = setting else { return None };
    walk::files_dir(path)
}

/// `pfxhttp state check`: reports on the database without changing it. Run as root, this first
/// takes the identity of the state directory's owner for good, as [`try_open`] does.
pub fn check(path: &std::path::Path) -> CheckReport {
    match walk::become_owner_as_root(path) {
        Ok(()) => db::check(path),
        Err(e) => CheckReport { facts: Vec::new(), problems: vec![e.to_string()], down: Vec::new() },
    }
}

/// This process's view of the shared state.
pub struct Store {
    setting: StateDb,
    /// `None` once opening failed, or after the database failed in use.
    db: OnceCell<RefCell<Option<rusqlite::Connection>>>,
    /// Host health, whenever the database is not used.
    memory_health: RefCell<HashMap<String, Mark>>,
    /// Tokens, whenever the database is not used.
    memory_tokens: RefCell<HashMap<String, TokenRow>>,
    /// The response cache's secret and switch.
    cache_state: cache::CacheState,
    /// This process's counts, until they are flushed.
    metrics_state: metrics::MetricsState,
}

impl Store {
    pub fn new(setting: &StateDb) -> Store {
        Store {
            setting: setting.clone(),
            db: OnceCell::new(),
            memory_health: RefCell::new(HashMap::new()),
            memory_tokens: RefCell::new(HashMap::new()),
            cache_state: cache::CacheState::default(),
            metrics_state: metrics::MetricsState::default(),
        }
    }

    /// Runs `f` on the database if it is usable; on an error, logs it once and stops using it.
    ///
    /// That includes a lock held longer than the busy timeout: pfxhttp's own transactions last
    /// microseconds, so such a lock is a stuck process, and waiting on it would hold up every
    /// lookup.
    fn with_db<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Option<T> {
        let mut slot = self.opened().borrow_mut();
        let conn = slot.as_ref()?;
        match f(conn) {
            Ok(value) => Some(value),
            Err(e) => {
                if let StateDb::File(path) = &self.setting {
                    log::error(&format!(
                        "{}; carrying on with state kept by this process only",
                        DbError::from_sqlite(path, &e)
                    ));
                }
                *slot = None;
                None
            }
        }
    }

    /// Runs `f` on the database if it is usable, and hands back its result, errors included,
    /// without giving up the database over them: the cache decides what its errors mean.
    fn with_db_raw<T>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<rusqlite::Result<T>> {
        let mut slot = self.opened().borrow_mut();
        slot.as_mut().map(f)
    }

    /// The database, opened on first need; `None` inside when it cannot be used.
    fn opened(&self) -> &RefCell<Option<rusqlite::Connection>> {
        self.db.get_or_init(|| {
            let opened = match &self.setting {
                StateDb::Memory => None,
                StateDb::File(path) => match walk::may_open(path).and_then(|()| db::open(path)) {
                    Ok(conn) => Some(conn),
                    Err(e) => {
                        log::error(&format!("{e}; carrying on with state kept by this process only"));
                        None
                    }
                },
            };
            RefCell::new(opened)
        })
    }
}
