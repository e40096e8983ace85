//! Backend authentication blocks: `jwt_auth` (Go pfxhttp v1.1) and `backend_oidc_auth` (v2).
//! They are parsed and validated here; fetching tokens is the job of the auth module.

use super::http_client::{Inherited, client_index, tls};
use super::tree::{self, Diagnostics, Table, join};
use super::*;
use serde_yaml::Value;

/// The entry's auth block, if any. `owner` names the config file and entry; `server` holds the
/// server-level settings, which token requests use unless the block has a `tls` of its own.
pub(super) fn auth(
    path: &str,
    owner: &str,
    t: &mut Table<'_>,
    server: &Inherited,
    clients: &mut Vec<ClientSpec>,
    d: &mut Diagnostics,
) -> Option<Auth> {
    let mut ctx = Ctx { owner, server, clients, d };
    let jwt = t.take("jwt_auth").and_then(|(p, v)| jwt_auth(&p, v, &mut ctx));
    let oidc = t.take_any(&["backend_oidc_auth", "oauth2"], ctx.d).and_then(|(p, v)| oidc_auth(&p, v, &mut ctx));
    let d = ctx.d;
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

/// What an auth block is read with.
struct Ctx<'a, 'd> {
    owner: &'a str,
    server: &'a Inherited,
    clients: &'a mut Vec<ClientSpec>,
    d: &'d mut Diagnostics,
}

impl Ctx<'_, '_> {
    /// The client of token requests: the server-level connect timeout, proxy and TLS settings,
    /// with the block's own `tls` (keys as in an entry's `tls`) over the server's.
    fn client(&mut self, t: &mut Table<'_>) -> usize {
        let mut spec = ClientSpec {
            connect_timeout: self.server.connect_timeout,
            proxy: self.server.proxy.clone(),
            tls: self.server.tls.clone(),
        };
        if let Some((p, v)) = t.take("tls") {
            spec.tls = tls(&p, v, &self.server.tls, self.d);
        }
        client_index(self.clients, spec)
    }
}

/// The client of an auth block's own requests (token, discovery, introspection): see
/// [`Ctx::client`].
pub(super) fn block_client(
    t: &mut Table<'_>,
    server: &Inherited,
    clients: &mut Vec<ClientSpec>,
    d: &mut Diagnostics,
) -> usize {
    Ctx { owner: "", server, clients, d }.client(t)
}

/// Whether `url` is plain `http://` to a host other than the loopback (a templated host counts
/// as another host): credentials sent there can be read on the way.
pub(super) fn plain_http_beyond_loopback(url: &str) -> bool {
    is_plain_http(url) && reqwest::Url::parse(url).map_or(true, |parsed| beyond_loopback(&parsed))
}

/// Whether `url` as written starts with `http://`.
pub(super) fn is_plain_http(url: &str) -> bool {
    url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

/// Whether the host of `url` is other than the loopback.
pub(super) fn beyond_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => !host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether `url` as written (perhaps a template) holds a secret: user info (a lone user name is
/// often a token), or a query or fragment parameter whose name suggests a secret and whose value
/// is written out, not only a template expression (`?token={{ key }}` sends the lookup key).
pub(super) fn url_holds_secret(url: &str) -> bool {
    // The authority ends where the URL parser ends it for http(s).
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let query = url.split_once(['?', '#']).map_or("", |(_, rest)| rest);
    let secret_parameter = |pair: &str| {
        pair.split_once('=').is_some_and(|(name, value)| {
            crate::text::is_secret_parameter(name) && !outside_templates(value).trim().is_empty()
        })
    };
    authority.contains('@') || query.split(['&', ';', '#']).any(secret_parameter)
}

/// `text` without its template expressions (`{{ }}`, `{% %}`, `{# #}`).
fn outside_templates(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = ["{{", "{%", "{#"].iter().filter_map(|o| rest.find(o)).min() {
        out.push_str(&rest[..open]);
        let close = ["}}", "%}", "#}"].iter().filter_map(|c| rest[open + 2..].find(c)).min();
        let Some(close) = close else { return out };
        rest = &rest[open + 2 + close + 2..];
    }
    out + rest
}

/// An endpoint URL; plain `http://` beyond the loopback is allowed but warned about.
pub(super) fn url_field(t: &mut Table<'_>, key: &str, d: &mut Diagnostics) -> Option<String> {
    let (p, v) = t.take(key)?;
    let s = tree::string(&p, v, d)?;
    match reqwest::Url::parse(&s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            if url_holds_secret(&s) {
                d.secret(&p);
            }
            if plain_http_beyond_loopback(&s) {
                d.warn(&p, "plain http:// beyond the loopback: credentials and tokens can be read on the way");
            }
            Some(s)
        }
        _ => {
            d.error(&p, "not an http or https URL");
            None
        }
    }
}

pub(super) fn existing_file(t: &mut Table<'_>, key: &str, d: &mut Diagnostics) -> Option<PathBuf> {
    let (p, v) = t.take(key)?;
    let s = tree::string(&p, v, d)?;
    // Opened, not only looked at: `check --user` then finds a file the user cannot read.
    if let Err(e) = std::fs::File::open(&s) {
        d.error(&p, format!("cannot use {s}: {e}"));
    }
    Some(PathBuf::from(s))
}

/// `jwt_auth.credentials` fields (compared in lowercase) that name the account rather than prove
/// it: `check` takes every other field for a secret, and token cache keys hold only these values.
pub const ACCOUNT_FIELDS: &[&str] =
    &["user", "username", "user_name", "login", "email", "client_id", "grant_type", "scope", "audience"];

fn jwt_auth(path: &str, v: &Value, ctx: &mut Ctx<'_, '_>) -> Option<JwtAuth> {
    let mut t = Table::open(v, path, ctx.d)?;
    let client = ctx.client(&mut t);
    let d = &mut *ctx.d;
    let enabled = t.take("enabled").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(true);
    let token_endpoint = url_field(&mut t, "token_endpoint", d);
    let refresh_endpoint = url_field(&mut t, "refresh_endpoint", d);
    let mut credentials = Vec::new();
    if let Some((p, v)) = t.take("credentials")
        && let Some(mut c) = Table::open(v, &p, d)
    {
        for (k, v) in c.take_rest() {
            let path = join(&p, &k);
            if let Some(s) = tree::string(&path, v, d) {
                if !s.is_empty() && !ACCOUNT_FIELDS.contains(&k.to_ascii_lowercase().as_str()) {
                    d.secret(&path);
                }
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
    let owner = ctx.owner.to_string();
    Some(JwtAuth {
        owner,
        client,
        token_endpoint: token_endpoint?,
        refresh_endpoint,
        credentials,
        credentials_file,
        json,
    })
}

/// `client_secret`, written inline (noted as a secret for `check`'s warning about readable files).
pub(super) fn client_secret(t: &mut Table<'_>, d: &mut Diagnostics) -> Option<Secret> {
    t.take("client_secret").and_then(|(p, v)| {
        let s = tree::string(&p, v, d).filter(|s| !s.is_empty())?;
        d.secret(&p);
        Some(Secret(s))
    })
}

fn oidc_auth(path: &str, v: &Value, ctx: &mut Ctx<'_, '_>) -> Option<OidcAuth> {
    let mut t = Table::open(v, path, ctx.d)?;
    let client = ctx.client(&mut t);
    let d = &mut *ctx.d;
    let enabled = t.take("enabled").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(true);
    let configuration_uri = url_field(&mut t, "configuration_uri", d);
    let token_endpoint = url_field(&mut t, "token_endpoint", d);
    let client_id = t.take("client_id").and_then(|(p, v)| tree::string(&p, v, d)).unwrap_or_default();
    let client_secret = client_secret(&mut t, d);
    let client_secret_file = existing_file(&mut t, "client_secret_file", d);
    let scopes = match t.take("scopes") {
        Some((_, Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
        Some((p, v)) => tree::strings(&p, v, d).unwrap_or_default(),
        None => Vec::new(),
    };
    let has_secret = client_secret.is_some() || client_secret_file.is_some();
    let method = auth_method(&mut t, has_secret, d);
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
    Some(OidcAuth {
        owner: ctx.owner.to_string(),
        client,
        configuration_uri,
        token_endpoint,
        client_id,
        client_secret,
        client_secret_file,
        scopes,
        method,
    })
}

/// `auth_method`; when absent or `auto`, `client_secret_basic` if there is a secret, else none.
fn auth_method(t: &mut Table<'_>, has_secret: bool, d: &mut Diagnostics) -> OidcMethod {
    match t.take_str("auth_method", d) {
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
    .unwrap_or(if has_secret { OidcMethod::ClientSecretBasic } else { OidcMethod::None })
}
