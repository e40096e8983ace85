//! Builds a [`Config`] from the YAML tree, collecting every problem.

use super::tree::{self, Diagnostics, Table, join};
use super::*;
use serde_yaml::{Mapping, Value};

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

const NO_LISTENER: &str = "Postfix's master(8) or systemd owns the socket; pfxhttp serves the connection it is given";

pub(super) fn config(root: &Value, identity: &str, mut d: Diagnostics) -> Loaded {
    let d = &mut d;
    let mut logging = LogSettings::default();
    let mut limits = Limits::default();
    let Some(mut top) = Table::open(root, "", d) else {
        return Loaded::new(None, logging, limits, std::mem::take(d));
    };
    let mut inherited = Inherited {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(15),
        proxy: None,
        user_agent: format!("pfxhttp/{}", crate::VERSION),
        max_response_bytes: 1 << 20,
        tls: TlsSpec { root_ca: None, identity: None, skip_verify: false, tls13_only: false },
    };
    let mut socketmap_max_reply_size = 100_000;
    let mut state_db = StateDb::File(PathBuf::from("/var/lib/pfxhttp/pfxhttp.db"));

    if let Some((path, v)) = top.take("server")
        && let Some(mut server) = Table::open(v, &path, d)
    {
        if let Some((p, v)) = server.take("logging") {
            logging_settings(&p, v, &mut logging, d);
        }
        if let Some((p, v)) = server.take("http_client") {
            http_client(&p, v, &mut inherited, d);
        }
        if let Some((p, v)) = server.take("tls") {
            inherited.tls = tls(&p, v, &inherited.tls, d);
        }
        if let Some((p, v)) = server.take_any(&["jwt_db_path", "state_db"], d)
            && let Some(s) = tree::string(&p, v, d)
        {
            state_db = match s.as_str() {
                ":memory:" | "" => StateDb::Memory,
                _ => StateDb::File(PathBuf::from(s)),
            };
        }
        if let Some((p, v)) = server.take("socketmap_max_reply_size")
            && let Some(n) = tree::uint(&p, v, 1, 1_000_000_000, d)
        {
            socketmap_max_reply_size = n as usize;
        }
        if let Some((p, v)) = server.take("limits") {
            limit_settings(&p, v, &mut limits, d);
        }
        server.finish(
            d,
            &[
                ("listen", NO_LISTENER),
                ("worker_pool", "one process serves one connection; the master.cf maxproc column limits concurrency"),
                ("run_as_user", "set user= in master.cf (or User= in the systemd unit)"),
                ("run_as_group", "set user=NAME:GROUP in master.cf (or Group= in the systemd unit)"),
                (
                    "chroot",
                    "run the spawn service with chroot n; Postfix's daemons reach it through the queue directory",
                ),
                ("observability", "a per-connection process has no metrics endpoint; lookups are logged to syslog"),
                ("response_cache", "a per-process cache would not outlive the Postfix connection"),
            ],
        );
    }

    let mut clients: Vec<ClientSpec> = Vec::new();
    let mut maps = Vec::new();
    let mut policies = Vec::new();
    for (section, kind) in [("socket_maps", Kind::Map), ("policy_services", Kind::Policy)] {
        let Some((path, v)) = top.take(section) else { continue };
        let list = if kind == Kind::Map { &mut maps } else { &mut policies };
        let scope = Scope { identity, section: &path, inherited: &inherited };
        entries(&scope, v, kind, &mut clients, list, d);
    }
    top.finish(d, &[("dovecot_sasl", "pfxhttp serves socketmap, policy and tcp_table; Dovecot SASL is not offered")]);
    if maps.is_empty() && policies.is_empty() && d.errors.is_empty() {
        d.error("socket_maps", "no socket_maps or policy_services entry is configured");
    }

    let config = d.errors.is_empty().then(|| Config {
        logging: logging.clone(),
        limits,
        socketmap_max_reply_size,
        state_db,
        maps,
        policies,
        clients,
    });
    Loaded::new(config, logging, limits, std::mem::take(d))
}

fn logging_settings(path: &str, v: &Value, out: &mut LogSettings, d: &mut Diagnostics) {
    let Some(mut t) = Table::open(v, path, d) else { return };
    let levels = [
        ("debug", Level::Debug),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("warning", Level::Warn),
        ("error", Level::Error),
        ("none", Level::None),
    ];
    out.level = t.choice("level", &levels, Level::Info, d);
    if let Some((p, v)) = t.take("json") {
        out.json = tree::boolean(&p, v, d).unwrap_or(false);
    }
    if let Some((p, v)) = t.take("facility")
        && let Some(s) = tree::string(&p, v, d)
    {
        match s.to_ascii_lowercase().trim_start_matches("log_").parse::<syslog::Facility>() {
            Ok(f) => out.facility = f,
            Err(_) => d.error(&p, format!("unknown syslog facility {s:?} (e.g. mail, local0)")),
        }
    }
    if let Some((p, v)) = t.take("syslog_socket")
        && let Some(s) = tree::string(&p, v, d)
    {
        out.syslog_socket = PathBuf::from(s);
    }
    if let Some((p, v)) = t.take("log_keys") {
        out.log_keys = tree::boolean(&p, v, d).unwrap_or(true);
    }
    t.finish(d, &[("use_systemd", "pfxhttp logs to syslog (the journal reads /dev/log)")]);
}

