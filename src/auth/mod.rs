//! Tokens for backends behind `jwt_auth` or `backend_oidc_auth` (`docs/design.md#authentication`), shared by every
//! process through the state database: one process fetches, the others use its token.

mod fetch;
pub mod idp;
mod token;

use crate::config::{Auth, Entry, Secret};
use crate::http::Transport;
pub use crate::state::Token;
use crate::state::{Store, TokenRow, now_ms};
pub use fetch::AuthError;
use fetch::Fetch;
use std::time::{Duration, Instant};

/// How often a process without a token looks whether another process has stored one.
const POLL: Duration = Duration::from_millis(25);

/// The status a backend answers when it refuses a token.
const REFUSED: u16 = 401;

/// The tokens of one auth setting, shared through the state database: what a lookup or
/// `pfxhttp token` needs of backend authentication.
pub struct Tokens<'a> {
    auth: &'a Auth,
    /// The cache key, see [`key`].
    key: String,
    store: &'a Store,
    fetch: Fetch<'a>,
}

impl<'a> Tokens<'a> {
    fn new(auth: &'a Auth, store: &'a Store, fetch: Fetch<'a>) -> Tokens<'a> {
        Tokens { auth, key: key(auth), store, fetch }
    }

    /// The tokens for `entry`'s requests, fetched within `deadline`; `None` when the entry has
    /// no backend authentication.
    pub fn for_entry(
        entry: &'a Entry,
        store: &'a Store,
        transport: &'a dyn Transport,
        deadline: Instant,
    ) -> Option<Tokens<'a>> {
        let auth = entry.auth.as_ref()?;
        Some(Tokens::new(auth, store, Fetch::for_entry(entry, transport, deadline)))
    }

    /// A valid token: the shared one, or a new one fetched by this process if it wins the lease,
    /// or one another process fetches while this one waits (until the deadline).
    pub fn bearer(&self) -> Result<Token, AuthError> {
        obtain(self.auth, self.store, &self.fetch)
    }

    /// The backend refused `token`: it is dropped for every process, unless another one has
    /// already replaced it.
    pub fn rejected(&self, token: &Token) {
        self.store.drop_token(&self.key, token);
    }

    /// Runs `attempt` with a valid token. When the backend refuses it (`status` of the result
    /// is 401), the token is dropped and `attempt` runs once more with a new one; a refusal of
    /// that one too is an error, as is having no token.
    pub fn send<T>(
        &self,
        mut attempt: impl FnMut(&Token) -> T,
        status: impl Fn(&T) -> Option<u16>,
    ) -> Result<T, AuthError> {
        let token = self.bearer()?;
        let first = attempt(&token);
        if status(&first) != Some(REFUSED) {
            return Ok(first);
        }
        self.rejected(&token);
        let second = attempt(&self.bearer()?);
        if status(&second) == Some(REFUSED) {
            return Err(AuthError::new("the backend refused a new token too (HTTP 401)"));
        }
        Ok(second)
    }

    /// Fetches a new token now, unless another process holds the lease (`pfxhttp token --refresh`).
    pub fn refresh(&self) -> Result<Token, AuthError> {
        refresh(self.auth, self.store, &self.fetch)
    }

    /// The shared row: the token, when it was fetched, and the lease; `None` before the first.
    pub fn status(&self) -> Option<TokenRow> {
        self.store.token(&self.key)
    }

    /// Where the tokens come from: kinds and hosts only (URLs may hold secrets).
    pub fn describe(&self) -> String {
        describe(self.auth)
    }
}

