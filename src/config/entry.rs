//! One `socket_maps` or `policy_services` entry: targets, request, answer and auth settings.

use super::http_client::{Inherited, client_index, http_client, http_keys, tls};
use super::tree::{self, Diagnostics, Table};
use super::*;
use crate::template::{self, Context, Template};
use serde_yaml::Value;

/// Where a section's entries stand: the config file's identity, the section's name, and the
/// server-level settings.
pub(super) struct Scope<'a> {
    pub(super) identity: &'a str,
    pub(super) section: &'a str,
    pub(super) inherited: &'a Inherited,
}

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
    let mut http = scope.inherited.clone();
    if let Some((p, v)) = t.take("http_client") {
        http_client(&p, v, &mut http, d);
    }
    http_keys(&mut t, &mut http, d);
    if let Some((p, v)) = t.take("tls") {
        http.tls = tls(&p, v, &http.tls, d);
    }

    let sample = sample_vars(kind, name);
    let mut plain_targets = None;
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
            if urls.iter().any(|u| super::auth::plain_http_beyond_loopback(u)) {
                plain_targets = Some(p.clone());
            }
            urls.iter().enumerate().filter_map(|(i, url)| target(&format!("{p}[{i}]"), url, &sample, d)).collect()
        }
    };
    let balance =
        t.choice("balance", &[("failover", Balance::Failover), ("random", Balance::Random)], Balance::Failover, d);
    let max_attempts = match t.take("max_attempts") {
        Some((p, v)) => tree::uint(&p, v, 1, 100, d).unwrap_or(1) as usize,
        None => targets.len().max(2),
    };
    let method = match t.take_str("method", d) {
        None => reqwest::Method::POST,
        Some((s, p)) => reqwest::Method::from_bytes(s.to_ascii_uppercase().as_bytes()).unwrap_or_else(|_| {
            d.error(&p, format!("{s:?} is not an HTTP method"));
            reqwest::Method::POST
        }),
    };
    let content_type = match t.take_str("content_type", d) {
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
    if let (Some(_), Some(p)) = (&basic_auth, &plain_targets) {
        d.warn(p, "http_auth_basic is sent over plain http:// beyond the loopback, where it can be read on the way");
    }
    let status_codes = t
        .take("status_code")
        .and_then(|(p, v)| tree::uints(&p, v, 100, 599, d))
        .map_or(vec![200], |v| v.into_iter().map(|n| n as u16).collect());
    let not_found_status: Vec<u16> = match t.take("not_found_status") {
        None => Vec::new(),
        Some((p, v)) => {
            let codes: Vec<u16> =
                tree::uints(&p, v, 100, 599, d).unwrap_or_default().into_iter().map(|n| n as u16).collect();
            if codes.iter().any(|&c| c == 429 || c >= 500) {
                d.error(&p, "5xx and 429 mean the backend is in trouble, never \"not found\"");
            }
            if codes.iter().any(|c| status_codes.contains(c)) {
                d.warn(&p, "shares a status with status_code; not_found_status wins");
            }
            codes
        }
    };
    let modes = [("json", ResponseMode::Json), ("text", ResponseMode::Text), ("header", ResponseMode::Header)];
    let response = t.choice("response", &modes, ResponseMode::Json, d);
    let value_text = t.take_str("value_field", d);
    let error_text = t.take_str("error_field", d);
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
    let owner = format!("{}|{}/{name}", scope.identity, scope.section);
    let auth = super::auth::auth(path, &owner, &mut t, scope.inherited, clients, d);
    if auth.is_some() && basic_auth.is_some() {
        d.error(path, "http_auth_basic cannot be combined with jwt_auth or backend_oidc_auth");
    }
    let default_action = match t.take("default_action") {
        Some((p, _)) if kind == Kind::Map => {
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
    let client = client_index(clients, spec);
    (d.errors.len() == errors_before).then(|| Entry {
        name: name.to_string(),
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

fn target(path: &str, url: &str, sample: &upon::Value, d: &mut Diagnostics) -> Option<Target> {
    let tpl = compile(path, url, Context::Url, sample, d)?;
    let rendered = tpl.render(sample).ok()?;
    match reqwest::Url::parse(&rendered) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
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
            // The escaping removes control characters from values, not from the template's text.
            if tpl.render(sample).is_ok_and(|v| reqwest::header::HeaderValue::from_str(&v).is_err()) {
                d.error(&p, "not a valid header value (control characters?)");
                continue;
            }
            if holds_credentials(&name) {
                d.secret(&p);
            }
            out.retain(|(n, _)| *n != name);
            out.push((name, tpl));
        }
    }
    out
}

/// Whether a header by this name carries credentials (`Authorization`, `X-API-Key`, ...).
fn holds_credentials(name: &reqwest::header::HeaderName) -> bool {
    const HINTS: &[&str] =
        &["auth", "token", "secret", "passw", "api-key", "apikey", "api_key", "cookie", "session", "signature"];
    HINTS.iter().any(|h| name.as_str().contains(h))
}

fn basic_auth(t: &mut Table<'_>, d: &mut Diagnostics) -> Option<Secret> {
    use base64::Engine as _;
    let inline = t.take("http_auth_basic").and_then(|(p, v)| {
        let s = tree::string(&p, v, d)?;
        if !s.is_empty() {
            d.secret(&p);
        }
        Some(s)
    });
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
    if from_file.is_some() && inline.is_some() {
        d.error(t.path(), "give http_auth_basic or http_auth_basic_file, not both");
    }
    let creds = from_file.or(inline).filter(|s| !s.is_empty())?;
    if !creds.contains(':') {
        d.warn(t.path(), "http_auth_basic has no ':' between user and password");
    }
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
