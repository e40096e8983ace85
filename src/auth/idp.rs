//! Bearer tokens of XOAUTH2 and OAUTHBEARER, checked with the identity provider that
//! `sasl_oidc_auth` names: its discovery document gives the issuer, the key set (`jwks_uri`) and
//! the introspection endpoint. Discovery and key set are shared through the state database.
//!
//! A token the provider does not vouch for is [`TokenError::Invalid`]; a provider that cannot
//! be asked (unreachable, an error status, an answer that is not what RFC 8414, RFC 7517 or
//! RFC 7662 describe) is [`TokenError::Outage`], never a refusal.

use super::fetch::{self, AuthError, Fetch, content_type, form, host};
use crate::config::{Entry, SaslOidc, Validation};
use crate::http::{Attempt, Transport};
use crate::jwt::{self, Expect, JwtError};
use crate::state::Store;
use base64::Engine as _;
use reqwest::header::{self, HeaderValue};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

/// How long a discovery document is used before it is fetched again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a key set is used; a token naming a key it lacks fetches it again, at most once
/// per [`JWKS_REFETCH_INTERVAL`].
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// The shortest time between two fetches of a key set caused by tokens naming a key it lacks.
/// Anyone can send a token with a made-up `kid`; without this bound every such AUTH would make
/// every process fetch the key set. Within it such a token is simply invalid: a provider that
/// rotates keys publishes the new one before it signs with it, so a real token with a key that
/// appeared in the last minute is refused for that minute at most.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Key sets and discovery documents can be larger than token answers.
const MAX_DOCUMENT: usize = 1 << 20;

/// Why a token brought no user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The provider does not vouch for it (a fixed text for the log).
    #[error("{0}")]
    Invalid(String),
    /// The provider could not be asked.
    #[error("{0}")]
    Outage(String),
}

impl From<AuthError> for TokenError {
    fn from(e: AuthError) -> Self {
        TokenError::Outage(format!("identity provider: {e}"))
    }
}

/// The claims the provider vouches for in `token` (from the JWT or the introspection answer),
/// asked within `deadline` with `entry`'s timeout and user agent and the block's own client.
pub fn token_claims(
    oidc: &SaslOidc,
    token: &str,
    entry: &Entry,
    transport: &dyn Transport,
    store: &Store,
    deadline: Instant,
) -> Result<Map<String, Value>, TokenError> {
    let attempt =
        Attempt { client: oidc.client, timeout: entry.retry.timeout, max_response_bytes: MAX_DOCUMENT, gunzip: false };
    let fetch = Fetch { transport, attempt, deadline, user_agent: &entry.request.user_agent, entry: &entry.name };
    let discovery = discovery(&oidc.configuration_uri, store, &fetch)?;
    let by_jwks = match oidc.validation {
        Validation::Jwks => true,
        Validation::Introspection => false,
        Validation::Auto => jwt::looks_like_jwt(token),
    };
    if by_jwks {
        by_key_set(oidc, token, &discovery, store, &fetch)
    } else {
        introspect(oidc, token, &discovery, &fetch)
    }
}

/// The discovery document, from the state database when recent, else fetched (and stored).
fn discovery(uri: &str, store: &Store, fetch: &Fetch) -> Result<Map<String, Value>, TokenError> {
    if let Some(doc) = store.document(uri, DISCOVERY_MAX_AGE).and_then(|body| object(body.as_bytes())) {
        return Ok(doc);
    }
    let body = fetch.send(reqwest::Method::GET, uri, Vec::new(), None)?;
    let doc = object(&body).ok_or_else(|| outage(uri, "the discovery document is not a JSON object"))?;
    store.put_document(uri, &String::from_utf8_lossy(&body));
    Ok(doc)
}

fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn outage(uri: &str, what: &str) -> TokenError {
    TokenError::Outage(format!("identity provider {}: {what}", host(uri)))
}

fn field<'a>(doc: &'a Map<String, Value>, uri: &str, name: &str) -> Result<&'a str, TokenError> {
    doc.get(name).and_then(Value::as_str).ok_or_else(|| outage(uri, &format!("no {name} in the discovery document")))
}

