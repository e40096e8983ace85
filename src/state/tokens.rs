//! The shared token cache: one row per auth setting, with a lease so that exactly one process
//! fetches a new token while the others keep using the valid one or wait briefly.
//!
//! The lease is taken in a `BEGIN IMMEDIATE` transaction with no busy wait (a try-lock that
//! lasts microseconds); the HTTP fetch happens outside any lock. A holder that dies delays the
//! others only until its lease expires. A lease is never trusted for longer than the longest
//! one pfxhttp takes (from the token request's timeout): a row claiming more (planted, written
//! by a process with other settings, or before the clock went back) counts as free, so no row
//! can make lookups wait for a token that nobody is fetching.

use super::Store;
use super::health::now_ms;
use rusqlite::{OptionalExtension, params};
use std::time::Duration;

/// An access token. Its text never goes to a log line, a reply or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub access: String,
    pub refresh: Option<String>,
    /// Unix milliseconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(***, expires_at {})", self.expires_at)
    }
}

impl Token {
    /// When one process should start fetching a new one: max(30 s, 10 % of the lifetime) before
    /// expiry, so that the token in use stays valid meanwhile; for a short-lived token, halfway.
    pub fn refresh_from(&self, fetched_at: i64) -> i64 {
        let lifetime = self.expires_at - fetched_at;
        let ahead = (lifetime / 10).max(30_000).min(lifetime / 2);
        self.expires_at - ahead
    }
}

/// A token row: the token (if any) and when to refresh it.
#[derive(Debug, Clone, Default)]
pub struct TokenRow {
    pub token: Option<Token>,
    /// Unix ms from which one process should fetch a new token.
    pub refresh_from: i64,
    /// Unix ms when the token was stored (0 before the first).
    pub fetched_at: i64,
    /// The process holding the lease, and until when (unix ms); 0 when none.
    pub lease_pid: u32,
    pub lease_until: i64,
}

impl TokenRow {
    /// Whether this process may take the lease, trusting a lease for at most `longest`.
    pub fn lease_free(&self, now: i64, longest: Duration) -> bool {
        lease_free(self.lease_pid, self.lease_until, now, longest)
    }
}

/// A lease is free when it has run out, is this process's own, or claims to last longer than
/// `longest` from now, which no pfxhttp lease does.
fn lease_free(holder: u32, until: i64, now: i64, longest: Duration) -> bool {
    until <= now || holder == std::process::id() || until > now + longest.as_millis() as i64
}

impl Store {
    /// The row for `key`, if any.
    pub fn token(&self, key: &str) -> Option<TokenRow> {
        let from_db = self.with_db(|db| {
            db.query_row(
                "SELECT token, refresh_token, expires_at, refresh_from, fetched_at, lease_pid, lease_until
                 FROM tokens WHERE key = ?1",
                [key],
                |r| {
                    let access: Option<String> = r.get(0)?;
                    let token = access.map(|access| Token {
                        access,
                        refresh: r.get(1).ok().flatten(),
                        expires_at: r.get(2).unwrap_or(0),
                    });
                    Ok(TokenRow {
                        token,
                        refresh_from: r.get(3)?,
                        fetched_at: r.get(4)?,
                        lease_pid: r.get(5)?,
                        lease_until: r.get(6)?,
                    })
                },
            )
            .optional()
        });
        match from_db {
            Some(row) => row,
            None => self.memory_tokens.borrow().get(key).cloned(),
        }
    }

