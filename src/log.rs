//! Logging to syslog over a unix datagram socket, never to stderr.
//!
//! Under spawn(8) stderr is the Postfix client's socket, so every message of a serving command
//! goes to syslog. The socket is non-blocking: a stalled syslogd loses lines instead of stalling a
//! lookup. A missing socket means silence. Messages carry facility `mail` (configurable) and the
//! ident `pfxhttp[pid]`.

use crate::config::{Level, LogSettings};
use std::sync::Mutex;
use syslog::{Formatter3164, Logger, LoggerBackend};

struct Sink {
    level: Level,
    json: bool,
    logger: Option<Logger<LoggerBackend, Formatter3164>>,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Opens (or re-opens) the syslog socket with `settings`.
pub fn init(settings: &LogSettings) {
    let sink = Sink { level: settings.level, json: settings.json, logger: connect(settings) };
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
}

/// A non-blocking syslog connection, or `None` when the socket is not there.
fn connect(settings: &LogSettings) -> Option<Logger<LoggerBackend, Formatter3164>> {
    let formatter = Formatter3164 {
        facility: settings.facility,
        hostname: None,
        process: "pfxhttp".into(),
        pid: std::process::id(),
    };
    let mut logger = syslog::unix_custom(formatter, &settings.syslog_socket).ok()?;
    match &mut logger.backend {
        LoggerBackend::Unix(sock) => {
            let _ = sock.set_nonblocking(true);
        }
        LoggerBackend::UnixStream(stream) => {
            let _ = stream.get_ref().set_nonblocking(true);
        }
        _ => {}
    }
    Some(logger)
}

/// Logs through syslog only, from a panic too: the default hook would print to stderr.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let line = format!("panic{location}: {message}");
        // The panicking thread may hold the sink's lock: never wait for it here.
        let sent =
            SINK.try_lock().ok().and_then(|mut guard| guard.as_mut()?.logger.as_mut().map(|l| l.err(&line).is_ok()));
        if sent != Some(true)
            && let Some(mut fallback) = connect(&LogSettings::default())
        {
            let _ = fallback.err(&line);
        }
    }));
}

/// Sends one line at `level`; `text` builds it (given whether JSON is wanted) only when it is
/// going to be sent.
fn emit(level: Level, text: impl FnOnce(bool) -> String) {
    let mut guard = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sink) = guard.as_mut() else { return };
    if level < sink.level {
        return;
    }
    let json = sink.json;
    let Some(logger) = sink.logger.as_mut() else { return };
    let line = text(json);
    let _ = match level {
        Level::Debug => logger.debug(line),
        Level::Info => logger.info(line),
        Level::Warn => logger.warning(line),
        Level::Error | Level::None => logger.err(line),
    };
}

fn write(level: Level, message: &str) {
    emit(level, |json| {
        if json {
            serde_json::json!({ "level": level_name(level), "msg": message }).to_string()
        } else {
            message.to_string()
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

/// The one line logged per request: `fields` as `name=value` pairs, or one JSON object.
/// Values are cut at 512 bytes so that a long key cannot make a huge log line.
pub fn request(fields: &[(&str, String)]) {
    emit(Level::Info, |json| {
        if json {
            let mut obj = serde_json::Map::new();
            obj.insert("level".into(), "info".into());
            for (k, v) in fields {
                obj.insert(k.to_string(), cut(v).into());
            }
            serde_json::Value::Object(obj).to_string()
        } else {
            fields.iter().map(|(k, v)| format!("{k}={}", quote(cut(v)))).collect::<Vec<_>>().join(" ")
        }
    });
}

fn cut(v: &str) -> &str {
    const MAX: usize = 512;
    if v.len() <= MAX {
        return v;
    }
    let mut end = MAX;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

/// Quotes a value for a `name=value` line when it has spaces, quotes or control characters.
fn quote(v: &str) -> String {
    if !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\') {
        return v.to_string();
    }
    serde_json::to_string(v).unwrap_or_default()
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
        assert_eq!(cut(&"é".repeat(300)).len(), 512);
    }
}
