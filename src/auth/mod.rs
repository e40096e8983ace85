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

/// The cache key of an auth setting: an HMAC-SHA-256, keyed with the database's salt, over
/// everything that makes a token; the database holds no secret, nor a plain hash of one.
pub fn key(auth: &Auth, salt: &[u8]) -> String {
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
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt), text.as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// How long a discovery document's token endpoint is used before it is fetched again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// After a failed renewal of a still valid token, how long the fetching process keeps the lease,
/// so that the others go on with the valid token instead of each trying the token endpoint again.
const RENEW_BACKOFF: Duration = Duration::from_secs(10);

/// A valid token for `auth`: the shared one, or a new one fetched by this process if it wins the
/// lease, or one another process fetches while this one waits (until `fetch.deadline`).
pub fn obtain(auth: &Auth, store: &Store, fetch: &Fetch) -> Result<Token, AuthError> {
    let key = key(auth, store.key_salt());
    loop {
        let now = now_ms();
        let row = store.token(&key).unwrap_or_default();
        // Read first, lock only when the lease looks free: waiters must not take turns at the
        // write lock that the fetching process needs to store its token.
        let lease_free = row.lease_until <= now || row.lease_pid == std::process::id();
        if let Some(token) = row.token.clone().filter(|t| t.expires_at > now + 1000) {
            if now >= row.refresh_from && lease_free {
                return Ok(renew_ahead(auth, &key, store, fetch, token, row.fetched_at));
            }
            return Ok(token);
        }
        if lease_free && store.try_lease(&key, fetch.lease(), row.fetched_at) {
            return renew(auth, &key, store, fetch, row.token.as_ref()).inspect_err(|e| {
                store.release(&key);
                crate::log::error(&format!("no token: {e}"));
            });
        }
        if Instant::now() + POLL >= fetch.deadline {
            return Err(AuthError {
                timed_out: true,
                ..AuthError::new("no token in time (another process is fetching one)")
            });
        }
        std::thread::sleep(POLL);
    }
}

/// A valid token is due for renewal: one process renews it, with what time the request can
/// spare (one attempt's timeout is left for the request itself); the others keep using it.
fn renew_ahead(auth: &Auth, key: &str, store: &Store, fetch: &Fetch, token: Token, seen: i64) -> Token {
    let spare = fetch.deadline.saturating_duration_since(Instant::now()).saturating_sub(fetch.attempt.timeout);
    if spare < Duration::from_millis(100) || !store.try_lease(key, fetch.lease(), seen) {
        return token;
    }
    match renew(auth, key, store, &fetch.until(Instant::now() + spare), Some(&token)) {
        Ok(new) => new,
        Err(e) => {
            store.hold_lease(key, RENEW_BACKOFF);
            crate::log::warn(&format!("renewing a token failed, the current one is used meanwhile: {e}"));
            token
        }
    }
}

/// Fetches a new token now (`pfxhttp token --refresh`), unless another process holds the lease.
pub fn refresh(auth: &Auth, store: &Store, fetch: &Fetch) -> Result<Token, AuthError> {
    let key = key(auth, store.key_salt());
    let row = store.token(&key).unwrap_or_default();
    if !store.try_lease(&key, fetch.lease(), row.fetched_at) {
        return Err(AuthError::new("another process is fetching a token right now"));
    }
    renew(auth, &key, store, fetch, row.token.as_ref()).inspect_err(|_| store.release(&key))
}

/// Where tokens come from, for `pfxhttp token`: kinds and hosts only (URLs may hold secrets).
pub fn describe(auth: &Auth) -> String {
    let host = |url: &str| reqwest::Url::parse(url).map_or_else(|_| "?".into(), |u| crate::http::host_of(&u));
    match auth {
        Auth::Jwt(j) => format!("jwt_auth, token endpoint at {}", host(&j.token_endpoint)),
        Auth::Oidc(o) => match (&o.token_endpoint, &o.configuration_uri) {
            (Some(e), _) => format!("backend_oidc_auth, token endpoint at {}, client {}", host(e), o.client_id),
            (None, Some(d)) => format!("backend_oidc_auth, discovery at {}, client {}", host(d), o.client_id),
            (None, None) => "backend_oidc_auth".to_string(),
        },
    }
}

/// Fetches a new token while holding the lease, and stores it.
fn renew(auth: &Auth, key: &str, store: &Store, fetch: &Fetch, old: Option<&Token>) -> Result<Token, AuthError> {
    let fetched_at = now_ms();
    let token = match auth {
        Auth::Jwt(j) => fetch::jwt(j, &credentials(j)?, old.and_then(|t| t.refresh.as_deref()), fetch)?,
        Auth::Oidc(o) => {
            let endpoint = match (&o.token_endpoint, &o.configuration_uri) {
                (Some(e), _) => e.clone(),
                (None, Some(uri)) => match store.discovered(uri, DISCOVERY_MAX_AGE) {
                    Some(endpoint) => endpoint,
                    None => {
                        let endpoint = fetch::discover(uri, fetch)?;
                        store.put_discovered(uri, &endpoint);
                        endpoint
                    }
                },
                (None, None) => return Err(AuthError::new("no token endpoint")),
            };
            fetch::client_credentials(o, &endpoint, client_secret(o)?.as_deref(), fetch)?
        }
    };
    store.put_token(key, &token, token.refresh_from(fetched_at));
    Ok(token)
}

/// jwt_auth credentials: those in the config, then those of `credentials_file` (a YAML or JSON
/// mapping), read when a token is fetched so that a changed file is picked up.
fn credentials(auth: &crate::config::JwtAuth) -> Result<Vec<(String, String)>, AuthError> {
    let mut creds: Vec<(String, String)> = auth.credentials.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    if let Some(path) = &auth.credentials_file {
        let fail = AuthError::new;
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
            .map_err(|e| AuthError::new(format!("cannot read {}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OidcAuth, OidcMethod, StateDb};
    use crate::http::Attempt;
    use crate::http::fake::{Fake, ok};

    #[test]
    fn discovery_is_cached_in_the_state_database() {
        let dir = std::env::temp_dir().join(format!("pfxhttp-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::new(&StateDb::File(dir.join("s.db")));
        let auth = Auth::Oidc(OidcAuth {
            configuration_uri: Some("http://idp.test/.well-known/openid-configuration".into()),
            token_endpoint: None,
            client_id: "c".into(),
            client_secret: None,
            client_secret_file: None,
            scopes: vec![],
            method: OidcMethod::None,
        });
        let fake = Fake::new(vec![
            ok(r#"{"token_endpoint":"http://idp.test/token"}"#),
            ok(r#"{"access_token":"t1","expires_in":3600}"#),
            ok(r#"{"access_token":"t2","expires_in":3600}"#),
        ]);
        let attempt =
            Attempt { client: 0, timeout: Duration::from_secs(1), max_response_bytes: 1 << 16, gunzip: false };
        let fetch =
            Fetch { transport: &fake, attempt, deadline: Instant::now() + Duration::from_secs(5), user_agent: "t" };
        let first = obtain(&auth, &store, &fetch).unwrap();
        store.drop_token(&key(&auth, store.key_salt()), &first);
        assert_eq!(obtain(&auth, &store, &fetch).unwrap().access, "t2");
        let paths: Vec<String> = fake.sent.borrow().iter().map(|r| r.url.path().to_string()).collect();
        assert_eq!(paths, ["/.well-known/openid-configuration", "/token", "/token"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
