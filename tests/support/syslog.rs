//! A stand-in for `/dev/log`: a Unix datagram socket in a temp dir whose
//! background thread collects every datagram.
//!
//! [`SyslogSink::settle`] waits until every datagram sent so far has been collected, without
//! guessing a time: datagrams on one socket are received in the order they were sent.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

struct Inner {
    lines: Mutex<Vec<String>>,
    cv: Condvar,
    stop: AtomicBool,
    /// Sync markers received (see [`SyslogSink::settle`]); not in `lines`.
    synced: AtomicUsize,
    /// Sync markers sent.
    sent: AtomicUsize,
}

/// The start of a sync marker datagram (a NUL byte: no syslog line starts with one).
const SYNC: &[u8] = b"\0pfxhttp-test-sync ";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct SyslogSink {
    _dir: tempfile::TempDir,
    path: PathBuf,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogSink {
    pub fn new() -> SyslogSink {
        let dir = super::temp_dir();
        let path = dir.path().join("log");
        let sock = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind syslog sink {}: {e}", path.display()));
        // Safety net only: Drop wakes the thread with a datagram.
        sock.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
        let inner = Arc::new(Inner {
            lines: Mutex::new(Vec::new()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            synced: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
        });
        let inn = inner.clone();
        let thread = thread::Builder::new()
            .name("syslog-sink".into())
            .spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while !inn.stop.load(Ordering::SeqCst) {
                    match sock.recv(&mut buf) {
                        Ok(n) => {
                            if inn.stop.load(Ordering::SeqCst) {
                                break;
                            }
                            let mut lines = lock(&inn.lines);
                            if buf[..n].starts_with(SYNC) {
                                inn.synced.fetch_add(1, Ordering::SeqCst);
                            } else {
                                lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                            }
                            drop(lines);
                            inn.cv.notify_all();
                        }
                        Err(_) => continue,
                    }
                }
            })
            .expect("spawn syslog sink thread");
        SyslogSink { _dir: dir, path, inner, thread: Some(thread) }
    }

    /// The socket path to give pfxhttp instead of `/dev/log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every datagram received so far, as lossy UTF-8, in order.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.inner.lines).clone()
    }

    /// Forget the datagrams received so far.
    pub fn clear(&self) {
        lock(&self.inner.lines).clear();
    }

    /// The first datagram containing `needle`, waiting up to `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_until(timeout, |lines| lines.iter().find(|l| l.contains(needle)).cloned())
    }

    /// Wait until at least `n` datagrams arrived (or `timeout` passed) and
    /// return all of them.
    pub fn wait_count(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.wait_until(timeout, |lines| (lines.len() >= n).then(|| lines.to_vec())).unwrap_or_else(|| self.lines())
    }

    /// Every datagram sent to the sink before this call (by processes that have exited, say),
    /// once all of them are collected: a marker is sent and waited for (up to `timeout`; panics
    /// if it does not come).
    pub fn settle(&self, timeout: Duration) -> Vec<String> {
        let n = self.inner.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let sock = UnixDatagram::unbound().expect("unbound datagram socket");
        let mut marker = SYNC.to_vec();
        marker.extend_from_slice(n.to_string().as_bytes());
        // The sink drains its queue continuously; a full queue only delays the marker.
        let deadline = Instant::now() + timeout;
        while let Err(e) = sock.send_to(&marker, &self.path) {
            assert!(Instant::now() < deadline, "cannot send a sync marker to the syslog sink: {e}");
            thread::sleep(Duration::from_millis(5));
        }
        let synced =
            self.wait_until(timeout, |lines| (self.inner.synced.load(Ordering::SeqCst) >= n).then(|| lines.to_vec()));
        synced.unwrap_or_else(|| panic!("the syslog sink did not receive its sync marker within {timeout:?}"))
    }

    fn wait_until<T>(&self, timeout: Duration, f: impl Fn(&[String]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut lines = lock(&self.inner.lines);
        loop {
            if let Some(v) = f(&lines) {
                return Some(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self.inner.cv.wait_timeout(lines, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Default for SyslogSink {
    fn default() -> Self {
        SyslogSink::new()
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(b"", &self.path);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
