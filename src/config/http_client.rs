//! `http_client` and `tls` settings: read at server level, inherited by every entry, and
//! overridden per entry.

use super::tree::{self, Diagnostics, Table};
use super::*;
use serde_yaml::Value;

/// Settings an entry inherits from `server` and may override.
#[derive(Clone)]
pub(super) struct Inherited {
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) deadline: Duration,
    pub(super) proxy: Option<String>,
    pub(super) user_agent: String,
    pub(super) max_response_bytes: usize,
    pub(super) tls: TlsSpec,
}

impl Inherited {
    /// The settings when `server` gives none.
    pub(super) fn server_defaults() -> Inherited {
        Inherited {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(15),
            proxy: None,
            user_agent: format!("pfxhttp/{}", crate::VERSION),
            max_response_bytes: 1 << 20,
            tls: TlsSpec { root_ca: None, identity: None, skip_verify: false, tls13_only: false },
        }
    }
}

/// Reads `http_client` keys, at server level or inside an entry.
pub(super) fn http_client(path: &str, v: &Value, out: &mut Inherited, d: &mut Diagnostics) {
    let Some(mut t) = Table::open(v, path, d) else { return };
    http_keys(&mut t, out, d);
    if let Some((p, v)) = t.take_any(&["skip_verify", "http_client_skip_verify"], d) {
        out.tls.skip_verify = tree::boolean(&p, v, d).unwrap_or(false);
        if out.tls.skip_verify {
            warn_skip_verify(path, d);
        }
    }
    let pool = "one process serves one Postfix connection and keeps one backend connection alive";
    t.finish(
        d,
        &[
            ("max_connections_per_host", pool),
            ("max_idle_connections", pool),
            ("max_idle_connections_per_host", pool),
            ("idle_connection_timeout", pool),
        ],
    );
}

/// The `http_client` keys that may also stand directly in an entry.
pub(super) fn http_keys(t: &mut Table<'_>, out: &mut Inherited, d: &mut Diagnostics) {
    if let Some((p, v)) = t.take("timeout")
        && let Some(dur) = positive(&p, v, d)
    {
        out.timeout = dur;
    }
    if let Some((p, v)) = t.take("connect_timeout")
        && let Some(dur) = positive(&p, v, d)
    {
        out.connect_timeout = dur;
    }
    if let Some((p, v)) = t.take("deadline")
        && let Some(dur) = positive(&p, v, d)
    {
        if dur >= Duration::from_secs(100) {
            d.warn(&p, "reaches Postfix's 100 s client timeout; Postfix would give up before pfxhttp answers");
        }
        out.deadline = dur;
    }
    if let Some((p, v)) = t.take("proxy")
        && let Some(s) = tree::string(&p, v, d)
    {
        out.proxy = proxy(&p, s, d);
    }
    if let Some((p, v)) = t.take("user_agent")
        && let Some(s) = tree::string(&p, v, d)
    {
        if reqwest::header::HeaderValue::from_str(&s).is_err() {
            d.error(&p, "not a valid header value");
        } else {
            out.user_agent = s;
        }
    }
    if let Some((p, v)) = t.take("max_response_bytes")
        && let Some(n) = tree::uint(&p, v, 1, 1 << 30, d)
    {
        out.max_response_bytes = n as usize;
    }
}

/// The one warning for `skip_verify: true`, wherever and however it is written; `path` is the
/// table that holds it.
fn warn_skip_verify(path: &str, d: &mut Diagnostics) {
    d.warn(path, "skip_verify accepts any server certificate; use root_ca instead where possible");
}

pub(super) fn tls(path: &str, v: &Value, base: &TlsSpec, d: &mut Diagnostics) -> TlsSpec {
    let mut out = base.clone();
    let Some(mut t) = Table::open(v, path, d) else { return out };
    let enabled = t.take("enabled").and_then(|(p, v)| tree::boolean(&p, v, d));
    let file = |t: &mut Table<'_>, key: &str, d: &mut Diagnostics| -> Option<PathBuf> {
        let (p, v) = t.take(key)?;
        let s = tree::string(&p, v, d)?;
        if s.is_empty() {
            return None;
        }
        let path = PathBuf::from(&s);
        // Opened, not only looked at: `check --user` then finds a file the user cannot read.
        if let Err(e) = std::fs::File::open(&path) {
            d.error(&p, format!("cannot use {s}: {e}"));
        }
        Some(path)
    };
    let root_ca = file(&mut t, "root_ca", d);
    let cert = file(&mut t, "cert", d);
    let key = file(&mut t, "key", d);
    let skip_verify =
        t.take_any(&["skip_verify", "http_client_skip_verify"], d).and_then(|(p, v)| tree::boolean(&p, v, d));
    let min_version = t.take_str("min_version", d);
    t.finish(d, &[]);
    if enabled == Some(false) {
        if root_ca.is_some() || cert.is_some() || skip_verify.is_some() {
            d.warn(
                path,
                "enabled is false, so root_ca, cert, key and skip_verify are ignored (the Go pfxhttp did the same)",
            );
        }
        return out;
    }
    if root_ca.is_some() {
        out.root_ca = root_ca;
    }
    match (cert, key) {
        (Some(c), Some(k)) => out.identity = Some((c, k)),
        (None, None) => {}
        _ => d.error(path, "cert and key must be given together"),
    }
    if let Some(s) = skip_verify {
        out.skip_verify = s;
        if s {
            warn_skip_verify(path, d);
        }
    }
    if let Some((v, p)) = min_version {
        match v.trim_start_matches("TLS").trim_start_matches("tls").trim() {
            "1.3" => out.tls13_only = true,
            "1.2" | "" => out.tls13_only = false,
            "1.0" | "1.1" => {
                d.warn(&p, "TLS below 1.2 is not supported; 1.2 is the minimum");
                out.tls13_only = false;
            }
            other => d.error(&p, format!("unknown TLS version {other:?} (1.2 or 1.3)")),
        }
    }
    out
}

/// A proxy URL reqwest will use. reqwest (built without its `socks` feature) sends requests
/// through http and https proxies only: it drops a proxy of any other scheme without a word, so
/// requests would bypass it, and would speak HTTP to a SOCKS port. Those are refused.
fn proxy(path: &str, s: String, d: &mut Diagnostics) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    match reqwest::Url::parse(&s) {
        Err(_) => d.error(path, "not a valid proxy URL"),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => d.error(
            path,
            format!("proxy scheme {:?} is not supported (http or https); requests would not use the proxy", u.scheme()),
        ),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => d.error(path, "the proxy URL has no host"),
        Ok(u) => {
            if u.password().is_some() {
                d.secret(path);
            }
            return Some(s);
        }
    }
    None
}

pub(super) fn positive(path: &str, v: &Value, d: &mut Diagnostics) -> Option<Duration> {
    let dur = tree::duration(path, v, d)?;
    if dur.is_zero() {
        d.error(path, "must be longer than 0");
        return None;
    }
    Some(dur)
}

/// The index of `spec` in `clients`, added if new.
pub(super) fn client_index(clients: &mut Vec<ClientSpec>, spec: ClientSpec) -> usize {
    clients.iter().position(|c| *c == spec).unwrap_or_else(|| {
        clients.push(spec);
        clients.len() - 1
    })
}
