//! One lookup: render the HTTP request for an entry, send it to the entry's hosts within the
//! deadline (retries as [`failover`] decides), and interpret the answer.

use crate::answer::{self, FailureKind, Outcome};
use crate::auth::{AuthError, Token, Tokens};
use crate::config::{Entry, Level};
use crate::failover;
use crate::failover::Hosts;
use crate::http::{self, Attempt, HttpError, Request, Transport};
use crate::log;
use crate::metrics::{self, Series};
use crate::state::Store;
use reqwest::header::{self, HeaderName, HeaderValue};
use std::io::Write as _;
use std::time::Instant;

mod cached;
pub mod sasl;
mod target;
mod transcript;

pub use cached::{CacheUse, CacheWrite, Lookup, cached};

/// What happened, for the reply and the log line.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    /// `host:port` that gave the final answer (or was tried last).
    pub host: Option<String>,
    pub attempts: u32,
    pub status: Option<u16>,
    /// Sent to the backend as `X-Request-Id`.
    pub request_id: Option<String>,
    /// The W3C trace id sent in every attempt's `traceparent` header, once a request is sent.
    pub trace_id: Option<String>,
    /// The HTTP exchange as text, when asked for (`query -v`); secrets masked.
    pub transcript: Vec<String>,
    /// The final answer's `Cache-Control` values.
    pub cache_control: Vec<String>,
    /// What the response cache did, for entries that have one.
    pub cache: Option<CacheUse>,
    /// What is left to store in the cache once the reply is out.
    pub cache_write: Option<CacheWrite>,
}

impl Report {
    /// A report for a lookup that made no HTTP request.
    pub fn without_request(outcome: Outcome, request_id: &str) -> Report {
        Report {
            outcome,
            host: None,
            attempts: 0,
            status: None,
            request_id: Some(request_id.to_string()),
            trace_id: None,
            transcript: Vec::new(),
            cache_control: Vec::new(),
            cache: None,
            cache_write: None,
        }
    }
}

/// The last attempt's host and result; `None` when the deadline left no time for one.
pub type Last = Option<(String, Result<http::Response, HttpError>)>;

/// Runs the lookup for `entry` with template variables `vars`.
pub fn run(
    entry: &Entry,
    vars: &upon::Value,
    request_id: &str,
    transport: &dyn Transport,
    store: &Store,
    verbose: bool,
) -> Report {
    // Every path below sets the outcome; should one not, the lookup fails rather than answers.
    let mut report = Report::without_request(Outcome::temporary("no attempt was made"), request_id);
    report.outcome = match send(entry, vars, transport, store, verbose, &mut report) {
        Ok(last) => {
            let answered = matches!(&last, Some((_, Ok(r))) if failover::expected(entry, r.status));
            let outcome = outcome(entry, last, &mut report.cache_control);
            // An answer whose body could not be used is a temporary failure: the attempt,
            // counted `ok` when its status came, was `invalid`.
            if answered && matches!(&outcome, Outcome::Failure(f) if f.kind == FailureKind::Temporary) {
                let host = report.host.as_deref().unwrap_or("?");
                store.metrics().take_back(Series::Attempts, &[&entry.name, host, "ok"]);
                store.metrics().add(Series::Attempts, &[&entry.name, host, "invalid"], 1);
            }
            outcome
        }
        Err(failed) => failed,
    };
    report
}

/// Sends `entry`'s request with template variables `vars` to its hosts, with a token when the
/// entry needs one (renewed once on a 401), within its deadline; returns the last attempt, or
/// the failure when no request could be sent. `report` gets the attempts and the transcript;
/// its request id is sent as `X-Request-Id`.
pub fn send(
    entry: &Entry,
    vars: &upon::Value,
    transport: &dyn Transport,
    store: &Store,
    verbose: bool,
    report: &mut Report,
) -> Result<Last, Outcome> {
    let deadline = Instant::now() + entry.retry.deadline;
    let request_id = report.request_id.clone().unwrap_or_default();
    report.trace_id = Some(trace_id());
    let (mut headers, body) = prepare(entry, vars, &request_id).map_err(Outcome::temporary)?;
    let urls = (0..entry.targets.len()).map(|index| target_url(entry, index, vars)).collect::<Result<Vec<_>, _>>()?;
    let hosts = Hosts::new(entry, urls, store);
    let Some(tokens) = Tokens::for_entry(entry, store, transport, deadline) else {
        return Ok(attempts(entry, &hosts, &headers, &body, deadline, transport, report, verbose));
    };
    tokens
        .send(
            |token| {
                set_bearer(&mut headers, token);
                attempts(entry, &hosts, &headers, &body, deadline, transport, report, verbose)
            },
            |last| last.as_ref().and_then(|(_, r)| r.as_ref().ok()).map(|r| r.status),
        )
        .map_err(auth_failure)
}

