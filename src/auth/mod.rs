//! Tokens for backends behind `jwt_auth` or `backend_oidc_auth` (spec §7), shared by every
//! process through the state database: one process fetches, the others use its token.

pub mod fetch;
pub mod token;

use crate::config::{Auth, Secret};
use crate::state::{Store, now_ms};
use fetch::{AuthError, Fetch};
use std::time::{Duration, Instant};
use token::Token;

/// How often a process without a token looks whether another process has stored one.
const POLL: Duration = Duration::from_millis(25);

/// The cache key of an auth setting: a SHA-256 over everything that makes a token, so that the
/// database never holds a secret in clear.
pub fn key(auth: &Auth) -> String {
    let text = match auth {
        Auth::Jwt(j) => {
            let creds: Vec<String> = j.credentials.iter().map(|(k, Secret(v))| format!("{k}={v}")).collect();
            format!(
                "jwt|{}|{:?}|{}|{:?}|{}",
                j.token_endpoint,
                j.refresh_endpoint,
                creds.join("&"),
                j.credentials_file,
                j.json
            )
        }
        Auth::Oidc(o) => format!(
            "oidc|{:?}|{:?}|{}|{:?}|{:?}|{}|{:?}",
            o.configuration_uri,
            o.token_endpoint,
            o.client_id,
            o.client_secret.as_ref().map(|s| &s.0),
            o.client_secret_file,
            o.scopes.join(" "),
            o.method
        ),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A valid token for `auth`: the shared one, or a new one fetched by this process if it wins the
/// lease, or one another process fetches while this one waits (until `deadline`).
pub fn obtain(auth: &Auth, store: &Store, fetch: &Fetch, deadline: Instant) -> Result<Token, AuthError> {
    let key = key(auth);
    let lease = fetch.attempt.timeout * 2 + Duration::from_secs(1);
    loop {
        let now = now_ms();
        let row = store.token(&key).unwrap_or_default();
        // Read first, lock only when the lease looks free: waiters must not take turns at the
        // write lock that the fetching process needs to store its token.
        let lease_free = row.lease_until <= now;
        if let Some(token) = row.token.clone().filter(|t| t.expires_at > now + 1000) {
            if now >= row.refresh_from && lease_free && store.try_lease(&key, lease) {
                // Due for refresh: this process renews it; the others keep using the valid one.
                return Ok(renew(auth, &key, store, fetch, Some(&token)).unwrap_or_else(|e| {
                    crate::log::warn(&format!("renewing a token failed, the current one is used meanwhile: {e}"));
                    token
                }));
            }
            return Ok(token);
        }
        if lease_free && store.try_lease(&key, lease) {
            return renew(auth, &key, store, fetch, row.token.as_ref())
                .inspect_err(|e| crate::log::error(&format!("no token: {e}")));
        }
        if Instant::now() + POLL >= deadline {
            return Err(AuthError {
                host: "-".into(),
                what: "no token in time (another process is fetching one)".into(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Fetches a new token now (`pfxhttp token --refresh`), unless another process holds the lease.
pub fn refresh(auth: &Auth, store: &Store, fetch: &Fetch) -> Result<Token, AuthError> {
    let key = key(auth);
    if !store.try_lease(&key, fetch.attempt.timeout * 2 + Duration::from_secs(1)) {
        return Err(AuthError { host: "-".into(), what: "another process is fetching a token right now".into() });
    }
    let old = store.token(&key).and_then(|row| row.token);
    renew(auth, &key, store, fetch, old.as_ref())
}

/// Where tokens come from, for `pfxhttp token`.
pub fn describe(auth: &Auth) -> String {
    match auth {
        Auth::Jwt(j) => format!("jwt_auth, token endpoint {}", j.token_endpoint),
        Auth::Oidc(o) => match (&o.token_endpoint, &o.configuration_uri) {
            (Some(e), _) => format!("backend_oidc_auth, token endpoint {e}, client {}", o.client_id),
            (None, Some(d)) => format!("backend_oidc_auth, discovery {d}, client {}", o.client_id),
            (None, None) => "backend_oidc_auth".to_string(),
        },
    }
}

/// Fetches a new token while holding the lease, and stores it (or gives the lease back).
fn renew(auth: &Auth, key: &str, store: &Store, fetch: &Fetch, old: Option<&Token>) -> Result<Token, AuthError> {
    let fetched_at = now_ms();
    let result = match auth {
        Auth::Jwt(j) => credentials(j).and_then(|c| fetch::jwt(j, &c, old.and_then(|t| t.refresh.as_deref()), fetch)),
        Auth::Oidc(o) => {
            let endpoint = match (&o.token_endpoint, &o.configuration_uri) {
                (Some(e), _) => Ok(e.clone()),
                (None, Some(uri)) => fetch::discover(uri, fetch),
                (None, None) => Err(AuthError { host: "-".into(), what: "no token endpoint".into() }),
            };
            endpoint.and_then(|e| {
                let secret = client_secret(o)?;
                fetch::client_credentials(o, &e, secret.as_deref(), fetch)
            })
        }
    };
    match &result {
        Ok(token) => store.put_token(key, token, token.refresh_from(fetched_at)),
        Err(_) => store.release(key),
    }
    result
}

/// jwt_auth credentials: those in the config, then those of `credentials_file` (a YAML or JSON
/// mapping), read when a token is fetched so that a changed file is picked up.
fn credentials(auth: &crate::config::JwtAuth) -> Result<Vec<(String, String)>, AuthError> {
    let mut creds: Vec<(String, String)> = auth.credentials.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    if let Some(path) = &auth.credentials_file {
        let fail = |what: String| AuthError { host: "-".into(), what };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        let map: std::collections::BTreeMap<String, serde_yaml::Value> = serde_yaml::from_str(&text)
            .map_err(|_| fail(format!("{} is not a mapping of names to values", path.display())))?;
        for (k, v) in map {
            let value = crate::config::scalar_text(&v)
                .ok_or_else(|| fail(format!("{}: {k} is not a plain value", path.display())))?;
            creds.retain(|(name, _)| *name != k);
            creds.push((k, value));
        }
    }
    Ok(creds)
}

fn client_secret(auth: &crate::config::OidcAuth) -> Result<Option<String>, AuthError> {
    match (&auth.client_secret, &auth.client_secret_file) {
        (Some(s), _) => Ok(Some(s.0.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| AuthError { host: "-".into(), what: format!("cannot read {}: {e}", path.display()) }),
        (None, None) => Ok(None),
    }
}
