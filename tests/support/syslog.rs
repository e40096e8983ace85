//! A stand-in for `/dev/log`: a Unix datagram socket in a temp dir whose
//! background thread collects every datagram.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

struct Inner {
    lines: Mutex<Vec<String>>,
    cv: Condvar,
    stop: AtomicBool,
}

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
        let inner = Arc::new(Inner { lines: Mutex::new(Vec::new()), cv: Condvar::new(), stop: AtomicBool::new(false) });
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
                            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                            lock(&inn.lines).push(line);
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
