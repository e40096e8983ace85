//! Host order, retries and waits within a request's deadline (`docs/design.md#failover-and-host-health`).
//!
//! A request tries the entry's hosts in `balance` order. It moves on after a connect error, a
//! TLS handshake error, a timeout, a 5xx or a 429; any other answer is final. With one host (or
//! once every host was tried) the same host is tried again after a short jittered backoff, and a
//! `Retry-After` is honoured when it fits the deadline. `max_attempts` caps the attempts.
//!
//! Hosts that failed are marked down in the shared state ([`crate::state::Store`]) so that other
//! processes skip them for a while; see `order` and `marks_down`.

use crate::config::{Balance, Entry};
use crate::http::{self, HttpError, Response};
use crate::state::{self, Store};
use std::cell::Cell;
use std::time::Duration;

/// The hosts of one request, the order to try them in, and their shared health.
pub struct Hosts<'s> {
    urls: Vec<reqwest::Url>,
    /// Health keys (URL origins).
    origins: Vec<String>,
    /// Whether the host may have a mark: it had one (down or expired) when the request started,
    /// or failed during it.
    marked: Vec<Cell<bool>>,
    /// Whether the host is marked down now (so another failure need not be written).
    down: Vec<Cell<bool>>,
    order: Vec<usize>,
    store: &'s Store,
}

impl<'s> Hosts<'s> {
    /// Reads the hosts' health (only with two or more: one host is always tried) and orders them.
    pub fn new(entry: &Entry, urls: Vec<reqwest::Url>, store: &'s Store) -> Hosts<'s> {
        // One host has no health to read or record (see `record`).
        let origins: Vec<String> = if urls.len() > 1 { urls.iter().map(http::origin_of).collect() } else { Vec::new() };
        let marks = if origins.is_empty() { Vec::new() } else { store.marks(&origins) };
        let now = state::now_ms();
        let mark_of = |i: usize| origins.get(i).and_then(|o| marks.iter().find(|(h, _)| h == o)).map(|(_, m)| m);
        let down: Vec<bool> = (0..urls.len()).map(|i| mark_of(i).is_some_and(|m| m.is_down(now))).collect();
        let marked = (0..urls.len()).map(|i| Cell::new(mark_of(i).is_some())).collect();
        let order = order(entry, &down);
        Hosts { order, urls, origins, marked, down: down.into_iter().map(Cell::new).collect(), store }
    }

    /// The host index for attempt number `attempt` (0-based).
    pub fn pick(&self, attempt: usize) -> usize {
        self.order[attempt % self.order.len()]
    }

    pub fn url(&self, index: usize) -> &reqwest::Url {
        &self.urls[index]
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The shared state the hosts' health is kept in.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// Marks host `index` down after a failure, or clears its mark after an answer. `cut_short`
    /// says the attempt had less than the entry's timeout (the deadline was near): its timeout
    /// says nothing about the host.
    pub fn record(&self, entry: &Entry, index: usize, result: &Result<Response, HttpError>, cut_short: bool) {
        if self.urls.len() < 2 || (cut_short && matches!(result, Err(HttpError::Timeout))) {
            return;
        }
        if marks_down(entry, result) {
            // A host already marked down keeps its mark; writing again would only add contention.
            if !self.down[index].get() {
                let why = match result {
                    Ok(r) => format!("HTTP {}", r.status),
                    Err(e) => e.to_string(),
                };
                self.store.failed(&self.origins[index], &why);
                self.marked[index].set(true);
                self.down[index].set(true);
            }
        } else if self.marked[index].get() {
            self.store.recovered(&self.origins[index]);
            self.marked[index].set(false);
            self.down[index].set(false);
        }
    }
}

/// The hosts' indexes in the order this request tries them: those not marked down first, in
/// `balance` order, then the marked ones in config order (tried anyway when all are marked).
fn order(entry: &Entry, down: &[bool]) -> Vec<usize> {
    let (mut healthy, marked): (Vec<usize>, Vec<usize>) = (0..entry.targets.len()).partition(|&i| !down[i]);
    if entry.retry.balance == Balance::Random {
        fastrand::shuffle(&mut healthy);
    }
    healthy.extend(marked);
    healthy
}

/// Whether an attempt's result marks its host down for everyone: no connection, no TLS, no
/// answer in time, or a 5xx. A 429 means "alive but busy"; a 4xx is the request's fault.
fn marks_down(entry: &Entry, result: &Result<Response, HttpError>) -> bool {
    match result {
        Ok(r) => !expected(entry, r.status) && (500..600).contains(&r.status),
        Err(e) => e.host_at_fault(),
    }
}

/// Whether an attempt's result may be bettered by another attempt.
pub fn retryable(entry: &Entry, result: &Result<Response, HttpError>) -> bool {
    match result {
        Ok(r) => !expected(entry, r.status) && (r.status == 429 || (500..600).contains(&r.status)),
        Err(e) => e.host_at_fault(),
    }
}

/// A status the entry accepts as an answer (value or "not found").
pub fn expected(entry: &Entry, status: u16) -> bool {
    entry.answer.status_codes.contains(&status) || entry.answer.not_found_status.contains(&status)
}

/// How long to wait before attempt number `attempt` (0-based) on host number `slot` of the
/// order, after `last` failed: nothing when moving to another host, a jittered backoff when
/// coming back to one, and then at least the `Retry-After` the last answer asked for.
pub fn wait_before(attempt: usize, hosts: usize, last: &Result<Response, HttpError>) -> Duration {
    let round = attempt / hosts.max(1);
    let backoff = if round == 0 {
        Duration::ZERO
    } else {
        let base = Duration::from_millis(100) * 2u32.saturating_pow(round as u32 - 1);
        base.min(Duration::from_secs(2)).mul_f64(0.5 + fastrand::f64())
    };
    // Another host need not wait for what this one asked.
    let asked = match last {
        Ok(r) if round > 0 => retry_after(r).unwrap_or(Duration::ZERO),
        _ => Duration::ZERO,
    };
    backoff.max(asked)
}

/// `Retry-After` in seconds, at most a day (the HTTP-date form is not used by APIs in practice
/// and is ignored).
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s.min(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, retry_after: Option<&str>) -> Result<Response, HttpError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(reqwest::header::RETRY_AFTER, v.parse().unwrap());
        }
        Ok(Response { status, headers, body: Vec::new() })
    }

    #[test]
    fn no_wait_when_moving_to_another_host() {
        assert_eq!(wait_before(1, 2, &Err(HttpError::Timeout)), Duration::ZERO);
    }

    #[test]
    fn jittered_backoff_when_coming_back() {
        for _ in 0..50 {
            let first = wait_before(1, 1, &Err(HttpError::Connect("x".into())));
            assert!((50..150).contains(&first.as_millis()), "{first:?}");
            let second = wait_before(2, 1, &response(503, None));
            assert!((100..300).contains(&second.as_millis()), "{second:?}");
        }
    }

    #[test]
    fn retry_after_is_a_lower_bound() {
        assert_eq!(wait_before(1, 1, &response(429, Some("3"))), Duration::from_secs(3));
        assert_eq!(wait_before(1, 2, &response(429, Some("3"))), Duration::ZERO, "another host need not wait");
        let date = wait_before(1, 1, &response(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")));
        assert!(date < Duration::from_millis(150), "{date:?}");
        assert_eq!(wait_before(1, 1, &response(503, Some("18446744073709551615"))), Duration::from_secs(86_400));
    }
}
