//! Builds a [`Config`] from the YAML tree, collecting every problem.

use super::entry::Scope;
use super::http_client::{Inherited, http_client, positive, tls};
use super::tree::{self, Diagnostics, Table, join};
use super::*;
use serde_yaml::{Mapping, Value};

const NO_LISTENER: &str = "Postfix's master(8) or systemd owns the socket; pfxhttp serves the connection it is given";

pub(super) fn config(root: &Value, identity: &str, mut d: Diagnostics) -> Loaded {
    let d = &mut d;
    let mut server = Server::default();
    let Some(mut top) = Table::open(root, "", d) else {
        return Loaded::new(None, server.logging, server.limits, std::mem::take(d));
    };
    if let Some((path, v)) = top.take("server") {
        server_settings(&path, v, &mut server, d);
    }
    let Server { logging, limits, inherited, socketmap_max_reply_size, state_db, go_cache_ttl, metrics } = server;

    let mut clients: Vec<ClientSpec> = Vec::new();
    let mut maps = Vec::new();
    let mut policies = Vec::new();
    for (section, kind) in [("socket_maps", Kind::Map), ("policy_services", Kind::Policy)] {
        let Some((path, v)) = top.take(section) else { continue };
        let list = if kind == Kind::Map { &mut maps } else { &mut policies };
        let scope = Scope { identity, section: &path, inherited: &inherited, go_cache_ttl };
        entries(&scope, v, d, |path, name, v, d| {
            let entry = super::entry::entry(path, name, v, kind, &scope, &mut clients, d);
            list.extend(entry);
        });
    }
    let mut sasl = Vec::new();
    if let Some((path, v)) = top.take("dovecot_sasl") {
        let scope = Scope { identity, section: &path, inherited: &inherited, go_cache_ttl };
        entries(&scope, v, d, |path, name, v, d| {
            sasl.extend(super::sasl::service(path, name, v, &scope, &mut clients, d));
        });
    }
    top.finish(d, &[]);
    if maps.is_empty() && policies.is_empty() && sasl.is_empty() && d.errors.is_empty() {
        d.error("socket_maps", "no socket_maps, policy_services or dovecot_sasl entry is configured");
    }

    let config = d.errors.is_empty().then(|| Config {
        logging: logging.clone(),
        limits,
        socketmap_max_reply_size,
        state_db,
        metrics,
        maps,
        policies,
        sasl,
        clients,
    });
    Loaded::new(config, logging, limits, std::mem::take(d))
}

/// What the `server` section sets, with the defaults for what it leaves out.
struct Server {
    logging: LogSettings,
    limits: Limits,
    /// What every entry inherits.
    inherited: Inherited,
    socketmap_max_reply_size: usize,
    state_db: StateDb,
    /// `response_cache`'s window (the Go pfxhttp's keys).
    go_cache_ttl: Option<Duration>,
    metrics: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            logging: LogSettings::default(),
            limits: Limits::default(),
            inherited: Inherited::server_defaults(),
            socketmap_max_reply_size: 100_000,
            state_db: StateDb::File(PathBuf::from("/var/lib/pfxhttp/pfxhttp.db")),
            go_cache_ttl: None,
            metrics: true,
        }
    }
}

fn server_settings(path: &str, v: &Value, out: &mut Server, d: &mut Diagnostics) {
    let Some(mut server) = Table::open(v, path, d) else { return };
    if let Some((p, v)) = server.take("logging") {
        logging_settings(&p, v, &mut out.logging, d);
    }
    if let Some((p, v)) = server.take("http_client") {
        http_client(&p, v, &mut out.inherited, d);
    }
    if let Some((p, v)) = server.take("tls") {
        out.inherited.tls = tls(&p, v, &out.inherited.tls, d);
    }
    if let Some((p, v)) = server.take_any(&["jwt_db_path", "state_db"], d)
        && let Some(s) = tree::string(&p, v, d)
    {
        out.state_db = match s.as_str() {
            ":memory:" | "" => StateDb::Memory,
            _ => StateDb::File(PathBuf::from(s)),
        };
    }
    if let Some((p, v)) = server.take("socketmap_max_reply_size")
        && let Some(n) = tree::uint(&p, v, 1, 1_000_000_000, d)
    {
        out.socketmap_max_reply_size = n as usize;
    }
    if let Some((p, v)) = server.take("metrics")
        && let Some(on) = tree::boolean(&p, v, d)
    {
        out.metrics = on;
    }
    if let Some((p, v)) = server.take("limits") {
        limit_settings(&p, v, &mut out.limits, d);
    }
    if let Some((p, v)) = server.take("response_cache") {
        out.go_cache_ttl = super::cache::go_response_cache(&p, v, d);
    }
    server.finish(
        d,
        &[
            ("listen", NO_LISTENER),
            ("worker_pool", "one process serves one connection; the master.cf maxproc column limits concurrency"),
            ("run_as_user", "set user= in master.cf (or User= in the systemd unit)"),
            ("run_as_group", "set user=NAME:GROUP in master.cf (or Group= in the systemd unit)"),
            ("chroot", "run the spawn service with chroot n; Postfix's daemons reach it through the queue directory"),
            (
                "observability",
                "a per-connection process has no metrics endpoint: `pfxhttp stats` prints the counters \
                 (server.metrics), and backend requests carry a traceparent header",
            ),
        ],
    );
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
    let targets = [
        ("auto", LogTarget::Auto),
        ("syslog", LogTarget::Syslog),
        ("postlog", LogTarget::Postlog),
        ("stderr", LogTarget::Stderr),
    ];
    out.target = t.choice("target", &targets, LogTarget::Auto, d);
    if let Some((p, v)) = t.take("syslog_socket")
        && let Some(s) = tree::string(&p, v, d)
    {
        out.syslog_socket = PathBuf::from(s);
    }
    if let Some((p, v)) = t.take("postlog_socket")
        && let Some(s) = tree::string(&p, v, d)
    {
        out.postlog_socket = PathBuf::from(s);
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

/// Reads the entries of a section with `read` (path, name, value with defaults merged).
fn entries(
    scope: &Scope<'_>,
    v: &Value,
    d: &mut Diagnostics,
    mut read: impl FnMut(&str, &str, &Value, &mut Diagnostics),
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
        read(&entry_path, &name, merged.as_ref().unwrap_or(value), d);
    }
    section.finish(d, &[]);
}
