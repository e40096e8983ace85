//! Logging to syslog or to Postfix's postlogd(8), never to stderr while serving.
//!
//! Under spawn(8) stderr is the Postfix client's socket, so every message of a serving command
//! goes to a unix socket: `/dev/log` (syslog) or Postfix's `public/postlog` (postlogd writes the
//! lines to `maillog_file`), as `server.logging.target` says. The socket is non-blocking: a
//! stalled daemon loses lines instead of stalling a lookup. A line that finds no connection, or
//! whose send fails because the daemon went away (restarted), connects again once and is sent
//! there: a process started before the socket existed logs as soon as it does. Only commands run
//! by hand may log to stderr (`target: stderr`). Messages carry the ident `pfxhttp[pid]`.

use crate::config::{Level, LogSettings, LogTarget};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use syslog::{Facility, LoggerBackend};

/// Where the lines of this process go once connected.
enum Conn {
    Syslog(LoggerBackend),
    Postlog(UnixDatagram),
    Stderr,
}

struct Sink {
    level: Level,
    json: bool,
    facility: Facility,
    target: LogTarget,
    syslog_socket: std::path::PathBuf,
    postlog_socket: std::path::PathBuf,
    pid: u32,
    conn: Option<Conn>,
    /// The text of the line being sent, and the line with its header, kept so that logging a
    /// lookup allocates nothing once warm.
    body: String,
    line: String,
    /// The last timestamp written, and the second it is for.
    stamp: (u64, String),
    /// The host name as postlogd's lines carry it (its first label), read when first needed.
    host: Option<String>,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Sets up logging for a serving command with `settings` (`target: stderr` counts as `auto`).
pub fn init(settings: &LogSettings) {
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(Sink::open(settings, false));
}

/// Sets up logging for a command run by hand, which may log to stderr (`target: stderr`).
pub fn init_interactive(settings: &LogSettings) {
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(Sink::open(settings, true));
}

/// A non-blocking syslog connection, or `None` when the socket is not there.
fn connect_syslog(path: &Path) -> Option<Conn> {
    // The syslog crate finds out whether the socket takes datagrams or a stream; the lines are
    // formatted here (its formatter parses a time format description for every line).
    let mut backend = syslog::unix_custom((), path).ok()?.backend;
    match &mut backend {
        LoggerBackend::Unix(sock) => {
            let _ = sock.set_nonblocking(true);
        }
        LoggerBackend::UnixStream(stream) => {
            let _ = stream.get_ref().set_nonblocking(true);
        }
        _ => {}
    }
    Some(Conn::Syslog(backend))
}

/// A non-blocking connection to postlogd's datagram socket, or `None` when it is not there.
fn connect_postlog(path: &Path) -> Option<Conn> {
    let sock = UnixDatagram::unbound().ok()?;
    sock.connect(path).ok()?;
    let _ = sock.set_nonblocking(true);
    Some(Conn::Postlog(sock))
}

/// Logs through the sink only, from a panic too: the default hook would print to stderr.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let text = format!("panic{location}: {message}");
        // The panicking thread may hold the sink's lock: never wait for it here.
        let sent = SINK.try_lock().ok().and_then(|mut guard| {
            let sink = guard.as_mut()?;
            Some(sink.send(Level::Error, |line, _| line.push_str(&text)))
        });
        if sent != Some(true) {
            Sink::open(&LogSettings::default(), false).send(Level::Error, |line, _| line.push_str(&text));
        }
    }));
}

impl Sink {
    fn open(settings: &LogSettings, interactive: bool) -> Sink {
        let target = match settings.target {
            LogTarget::Stderr if !interactive => LogTarget::Auto,
            target => target,
        };
        let mut sink = Sink {
            level: settings.level,
            json: settings.json,
            facility: settings.facility,
            target,
            syslog_socket: settings.syslog_socket.clone(),
            postlog_socket: settings.postlog_socket.clone(),
            pid: std::process::id(),
            conn: None,
            body: String::new(),
            line: String::new(),
            stamp: (u64::MAX, String::new()),
            host: None,
        };
        sink.conn = sink.connect();
        sink
    }

