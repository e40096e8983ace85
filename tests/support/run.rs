//! Running the built binary the way Postfix spawn(8) does (empty environment
//! except `PATH`, connection on stdin/stdout) or the way systemd socket
//! activation does (connection on fd 3, `LISTEN_FDS=1`, `LISTEN_PID`).
//!
//! Nothing here blocks without a deadline: output is read by background
//! threads into channels, and every wait takes a timeout. A child that
//! overstays is killed, then the call panics with what it printed so far.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

/// The pfxhttp binary cargo built for these tests: beside the `deps` directory that holds the
/// running test binary (`target/debug/deps/it-…` → `target/debug/pfxhttp`).
pub fn bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
        let bin = dir.join("pfxhttp");
        assert!(bin.is_file(), "no pfxhttp binary at {} (cargo test builds it)", bin.display());
        bin
    })
    .clone()
}

/// The `PATH` handed to children.
pub fn child_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_string())
}

fn command(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().env("PATH", child_path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn describe(program: &Path, args: &[impl AsRef<OsStr>]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------- Output

/// What a finished child left behind.
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
    /// From spawn to exit.
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        lossy(&self.stdout)
    }

    pub fn stderr_str(&self) -> String {
        lossy(&self.stderr)
    }

    /// The exit code; None if killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("elapsed", &self.elapsed)
            .field("stdout", &self.stdout_str())
            .field("stderr", &self.stderr_str())
            .finish()
    }
}

// ---------------------------------------------------------------- Reader

/// Why a timed read did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The deadline passed; `partial` is what is buffered (kept for the next
    /// read).
    Timeout { partial: Vec<u8> },
    /// The stream ended first; `partial` is what was left (consumed).
    Eof { partial: Vec<u8> },
    /// The data is not what was asked for (e.g. not a netstring); `data` is
    /// the buffered bytes (kept).
    Malformed { data: Vec<u8>, why: String },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout { partial } => {
                write!(f, "timed out; buffered so far: {:?}", lossy(partial))
            }
            ReadError::Eof { partial } => {
                write!(f, "end of stream; left over: {:?}", lossy(partial))
            }
            ReadError::Malformed { data, why } => write!(f, "{why}; buffered: {:?}", lossy(data)),
        }
    }
}

/// Reads a byte stream on a background thread; all reads are timed.
pub struct Reader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    eof: bool,
}

impl Reader {
    /// Start a thread that reads `r` until EOF or error. The thread ends
    /// when `r` ends (close the other side, or kill the child).
    pub fn spawn<R: Read + Send + 'static>(mut r: R) -> Reader {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("test-reader".into())
            .spawn(move || {
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    match r.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx.send(chunk[..n].to_vec()).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            })
            .expect("spawn reader thread");
        Reader { rx, buf: Vec::new(), eof: false }
    }

    /// Move everything already received into the buffer, without waiting.
    fn drain_now(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(c) => self.buf.extend(c),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.eof = true;
                    return;
                }
            }
        }
    }

    /// Wait for more data until `deadline`; false if none came (timeout or
    /// EOF, see `self.eof`).
    fn pull(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let now = Instant::now();
        let wait = deadline.saturating_duration_since(now);
        match self.rx.recv_timeout(wait) {
            Ok(c) => {
                self.buf.extend(c);
                self.drain_now();
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                false
            }
        }
    }

    fn fail(&mut self) -> ReadError {
        if self.eof {
            ReadError::Eof { partial: std::mem::take(&mut self.buf) }
        } else {
            ReadError::Timeout { partial: self.buf.clone() }
        }
    }

    /// Generic timed read: `parse` looks at the buffer and returns
    /// Ok(Some(n)) to consume n bytes, Ok(None) for "need more", Err(why)
    /// for malformed data.
    fn read_with(
        &mut self,
        timeout: Duration,
        parse: impl Fn(&[u8]) -> Result<Option<usize>, String>,
    ) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + timeout;
        self.drain_now();
        loop {
            match parse(&self.buf) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
                Ok(None) => {}
                Err(why) => {
                    return Err(ReadError::Malformed { data: self.buf.clone(), why });
                }
            }
            if !self.pull(deadline) {
                return Err(self.fail());
            }
        }
    }

    /// One complete netstring `<len>:<payload>,`, returned raw (with the
    /// length prefix and the comma).
    pub fn try_read_netstring(&mut self, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        self.read_with(timeout, parse_netstring)
    }

    /// Everything up to and including `terminator`.
    pub fn try_read_until(&mut self, terminator: &[u8], timeout: Duration) -> Result<Vec<u8>, ReadError> {
        assert!(!terminator.is_empty(), "empty terminator");
        self.read_with(timeout, |b| {
            Ok(b.windows(terminator.len()).position(|w| w == terminator).map(|p| p + terminator.len()))
        })
    }

    /// Everything until the stream ends.
    pub fn try_read_to_eof(&mut self, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain_now();
            if self.eof {
                return Ok(std::mem::take(&mut self.buf));
            }
            if !self.pull(deadline) && !self.eof {
                return Err(self.fail());
            }
        }
    }

    /// Whatever arrives within `wait` (possibly nothing); never fails.
    pub fn read_available(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        while self.pull(deadline) {}
        std::mem::take(&mut self.buf)
    }

    pub fn read_netstring(&mut self, timeout: Duration) -> Vec<u8> {
        self.try_read_netstring(timeout).unwrap_or_else(|e| panic!("reading a netstring: {e}"))
    }

    pub fn read_until(&mut self, terminator: &[u8], timeout: Duration) -> Vec<u8> {
        self.try_read_until(terminator, timeout)
            .unwrap_or_else(|e| panic!("reading until {:?}: {e}", lossy(terminator)))
    }

    pub fn read_to_eof(&mut self, timeout: Duration) -> Vec<u8> {
        self.try_read_to_eof(timeout).unwrap_or_else(|e| panic!("reading to end of stream: {e}"))
    }
}