/// The cache key of an auth setting: a SHA-256 over what names the token, none of it secret:
/// the config file and entry ([`Auth::owner`]), the endpoints, the client id or user name, the
/// scopes. No password or client secret goes into it, so the database holds nothing from which
/// one could be guessed offline. A changed secret is noticed by the backend or token endpoint
/// refusing the old token (401), which drops it and fetches a new one with the new secret.
fn key(auth: &Auth) -> String {
    let text = match auth {
        Auth::Jwt(j) => {
            // The credentials' names, and the values of those that name the account only.
            let creds: Vec<String> = j
                .credentials
                .iter()
                .map(|(k, Secret(v))| {
                    if crate::config::ACCOUNT_FIELDS.contains(&k.to_ascii_lowercase().as_str()) {
                        format!("{k}={v}")
                    } else {
                        k.clone()
                    }
                })
                .collect();
            format!(
                "jwt|{}|{}|{:?}|{}|{:?}|{}",
                j.owner,
                j.token_endpoint,
                j.refresh_endpoint,
                creds.join("&"),
                j.credentials_file,
                j.json
            )
        }
        Auth::Oidc(o) => format!(
            "oidc|{}|{:?}|{:?}|{}|{}|{:?}",
            o.owner,
            o.configuration_uri,
            o.token_endpoint,
            o.client_id,
            o.scopes.join(" "),
            o.method
        ),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// How long a discovery document's token endpoint is used before it is fetched again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// After a failed renewal of a still valid token, how long the fetching process keeps the lease,
/// so that the others go on with the valid token instead of each trying the token endpoint again.
const RENEW_BACKOFF: Duration = Duration::from_secs(10);

/// The longest lease a pfxhttp process with these settings takes: the fetch's own, or the hold
/// after a failed renewal. Another process's lease is trusted for no longer than that, whatever
/// its row says.
fn longest_lease(fetch: &Fetch) -> Duration {
    fetch.lease().max(RENEW_BACKOFF)
}

/// A valid token for `auth`: the shared one, or a new one fetched by this process if it wins the
/// lease, or one another process fetches while this one waits (until `fetch.deadline`).
fn obtain(auth: &Auth, store: &Store, fetch: &Fetch) -> Result<Token, AuthError> {
    let key = key(auth);
    loop {
        let now = now_ms();
        let row = store.token(&key).unwrap_or_default();
        // Read first, lock only when the lease looks free: waiters must not take turns at the
        // write lock that the fetching process needs to store its token.
        let lease_free = row.lease_free(now, longest_lease(fetch));
        if let Some(token) = row.token.clone().filter(|t| t.expires_at > now + 1000) {
            if now >= row.refresh_from && lease_free {
                return Ok(renew_ahead(auth, &key, store, fetch, token, row.fetched_at));
            }
            return Ok(token);
        }
        if lease_free && store.try_lease(&key, fetch.lease(), longest_lease(fetch), row.fetched_at) {
            return renew(auth, &key, store, fetch, row.token.as_ref()).inspect_err(|e| {
                store.release(&key);
                crate::log::error(&format!("no token: {e}"));
            });
        }
        if Instant::now() + POLL >= fetch.deadline {
            return Err(AuthError::TimedOut("no token in time (another process is fetching one)".into()));
        }
        std::thread::sleep(POLL);
    }
}

/// A valid token is due for renewal: one process renews it, with what time the request can
/// spare (one attempt's timeout is left for the request itself); the others keep using it.
fn renew_ahead(auth: &Auth, key: &str, store: &Store, fetch: &Fetch, token: Token, seen: i64) -> Token {
    let spare = fetch.deadline.saturating_duration_since(Instant::now()).saturating_sub(fetch.attempt.timeout);
    if spare < Duration::from_millis(100) || !store.try_lease(key, fetch.lease(), longest_lease(fetch), seen) {
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

/// Fetches a new token now, unless another process holds the lease.
fn refresh(auth: &Auth, store: &Store, fetch: &Fetch) -> Result<Token, AuthError> {
    let key = key(auth);
    let row = store.token(&key).unwrap_or_default();
    if !store.try_lease(&key, fetch.lease(), longest_lease(fetch), row.fetched_at) {
        return Err(AuthError::new("another process is fetching a token right now"));
    }
    renew(auth, &key, store, fetch, row.token.as_ref()).inspect_err(|_| store.release(&key))
}

/// Where tokens come from: kinds and hosts only (URLs may hold secrets).
fn describe(auth: &Auth) -> String {
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

/// Fetches a new token while holding the lease, and stores it; the fetch is counted.
fn renew(auth: &Auth, key: &str, store: &Store, fetch: &Fetch, old: Option<&Token>) -> Result<Token, AuthError> {
    let fetched = fetch_new(auth, key, store, fetch, old);
    let result = if fetched.is_ok() { "ok" } else { "error" };
    store.metrics().add(crate::metrics::Series::TokenFetches, &[fetch.entry, result], 1);
    fetched
}

fn fetch_new(auth: &Auth, key: &str, store: &Store, fetch: &Fetch, old: Option<&Token>) -> Result<Token, AuthError> {
    let fetched_at = now_ms();
    let token = match auth {
        Auth::Jwt(j) => fetch::jwt(j, &credentials(j)?, old.and_then(|t| t.refresh.as_deref()), fetch)?,
        Auth::Oidc(o) => {
            let endpoint = match (&o.token_endpoint, &o.configuration_uri) {
                (Some(e), _) => e.clone(),
                (None, Some(uri)) => discovered(uri, store, fetch)?,
                (None, None) => return Err(AuthError::new("no token endpoint")),
            };
            fetch::client_credentials(o, &endpoint, client_secret(o)?.as_deref(), fetch)?
        }
    };
    store.put_token(key, &token, token.refresh_from(fetched_at));
    Ok(token)
}

/// The token endpoint of the discovery document at `uri`: the one in the state database if it
/// is recent and passes the same check as a fresh one (anyone who can write the database could
/// have put it there), else fetched now.
fn discovered(uri: &str, store: &Store, fetch: &Fetch) -> Result<String, AuthError> {
    if let Some(endpoint) = store.discovered(uri, DISCOVERY_MAX_AGE) {
        match fetch::trusted_discovery(uri, &endpoint) {
            Ok(()) => return Ok(endpoint),
            Err(e) => crate::log::warn(&format!("stored discovery result refused, fetching it again: {e}")),
        }
    }
    let endpoint = fetch::discover(uri, fetch)?;
    store.put_discovered(uri, &endpoint);
    Ok(endpoint)
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
            owner: "t".into(),
            client: 0,
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
        let fetch = Fetch {
            transport: &fake,
            attempt,
            deadline: Instant::now() + Duration::from_secs(5),
            user_agent: "t",
            entry: "t",
        };
        let first = obtain(&auth, &store, &fetch).unwrap();
        store.drop_token(&key(&auth), &first);
        assert_eq!(obtain(&auth, &store, &fetch).unwrap().access, "t2");
        let paths: Vec<String> = fake.sent.borrow().iter().map(|r| r.url.path().to_string()).collect();
        assert_eq!(paths, ["/.well-known/openid-configuration", "/token", "/token"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn jwt_with(owner: &str, user: &str, password: &str) -> Auth {
        Auth::Jwt(crate::config::JwtAuth {
            owner: owner.into(),
            client: 0,
            token_endpoint: "https://idp.test/token".into(),
            refresh_endpoint: None,
            credentials: vec![("username".into(), Secret(user.into())), ("password".into(), Secret(password.into()))],
            credentials_file: None,
            json: false,
        })
    }

    #[test]
    fn the_cache_key_takes_no_secret() {
        let key_of = |owner: &str, user: &str, password: &str| key(&jwt_with(owner, user, password));
        assert_eq!(
            key_of("/etc/a.yml|socket_maps/m", "admin", "one"),
            key_of("/etc/a.yml|socket_maps/m", "admin", "two")
        );
        assert_ne!(
            key_of("/etc/a.yml|socket_maps/m", "admin", "one"),
            key_of("/etc/a.yml|socket_maps/m", "other", "one")
        );
        assert_ne!(
            key_of("/etc/a.yml|socket_maps/m", "admin", "one"),
            key_of("/etc/b.yml|socket_maps/m", "admin", "one")
        );
        let oidc = |secret: &str| {
            key(&Auth::Oidc(OidcAuth {
                owner: "o".into(),
                client: 0,
                configuration_uri: None,
                token_endpoint: Some("https://idp.test/token".into()),
                client_id: "c".into(),
                client_secret: Some(Secret(secret.into())),
                client_secret_file: None,
                scopes: vec![],
                method: OidcMethod::ClientSecretBasic,
            }))
        };
        assert_eq!(oidc("one"), oidc("two"));
    }
}
