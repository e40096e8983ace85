//! The request part of an entry: what is sent to the backend.

use super::templates::compile;
use super::tree::{self, Diagnostics, Table};
use super::{Kind, Secret};
use crate::template::{Context, Template};
use reqwest::header::{HeaderName, HeaderValue};
use serde_yaml::Value;

/// How an entry's HTTP request is made.
#[derive(Debug)]
pub struct Request {
    pub method: reqwest::Method,
    /// Header templates; a repeated name was reduced to its last value.
    pub headers: Vec<(HeaderName, Template)>,
    /// `Authorization` header value from `http_auth_basic`.
    pub basic_auth: Option<Secret>,
    pub payload: Option<Template>,
    /// The payload's `Content-Type`.
    pub content_type: String,
    pub user_agent: String,
    /// Gzip the payload (`http_request_compression`).
    pub compression: bool,
}

/// What the request part is read with.
pub(super) struct Ctx<'a> {
    /// The entry's path, for what concerns the entry as a whole.
    pub(super) path: &'a str,
    pub(super) kind: Kind,
    /// Sample variables to try templates with.
    pub(super) sample: &'a upon::Value,
    /// The path of `target` when it sends plain `http://` beyond the loopback.
    pub(super) plain_targets: Option<&'a str>,
}

/// Reads `method`, `content_type`, `payload`, `custom_headers` and `http_auth_basic`;
/// `compression` is read later, with the other compression key, and is `false` here.
pub(super) fn request(t: &mut Table<'_>, ctx: &Ctx<'_>, user_agent: String, d: &mut Diagnostics) -> Request {
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
            if HeaderValue::from_str(&s).is_err() {
                d.error(&p, "not a valid header value");
            }
            s
        }
    };
    let sample = ctx.sample;
    let payload = match t.take("payload") {
        Some((p, v)) => tree::string(&p, v, d).and_then(|s| {
            if s.is_empty() { None } else { compile(&p, &s, Context::for_content_type(&content_type), sample, d) }
        }),
        None if ctx.kind == Kind::Policy => compile(ctx.path, "{{ key }}", Context::Json, sample, d),
        None => None,
    };
    let headers = t.take("custom_headers").map(|(p, v)| headers(&p, v, sample, d)).unwrap_or_default();
    let basic_auth = basic_auth(t, d);
    if let (Some(_), Some(p)) = (&basic_auth, ctx.plain_targets) {
        d.warn(p, "http_auth_basic is sent over plain http:// beyond the loopback, where it can be read on the way");
    }
    Request { method, headers, basic_auth, payload, content_type, user_agent, compression: false }
}

fn headers(path: &str, v: &Value, sample: &upon::Value, d: &mut Diagnostics) -> Vec<(HeaderName, Template)> {
    let mut out: Vec<(HeaderName, Template)> = Vec::new();
    for (i, line) in tree::strings(path, v, d).unwrap_or_default().iter().enumerate() {
        let p = super::tree::item_path(path, i);
        let Some((name, value)) = line.split_once(':') else {
            d.error(&p, "expected \"Name: value\"");
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) else {
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
            if tpl.render(sample).is_ok_and(|v| HeaderValue::from_str(&v).is_err()) {
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
fn holds_credentials(name: &HeaderName) -> bool {
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
