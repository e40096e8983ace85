//! The Postfix connection: buffered reads with an idle timeout and a lifetime, and replies.
//!
//! spawn(8) gives the connection as fds 0 and 1; systemd's native socket activation gives it as
//! fd 3. Reads wait with poll(2), so the process ends by itself when the client goes quiet
//! (spawn before Postfix 3.10 cannot kill its child), and only ever between requests when the
//! lifetime runs out. Writes wait with poll(2) too: a client that sends requests but stops
//! reading the replies ends the process after `idle_timeout` instead of holding it forever.

use crate::config::Limits;
use crate::proto::Decoded;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 16 * 1024;

/// Why no further request will be served.
#[derive(Debug)]
pub enum End {
    /// The client closed the connection between requests.
    Eof,
    /// No request for `idle_timeout`.
    Idle,
    /// `max_lifetime` reached between requests.
    Lifetime,
    /// The client closed the connection in the middle of a request.
    Truncated,
    /// A request begun but not complete `idle_timeout` after its first byte.
    Stalled,
    /// A reply not taken whole within `idle_timeout`: the client stopped reading.
    Unread,
    /// The bytes can never form a valid request.
    Malformed(String),
    /// A request this process cannot answer (its backend failed): closed without a reply, the
    /// only way to make smtpd answer "try again" to a SASL client.
    Withheld(String),
    Io(io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Eof => f.write_str("client closed the connection"),
            End::Idle => f.write_str("idle timeout"),
            End::Lifetime => f.write_str("maximum lifetime reached"),
            End::Truncated => f.write_str("client closed the connection in the middle of a request"),
            End::Stalled => f.write_str("client stopped sending in the middle of a request"),
            End::Unread => f.write_str("client stopped reading replies: one was not taken within idle_timeout"),
            End::Malformed(why) => write!(f, "malformed request: {why}"),
            End::Withheld(why) => write!(f, "closed without a reply: {why}"),
            End::Io(e) => write!(f, "connection error: {e}"),
        }
    }
}

/// One client connection.
pub struct Connection {
    input: File,
    output: File,
    /// Read buffer, zero-filled once and reused; the bytes not yet decoded are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// When the first byte of the request being read arrived.
    request_began: Instant,
    started: Instant,
    idle_timeout: Duration,
    max_lifetime: Duration,
}

impl Connection {
    pub fn new(input: File, output: File, limits: &Limits) -> Connection {
        Connection {
            input,
            output,
            buf: Vec::new(),
            start: 0,
            end: 0,
            request_began: Instant::now(),
            started: Instant::now(),
            idle_timeout: limits.idle_timeout,
            max_lifetime: limits.max_lifetime,
        }
    }

    /// The connection on fds 0 (requests) and 1 (replies).
    pub fn stdio(limits: &Limits) -> io::Result<Connection> {
        let input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        Ok(Connection::new(input, output, limits))
    }

    /// Reads the next request with `decode`, which sees every byte buffered so far.
    pub fn next<T>(&mut self, decode: impl Fn(&[u8]) -> Decoded<T>) -> Result<T, End> {
        loop {
            if self.start < self.end {
                match decode(&self.buf[self.start..self.end]) {
                    Decoded::Frame(frame, used) => {
                        self.start += used;
                        if self.start == self.end {
                            (self.start, self.end) = (0, 0);
                        } else {
                            self.request_began = Instant::now();
                        }
                        return Ok(frame);
                    }
                    Decoded::Invalid(why) => return Err(End::Malformed(why)),
                    Decoded::Incomplete => {}
                }
            }
            let between_requests = self.start == self.end;
            let wait = if between_requests {
                let left = self.max_lifetime.saturating_sub(self.started.elapsed());
                if left.is_zero() {
                    return Err(End::Lifetime);
                }
                left.min(self.idle_timeout)
            } else {
                // A request has `idle_timeout` to arrive whole, however it trickles in: Postfix
                // writes each request at once, and a byte now and then must not hold a process.
                self.idle_timeout.saturating_sub(self.request_began.elapsed())
            };
            if !self.wait_readable(wait)? {
                return Err(match (between_requests, self.started.elapsed() >= self.max_lifetime) {
                    (true, true) => End::Lifetime,
                    (true, false) => End::Idle,
                    (false, _) => End::Stalled,
                });
            }
            self.make_room();
            let n = loop {
                match self.input.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(End::Io(e)),
                }
            };
            if between_requests {
                self.request_began = Instant::now();
            }
            self.end += n;
            if n == 0 {
                return Err(if between_requests { End::Eof } else { End::Truncated });
            }
        }
    }

    /// Leaves at least [`READ_CHUNK`] free bytes after `end`: the undecoded bytes move to the
    /// front, and the buffer grows (zero-filled) only when that is not enough. The decoders'
    /// size limits bound how far it can grow.
    fn make_room(&mut self) {
        if self.buf.len() - self.end >= READ_CHUNK {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.buf.len() - self.end < READ_CHUNK {
            // A zeroed allocation and a copy: `resize` writes the zeros one byte at a time.
            let mut grown = vec![0; self.end + READ_CHUNK];
            grown[..self.end].copy_from_slice(&self.buf[..self.end]);
            self.buf = grown;
        }
    }

    /// Writes one reply, all of it within `idle_timeout` ([`End::Unread`] otherwise).
    ///
    /// The output is non-blocking only while a reply is written, so that a full buffer makes the
    /// write return instead of wait: under spawn(8) fds 0, 1 and 2 share one open file
    /// description (so do a terminal's), and everyone else expects it blocking.
    pub fn reply(&mut self, bytes: &[u8]) -> Result<(), End> {
        rustix::io::ioctl_fionbio(&self.output, true).map_err(|e| End::Io(e.into()))?;
        let written = self.write_within(bytes, Instant::now() + self.idle_timeout);
        let restored = rustix::io::ioctl_fionbio(&self.output, false).map_err(|e| End::Io(e.into()));
        written.and(restored)
    }

    fn write_within(&mut self, mut bytes: &[u8], deadline: Instant) -> Result<(), End> {
        while !bytes.is_empty() {
            match self.output.write(bytes) {
                Ok(0) => return Err(End::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !wait_for(&self.output, PollFlags::OUT, left)? {
                        return Err(End::Unread);
                    }
                }
                Err(e) => return Err(End::Io(e)),
            }
        }
        Ok(())
    }

    /// Waits until the input is readable (or closed); `false` when `wait` passed first.
    fn wait_readable(&self, wait: Duration) -> Result<bool, End> {
        wait_for(&self.input, PollFlags::IN, wait)
    }
}

/// Waits until `fd` is ready for `flags` (or closed, or in error: the next read or write tells);
/// `false` when `wait` passed first.
fn wait_for(fd: &File, flags: PollFlags, wait: Duration) -> Result<bool, End> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: i64::MAX / 2, tv_nsec: 0 });
        let mut fds = [PollFd::new(fd, flags)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(End::Io(e.into())),
        }
    }
}