/// Ok(Some(total raw length)) when `b` starts with a complete netstring.
pub fn parse_netstring(b: &[u8]) -> Result<Option<usize>, String> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == b.len() {
        return if digits > 10 { Err("netstring length prefix too long".into()) } else { Ok(None) };
    }
    if digits == 0 || b[digits] != b':' {
        return Err("not a netstring (expected <digits>:)".into());
    }
    let len: usize = std::str::from_utf8(&b[..digits])
        .unwrap()
        .parse()
        .map_err(|_| "netstring length does not parse".to_string())?;
    let total = digits + 1 + len + 1;
    if b.len() < total {
        return Ok(None);
    }
    if b[total - 1] != b',' {
        return Err(format!("netstring of length {len} not terminated by ',' (found {:?})", b[total - 1] as char));
    }
    Ok(Some(total))
}

// ---------------------------------------------------------------- run

/// Run pfxhttp with `args` and an empty environment except `PATH`, feed it
/// `stdin` then close it, and collect its output. Kills it and panics if
/// it has not exited within `timeout`.
pub fn run(args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
    run_program(&bin(), args, &[], stdin, timeout)
}

/// [`run`] with extra environment variables.
pub fn run_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8], timeout: Duration) -> Output {
    run_program(&bin(), args, env, stdin, timeout)
}

/// [`run_env`] for any program (used to test the harness itself).
pub fn run_program(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8], timeout: Duration) -> Output {
    let mut child = Child::spawn_program(program, args, env);
    if let Some(mut sin) = child.stdin.take() {
        let data = stdin.to_vec();
        // A child that never reads must not block us: write on a thread.
        thread::Builder::new()
            .name("test-stdin-writer".into())
            .spawn(move || {
                let _ = sin.write_all(&data);
            })
            .expect("spawn stdin writer");
    }
    child.wait(timeout)
}

// ---------------------------------------------------------------- Child

/// An interactive child with piped stdin/stdout/stderr. Killed on drop if
/// still running.
pub struct Child {
    child: Option<std::process::Child>,
    stdin: Option<ChildStdin>,
    stdout: Reader,
    stderr: Reader,
    label: String,
    started: Instant,
}

impl Child {
    /// pfxhttp with an empty environment except `PATH`.
    pub fn spawn(args: &[&str]) -> Child {
        Child::spawn_program(&bin(), args, &[])
    }

    /// Any program (used to test the harness itself).
    pub fn spawn_program(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut cmd = command(program, args, env);
        cmd.stdin(Stdio::piped());
        Child::start(cmd, describe(program, args))
    }

    fn start(mut cmd: Command, label: String) -> Child {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        // The Command may hold a descriptor meant for the child only (fd 3
        // mode): drop it so the child's exit is seen as EOF.
        drop(cmd);
        let stdin = child.stdin.take();
        let stdout = Reader::spawn(child.stdout.take().expect("stdout pipe"));
        let stderr = Reader::spawn(child.stderr.take().expect("stderr pipe"));
        Child { child: Some(child), stdin, stdout, stderr, label, started }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr_so_far(&mut self) -> String {
        self.stderr.drain_now();
        lossy(&self.stderr.buf)
    }

    fn explain(&mut self, what: &str, e: &ReadError) -> String {
        let status = match self.try_wait() {
            Some(s) => format!("exited with {s}"),
            None => "still running".to_string(),
        };
        let stderr = self.stderr_so_far();
        format!(
            "{what} from `{}` ({status}, after {:?}): {e}\nstderr so far: {stderr}",
            self.label,
            self.started.elapsed(),
        )
    }

    /// Write to the child's stdin; Err if it is closed (e.g. EPIPE).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let sin = self.stdin.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "stdin closed"))?;
        sin.write_all(bytes)?;
        sin.flush()
    }

