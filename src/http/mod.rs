//! The HTTP exchange: one request out, one bounded response in.
//!
//! [`Transport`] is the seam between the lookup logic and the network: [`Clients`] implements it
//! with reqwest (one client per distinct TLS/proxy setting, built on first need and kept
//! for keep-alive), and unit tests implement it in memory.

mod anchors;
mod client;
#[cfg(test)]
pub mod fake;
mod tls;

pub use anchors::IndexDir;
pub use client::Clients;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// Request headers in the order they are sent.
pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Headers,
    pub body: Option<Vec<u8>>,
}

/// A response with its whole (decoded) body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Limits and options of one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// Index into the config's client list.
    pub client: usize,
    /// The whole attempt: connect, send, and read the body.
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// Decode a gzip response body.
    pub gunzip: bool,
}

/// Why an attempt failed; every variant is temporary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("no answer in time")]
    Timeout,
    #[error("reading the answer failed: {0}")]
    Body(String),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Other(String),
}

impl HttpError {
    /// Whether the host is to blame: no connection, no TLS, or no answer in time. Another host
    /// may do better then; after a broken or oversized answer, or a local problem, it would not.
    pub fn host_at_fault(&self) -> bool {
        matches!(self, HttpError::Connect(_) | HttpError::Tls(_) | HttpError::Timeout)
    }
}

/// Sends requests.
pub trait Transport {
    fn send(&self, request: &Request, attempt: Attempt) -> Result<Response, HttpError>;
}

/// `scheme://host[:port]` of a URL: the key under which a host's health is kept.
pub fn origin_of(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// `host[:port]` of a URL, for logs and replies (never user info, path or query).
pub fn host_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => {
            let mut host = String::with_capacity(h.len() + 6);
            host.push_str(h);
            host.push(':');
            crate::text::push_decimal(&mut host, u64::from(p));
            host
        }
        (Some(h), None) => h.to_string(),
        _ => String::from("?"),
    }
}