/// No token: a temporary failure, or a timeout when the deadline ran out.
fn auth_failure(e: AuthError) -> Outcome {
    match e {
        AuthError::TimedOut(text) => Outcome::timeout(text),
        AuthError::Failed(text) => Outcome::temporary(text),
    }
}

/// Replaces any `Authorization` header with the bearer token.
fn set_bearer(headers: &mut http::Headers, token: &Token) {
    headers.retain(|(n, _)| *n != header::AUTHORIZATION);
    if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.access)) {
        value.set_sensitive(true);
        headers.push((header::AUTHORIZATION, value));
    }
}

/// Sends the request to the hosts, in order and again as [`failover`] allows, within the
/// deadline; returns the last attempt.
#[allow(clippy::too_many_arguments)]
fn attempts(
    entry: &Entry,
    hosts: &Hosts,
    headers: &http::Headers,
    body: &Option<Vec<u8>>,
    deadline: Instant,
    transport: &dyn Transport,
    report: &mut Report,
    verbose: bool,
) -> Last {
    let mut last: Last = None;
    for attempt in 0..entry.retry.max_attempts {
        let index = hosts.pick(attempt);
        if let Some((_, result)) = &last {
            let wait = failover::wait_before(attempt, hosts.len(), result);
            if Instant::now().checked_add(wait).is_none_or(|at| at >= deadline) {
                break;
            }
            std::thread::sleep(wait);
        }
        let Some(remaining) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            break;
        };
        let mut request = Request {
            method: entry.request.method.clone(),
            url: hosts.url(index).clone(),
            headers: headers.clone(),
            body: body.clone(),
        };
        if let Some(trace) = &report.trace_id {
            add_traceparent(&mut request.headers, trace);
        }
        let limits = Attempt {
            client: entry.client,
            timeout: entry.retry.timeout.min(remaining),
            max_response_bytes: entry.answer.max_response_bytes,
            gunzip: entry.answer.compression,
        };
        let host = http::host_of(&request.url);
        if verbose {
            transcript::describe_request(&request, &mut report.transcript);
        }
        report.attempts += 1;
        report.host = Some(host.clone());
        let result = transport.send(&request, limits);
        if verbose {
            match &result {
                Ok(response) => transcript::describe_response(response, &mut report.transcript),
                Err(e) => report.transcript.push(format!("! {host}: {e}")),
            }
        }
        report.status = result.as_ref().ok().map(|r| r.status);
        if log::enabled(Level::Debug) {
            let said = match &result {
                Ok(response) => format!("HTTP {}", response.status),
                Err(e) => e.to_string(),
            };
            log::debug(&format!("{} attempt {} to {host}: {said}", entry.name, attempt + 1));
        }
        hosts.record(entry, index, &result, limits.timeout < entry.retry.timeout);
        let answer = result.as_ref().is_ok_and(|r| failover::expected(entry, r.status));
        let counted = metrics::attempt_result(&result, answer);
        hosts.store().metrics().add(Series::Attempts, &[&entry.name, &host, counted], 1);
        let again = failover::retryable(entry, &result);
        last = Some((host, result));
        if !again {
            break;
        }
    }
    last
}

/// The outcome of the last attempt; its `Cache-Control` values go to `cache_control`.
fn outcome(entry: &Entry, last: Last, cache_control: &mut Vec<String>) -> Outcome {
    match last {
        Some((_, Ok(response))) => {
            let values = response.headers.get_all(header::CACHE_CONTROL).iter();
            cache_control.extend(values.filter_map(|v| v.to_str().ok()).map(str::to_string));
            answer::interpret(entry, &response)
        }
        Some((host, Err(e))) => failure(&host, e),
        None => Outcome::timeout(format!("deadline of {} ms passed", entry.retry.deadline.as_millis())),
    }
}

