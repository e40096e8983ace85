//! A small hand-written HTTP/1.1 backend over `std::net` (plain or TLS) that
//! records every request and answers with a scripted [`Reply`].
//!
//! One thread per connection, keep-alive, `Content-Length` and chunked
//! request bodies, `Expect: 100-continue`. Dropping the [`Backend`] stops the
//! accept loop, shuts every open connection down and waits (bounded) for the
//! connection threads to end.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::tls::{self, TlsFiles};

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// A connection with no complete request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pseudo-header appended to [`Recorded::headers`] when a TLS client
/// presented a certificate.
pub const CLIENT_CERT_HEADER: &str = "x-test-client-cert";

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as sent in the request line.
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Header names lowercased, values trimmed, in the order received. When a
    /// TLS client presented a certificate, `x-test-client-cert: present` is
    /// appended at the end.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked if it was sent chunked.
    pub body: Vec<u8>,
    /// 1-based number of the TCP connection this request came on (see
    /// [`Backend::connections`]); equal numbers mean a reused connection.
    pub connection: usize,
    /// DER of the TLS client's leaf certificate, if one was presented.
    pub client_cert: Option<Vec<u8>>,
}

impl Recorded {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header named `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The target up to (not including) `?`.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The body as (lossy) UTF-8.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("request body of {} {} is not JSON ({e}): {:?}", self.method, self.target, self.body_str())
        })
    }
}

/// What the backend does with a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A normal response. `Content-Length` is added unless `headers` already
    /// has `Content-Length` or `Transfer-Encoding` (then the body is sent
    /// as-is, which lets tests send a wrong length), or the status is 1xx,
    /// 204 or 304 (then no body is sent).
    Respond { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Read the request, send nothing for this long (cut short when the
    /// backend is dropped), then close.
    Hang(Duration),
    /// Read the request, then close the connection without answering.
    Close,
    /// Send the head (with the full `Content-Length`), then the body one
    /// byte per `every`.
    Trickle { status: u16, body: Vec<u8>, every: Duration },
}

impl Reply {
    /// A response with no headers of its own.
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Respond { status, headers: Vec::new(), body: body.into() }
    }

    /// `Content-Type: application/json`.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::status(status, body).with_header("Content-Type", "application/json")
    }

    /// `Content-Type: text/plain`.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::status(status, body).with_header("Content-Type", "text/plain; charset=utf-8")
    }

    /// A gzip-compressed JSON body with `Content-Encoding: gzip`.
    pub fn gzip_json(status: u16, body: &str) -> Reply {
        Reply::status(status, gzip(body.as_bytes()))
            .with_header("Content-Type", "application/json")
            .with_header("Content-Encoding", "gzip")
    }

    /// Add a response header (only for [`Reply::Respond`]; panics otherwise).
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        match &mut self {
            Reply::Respond { headers, .. } => headers.push((name.to_string(), value.to_string())),
            other => panic!("Reply::with_header only applies to Reply::Respond, not {other:?}"),
        }
        self
    }
}

/// Gzip-compress `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// Gunzip `data` (panics if it is not gzip).
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("not gzip");
    out
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync + 'static>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Shared {
    handler: Handler,
    tls: Option<Arc<ServerConfig>>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    requests: Mutex<Vec<Recorded>>,
    requests_cv: Condvar,
    connections: AtomicUsize,
    tls_errors: Mutex<Vec<String>>,
    /// Clones of the open sockets, so that Drop can shut them down.
    open: Mutex<HashMap<usize, TcpStream>>,
    active: Mutex<usize>,
    active_cv: Condvar,
}

impl Shared {
    fn tls_error(&self, e: String) {
        lock(&self.tls_errors).push(e);
        // Waiters in wait_tls_errors() sleep on the requests condvar.
        let _guard = lock(&self.requests);
        self.requests_cv.notify_all();
    }

    fn stopped(&self) -> bool {
        *lock(&self.stop)
    }

