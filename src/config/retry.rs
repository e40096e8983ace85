//! The retry part of an entry: how its targets are tried, and for how long.

use super::Balance;
use super::http_client::Inherited;
use super::tree::{self, Diagnostics, Table};
use std::time::Duration;

/// How an entry's targets are tried, and for how long.
#[derive(Debug)]
pub struct Retry {
    /// The order targets are tried in.
    pub balance: Balance,
    /// Attempts per request, over all targets.
    pub max_attempts: usize,
    /// Per attempt.
    pub timeout: Duration,
    /// Per request, all attempts and waits included.
    pub deadline: Duration,
}

/// Reads `balance` and `max_attempts` (by default one attempt per target, and at least two);
/// the time limits come from the entry's `http_client` settings.
pub(super) fn retry(t: &mut Table<'_>, http: &Inherited, targets: usize, d: &mut Diagnostics) -> Retry {
    let balance =
        t.choice("balance", &[("failover", Balance::Failover), ("random", Balance::Random)], Balance::Failover, d);
    let max_attempts = match t.take("max_attempts") {
        Some((p, v)) => tree::uint(&p, v, 1, 100, d).unwrap_or(1) as usize,
        None => targets.max(2),
    };
    Retry { balance, max_attempts, timeout: http.timeout, deadline: http.deadline }
}
