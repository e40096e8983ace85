//! Backend authentication blocks: `jwt_auth` (Go pfxhttp v1.1) and `backend_oidc_auth` (v2).
//! They are parsed and validated here; fetching tokens is the job of the auth module.

use super::tree::{self, Diagnostics, Table, join};
use super::*;
use serde_yaml::Value;

pub(super) fn auth(path: &str, t: &mut Table<'_>, d: &mut Diagnostics) -> Option<Auth> {
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

/// `jwt_auth.credentials` fields that name the account rather than prove it; every other field
/// is taken for a secret.
const IDENTIFIERS: &[&str] =
    &["user", "username", "user_name", "login", "email", "client_id", "grant_type", "scope", "audience"];

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
            let path = join(&p, &k);
            if let Some(s) = tree::string(&path, v, d) {
                if !s.is_empty() && !IDENTIFIERS.contains(&k.to_ascii_lowercase().as_str()) {
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
    Some(JwtAuth { token_endpoint: token_endpoint?, refresh_endpoint, credentials, credentials_file, json })
}

fn oidc_auth(path: &str, v: &Value, d: &mut Diagnostics) -> Option<OidcAuth> {
    let mut t = Table::open(v, path, d)?;
    let enabled = t.take("enabled").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(true);
    let configuration_uri = url_field(&mut t, "configuration_uri", d);
    let token_endpoint = url_field(&mut t, "token_endpoint", d);
    let client_id = t.take("client_id").and_then(|(p, v)| tree::string(&p, v, d)).unwrap_or_default();
    let client_secret = t.take("client_secret").and_then(|(p, v)| {
        let s = tree::string(&p, v, d).filter(|s| !s.is_empty())?;
        d.secret(&p);
        Some(Secret(s))
    });
    let client_secret_file = existing_file(&mut t, "client_secret_file", d);
    let scopes = match t.take("scopes") {
        Some((_, Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
        Some((p, v)) => tree::strings(&p, v, d).unwrap_or_default(),
        None => Vec::new(),
    };
    let has_secret = client_secret.is_some() || client_secret_file.is_some();
    let method = match t.take_str("auth_method", d) {
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
