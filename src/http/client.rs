//! [`Transport`] over reqwest, driven on the calling thread.
//!
//! reqwest's blocking client runs its own runtime on a second thread and hands every request
//! and every body chunk across: two thread wake-ups each way per lookup, which on an idle
//! machine cost more than the request itself. Here reqwest's client is driven by a
//! current-thread runtime inside `send`, so a lookup wakes no other thread; the code around it
//! stays synchronous. Between lookups nothing runs, so each lookup first lets the connections
//! catch up (see `send`).

use super::{Attempt, HttpError, IndexDir, Request, Response, Transport, tls};
use crate::config::ClientSpec;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use tokio::runtime::Runtime;

/// One lazily built reqwest client per [`ClientSpec`], kept for the life of the process so that
/// keep-alive connections are reused across requests, and the runtime that drives them.
pub struct Clients {
    specs: Vec<ClientSpec>,
    /// Where the CA bundle's index is kept between processes.
    index_dir: Option<Arc<IndexDir>>,
    built: Vec<OnceLock<Result<reqwest::Client, String>>>,
    runtime: OnceLock<Result<Runtime, String>>,
}

impl Clients {
    pub fn new(specs: &[ClientSpec]) -> Clients {
        Clients {
            specs: specs.to_vec(),
            index_dir: None,
            built: specs.iter().map(|_| OnceLock::new()).collect(),
            runtime: OnceLock::new(),
        }
    }

    /// Keeps the CA bundle's index in `dir` (the state directory) for the processes after this one.
    pub fn with_index_dir(mut self, dir: IndexDir) -> Clients {
        self.index_dir = Some(Arc::new(dir));
        self
    }

    fn client(&self, index: usize) -> Result<&reqwest::Client, HttpError> {
        let built = self.built[index].get_or_init(|| build(&self.specs[index], self.index_dir.as_ref()));
        built.as_ref().map_err(|e| HttpError::Other(e.clone()))
    }

    fn runtime(&self) -> Result<&Runtime, HttpError> {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the HTTP runtime: {e}"))
        });
        runtime.as_ref().map_err(|e| HttpError::Other(e.clone()))
    }
}

fn build(spec: &ClientSpec, index_dir: Option<&Arc<IndexDir>>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls::client_config(&spec.tls, index_dir)?)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(spec.connect_timeout)
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
        let runtime = self.runtime()?;
        // reqwest's timeout runs from connecting to the end of the body.
        let mut builder = client.request(request.method.clone(), request.url.clone()).timeout(attempt.timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        runtime.block_on(async {
            // Nothing ran since the last lookup: let the connections' tasks see what arrived
            // meanwhile (the first yield polls for I/O events, the second runs the tasks they
            // woke), so that a keep-alive connection the server closed is not used.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            let mut response = builder.send().await.map_err(|e| classify(&e))?;
            let status = response.status().as_u16();
            let headers = std::mem::take(response.headers_mut());
            let gzipped = attempt.gunzip
                && headers
                    .get(reqwest::header::CONTENT_ENCODING)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let body = read_body(&mut response, attempt.max_response_bytes, gzipped).await?;
            Ok(Response { status, headers, body })
        })
    }
}

/// Reads the body, gunzipped when `gzipped`, up to `limit` bytes; one more is an error, so a
/// huge body (or a small gzip bomb) never fills memory.
async fn read_body(response: &mut reqwest::Response, limit: usize, gzipped: bool) -> Result<Vec<u8>, HttpError> {
    if gzipped {
        let mut gunzip = flate2::write::GzDecoder::new(Limited::new(limit, 0));
        while let Some(chunk) = response.chunk().await.map_err(|e| body_error(&e))? {
            if let Err(e) = gunzip.write_all(&chunk) {
                return Err(gunzip_error(&gunzip, e, limit));
            }
        }
        if let Err(e) = gunzip.try_finish() {
            return Err(gunzip_error(&gunzip, e, limit));
        }
        return Ok(gunzip.finish().map(|out| out.bytes).unwrap_or_default());
    }
    // The announced length, within the limit, sizes the buffer up front.
    let expected = response.content_length().map_or(0, |n| n.min(limit as u64) as usize);
    let mut out = Limited::new(limit, expected);
    while let Some(chunk) = response.chunk().await.map_err(|e| body_error(&e))? {
        out.write_all(&chunk).map_err(|_| HttpError::TooLarge(limit))?;
    }
    Ok(out.bytes)
}

/// A buffer that refuses to grow past `limit` bytes.
struct Limited {
    bytes: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Limited {
    fn new(limit: usize, expected: usize) -> Limited {
        Limited { bytes: Vec::with_capacity(expected + 1), limit, over: false }
    }
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("response body over the limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A failed gunzip: too much output, or bytes that are not gzip.
fn gunzip_error(gunzip: &flate2::write::GzDecoder<Limited>, e: std::io::Error, limit: usize) -> HttpError {
    if gunzip.get_ref().over { HttpError::TooLarge(limit) } else { HttpError::Body(innermost(&e)) }
}

/// A failed body read: the timeout, or what broke.
fn body_error(e: &reqwest::Error) -> HttpError {
    match classify(e) {
        HttpError::Timeout => HttpError::Timeout,
        _ => HttpError::Body(innermost(e)),
    }
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
