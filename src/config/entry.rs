//! One `socket_maps` or `policy_services` entry: its targets, then the request, answer, retry
//! and auth parts, each read by its own module.

use super::answer::{answer, default_action};
use super::http_client::{Inherited, client_index, http_client, http_keys, tls};
use super::request::{Ctx, request};
use super::retry::retry;
use super::templates::{compile, sample_vars};
use super::tree::{self, Diagnostics, Table};
use super::*;
use crate::template::Context;
use serde_yaml::Value;

/// Where a section's entries stand: the config file's identity, the section's name, and the
/// server-level settings.
pub(super) struct Scope<'a> {
    pub(super) identity: &'a str,
    pub(super) section: &'a str,
    pub(super) inherited: &'a Inherited,
    /// `server.response_cache`'s window, for socket maps without a `cache` block.
    pub(super) go_cache_ttl: Option<Duration>,
}

/// Reads one entry. Keys are taken in a fixed order, which is the order of the diagnostics.
pub(super) fn entry(
    path: &str,
    name: &str,
    v: &Value,
    kind: Kind,
    scope: &Scope<'_>,
    clients: &mut Vec<ClientSpec>,
    d: &mut Diagnostics,
) -> Option<Entry> {
    let errors_before = d.errors.len();
    let mut t = Table::open(v, path, d)?;
    let http = http_settings(&mut t, scope.inherited, d);
    let sample = sample_vars(kind, name);
    let (targets, plain_targets) = targets(path, &mut t, &sample, d);
    let retry = retry(&mut t, &http, targets.len(), d);
    let ctx = Ctx { path, kind, sample: &sample, plain_targets: plain_targets.as_deref() };
    let mut request = request(&mut t, &ctx, http.user_agent, d);
    let mut answer = answer(path, &mut t, http.max_response_bytes, d);
    request.compression = flag(&mut t, "http_request_compression", d);
    answer.compression = flag(&mut t, "http_response_compression", d);
    let owner = format!("{}|{}/{name}", scope.identity, scope.section);
    let auth = super::auth::auth(path, &owner, &mut t, scope.inherited, clients, d);
    if auth.is_some() && request.basic_auth.is_some() {
        d.error(path, "http_auth_basic cannot be combined with jwt_auth or backend_oidc_auth");
    }
    answer.default_action = default_action(&mut t, kind, d);
    let cache = super::cache::cache(&mut t, kind, &sample, scope.go_cache_ttl, d);
    if http.timeout > http.deadline {
        d.warn(path, "timeout is longer than deadline; the deadline cuts every attempt short");
    }
    let sasl_only = match kind {
        Kind::Policy => "a dovecot_sasl setting, which has no effect on a policy service",
        _ => "a dovecot_sasl setting, which has no effect on a socket map",
    };
    t.finish(
        d,
        &[
            ("oidc_auth", "it never had an effect in the Go pfxhttp either; backend_oidc_auth is meant"),
            // The Go pfxhttp reads one struct for every kind of entry, so its files may carry these.
            ("transport", sasl_only),
            ("grpc", sasl_only),
            ("default_local_port", sasl_only),
            ("sasl_oidc_auth", sasl_only),
        ],
    );

    let spec = ClientSpec { connect_timeout: http.connect_timeout, proxy: http.proxy, tls: http.tls };
    let client = client_index(clients, spec);
    (d.errors.len() == errors_before).then(|| Entry {
        name: name.to_string(),
        targets,
        client,
        request,
        answer,
        retry,
        auth,
        cache,
    })
}

/// The server-level `http_client` settings with the entry's own `http_client`, the same keys
/// written directly in the entry, and its `tls` over them.
pub(super) fn http_settings(t: &mut Table<'_>, inherited: &Inherited, d: &mut Diagnostics) -> Inherited {
    let mut http = inherited.clone();
    if let Some((p, v)) = t.take("http_client") {
        http_client(&p, v, &mut http, d);
    }
    http_keys(t, &mut http, d);
    if let Some((p, v)) = t.take("tls") {
        http.tls = tls(&p, v, &http.tls, d);
    }
    http
}

/// `target`, a URL or a list of them, and its path when one is plain `http://` beyond the
/// loopback (where credentials can be read on the way).
pub(super) fn targets(
    path: &str,
    t: &mut Table<'_>,
    sample: &upon::Value,
    d: &mut Diagnostics,
) -> (Vec<Target>, Option<String>) {
    let Some((p, v)) = t.take("target") else {
        d.error(path, "target is required (a URL or a list of URLs)");
        return (Vec::new(), None);
    };
    let urls = tree::strings(&p, v, d).unwrap_or_default();
    if urls.is_empty() && matches!(v, Value::Sequence(_)) {
        d.error(&p, "the list is empty");
    }
    let mut plain = false;
    let mut targets = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        let target = target(&tree::item_path(&p, i), url, sample, d);
        // A fixed URL is parsed already (it is the text as written); any other is parsed here.
        plain |= match target.as_ref().and_then(|t| t.fixed.as_ref()) {
            Some(fixed) => super::auth::is_plain_http(url) && super::auth::beyond_loopback(fixed),
            None => super::auth::plain_http_beyond_loopback(url),
        };
        targets.extend(target);
    }
    (targets, plain.then(|| p.clone()))
}

/// A boolean key, `false` when absent.
pub(super) fn flag(t: &mut Table<'_>, key: &str, d: &mut Diagnostics) -> bool {
    t.take(key).and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(false)
}

fn target(path: &str, url: &str, sample: &upon::Value, d: &mut Diagnostics) -> Option<Target> {
    let tpl = compile(path, url, Context::Url, sample, d)?;
    let rendered = tpl.render(sample).ok()?;
    match reqwest::Url::parse(&rendered) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if super::auth::url_holds_secret(url) {
                d.secret(path);
            }
            let fixed = tpl.is_literal().then_some(u);
            Some(Target { template: tpl, fixed })
        }
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