    /// Sleep for `d` or until the backend stops; true if it stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stop = lock(&self.stop);
        loop {
            if *stop {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stop = self.stop_cv.wait_timeout(stop, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// Decrements the active-connection count and forgets the socket clone when
/// a connection thread ends (also on panic).
struct ConnGuard {
    shared: Arc<Shared>,
    id: usize,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.shared.open).remove(&self.id);
        *lock(&self.shared.active) -= 1;
        self.shared.active_cv.notify_all();
    }
}

/// A scripted HTTP(S) server on 127.0.0.1.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Backend {
    /// Plain HTTP on 127.0.0.1:0.
    pub fn start<F>(handler: F) -> Backend
    where
        F: Fn(&Recorded) -> Reply + Send + Sync + 'static,
    {
        Backend::start_inner(None, Arc::new(handler))
    }

    /// HTTPS with the leaf certificate of `tls`, no client certificate asked.
    pub fn start_tls<F>(tls: &TlsFiles, handler: F) -> Backend
    where
        F: Fn(&Recorded) -> Reply + Send + Sync + 'static,
    {
        Backend::start_with_tls_config(tls::server_config(tls, false), handler)
    }

    /// HTTPS that requires a client certificate signed by the test CA.
    /// Requests carry `x-test-client-cert: present` and
    /// [`Recorded::client_cert`].
    pub fn start_tls_client_auth<F>(tls: &TlsFiles, handler: F) -> Backend
    where
        F: Fn(&Recorded) -> Reply + Send + Sync + 'static,
    {
        Backend::start_with_tls_config(tls::server_config(tls, true), handler)
    }

    /// HTTPS with any rustls server configuration.
    pub fn start_with_tls_config<F>(config: Arc<ServerConfig>, handler: F) -> Backend
    where
        F: Fn(&Recorded) -> Reply + Send + Sync + 'static,
    {
        Backend::start_inner(Some(config), Arc::new(handler))
    }

    /// Plain HTTP; every request gets a clone of `reply`.
    pub fn fixed(reply: Reply) -> Backend {
        Backend::start(move |_| reply.clone())
    }

    /// HTTPS; every request gets a clone of `reply`.
    pub fn fixed_tls(tls: &TlsFiles, reply: Reply) -> Backend {
        Backend::start_tls(tls, move |_| reply.clone())
    }

    fn start_inner(tls: Option<Arc<ServerConfig>>, handler: Handler) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            handler,
            tls,
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            requests: Mutex::new(Vec::new()),
            requests_cv: Condvar::new(),
            connections: AtomicUsize::new(0),
            tls_errors: Mutex::new(Vec::new()),
            open: Mutex::new(HashMap::new()),
            active: Mutex::new(0),
            active_cv: Condvar::new(),
        });
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name(format!("backend-accept-{}", addr.port()))
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn accept thread");
        Backend { addr, shared, accept: Some(accept) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` + `path` (`https://` for a TLS backend).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.shared.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Wait until at least `n` requests arrived or `timeout` passed; returns
    /// all requests received by then (check the length).
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut reqs = lock(&self.shared.requests);
        while reqs.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            reqs = self.shared.requests_cv.wait_timeout(reqs, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        reqs.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed so far, with rustls' reason.
    pub fn tls_errors(&self) -> Vec<String> {
        lock(&self.shared.tls_errors).clone()
    }

    /// Wait until at least `n` TLS handshakes failed or `timeout` passed;
    /// returns the errors seen by then (check the length). The server may
    /// record a failure slightly after the client saw it.
    pub fn wait_tls_errors(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut reqs = lock(&self.shared.requests);
        loop {
            let errs = self.tls_errors();
            let now = Instant::now();
            if errs.len() >= n || now >= deadline {
                return errs;
            }
            reqs = self.shared.requests_cv.wait_timeout(reqs, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        {
            *lock(&self.shared.stop) = true;
            self.shared.stop_cv.notify_all();
        }
        for s in lock(&self.shared.open).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        // Connection threads end promptly once their sockets are shut down;
        // wait for them, but never for long.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut active = lock(&self.shared.active);
        while *active > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            active = self.shared.active_cv.wait_timeout(active, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        // Register under the `open` lock, re-checking `stop`, so that Drop
        // either sees this socket or we see the stop flag.
        let id = {
            let mut open = lock(&shared.open);
            if shared.stopped() {
                break;
            }
            let id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
            open.insert(id, clone);
            *lock(&shared.active) += 1;
            id
        };
        let sh = shared.clone();
        let spawned = thread::Builder::new().name(format!("backend-conn-{id}")).spawn(move || {
            let guard = ConnGuard { shared: sh.clone(), id };
            handle_connection(&sh, stream, id);
            drop(guard);
        });
        if spawned.is_err() {
            lock(&shared.open).remove(&id);
            *lock(&shared.active) -= 1;
        }
    }
}

fn handle_connection(shared: &Shared, mut stream: TcpStream, id: usize) {
    let Some(config) = shared.tls.clone() else {
        serve(shared, &mut stream, id, None);
        return;
    };
    let mut conn = match ServerConnection::new(config) {
        Ok(c) => c,
        Err(e) => {
            shared.tls_error(e.to_string());
            return;
        }
    };
    while conn.is_handshaking() {
        match conn.complete_io(&mut stream) {
            Ok((0, 0)) => {
                shared.tls_error("connection closed during handshake".into());
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.tls_error(e.to_string());
                return;
            }
        }
    }
    let client_cert = conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    let mut tls = StreamOwned::new(conn, stream);
    serve(shared, &mut tls, id, client_cert);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Read more bytes into `buf`; Ok(0) at EOF.
fn fill<S: Read>(io: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match io.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Take one CRLF-terminated line (without the CRLF) off the front of `buf`.
fn take_line<S: Read>(io: &mut S, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    loop {
        if let Some(p) = find(buf, b"\r\n") {
            let line = buf[..p].to_vec();
            buf.drain(..p + 2);
            return Ok(line);
        }
        if buf.len() > MAX_HEAD {
            return Err(io_err("line too long"));
        }
        if fill(io, buf)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Take exactly `n` bytes off the front of `buf`.
fn take_exact<S: Read>(io: &mut S, buf: &mut Vec<u8>, n: usize) -> io::Result<Vec<u8>> {
    while buf.len() < n {
        if fill(io, buf)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.drain(..n).collect())
}

struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the connection must close after this exchange.
    fn wants_close(&self) -> bool {
        if self.version == "HTTP/1.0" {
            !self.has_token("connection", "keep-alive")
        } else {
            self.has_token("connection", "close")
        }
    }
}

/// Read the head of the next request; Ok(None) on a clean EOF between
/// requests.
fn read_head<S: Read>(io: &mut S, buf: &mut Vec<u8>) -> io::Result<Option<Head>> {
    let end = loop {
        // Tolerate empty lines before a request (RFC 9112 section 2.2).
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return Err(io_err("request head too large"));
        }
        if fill(io, buf)? == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
    };
    let head: Vec<u8> = buf.drain(..end + 4).collect();
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(io_err(format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(io_err(format!("bad version {version:?}")));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(io_err(format!("bad header line {line:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim_matches([' ', '\t']).to_string()));
    }
    Ok(Some(Head { method: method.to_string(), target: target.to_string(), version: version.to_string(), headers }))
}

fn read_body<S: Read + Write>(io: &mut S, buf: &mut Vec<u8>, head: &Head) -> io::Result<Vec<u8>> {
    let chunked =
        head.get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().trim_end().ends_with("chunked"));
    let length = match head.get("content-length") {
        Some(v) if !chunked => {
            Some(v.trim().parse::<usize>().map_err(|_| io_err(format!("bad content-length {v:?}")))?)
        }
        _ => None,
    };
    let expects_body = chunked || length.unwrap_or(0) > 0;
    if expects_body && buf.is_empty() && head.has_token("expect", "100-continue") {
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        io.flush()?;
    }
    if chunked {
        let mut body = Vec::new();
        loop {
            let line = take_line(io, buf)?;
            let line = String::from_utf8_lossy(&line);
            let size_str = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_str, 16).map_err(|_| io_err(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !take_line(io, buf)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(io_err("body too large"));
            }
            body.extend(take_exact(io, buf, size)?);
            if take_exact(io, buf, 2)? != b"\r\n" {
                return Err(io_err("chunk not followed by CRLF"));
            }
        }
    }
    let n = length.unwrap_or(0);
    if n > MAX_BODY {
        return Err(io_err("body too large"));
    }
    take_exact(io, buf, n)
}

/// Reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn response_head(status: u16, headers: &[(String, String)], body_len: usize, close: bool) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !no_body && !has("content-length") && !has("transfer-encoding") {
        out.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    if close && !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn serve<S: Read + Write>(shared: &Shared, io: &mut S, conn_id: usize, client_cert: Option<Vec<u8>>) {
    let mut buf = Vec::new();
    loop {
        if shared.stopped() {
            return;
        }
        let head = match read_head(io, &mut buf) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => return,
        };
        let body = match read_body(io, &mut buf, &head) {
            Ok(b) => b,
            Err(_) => {
                let _ = io.write_all(&response_head(400, &[], 0, true));
                let _ = io.flush();
                return;
            }
        };
        let mut close = head.wants_close();
        let mut headers = head.headers.clone();
        if client_cert.is_some() {
            headers.push((CLIENT_CERT_HEADER.to_string(), "present".to_string()));
        }
        let rec = Recorded {
            method: head.method.clone(),
            target: head.target.clone(),
            version: head.version.clone(),
            headers,
            body,
            connection: conn_id,
            client_cert: client_cert.clone(),
        };
        {
            lock(&shared.requests).push(rec.clone());
            shared.requests_cv.notify_all();
        }
        let is_head = rec.method.eq_ignore_ascii_case("HEAD");
        match (shared.handler)(&rec) {
            Reply::Respond { status, headers, body } => {
                if headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("connection") && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
                }) {
                    close = true;
                }
                let no_body = (100..200).contains(&status) || status == 204 || status == 304;
                let mut out = response_head(status, &headers, body.len(), close);
                if !is_head && !no_body {
                    out.extend_from_slice(&body);
                }
                if io.write_all(&out).and_then(|_| io.flush()).is_err() {
                    return;
                }
            }
            Reply::Hang(d) => {
                shared.sleep(d);
                return;
            }
            Reply::Close => return,
            Reply::Trickle { status, body, every } => {
                let out = response_head(status, &[], body.len(), close);
                if io.write_all(&out).and_then(|_| io.flush()).is_err() {
                    return;
                }
                if !is_head {
                    for b in body {
                        if shared.sleep(every) {
                            return;
                        }
                        if io.write_all(&[b]).and_then(|_| io.flush()).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if close {
            return;
        }
    }
}

/// A response as read by [`read_response`].
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one `Content-Length`-framed (or close-delimited) HTTP/1.1 response
/// from `io`, for tests that talk to a [`Backend`] directly. Leftover bytes
/// stay in `buf` for the next call. Set a read timeout on the socket.
pub fn read_response<S: Read>(io: &mut S, buf: &mut Vec<u8>) -> io::Result<RawResponse> {
    let end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return Err(io_err("response head too large"));
        }
        if fill(io, buf)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    };
    let head: Vec<u8> = buf.drain(..end + 4).collect();
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io_err(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
    let body = match len {
        Some(n) => take_exact(io, buf, n)?,
        None if (100..200).contains(&status) || status == 204 || status == 304 => Vec::new(),
        None => {
            while fill(io, buf)? > 0 {}
            std::mem::take(buf)
        }
    };
    Ok(RawResponse { status, headers, body })
}

// ---------------------------------------------------------------- reset mid-body

/// A raw TCP server on 127.0.0.1 for the one fault [`Backend`] cannot script: a connection
/// *reset* (RST, not an orderly FIN) in the middle of a response body.
///
/// For every connection it waits until the whole request is in the kernel's receive queue
/// (peeking, never reading it), sends a response head announcing `declared` body bytes and the
/// first bytes of the body, waits `pause` so that the client has read them, and closes the
/// socket. Linux answers a close with unread received data by a RST, which is how a crashing
/// proxy or a killed backend looks to the client. Dropping it stops the accept loop.
pub struct ResetServer {
    addr: SocketAddr,
    stop: Arc<Mutex<bool>>,
    connections: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

impl ResetServer {
    /// Answers `status` with `Content-Length: declared`, sends `partial` (shorter), then resets.
    pub fn start(status: u16, partial: &[u8], declared: usize, pause: Duration) -> ResetServer {
        assert!(partial.len() < declared, "the partial body must be shorter than the declared length");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let mut head = format!("HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n", reason(status));
        head.push_str(&format!("Content-Length: {declared}\r\n\r\n"));
        let mut out = head.into_bytes();
        out.extend_from_slice(partial);
        let stop = Arc::new(Mutex::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (st, n) = (stop.clone(), connections.clone());
        let accept = thread::Builder::new()
            .name(format!("reset-accept-{}", addr.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if *lock(&st) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    n.fetch_add(1, Ordering::SeqCst);
                    let out = out.clone();
                    let _ = thread::Builder::new().name("reset-conn".into()).spawn(move || {
                        reset_after(stream, &out, pause);
                    });
                }
            })
            .expect("spawn accept thread");
        ResetServer { addr, stop, connections, accept: Some(accept) }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Waits (bounded) until a whole request is queued, answers `out` without reading the request,
/// waits `pause`, and drops the socket: the unread request makes the kernel send a RST.
fn reset_after(stream: TcpStream, out: &[u8], pause: Duration) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + IDLE_TIMEOUT;
    let mut peeked = vec![0u8; MAX_HEAD];
    while Instant::now() < deadline {
        let n = stream.peek(&mut peeked).unwrap_or(0);
        if request_is_complete(&peeked[..n]) {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let mut s = &stream;
    let _ = s.write_all(out).and_then(|_| s.flush());
    thread::sleep(pause);
}

/// Whether `b` holds a request head and its `Content-Length` body.
fn request_is_complete(b: &[u8]) -> bool {
    let Some(end) = find(b, b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    b.len() >= end + 4 + len
}

impl Drop for ResetServer {
    fn drop(&mut self) {
        *lock(&self.stop) = true;
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}