/// The outcome when the last attempt got no answer.
fn failure(host: &str, error: HttpError) -> Outcome {
    match error {
        HttpError::Timeout => Outcome::timeout(format!("no answer from {host} in time")),
        e @ (HttpError::TooLarge(_) | HttpError::Body(_)) => {
            Outcome::temporary(format!("invalid backend response from {host}: {e}"))
        }
        e => Outcome::temporary(format!("{host}: {e}")),
    }
}

/// Renders headers and body once for all attempts.
fn prepare(entry: &Entry, vars: &upon::Value, request_id: &str) -> Result<(http::Headers, Option<Vec<u8>>), String> {
    let mut headers: http::Headers = Vec::new();
    let mut set = |name: HeaderName, value: HeaderValue| {
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value));
    };
    // The reason names the header, never the value: it may hold a credential, and it goes into
    // the reply and the log line.
    let value = |name: &HeaderName, s: &str| {
        HeaderValue::from_str(s).map_err(|_| format!("header {name}: the value holds a byte that cannot be sent"))
    };
    set(header::USER_AGENT, value(&header::USER_AGENT, &entry.request.user_agent)?);
    let request_id_header = HeaderName::from_static("x-request-id");
    set(request_id_header.clone(), value(&request_id_header, request_id)?);
    let mut body = None;
    if let Some(payload) = &entry.request.payload {
        let rendered = payload.render(vars).map_err(|e| format!("payload template: {e}"))?;
        set(header::CONTENT_TYPE, value(&header::CONTENT_TYPE, &entry.request.content_type)?);
        body = Some(if entry.request.compression {
            set(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gzip(rendered.as_bytes())
        } else {
            rendered.into_bytes()
        });
    }
    if entry.answer.compression {
        set(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(auth) = &entry.request.basic_auth {
        let mut v = value(&header::AUTHORIZATION, &auth.0)?;
        v.set_sensitive(true);
        set(header::AUTHORIZATION, v);
    }
    for (name, tpl) in &entry.request.headers {
        let rendered = tpl.render(vars).map_err(|e| format!("header {name} template: {e}"))?;
        let mut v = value(name, &rendered)?;
        v.set_sensitive(!transcript::is_harmless_header(name));
        set(name.clone(), v);
    }
    Ok((headers, body))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Renders target `index`. A key that would change the path on parsing (form a `.` or `..`
/// segment, or hide one with characters the parser drops) is refused: see [`target`].
fn target_url(entry: &Entry, index: usize, vars: &upon::Value) -> Result<reqwest::Url, Outcome> {
    let target = &entry.targets[index];
    if let Some(url) = &target.fixed {
        return Ok(url.clone());
    }
    let rendered = target.template.render(vars).map_err(|e| Outcome::temporary(format!("target template: {e}")))?;
    target::parse(&rendered)
}

/// A fresh W3C trace id: 32 hex digits, never all zeros (which means "none").
pub fn trace_id() -> String {
    let mut id = String::with_capacity(32);
    crate::text::push_hex(&mut id, fastrand::u128(1..), 32);
    id
}

/// Adds `traceparent: 00-<trace id>-<span id>-01` (version 00, sampled) with a fresh span id for
/// this attempt, unless the entry's `headers` set one of their own.
fn add_traceparent(headers: &mut http::Headers, trace_id: &str) {
    let name = HeaderName::from_static("traceparent");
    if headers.iter().any(|(n, _)| *n == name) {
        return;
    }
    let mut value = String::with_capacity(55);
    value.push_str("00-");
    value.push_str(trace_id);
    value.push('-');
    crate::text::push_hex(&mut value, u128::from(fastrand::u64(1..)), 16);
    value.push_str("-01");
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.push((name, value));
    }
}

/// A fresh request id: 16 hex digits, sent to the backend as `X-Request-Id` and logged.
pub fn request_id() -> String {
    let mut id = String::with_capacity(16);
    crate::text::push_hex(&mut id, u128::from(fastrand::u64(..)), 16);
    id
}

#[cfg(test)]
mod tests;