    /// A connection as `target` says, or `None` when its socket is not there (yet).
    fn connect(&self) -> Option<Conn> {
        match self.target {
            LogTarget::Syslog => connect_syslog(&self.syslog_socket),
            LogTarget::Postlog => connect_postlog(&self.postlog_socket),
            LogTarget::Stderr => Some(Conn::Stderr),
            LogTarget::Auto if self.syslog_socket.exists() => connect_syslog(&self.syslog_socket),
            LogTarget::Auto => connect_postlog(&self.postlog_socket),
        }
    }

    /// Sends one line: what `text` appends (given whether JSON is wanted) after the header the
    /// connection wants. A line without a connection, or whose send fails for another reason
    /// than a full queue, connects again once and is sent there. `false` when it was lost.
    fn send(&mut self, level: Level, text: impl FnOnce(&mut String, bool)) -> bool {
        self.body.clear();
        text(&mut self.body, self.json);
        let fresh = self.conn.is_none();
        if fresh {
            self.conn = self.connect();
        }
        match self.write(level) {
            Ok(()) => true,
            Err(e) if fresh || e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => {
                self.conn = self.connect();
                self.write(level).is_ok()
            }
        }
    }

    /// Writes the body with the header of the current connection.
    fn write(&mut self, level: Level) -> std::io::Result<()> {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.stamp.0 != second {
            self.stamp.1.clear();
            push_timestamp(&mut self.stamp.1, now);
            self.stamp.0 = second;
        }
        self.line.clear();
        match &self.conn {
            None => return Err(std::io::ErrorKind::NotFound.into()),
            Some(Conn::Syslog(_)) => {
                let _ = write!(
                    self.line,
                    "<{}>{} pfxhttp[{}]: ",
                    self.facility as u8 | severity(level),
                    self.stamp.1,
                    self.pid
                );
            }
            Some(Conn::Postlog(_)) => {
                let host = self.host.get_or_insert_with(host_label);
                postlog_header(&mut self.line, &self.stamp.1, host, self.pid, level);
            }
            Some(Conn::Stderr) => {
                let _ = write!(self.line, "pfxhttp: {}", severity_prefix(level));
            }
        }
        self.line.push_str(&self.body);
        match self.conn.as_mut() {
            Some(Conn::Syslog(backend)) => backend.write(self.line.as_bytes()).map(drop),
            Some(Conn::Postlog(sock)) => sock.send(self.line.as_bytes()).map(drop),
            Some(Conn::Stderr) => writeln!(std::io::stderr(), "{}", self.line),
            None => Ok(()),
        }
    }
}

/// The syslog severity of `level`.
fn severity(level: Level) -> u8 {
    match level {
        Level::Debug => 7,
        Level::Info => 6,
        Level::Warn => 4,
        Level::Error | Level::None => 3,
    }
}

/// What postlogd's lines put before the text of a warning or an error (nothing for the others).
fn severity_prefix(level: Level) -> &'static str {
    match level {
        Level::Debug | Level::Info => "",
        Level::Warn => "warning: ",
        Level::Error | Level::None => "error: ",
    }
}

/// The header Postfix's own programs send to postlogd, which writes the line to `maillog_file`
/// as it is: `Mmm dd hh:mm:ss host pfxhttp[pid]: ` and, for a warning or an error, its severity.
fn postlog_header(out: &mut String, stamp: &str, host: &str, pid: u32, level: Level) {
    let _ = write!(out, "{stamp} {host} pfxhttp[{pid}]: {}", severity_prefix(level));
}

/// This host's name up to its first dot, as Postfix's lines name it.
fn host_label() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let label = name.trim().split('.').next().unwrap_or("");
    if label.is_empty() { "localhost".into() } else { label.into() }
}

/// Appends `Mmm dd hh:mm:ss` in UTC (what the syslog crate sent; syslog daemons on /dev/log
/// stamp lines with their own time anyway, and postlogd's lines differ from Postfix's own only
/// where local time is not UTC).
fn push_timestamp(out: &mut String, at: SystemTime) {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let _ = write!(
        out,
        "{} {day:02} {:02}:{:02}:{:02}",
        MONTHS[month as usize - 1],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// Sends one line at `level`; `text` appends it (given whether JSON is wanted) only when it is
/// going to be sent.
fn emit(level: Level, text: impl FnOnce(&mut String, bool)) {
    let mut guard = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sink) = guard.as_mut() else { return };
    if level < sink.level {
        return;
    }
    sink.send(level, text);
}

fn write(level: Level, message: &str) {
    emit(level, |line, json| {
        if json {
            line.push_str(&serde_json::json!({ "level": level_name(level), "msg": message }).to_string());
        } else {
            line.push_str(message);
        }
    });
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error | Level::None => "error",
    }
}