/// JWKS validation: the key set from the state database, fetched again once when the token
/// names a key it lacks and the last fetch is older than [`JWKS_REFETCH_INTERVAL`].
fn by_key_set(
    oidc: &SaslOidc,
    token: &str,
    doc: &Map<String, Value>,
    store: &Store,
    fetch: &Fetch,
) -> Result<Map<String, Value>, TokenError> {
    let uri = &oidc.configuration_uri;
    let issuer = field(doc, uri, "issuer")?;
    let jwks_uri = field(doc, uri, "jwks_uri")?;
    // Keys decide who may log in: they come over https when discovery did.
    if uri.starts_with("https:") && !jwks_uri.starts_with("https:") {
        return Err(outage(uri, "jwks_uri in discovery is not https"));
    }
    let now = crate::state::now_ms() / 1000;
    let expect = Expect { issuer, audience: &oidc.audience, now };
    let stored = store.document(jwks_uri, JWKS_MAX_AGE).and_then(|body| serde_json::from_str::<Value>(&body).ok());
    let from_store = stored.is_some();
    let keys = match stored {
        Some(keys) => keys,
        None => fetch_keys(jwks_uri, store, fetch)?,
    };
    let verified = match jwt::verify(token, &keys, &expect) {
        // The time of the last fetch is shared through the state database.
        Err(JwtError::UnknownKey) if from_store && store.document(jwks_uri, JWKS_REFETCH_INTERVAL).is_none() => {
            jwt::verify(token, &fetch_keys(jwks_uri, store, fetch)?, &expect)
        }
        other => other,
    };
    verified.map_err(|e| TokenError::Invalid(e.to_string()))
}

fn fetch_keys(jwks_uri: &str, store: &Store, fetch: &Fetch) -> Result<Value, TokenError> {
    let body = fetch.send(reqwest::Method::GET, jwks_uri, Vec::new(), None)?;
    let keys: Value = serde_json::from_slice(&body).map_err(|_| outage(jwks_uri, "the key set is not JSON"))?;
    if !keys.get("keys").is_some_and(Value::is_array) {
        return Err(outage(jwks_uri, "the key set has no keys"));
    }
    store.put_document(jwks_uri, &String::from_utf8_lossy(&body));
    Ok(keys)
}

/// RFC 7662 introspection with client_secret_basic; `active` must be `true`.
fn introspect(
    oidc: &SaslOidc,
    token: &str,
    doc: &Map<String, Value>,
    fetch: &Fetch,
) -> Result<Map<String, Value>, TokenError> {
    let uri = &oidc.configuration_uri;
    let endpoint = field(doc, uri, "introspection_endpoint")?;
    // It gets the client secret: only on the discovery document's own host.
    fetch::trusted_endpoint(uri, "introspection_endpoint", endpoint, "")?;
    let secret = client_secret(oidc)?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", oidc.client_id));
    let mut auth = HeaderValue::from_str(&format!("Basic {basic}"))
        .map_err(|_| TokenError::Outage("client credentials not sendable".into()))?;
    auth.set_sensitive(true);
    let headers = vec![content_type("application/x-www-form-urlencoded"), (header::AUTHORIZATION, auth)];
    let body = form(&[("token", token), ("token_type_hint", "access_token")]);
    let answer = fetch.post(endpoint, headers, Some(body))?;
    let answer = object(&answer).ok_or_else(|| outage(endpoint, "the introspection answer is not a JSON object"))?;
    match answer.get("active") {
        Some(Value::Bool(true)) => Ok(answer),
        _ => Err(TokenError::Invalid("the token is not active".into())),
    }
}

fn client_secret(oidc: &SaslOidc) -> Result<String, TokenError> {
    match (&oidc.client_secret, &oidc.client_secret_file) {
        (Some(s), _) => Ok(s.0.clone()),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| TokenError::Outage(format!("cannot read {}: {e}", path.display()))),
        (None, None) => Ok(String::new()),
    }
}
