//! Builds a [`Config`] from the YAML tree, collecting every problem.

use super::tree::{self, Diagnostics, Table, join};
use super::*;
use crate::template::{self, Context, Template};
use serde_yaml::{Mapping, Value};

/// Settings an entry inherits from `server` and may override.
#[derive(Clone)]
struct Inherited {
    timeout: Duration,
    connect_timeout: Duration,
    deadline: Duration,
    proxy: Option<String>,
    user_agent: String,
    max_response_bytes: usize,
    tls: TlsSpec,
}

const NO_LISTENER: &str = "Postfix's master(8) or systemd owns the socket; pfxhttp serves the connection it is given";

pub(super) fn config(root: &Value, mut d: Diagnostics) -> Loaded {
    let d = &mut d;
    let mut logging = LogSettings::default();
    let mut limits = Limits::default();
    let Some(mut top) = Table::open(root, "", d) else {
        return Loaded { config: None, logging, limits, diagnostics: std::mem::take(d) };
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
        entries(&path, v, kind, &inherited, &mut clients, list, d);
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
    Loaded { config, logging, limits, diagnostics: std::mem::take(d) }
}

fn logging_settings(path: &str, v: &Value, out: &mut LogSettings, d: &mut Diagnostics) {
    let Some(mut t) = Table::open(v, path, d) else { return };
    if let Some((p, v)) = t.take("level")
        && let Some(s) = tree::string(&p, v, d)
    {
        out.level = match s.to_ascii_lowercase().as_str() {
            "debug" => Level::Debug,
            "info" | "" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            "none" => Level::None,
            other => {
                d.error(&p, format!("unknown level {other:?} (debug, info, warn, error or none)"));
                Level::Info
            }
        };
    }
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

fn positive(path: &str, v: &Value, d: &mut Diagnostics) -> Option<Duration> {
    let dur = tree::duration(path, v, d)?;
    if dur.is_zero() {
        d.error(path, "must be longer than 0");
        return None;
    }
    Some(dur)
}

/// Reads `http_client` keys, at server level or inside an entry.
fn http_client(path: &str, v: &Value, out: &mut Inherited, d: &mut Diagnostics) {
    let Some(mut t) = Table::open(v, path, d) else { return };
    http_keys(&mut t, out, d);
    if let Some((p, v)) = t.take_any(&["skip_verify", "http_client_skip_verify"], d) {
        out.tls.skip_verify = tree::boolean(&p, v, d).unwrap_or(false);
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
fn http_keys(t: &mut Table<'_>, out: &mut Inherited, d: &mut Diagnostics) {
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
        out.proxy = if s.is_empty() {
            None
        } else if reqwest::Url::parse(&s).is_err() {
            d.error(&p, "not a valid proxy URL");
            None
        } else {
            Some(s)
        };
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

fn tls(path: &str, v: &Value, base: &TlsSpec, d: &mut Diagnostics) -> TlsSpec {
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
    let min_version = t.take("min_version").and_then(|(p, v)| Some((tree::string(&p, v, d)?, p)));
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
            d.warn(path, "skip_verify accepts any server certificate; use root_ca instead where possible");
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

fn entries(
    path: &str,
    v: &Value,
    kind: Kind,
    inherited: &Inherited,
    clients: &mut Vec<ClientSpec>,
    out: &mut Vec<Entry>,
    d: &mut Diagnostics,
) {
    let Some(mut section) = Table::open(v, path, d) else { return };
    let defaults = match section.take("defaults") {
        Some((p, Value::Mapping(m))) => {
            let _ = p;
            Some(m.clone())
        }
        Some((p, other)) => {
            d.error(&p, format!("expected a mapping, found {}", tree::kind(other)));
            None
        }
        None => None,
    };
    for (name, value) in section.take_rest() {
        let entry_path = join(path, &name);
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            d.error(&entry_path, "a name may only contain letters, digits, '_', '-' and '.'");
            continue;
        }
        let merged = defaults.as_ref().map(|m| merge_defaults(m, value));
        if let Some(e) = entry(&entry_path, &name, merged.as_ref().unwrap_or(value), kind, inherited, clients, d) {
            out.push(e);
        }
    }
    section.finish(d, &[]);
}

fn entry(
    path: &str,
    name: &str,
    v: &Value,
    kind: Kind,
    inherited: &Inherited,
    clients: &mut Vec<ClientSpec>,
    d: &mut Diagnostics,
) -> Option<Entry> {
    let errors_before = d.errors.len();
    let mut t = Table::open(v, path, d)?;
    let mut http = inherited.clone();
    if let Some((p, v)) = t.take("http_client") {
        http_client(&p, v, &mut http, d);
    }
    http_keys(&mut t, &mut http, d);
    if let Some((p, v)) = t.take("tls") {
        http.tls = tls(&p, v, &http.tls, d);
    }

    let sample = sample_vars(kind, name);
    let targets = match t.take("target") {
        None => {
            d.error(path, "target is required (a URL or a list of URLs)");
            Vec::new()
        }
        Some((p, v)) => {
            let urls = tree::strings(&p, v, d).unwrap_or_default();
            if urls.is_empty() && matches!(v, Value::Sequence(_)) {
                d.error(&p, "the list is empty");
            }
            urls.iter().enumerate().filter_map(|(i, url)| target(&format!("{p}[{i}]"), url, &sample, d)).collect()
        }
    };
    let balance = match t.take("balance").and_then(|(p, v)| Some((tree::string(&p, v, d)?, p))) {
        None => Balance::Failover,
        Some((s, p)) => match s.to_ascii_lowercase().as_str() {
            "failover" => Balance::Failover,
            "random" => Balance::Random,
            _ => {
                d.error(&p, format!("unknown balance {s:?} (failover or random)"));
                Balance::Failover
            }
        },
    };
    let max_attempts = match t.take("max_attempts") {
        Some((p, v)) => tree::uint(&p, v, 1, 100, d).unwrap_or(1) as usize,
        None => targets.len().max(2),
    };
    let method = match t.take("method").and_then(|(p, v)| Some((tree::string(&p, v, d)?, p))) {
        None => reqwest::Method::POST,
        Some((s, p)) => reqwest::Method::from_bytes(s.to_ascii_uppercase().as_bytes()).unwrap_or_else(|_| {
            d.error(&p, format!("{s:?} is not an HTTP method"));
            reqwest::Method::POST
        }),
    };
    let content_type = match t.take("content_type").and_then(|(p, v)| Some((tree::string(&p, v, d)?, p))) {
        None => "application/json".to_string(),
        Some((s, p)) => {
            if reqwest::header::HeaderValue::from_str(&s).is_err() {
                d.error(&p, "not a valid header value");
            }
            s
        }
    };
    let payload = match t.take("payload") {
        Some((p, v)) => tree::string(&p, v, d).and_then(|s| {
            if s.is_empty() { None } else { compile(&p, &s, Context::for_content_type(&content_type), &sample, d) }
        }),
        None if kind == Kind::Policy => compile(path, "{{ key }}", Context::Json, &sample, d),
        None => None,
    };
    let headers = t.take("custom_headers").map(|(p, v)| headers(&p, v, &sample, d)).unwrap_or_default();
    let basic_auth = basic_auth(&mut t, d);
    let status_codes = t
        .take("status_code")
        .and_then(|(p, v)| tree::uints(&p, v, 100, 599, d))
        .map_or(vec![200], |v| v.into_iter().map(|n| n as u16).collect());
    let not_found_status = t
        .take("not_found_status")
        .and_then(|(p, v)| tree::uints(&p, v, 100, 599, d))
        .map_or(vec![], |v| v.into_iter().map(|n| n as u16).collect());
    let response = match t.take("response").and_then(|(p, v)| Some((tree::string(&p, v, d)?, p))) {
        None => ResponseMode::Json,
        Some((s, p)) => match s.to_ascii_lowercase().as_str() {
            "json" => ResponseMode::Json,
            "text" => ResponseMode::Text,
            "header" => ResponseMode::Header,
            _ => {
                d.error(&p, format!("unknown response mode {s:?} (json, text or header)"));
                ResponseMode::Json
            }
        },
    };
    let value_text = t.take("value_field").and_then(|(p, v)| Some((tree::string(&p, v, d)?, p)));
    let error_text = t.take("error_field").and_then(|(p, v)| Some((tree::string(&p, v, d)?, p)));
    let (value_field, value_header) = field(response, value_text.clone(), d);
    let (error_field, error_header) = field(response, error_text, d);
    if value_text.as_ref().is_none_or(|(s, _)| s.is_empty()) && response != ResponseMode::Text {
        d.error(path, "value_field is required (where the value is in the answer), unless response is text");
    }
    let no_error_value = t.take("no_error_value").and_then(|(p, v)| tree::string(&p, v, d)).unwrap_or_default();
    let value_separator = t.take("value_separator").and_then(|(p, v)| tree::string(&p, v, d)).unwrap_or(",".into());
    let request_compression =
        t.take("http_request_compression").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(false);
    let response_compression =
        t.take("http_response_compression").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(false);
    let auth = auth(path, &mut t, d);
    if auth.is_some() && basic_auth.is_some() {
        d.error(path, "http_auth_basic cannot be combined with jwt_auth or backend_oidc_auth");
    }
    let default_action = match t.take("default_action") {
        Some((p, v)) if kind == Kind::Map => {
            let _ = v;
            d.error(&p, "default_action is for policy_services only");
            String::new()
        }
        Some((p, v)) => {
            let s = tree::string(&p, v, d).unwrap_or_default();
            if s.trim().is_empty() || s.chars().any(char::is_control) {
                d.error(&p, "must be one non-empty line");
            }
            s.trim().to_string()
        }
        None => DEFAULT_POLICY_ACTION.to_string(),
    };
    if http.timeout > http.deadline {
        d.warn(path, "timeout is longer than deadline; the deadline cuts every attempt short");
    }
    t.finish(d, &[("oidc_auth", "it never had an effect in the Go pfxhttp either; backend_oidc_auth is meant")]);

    let spec = ClientSpec { connect_timeout: http.connect_timeout, proxy: http.proxy.clone(), tls: http.tls.clone() };
    let client = clients.iter().position(|c| *c == spec).unwrap_or_else(|| {
        clients.push(spec);
        clients.len() - 1
    });
    (d.errors.len() == errors_before).then(|| Entry {
        name: name.to_string(),
        kind,
        targets,
        balance,
        method,
        headers,
        basic_auth,
        payload,
        content_type,
        status_codes,
        not_found_status,
        response,
        value_field,
        value_header,
        error_field,
        error_header,
        no_error_value,
        value_separator,
        timeout: http.timeout,
        deadline: http.deadline,
        max_attempts,
        max_response_bytes: http.max_response_bytes,
        user_agent: http.user_agent,
        client,
        request_compression,
        response_compression,
        auth,
        default_action,
    })
}

/// Variables with sample values, to try every template at load time.
fn sample_vars(kind: Kind, name: &str) -> upon::Value {
    match kind {
        Kind::Map => template::lookup_vars(name, "user@example.org", "0123456789abcdef"),
        Kind::Policy => {
            let attrs = [("request", "smtpd_access_policy"), ("recipient", "user@example.org")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            template::policy_vars(name, &attrs, "0123456789abcdef")
        }
    }
}

/// Compiles (after rewriting Go syntax) and test-renders a template.
fn compile(path: &str, source: &str, ctx: Context, sample: &upon::Value, d: &mut Diagnostics) -> Option<Template> {
    let rewritten = match template::from_go(source) {
        Ok(s) => s,
        Err(e) => {
            d.error(path, e);
            return None;
        }
    };
    let tpl = match Template::compile(&rewritten, ctx) {
        Ok(t) => t,
        Err(e) => {
            d.error(path, format!("template error: {e}"));
            return None;
        }
    };
    if let Err(e) = tpl.render(sample) {
        d.error(path, format!("template error: {e}"));
        return None;
    }
    Some(tpl)
}

fn target(path: &str, url: &str, sample: &upon::Value, d: &mut Diagnostics) -> Option<Template> {
    let tpl = compile(path, url, Context::Url, sample, d)?;
    let rendered = tpl.render(sample).ok()?;
    match reqwest::Url::parse(&rendered) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(tpl),
        Ok(u) => {
            d.error(path, format!("scheme {:?} is not http or https", u.scheme()));
            None
        }
        Err(e) => {
            d.error(path, format!("not a valid URL: {e}"));
            None
        }
    }
}

fn headers(
    path: &str,
    v: &Value,
    sample: &upon::Value,
    d: &mut Diagnostics,
) -> Vec<(reqwest::header::HeaderName, Template)> {
    let mut out: Vec<(reqwest::header::HeaderName, Template)> = Vec::new();
    for (i, line) in tree::strings(path, v, d).unwrap_or_default().iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some((name, value)) = line.split_once(':') else {
            d.error(&p, "expected \"Name: value\"");
            continue;
        };
        let Ok(name) = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()) else {
            d.error(&p, format!("{:?} is not a valid header name", name.trim()));
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            d.warn(&p, "has an empty value and is not sent");
            continue;
        }
        if let Some(tpl) = compile(&p, value, Context::Header, sample, d) {
            out.retain(|(n, _)| *n != name);
            out.push((name, tpl));
        }
    }
    out
}

fn basic_auth(t: &mut Table<'_>, d: &mut Diagnostics) -> Option<Secret> {
    use base64::Engine as _;
    let inline = t.take("http_auth_basic").and_then(|(p, v)| tree::string(&p, v, d));
    let from_file = t.take("http_auth_basic_file").and_then(|(p, v)| {
        let file = tree::string(&p, v, d)?;
        match std::fs::read_to_string(&file) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                d.error(&p, format!("cannot read {file}: {e}"));
                None
            }
        }
    });
    let creds = from_file.or(inline).filter(|s| !s.is_empty())?;
    Some(Secret(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds))))
}

