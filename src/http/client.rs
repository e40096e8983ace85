//! [`Transport`] over reqwest's blocking client.

use super::{Attempt, HttpError, Request, Response, Transport, tls};
use crate::config::ClientSpec;
use std::io::Read;
use std::sync::OnceLock;

/// One lazily built reqwest client per [`ClientSpec`], kept for the life of the process so that
/// keep-alive connections are reused across requests.
pub struct Clients {
    specs: Vec<ClientSpec>,
    built: Vec<OnceLock<Result<reqwest::blocking::Client, String>>>,
}

impl Clients {
    pub fn new(specs: &[ClientSpec]) -> Clients {
        Clients { specs: specs.to_vec(), built: specs.iter().map(|_| OnceLock::new()).collect() }
    }

    fn client(&self, index: usize) -> Result<&reqwest::blocking::Client, HttpError> {
        let built = self.built[index].get_or_init(|| build(&self.specs[index]));
        built.as_ref().map_err(|e| HttpError::Other(e.clone()))
    }
}

fn build(spec: &ClientSpec) -> Result<reqwest::blocking::Client, String> {
    let mut builder = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls::client_config(&spec.tls)?)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(spec.connect_timeout)
        .timeout(None)
        .pool_max_idle_per_host(2)
        .referer(false);
    if let Some(proxy) = &spec.proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(|e| format!("proxy: {e}"))?);
    }
    builder.build().map_err(|e| format!("cannot set up the HTTP client: {}", innermost(&e)))
}

impl Transport for Clients {
    fn send(&self, request: &Request, attempt: Attempt) -> Result<Response, HttpError> {
        let client = self.client(attempt.client)?;
        let mut builder = client.request(request.method.clone(), request.url.clone()).timeout(attempt.timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder.send().map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let gzipped = attempt.gunzip
            && headers
                .get(reqwest::header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let limit = attempt.max_response_bytes;
        let body = if gzipped {
            read_limited(flate2::read::GzDecoder::new(response), limit, 0)?
        } else {
            let expected = response.content_length().map_or(0, |n| n.min(limit as u64) as usize);
            read_limited(response, limit, expected)?
        };
        Ok(Response { status, headers, body })
    }
}

/// Reads at most `limit` bytes; one more is an error, so a huge body never fills memory.
/// `expected` (the announced length, within the limit) sizes the buffer up front.
fn read_limited(reader: impl Read, limit: usize, expected: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::with_capacity(expected + 1);
    reader.take(limit as u64 + 1).read_to_end(&mut body).map_err(|e| {
        let timed_out = e.kind() == std::io::ErrorKind::TimedOut
            || e.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()).is_some_and(|r| r.is_timeout());
        if timed_out { HttpError::Timeout } else { HttpError::Body(innermost(&e)) }
    })?;
    if body.len() > limit {
        return Err(HttpError::TooLarge(limit));
    }
    Ok(body)
}

/// Sorts a reqwest error into what the lookup needs to know. The text is the innermost cause:
/// reqwest's own message names the URL, which may hold a key or credentials.
fn classify(e: &reqwest::Error) -> HttpError {
    if e.is_timeout() {
        return HttpError::Timeout;
    }
    for cause in chain(e) {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return HttpError::Tls(tls.to_string());
        }
        if cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return HttpError::Timeout;
        }
    }
    if e.is_connect() {
        HttpError::Connect(innermost(e))
    } else if e.is_body() || e.is_decode() {
        HttpError::Body(innermost(e))
    } else {
        HttpError::Other(innermost(e))
    }
}

/// Every error in the chain, including the ones an `io::Error` wraps (its `source()` skips them).
fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        out.push(err);
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    out
}

/// The deepest cause's message.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e).last().map_or_else(String::new, |cause| cause.to_string())
}
