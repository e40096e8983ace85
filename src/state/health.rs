//! Host health: a host that failed is marked down for a while, and every process skips it while
//! another host is healthy (`docs/design.md#failover-and-host-health`).

use super::Store;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A host's recorded failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Failures in a row.
    pub failures: u32,
    /// Unix time in milliseconds until which the host is skipped.
    pub down_until: i64,
    /// The last failure, for `pfxhttp state check`.
    pub last_error: String,
}

impl Mark {
    /// Whether the host is to be skipped at `now` (unix milliseconds).
    pub fn is_down(&self, now: i64) -> bool {
        self.down_until > now
    }
}

/// How long a host stays marked after `failures` failures in a row: 5 s, doubling, at most 60 s.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(4);
    (Duration::from_secs(5) * 2u32.pow(doublings)).min(Duration::from_secs(60))
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// The marks recorded for `hosts` (down or not: an expired mark still counts failures).
    pub fn marks(&self, hosts: &[String]) -> Vec<(String, Mark)> {
        let from_db = self.with_db(|db| {
            let mut stmt =
                db.prepare_cached("SELECT failures, down_until, last_error FROM host_health WHERE host = ?1")?;
            let mut found = Vec::new();
            for host in hosts {
                let mut rows = stmt.query([host])?;
                if let Some(row) = rows.next()? {
                    found.push((
                        host.clone(),
                        Mark { failures: row.get(0)?, down_until: row.get(1)?, last_error: row.get(2)? },
                    ));
                }
            }
            Ok(found)
        });
        // Marks this process had to keep to itself (the database was busy or given up) count
        // over what the database says.
        let mut marks = from_db.unwrap_or_default();
        let memory = self.memory_health.borrow();
        for host in hosts {
            if let Some(mark) = memory.get(host) {
                marks.retain(|(h, _)| h != host);
                marks.push((host.clone(), mark.clone()));
            }
        }
        marks
    }

    /// Records a failure of `host`; it is skipped until the backoff has passed. A host that is
    /// marked already keeps its mark: the requests in flight when it went down do not count as
    /// further failures.
    pub fn failed(&self, host: &str, error: &str) {
        let now = now_ms();
        let recorded = self.with_db(|db| {
            // One statement, so that concurrent failures cannot lose or double an increment;
            // the new backoff is 5 s << (failures so far), at most 60 s.
            db.execute(
                "INSERT INTO host_health (host, failures, down_until, last_error) VALUES (?1, 1, ?2 + 5000, ?3)
                 ON CONFLICT (host) DO UPDATE SET
                     failures = failures + 1,
                     down_until = ?2 + min(5000 << min(failures, 4), 60000),
                     last_error = ?3
                 WHERE host_health.down_until <= ?2",
                rusqlite::params![host, now, error],
            )
        });
        if recorded.is_none() {
            let mut memory = self.memory_health.borrow_mut();
            let mark = memory.entry(host.to_string()).or_insert(Mark {
                failures: 0,
                down_until: 0,
                last_error: String::new(),
            });
            if !mark.is_down(now) {
                mark.failures += 1;
                mark.down_until = now + backoff(mark.failures).as_millis() as i64;
                mark.last_error = error.to_string();
            }
        }
    }

    /// Clears `host`'s mark after it answered.
    pub fn recovered(&self, host: &str) {
        let _ = self.with_db(|db| db.execute("DELETE FROM host_health WHERE host = ?1", [host]));
        self.memory_health.borrow_mut().remove(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateDb;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60, 60]);
    }

    #[test]
    fn failures_count_once_per_mark_in_the_database() {
        let dir = std::env::temp_dir().join(format!("pfxhttp-health-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::new(&StateDb::File(dir.join("s.db")));
        for _ in 0..10 {
            store.failed("http://a:80", "refused");
        }
        let marks = store.marks(&["http://a:80".to_string()]);
        assert_eq!(marks[0].1.failures, 1);
        let left = marks[0].1.down_until - now_ms();
        assert!((4_000..=5_000).contains(&left), "{left}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn marks_and_clears_in_memory() {
        let store = Store::new(&StateDb::Memory);
        let hosts = vec!["http://a:80".to_string(), "http://b:80".to_string()];
        store.failed("http://a:80", "refused");
        store.failed("http://a:80", "refused again while marked");
        let marks = store.marks(&hosts);
        assert_eq!(marks.len(), 1);
        let (host, mark) = &marks[0];
        assert_eq!((host.as_str(), mark.failures, mark.last_error.as_str()), ("http://a:80", 1, "refused"));
        assert!(mark.is_down(now_ms()) && !mark.is_down(now_ms() + 5_001));
        store.recovered("http://a:80");
        assert!(store.marks(&hosts).is_empty());
    }
}