/// A value or error field: a header name in header mode, else a JSON path.
fn field(
    mode: ResponseMode,
    text: Option<(String, String)>,
    d: &mut Diagnostics,
) -> (Option<FieldPath>, Option<String>) {
    let Some((s, p)) = text.filter(|(s, _)| !s.is_empty()) else { return (None, None) };
    if mode == ResponseMode::Header {
        if reqwest::header::HeaderName::from_bytes(s.as_bytes()).is_err() {
            d.error(&p, format!("{s:?} is not a valid header name"));
        }
        return (None, Some(s.to_ascii_lowercase()));
    }
    match FieldPath::parse(&s) {
        Ok(f) => (Some(f), None),
        Err(e) => {
            d.error(&p, e);
            (None, None)
        }
    }
}

fn auth(path: &str, t: &mut Table<'_>, d: &mut Diagnostics) -> Option<Auth> {
    let jwt = t.take("jwt_auth").and_then(|(p, v)| jwt_auth(&p, v, d));
    let oidc = t.take_any(&["backend_oidc_auth", "oauth2"], d).and_then(|(p, v)| oidc_auth(&p, v, d));
    match (jwt, oidc) {
        (Some(_), Some(_)) => {
            d.error(path, "jwt_auth and backend_oidc_auth cannot both be enabled");
            None
        }
        (Some(j), None) => Some(Auth::Jwt(j)),
        (None, Some(o)) => Some(Auth::Oidc(o)),
        (None, None) => None,
    }
}