    /// Tries to become the one process that fetches a token for `key`, for `lease`. Never waits.
    /// Another's lease counts for at most `longest` (see [`TokenRow::lease_free`]). `seen` is the
    /// `fetched_at` the caller read: if another process stored a token since, the lease is not
    /// taken (the caller reads again and finds it).
    pub fn try_lease(&self, key: &str, lease: Duration, longest: Duration, seen: i64) -> bool {
        let pid = std::process::id();
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let taken = self.with_db(|db| {
            super::db::wait_for_locks(Duration::ZERO);
            let attempt = (|| -> rusqlite::Result<bool> {
                db.execute_batch("BEGIN IMMEDIATE")?;
                let held: Option<(u32, i64, i64)> = db
                    .query_row("SELECT lease_pid, lease_until, fetched_at FROM tokens WHERE key = ?1", [key], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                let free = held
                    .is_none_or(|(holder, until, fetched)| lease_free(holder, until, now, longest) && fetched == seen);
                if free {
                    db.execute(
                        "INSERT INTO tokens (key, lease_pid, lease_until) VALUES (?1, ?2, ?3)
                         ON CONFLICT (key) DO UPDATE SET lease_pid = ?2, lease_until = ?3",
                        params![key, pid, until],
                    )?;
                }
                db.execute_batch("COMMIT")?;
                Ok(free)
            })();
            if attempt.is_err() {
                let _ = db.execute_batch("ROLLBACK");
            }
            super::db::wait_for_locks(super::db::BUSY_TIMEOUT);
            match attempt {
                // Another process is in its (microsecond) transaction: it is taking the lease.
                Err(e) if super::db::is_contention(&e) => Ok(false),
                other => other,
            }
        });
        // With state of our own there is nobody to share the fetch with.
        taken.unwrap_or(true)
    }

    /// Stores a new token for `key` and gives up the lease. A process whose lease ran out while
    /// it was fetching stores its token only if it is newer than the one there.
    pub fn put_token(&self, key: &str, token: &Token, refresh_from: i64) {
        let now = now_ms();
        let pid = std::process::id();
        let stored = self.with_db(|db| {
            // Storing the token is what every waiting process needs: worth a longer wait.
            super::db::wait_for_locks(Duration::from_secs(2));
            let stored = db.execute(
                "INSERT INTO tokens (key, token, refresh_token, expires_at, refresh_from, fetched_at, lease_pid, lease_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0)
                 ON CONFLICT (key) DO UPDATE SET token = ?2, refresh_token = ?3, expires_at = ?4, refresh_from = ?5,
                     fetched_at = ?6,
                     lease_pid = CASE WHEN tokens.lease_pid = ?7 THEN 0 ELSE tokens.lease_pid END,
                     lease_until = CASE WHEN tokens.lease_pid = ?7 THEN 0 ELSE tokens.lease_until END
                 WHERE tokens.lease_pid = ?7 OR tokens.token IS NULL OR tokens.expires_at < ?4",
                params![key, token.access, token.refresh, token.expires_at, refresh_from, now, pid],
            );
            super::db::wait_for_locks(super::db::BUSY_TIMEOUT);
            stored
        });
        if stored.is_none() {
            let row =
                TokenRow { token: Some(token.clone()), refresh_from, fetched_at: now, lease_pid: 0, lease_until: 0 };
            self.memory_tokens.borrow_mut().insert(key.to_string(), row);
        }
    }

    /// Gives up the lease after a failed fetch, so that another process may try at once.
    pub fn release(&self, key: &str) {
        let pid = std::process::id();
        let _ = self.with_db(|db| {
            db.execute(
                "UPDATE tokens SET lease_pid = 0, lease_until = 0 WHERE key = ?1 AND lease_pid = ?2",
                params![key, pid],
            )
        });
    }

    /// The token endpoint an OpenID discovery document named, if fetched less than `max_age` ago.
    pub fn discovered(&self, uri: &str, max_age: Duration) -> Option<String> {
        let since = now_ms() - max_age.as_millis() as i64;
        let from_db = self.with_db(|db| {
            db.query_row(
                "SELECT token_endpoint FROM discovery WHERE uri = ?1 AND fetched_at > ?2",
                params![uri, since],
                |r| r.get::<_, String>(0),
            )
            .optional()
        });
        from_db.flatten()
    }

    /// Remembers the token endpoint a discovery document named.
    pub fn put_discovered(&self, uri: &str, token_endpoint: &str) {
        let _ = self.with_db(|db| {
            db.execute(
                "INSERT INTO discovery (uri, token_endpoint, fetched_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (uri) DO UPDATE SET token_endpoint = ?2, fetched_at = ?3",
                params![uri, token_endpoint, now_ms()],
            )
        });
    }

    /// Keeps the lease for `hold` more (after a failed renewal of a still valid token).
    pub fn hold_lease(&self, key: &str, hold: Duration) {
        let pid = std::process::id();
        let until = now_ms() + hold.as_millis() as i64;
        let _ = self.with_db(|db| {
            db.execute("UPDATE tokens SET lease_until = ?3 WHERE key = ?1 AND lease_pid = ?2", params![key, pid, until])
        });
    }

    /// Drops `token` for `key` after the backend refused it, unless another process has
    /// already replaced it.
    pub fn drop_token(&self, key: &str, token: &Token) {
        let dropped = self.with_db(|db| {
            db.execute(
                "UPDATE tokens SET token = NULL, refresh_token = NULL, expires_at = 0 WHERE key = ?1 AND token = ?2",
                params![key, token.access],
            )
        });
        if dropped.is_none() {
            let mut memory = self.memory_tokens.borrow_mut();
            if memory.get(key).and_then(|r| r.token.as_ref()).is_some_and(|t| t.access == token.access) {
                memory.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_counts_for_no_longer_than_the_longest_pfxhttp_takes() {
        let longest = Duration::from_secs(3);
        let other = std::process::id().wrapping_add(1);
        assert!(!lease_free(other, 1_000 + 3_000, 1_000, longest), "a lease that long is kept");
        assert!(lease_free(other, 1_000, 1_000, longest), "ran out");
        assert!(lease_free(other, 1_000 + 3_001, 1_000, longest), "claims longer than any lease");
        assert!(lease_free(other, i64::MAX / 2, 1_000, longest));
        assert!(lease_free(std::process::id(), i64::MAX / 2, 1_000, longest), "our own");
    }
}