fn limit_settings(path: &str, v: &Value, out: &mut Limits, d: &mut Diagnostics) {
    let Some(mut t) = Table::open(v, path, d) else { return };
    if let Some((p, v)) = t.take("max_request_bytes")
        && let Some(n) = tree::uint(&p, v, 64, 100_000_000, d)
    {
        out.max_request_bytes = n as usize;
    }
    if let Some((p, v)) = t.take("max_policy_attributes")
        && let Some(n) = tree::uint(&p, v, 1, 1_000_000, d)
    {
        out.max_policy_attributes = n as usize;
    }
    if let Some((p, v)) = t.take("idle_timeout")
        && let Some(dur) = positive(&p, v, d)
    {
        out.idle_timeout = dur;
    }
    if let Some((p, v)) = t.take("max_lifetime")
        && let Some(dur) = positive(&p, v, d)
    {
        out.max_lifetime = dur;
    }
    t.finish(d, &[]);
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
        if let Err(e) = std::fs::metadata(&path) {
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

/// Merges a section's `defaults` entry into every other entry: keys the entry lacks are taken
/// from defaults; `custom_headers` are concatenated, defaults first (as the Go pfxhttp did).
fn merge_defaults(defaults: &Mapping, entry: &Value) -> Value {
    let Value::Mapping(own) = entry else { return entry.clone() };
    let mut merged = own.clone();
    let has = |m: &Mapping, key: &str| {
        m.keys().find(|k| tree::scalar_text(k).is_some_and(|s| s.eq_ignore_ascii_case(key))).cloned()
    };
    for (k, v) in defaults {
        let Some(key) = tree::scalar_text(k) else { continue };
        match has(&merged, &key) {
            None => {
                merged.insert(k.clone(), v.clone());
            }
            Some(own_key) if key.eq_ignore_ascii_case("custom_headers") => {
                if let (Value::Sequence(base), Some(Value::Sequence(mine))) = (v, merged.get(&own_key)) {
                    let joined: Vec<Value> = base.iter().chain(mine.iter()).cloned().collect();
                    merged.insert(own_key, Value::Sequence(joined));
                }
            }
            Some(_) => {}
        }
    }
    Value::Mapping(merged)
}

/// Where a section's entries stand: the config file's identity, the section's name, and the
/// server-level settings.
pub(super) struct Scope<'a> {
    pub(super) identity: &'a str,
    pub(super) section: &'a str,
    pub(super) inherited: &'a Inherited,
}

/// The index of `spec` in `clients`, added if new.
pub(super) fn client_index(clients: &mut Vec<ClientSpec>, spec: ClientSpec) -> usize {
    clients.iter().position(|c| *c == spec).unwrap_or_else(|| {
        clients.push(spec);
        clients.len() - 1
    })
}

fn entries(
    scope: &Scope<'_>,
    v: &Value,
    kind: Kind,
    clients: &mut Vec<ClientSpec>,
    out: &mut Vec<Entry>,
    d: &mut Diagnostics,
) {
    let path = scope.section;
    let Some(mut section) = Table::open(v, path, d) else { return };
    let defaults = match section.take("defaults") {
        Some((_, Value::Mapping(m))) => Some(m.clone()),
        Some((p, other)) => {
            d.error(&p, format!("expected a mapping, found {}", tree::kind(other)));
            None
        }
        None => None,
    };
    // Each entry gets a copy of defaults: bounded like aliases, as it multiplies the same way.
    let copies = super::source::Cost::default();
    for (name, value) in section.take_rest() {
        let entry_path = join(path, &name);
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            d.error(&entry_path, "a name may only contain letters, digits, '_', '-' and '.'");
            continue;
        }
        let merged = defaults.as_ref().map(|m| merge_defaults(m, value));
        if merged.as_ref().is_some_and(|m| !copies.value(m)) {
            let what = "merged into every entry, it expands to";
            d.error(&join(path, "defaults"), super::source::Cost::message(what));
            break;
        }
        if let Some(e) =
            super::entry::entry(&entry_path, &name, merged.as_ref().unwrap_or(value), kind, scope, clients, d)
        {
            out.push(e);
        }
    }
    section.finish(d, &[]);
}