fn url_field(t: &mut Table<'_>, key: &str, d: &mut Diagnostics) -> Option<String> {
    let (p, v) = t.take(key)?;
    let s = tree::string(&p, v, d)?;
    match reqwest::Url::parse(&s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(s),
        _ => {
            d.error(&p, "not an http or https URL");
            None
        }
    }
}

fn existing_file(t: &mut Table<'_>, key: &str, d: &mut Diagnostics) -> Option<PathBuf> {
    let (p, v) = t.take(key)?;
    let s = tree::string(&p, v, d)?;
    if let Err(e) = std::fs::metadata(&s) {
        d.error(&p, format!("cannot use {s}: {e}"));
    }
    Some(PathBuf::from(s))
}

fn jwt_auth(path: &str, v: &Value, d: &mut Diagnostics) -> Option<JwtAuth> {
    let mut t = Table::open(v, path, d)?;
    let enabled = t.take("enabled").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(true);
    let token_endpoint = url_field(&mut t, "token_endpoint", d);
    let refresh_endpoint = url_field(&mut t, "refresh_endpoint", d);
    let mut credentials = Vec::new();
    if let Some((p, v)) = t.take("credentials")
        && let Some(mut c) = Table::open(v, &p, d)
    {
        for (k, v) in c.take_rest() {
            if let Some(s) = tree::string(&join(&p, &k), v, d) {
                credentials.push((k, Secret(s)));
            }
        }
    }
    let credentials_file = existing_file(&mut t, "credentials_file", d);
    let json = t
        .take("content_type")
        .and_then(|(p, v)| tree::string(&p, v, d))
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    t.finish(d, &[]);
    if !enabled {
        return None;
    }
    if token_endpoint.is_none() {
        d.error(path, "token_endpoint is required");
    }
    if credentials.is_empty() && credentials_file.is_none() {
        d.error(path, "credentials or credentials_file is required");
    }
    Some(JwtAuth { token_endpoint: token_endpoint?, refresh_endpoint, credentials, credentials_file, json })
}