pub fn error(message: &str) {
    write(Level::Error, message);
}

pub fn warn(message: &str) {
    write(Level::Warn, message);
}

pub fn info(message: &str) {
    write(Level::Info, message);
}

pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// One value of a request's log line.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    Text(&'a str),
    Number(u64),
}

/// Whether a line at `level` would be sent (so that callers can skip building it).
pub fn enabled(level: Level) -> bool {
    SINK.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| level >= s.level)
}

/// The one line logged per request: `fields` as `name=value` pairs, or one JSON object.
/// Values are cut at 512 bytes so that a long key cannot make a huge log line.
pub fn request(fields: &[(&str, Field)]) {
    emit(Level::Info, |line, json| {
        if json {
            let mut obj = serde_json::Map::new();
            obj.insert("level".into(), "info".into());
            for (k, v) in fields {
                let value = match *v {
                    Field::Text(t) => cut(t).into(),
                    Field::Number(n) => n.into(),
                };
                obj.insert(k.to_string(), value);
            }
            line.push_str(&serde_json::Value::Object(obj).to_string());
            return;
        }
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(k);
            line.push('=');
            match *v {
                Field::Text(t) => line.push_str(&quote(cut(t))),
                Field::Number(n) => {
                    let _ = write!(line, "{n}");
                }
            }
        }
    });
}

/// A field value as logged: at most 512 bytes.
fn cut(v: &str) -> &str {
    crate::text::cut(v, 512)
}

/// Quotes a value for a `name=value` line when it has spaces, quotes or control characters.
fn quote(v: &str) -> std::borrow::Cow<'_, str> {
    // Printable ASCII but space, `"` and `\` is the common case, told apart byte by byte.
    let plain = |b: u8| b > b' ' && b < 0x7f && b != b'"' && b != b'\\';
    let needs = |c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\\';
    if !v.is_empty() && (v.bytes().all(plain) || (!v.is_ascii() && !v.chars().any(needs))) {
        return v.into();
    }
    serde_json::to_string(v).unwrap_or_default().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("user@example.org"), "user@example.org");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("café"), "café");
        for needs in ["a\u{85}b", "a\u{a0}b", "é\u{2028}", "a\x7fb", "a\"b", "a\\b", "\t"] {
            assert!(quote(needs).starts_with('"'), "{needs:?} is quoted");
        }
        assert_eq!(cut(&"é".repeat(300)).len(), 512);
    }

    #[test]
    fn postlog_header_as_postfix_sends_it() {
        let header = |level| {
            let mut s = String::new();
            postlog_header(&mut s, "Dec 04 03:24:52", "mx1", 4242, level);
            s
        };
        assert_eq!(header(Level::Info), "Dec 04 03:24:52 mx1 pfxhttp[4242]: ");
        assert_eq!(header(Level::Debug), "Dec 04 03:24:52 mx1 pfxhttp[4242]: ");
        assert_eq!(header(Level::Warn), "Dec 04 03:24:52 mx1 pfxhttp[4242]: warning: ");
        assert_eq!(header(Level::Error), "Dec 04 03:24:52 mx1 pfxhttp[4242]: error: ");
    }

    #[test]
    fn timestamps_in_utc() {
        let at = |secs: u64| {
            let mut s = String::new();
            push_timestamp(&mut s, UNIX_EPOCH + std::time::Duration::from_secs(secs));
            s
        };
        assert_eq!(at(0), "Jan 01 00:00:00");
        // 2024-02-29 23:59:59 and the second after it; 2026-12-02 09:17:05.
        assert_eq!(at(1_709_251_199), "Feb 29 23:59:59");
        assert_eq!(at(1_709_251_200), "Mar 01 00:00:00");
        assert_eq!(at(1_796_203_025), "Dec 02 09:17:05");
    }
}