    /// Write to the child's stdin; panics (with its stderr) on error.
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes) {
            let err = self.stderr_so_far();
            panic!("cannot write to stdin of `{}`: {e}\nstderr so far: {err}", self.label);
        }
    }

    pub fn try_read_netstring(&mut self, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        self.stdout.try_read_netstring(timeout)
    }

    /// One complete netstring from stdout, raw (prefix and comma included).
    pub fn read_netstring(&mut self, timeout: Duration) -> Vec<u8> {
        match self.stdout.try_read_netstring(timeout) {
            Ok(v) => v,
            Err(e) => panic!("{}", self.explain("reading a netstring", &e)),
        }
    }

    pub fn try_read_until(&mut self, terminator: &[u8], timeout: Duration) -> Result<Vec<u8>, ReadError> {
        self.stdout.try_read_until(terminator, timeout)
    }

    /// Stdout up to and including `terminator`.
    pub fn read_until(&mut self, terminator: &[u8], timeout: Duration) -> Vec<u8> {
        match self.stdout.try_read_until(terminator, timeout) {
            Ok(v) => v,
            Err(e) => {
                let what = format!("reading until {:?}", lossy(terminator));
                panic!("{}", self.explain(&what, &e))
            }
        }
    }

    /// Whatever arrives on stdout within `wait` (possibly nothing).
    pub fn read_available(&mut self, wait: Duration) -> Vec<u8> {
        self.stdout.read_available(wait)
    }

    /// Close the child's stdin (EOF for it). Idempotent.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The exit status if the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Send SIGKILL (if still running).
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
    }

    /// Wait for the child to exit (stdin is NOT closed: call
    /// [`Child::close_stdin`] first, or use [`Child::finish`]). Returns the
    /// stdout not read yet and all stderr. Kills the child and panics if it
    /// has not exited within `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("child");
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(e) => panic!("waiting for `{}`: {e}", self.label),
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let grace = Instant::now() + Duration::from_millis(500);
                let out = {
                    while self.stdout.pull(grace) {}
                    lossy(&self.stdout.buf)
                };
                let err = {
                    while self.stderr.pull(grace) {}
                    lossy(&self.stderr.buf)
                };
                panic!(
                    "`{}` did not exit within {timeout:?}; killed it.\nstdout so far: {out:?}\nstderr so far: {err}",
                    self.label
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        // The pipes close when the child exits (unless it left a grandchild
        // holding them): collect the rest, for a bounded time.
        let grace = Duration::from_secs(5);
        let stdout = match self.stdout.try_read_to_eof(grace) {
            Ok(v) => v,
            Err(ReadError::Timeout { partial }) | Err(ReadError::Eof { partial }) => partial,
            Err(ReadError::Malformed { data, .. }) => data,
        };
        let stderr = match self.stderr.try_read_to_eof(grace) {
            Ok(v) => v,
            Err(ReadError::Timeout { partial }) | Err(ReadError::Eof { partial }) => partial,
            Err(ReadError::Malformed { data, .. }) => data,
        };
        Output { stdout, stderr, status, elapsed }
    }

    /// [`Child::close_stdin`] then [`Child::wait`].
    pub fn finish(mut self, timeout: Duration) -> Output {
        self.close_stdin();
        self.wait(timeout)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------- fd 3

/// Moves stdin to fd 3, puts /dev/null on stdin, sets the systemd
/// socket-activation variables with LISTEN_PID = the shell's own pid (kept by
/// exec), then execs the program ("$0") with its arguments.
const FD3_SCRIPT: &str = r#"exec 3<&0 0</dev/null
LISTEN_PID=$$
LISTEN_FDS=1
LISTEN_FDNAMES=connection
export LISTEN_PID LISTEN_FDS LISTEN_FDNAMES
exec "$0" "$@""#;

/// Start pfxhttp the way systemd does with `Accept=yes`: the connection on
/// fd 3 (`LISTEN_FDS=1`, `LISTEN_PID` = the child's pid), stdin /dev/null,
/// stdout and stderr pipes. The test talks over the returned socket. The child has no stdin of
/// ours (`send` panics, `close_stdin` does nothing); its stdout is still a pipe that tests can
/// check stays empty.
pub fn spawn_fd3(args: &[&str]) -> (Child, UnixStream) {
    spawn_fd3_program(&bin(), args, &[])
}

/// [`spawn_fd3_env`] for any program (used to test the harness itself).
pub fn spawn_fd3_program(program: &Path, args: &[&str], env: &[(&str, &str)]) -> (Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let mut cmd = command(Path::new("/bin/sh"), &["-c", FD3_SCRIPT], env);
    cmd.arg(program).args(args);
    cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
    let child = Child::start(cmd, format!("(fd 3) {}", describe(program, args)));
    (child, ours)
}

/// The test's side of an fd-3 connection, with timed reads.
pub struct Conn {
    stream: UnixStream,
    reader: Reader,
}

impl Conn {
    pub fn new(stream: UnixStream) -> Conn {
        let reader = Reader::spawn(stream.try_clone().expect("clone stream"));
        Conn { stream, reader }
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| panic!("cannot write to the connection: {e}"));
    }

    /// Half-close: the peer reads EOF.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    pub fn read_netstring(&mut self, timeout: Duration) -> Vec<u8> {
        self.reader.read_netstring(timeout)
    }

    pub fn read_until(&mut self, terminator: &[u8], timeout: Duration) -> Vec<u8> {
        self.reader.read_until(terminator, timeout)
    }

    pub fn read_to_eof(&mut self, timeout: Duration) -> Vec<u8> {
        self.reader.read_to_eof(timeout)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Wakes the reader thread.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