fn oidc_auth(path: &str, v: &Value, d: &mut Diagnostics) -> Option<OidcAuth> {
    let mut t = Table::open(v, path, d)?;
    let enabled = t.take("enabled").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(true);
    let configuration_uri = url_field(&mut t, "configuration_uri", d);
    let token_endpoint = url_field(&mut t, "token_endpoint", d);
    let client_id = t.take("client_id").and_then(|(p, v)| tree::string(&p, v, d)).unwrap_or_default();
    let client_secret =
        t.take("client_secret").and_then(|(p, v)| tree::string(&p, v, d)).filter(|s| !s.is_empty()).map(Secret);
    let client_secret_file = existing_file(&mut t, "client_secret_file", d);
    let scopes = match t.take("scopes") {
        Some((p, Value::String(s))) => {
            let _ = p;
            s.split_whitespace().map(str::to_string).collect()
        }
        Some((p, v)) => tree::strings(&p, v, d).unwrap_or_default(),
        None => Vec::new(),
    };
    let has_secret = client_secret.is_some() || client_secret_file.is_some();
    let method = match t.take("auth_method").and_then(|(p, v)| Some((tree::string(&p, v, d)?, p))) {
        None => None,
        Some((s, p)) => match s.to_ascii_lowercase().as_str() {
            "client_secret_basic" => Some(OidcMethod::ClientSecretBasic),
            "client_secret_post" => Some(OidcMethod::ClientSecretPost),
            "none" => Some(OidcMethod::None),
            "auto" | "" => None,
            "private_key_jwt" => {
                d.error(&p, "private_key_jwt is not supported; use client_secret_basic or client_secret_post");
                None
            }
            other => {
                d.error(&p, format!("unknown auth_method {other:?}"));
                None
            }
        },
    }
    .unwrap_or(if has_secret { OidcMethod::ClientSecretBasic } else { OidcMethod::None });
    t.finish(d, &[("private_key_file", "private_key_jwt client authentication is not supported")]);
    if !enabled {
        return None;
    }
    if configuration_uri.is_none() && token_endpoint.is_none() {
        d.error(path, "configuration_uri or token_endpoint is required");
    }
    if client_id.is_empty() {
        d.error(path, "client_id is required");
    }
    if method != OidcMethod::None && !has_secret {
        d.error(path, "client_secret or client_secret_file is required for this auth_method");
    }
    Some(OidcAuth { configuration_uri, token_endpoint, client_id, client_secret, client_secret_file, scopes, method })
}
