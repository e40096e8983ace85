//! Getting a token over HTTP: jwt_auth login and refresh (Go pfxhttp v1.1, Nauthilus 1.x) and the
//! OAuth2 client-credentials grant with optional discovery (backend_oidc_auth).

use super::token;
use crate::config::{JwtAuth, OidcAuth, OidcMethod};
use crate::http::{self, Attempt, HttpError, Request, Transport};
use crate::state::Token;
use crate::template::percent_encode;
use base64::Engine as _;
use reqwest::header::{self, HeaderName, HeaderValue};
use std::time::{Duration, Instant};

/// Why no token could be had. The text names the endpoint's host and what went wrong, never a
/// credential or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request's deadline ran out.
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    Failed(String),
}

impl AuthError {
    /// A problem not tied to an endpoint.
    pub fn new(text: impl Into<String>) -> AuthError {
        AuthError::Failed(text.into())
    }

    fn at(host: &str, what: impl std::fmt::Display) -> AuthError {
        AuthError::new(format!("token endpoint {host}: {what}"))
    }

    fn at_deadline(host: &str, what: &str) -> AuthError {
        AuthError::TimedOut(format!("token endpoint {host}: {what}"))
    }
}

/// What a token request may use.
pub struct Fetch<'a> {
    pub transport: &'a dyn Transport,
    /// The client, and a timeout per request (cut to what is left before `deadline`).
    pub attempt: Attempt,
    pub deadline: Instant,
    pub user_agent: &'a str,
    /// The entry the request is for: the `name` its token fetches are counted under.
    pub entry: &'a str,
}

impl<'a> Fetch<'a> {
    /// Token requests for `entry`: its auth block's client (never the entry's own, see
    /// [`crate::config::Auth::client`]), its timeout and user agent.
    pub fn for_entry(entry: &'a crate::config::Entry, transport: &'a dyn Transport, deadline: Instant) -> Fetch<'a> {
        let client = entry.auth.as_ref().map_or(entry.client, crate::config::Auth::client);
        let attempt = Attempt { client, timeout: entry.retry.timeout, max_response_bytes: 1 << 16, gunzip: false };
        Fetch { transport, attempt, deadline, user_agent: &entry.request.user_agent, entry: &entry.name }
    }

    /// How long a fetching process holds the lease: two requests (discovery or refresh, then
    /// the token) and a second to store the result.
    pub fn lease(&self) -> Duration {
        self.attempt.timeout * 2 + Duration::from_secs(1)
    }

    /// The same, with a nearer deadline.
    pub fn until(&self, deadline: Instant) -> Fetch<'_> {
        Fetch { deadline: deadline.min(self.deadline), ..*self }
    }
}

impl Fetch<'_> {
    pub(super) fn post(
        &self,
        url: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, AuthError> {
        self.send(reqwest::Method::POST, url, headers, body)
    }

    pub(super) fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        mut headers: Vec<(HeaderName, HeaderValue)>,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, AuthError> {
        let url = reqwest::Url::parse(url).map_err(|_| AuthError::new("token endpoint: not a valid URL"))?;
        let host = http::host_of(&url);
        let fail = |what: String| AuthError::at(&host, what);
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(20) {
            return Err(AuthError::at_deadline(&host, "no time left before the deadline"));
        }
        let attempt = Attempt { timeout: self.attempt.timeout.min(left), ..self.attempt };
        headers.push((header::ACCEPT, HeaderValue::from_static("application/json")));
        if let Ok(ua) = HeaderValue::from_str(self.user_agent) {
            headers.push((header::USER_AGENT, ua));
        }
        let request = Request { method, url, headers, body };
        match self.transport.send(&request, attempt) {
            Ok(r) if (200..300).contains(&r.status) => Ok(r.body),
            Ok(r) => Err(fail(format!("HTTP {}", r.status))),
            // Cut short by the deadline, or the endpoint's own slowness.
            Err(HttpError::Timeout) if attempt.timeout < self.attempt.timeout => {
                Err(AuthError::at_deadline(&host, "no answer in time"))
            }
            Err(HttpError::Timeout) => Err(fail("no answer in time".into())),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

pub(super) fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k.as_bytes(), true), percent_encode(v.as_bytes(), true)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

pub(super) fn content_type(value: &'static str) -> (HeaderName, HeaderValue) {
    (header::CONTENT_TYPE, HeaderValue::from_static(value))
}

fn parsed(host_of: &str, body: &[u8]) -> Result<Token, AuthError> {
    token::parse(body).map_err(|what| AuthError::at(host_of, what))
}

pub(super) fn host(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| "?".into(), |u| http::host_of(&u))
}

/// jwt_auth: refresh with `X-Refresh-Token` when there is a refresh token, else (or when that
/// fails) log in with the credentials.
pub fn jwt(
    auth: &JwtAuth,
    credentials: &[(String, String)],
    refresh: Option<&str>,
    fetch: &Fetch,
) -> Result<Token, AuthError> {
    if let Some(refresh) = refresh
        && let Ok(mut value) = HeaderValue::from_str(refresh)
    {
        value.set_sensitive(true);
        let url = auth.refresh_endpoint.as_deref().unwrap_or(&auth.token_endpoint);
        let refreshed = fetch
            .post(url, vec![(HeaderName::from_static("x-refresh-token"), value)], Some(Vec::new()))
            .and_then(|body| parsed(&host(url), &body));
        if let Ok(token) = refreshed {
            return Ok(token);
        }
    }
    let (ct, body) = if auth.json {
        let map: serde_json::Map<String, serde_json::Value> =
            credentials.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        (content_type("application/json"), serde_json::Value::Object(map).to_string().into_bytes())
    } else {
        let pairs: Vec<(&str, &str)> = credentials.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        (content_type("application/x-www-form-urlencoded"), form(&pairs))
    };
    let body = fetch.post(&auth.token_endpoint, vec![ct], Some(body))?;
    parsed(&host(&auth.token_endpoint), &body)
}

/// The token endpoint named by an OpenID discovery document.
pub fn discover(configuration_uri: &str, fetch: &Fetch) -> Result<String, AuthError> {
    let body = fetch.send(reqwest::Method::GET, configuration_uri, Vec::new(), None)?;
    let fail = |what: &str| AuthError::at(&host(configuration_uri), what);
    let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|_| fail("discovery document is not JSON"))?;
    let endpoint =
        doc.get("token_endpoint").and_then(|v| v.as_str()).ok_or_else(|| fail("no token_endpoint in discovery"))?;
    trusted_discovery(configuration_uri, endpoint)?;
    Ok(endpoint.to_string())
}

/// Checks a token endpoint that a discovery document at `configuration_uri` named (fetched now,
/// or read back from the state database): it gets the client secret, so it must be an http(s)
/// URL on the discovery document's host and port, and not plain http when the document came
/// over https. Anything else is refused: a token endpoint elsewhere is named in the config
/// (`token_endpoint`), which then makes discovery unnecessary.
pub fn trusted_discovery(configuration_uri: &str, endpoint: &str) -> Result<(), AuthError> {
    trusted_endpoint(configuration_uri, "token_endpoint", endpoint, "; name it in token_endpoint to use it")
}

/// The same check for any endpoint of the document that gets a client secret (`field`);
/// `advice` ends the message of a refusal.
pub fn trusted_endpoint(configuration_uri: &str, field: &str, endpoint: &str, advice: &str) -> Result<(), AuthError> {
    let fail = |what: &str| AuthError::at(&host(configuration_uri), what);
    let (Ok(doc), Ok(named)) = (reqwest::Url::parse(configuration_uri), reqwest::Url::parse(endpoint)) else {
        return Err(fail(&format!("{field} in discovery is not an http(s) URL")));
    };
    if !matches!(named.scheme(), "http" | "https") {
        return Err(fail(&format!("{field} in discovery is not an http(s) URL")));
    }
    if doc.scheme() == "https" && named.scheme() == "http" {
        return Err(fail(&format!("{field} in discovery is plain http{advice}")));
    }
    let upgrade = doc.scheme() == "http" && named.scheme() == "https";
    if named.host_str() != doc.host_str() || (!upgrade && named.port_or_known_default() != doc.port_or_known_default())
    {
        return Err(fail(&format!("{field} in discovery is on another host ({}){advice}", http::host_of(&named))));
    }
    Ok(())
}

/// backend_oidc_auth: the client-credentials grant at `endpoint`.
pub fn client_credentials(
    auth: &OidcAuth,
    endpoint: &str,
    secret: Option<&str>,
    fetch: &Fetch,
) -> Result<Token, AuthError> {
    let scope = auth.scopes.join(" ");
    let mut pairs = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        pairs.push(("scope", scope.as_str()));
    }
    let mut headers = vec![content_type("application/x-www-form-urlencoded")];
    let secret = secret.unwrap_or("");
    match auth.method {
        OidcMethod::ClientSecretBasic => {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", auth.client_id));
            let mut value = HeaderValue::from_str(&format!("Basic {basic}"))
                .map_err(|_| AuthError::at(&host(endpoint), "client credentials not sendable"))?;
            value.set_sensitive(true);
            headers.push((header::AUTHORIZATION, value));
        }
        OidcMethod::ClientSecretPost => {
            pairs.push(("client_id", &auth.client_id));
            pairs.push(("client_secret", secret));
        }
        OidcMethod::None => pairs.push(("client_id", &auth.client_id)),
    }
    let body = fetch.post(endpoint, headers, Some(form(&pairs)))?;
    parsed(&host(endpoint), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Response;
    use crate::http::fake::{Fake, ok};
    use std::time::Duration;

    fn fetch(fake: &Fake) -> Fetch<'_> {
        let attempt = Attempt { client: 0, timeout: Duration::from_secs(1), max_response_bytes: 65536, gunzip: false };
        Fetch {
            transport: fake,
            attempt,
            deadline: std::time::Instant::now() + Duration::from_secs(5),
            user_agent: "pfxhttp/test",
            entry: "test",
        }
    }

    fn jwt_auth(json: bool) -> JwtAuth {
        JwtAuth {
            owner: "t".into(),
            client: 0,
            token_endpoint: "http://idp.test/token".into(),
            refresh_endpoint: None,
            credentials: vec![],
            credentials_file: None,
            json,
        }
    }

    fn creds() -> Vec<(String, String)> {
        vec![("username".into(), "admin".into()), ("password".into(), "p&w d".into())]
    }

    #[test]
    fn jwt_login_form_and_json() {
        let fake = Fake::new(vec![ok(r#"{"token":"t","expires_in":60}"#), ok(r#"{"access_token":"u"}"#)]);
        assert_eq!(jwt(&jwt_auth(false), &creds(), None, &fetch(&fake)).unwrap().access, "t");
        assert_eq!(jwt(&jwt_auth(true), &creds(), None, &fetch(&fake)).unwrap().access, "u");
        let sent = fake.sent.borrow();
        assert_eq!(sent[0].body.as_deref(), Some(&b"username=admin&password=p%26w+d"[..]));
        let json: serde_json::Value = serde_json::from_slice(sent[1].body.as_deref().unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"username":"admin","password":"p&w d"}));
    }

    #[test]
    fn jwt_refresh_then_login_on_failure() {
        let fake = Fake::new(vec![ok(r#"{"token":"r"}"#)]);
        assert_eq!(jwt(&jwt_auth(false), &creds(), Some("rt"), &fetch(&fake)).unwrap().access, "r");
        let sent = fake.sent.borrow()[0].clone();
        assert_eq!(sent.body.as_deref(), Some(&b""[..]), "an empty body, so Content-Length: 0 is sent");
        assert!(sent.headers.iter().any(|(n, v)| n == "x-refresh-token" && v == "rt"));
        let fake = Fake::new(vec![
            Ok(Response { status: 401, headers: Default::default(), body: vec![] }),
            ok(r#"{"token":"fresh"}"#),
        ]);
        assert_eq!(jwt(&jwt_auth(false), &creds(), Some("old"), &fetch(&fake)).unwrap().access, "fresh");
        assert_eq!(fake.sent.borrow().len(), 2);
    }

    #[test]
    fn errors_name_the_endpoint_not_the_secret() {
        let fake =
            Fake::new(vec![Ok(Response { status: 403, headers: Default::default(), body: b"bad p&w d".to_vec() })]);
        let e = jwt(&jwt_auth(false), &creds(), None, &fetch(&fake)).unwrap_err();
        assert_eq!(e.to_string(), "token endpoint idp.test: HTTP 403");
    }

    fn oidc(method: OidcMethod) -> OidcAuth {
        OidcAuth {
            owner: "t".into(),
            client: 0,
            configuration_uri: None,
            token_endpoint: Some("http://idp.test/token".into()),
            client_id: "cid".into(),
            client_secret: None,
            client_secret_file: None,
            scopes: vec!["a".into(), "b".into()],
            method,
        }
    }

    #[test]
    fn client_credentials_methods() {
        let fake = Fake::new(vec![
            ok(r#"{"access_token":"x"}"#),
            ok(r#"{"access_token":"y"}"#),
            ok(r#"{"access_token":"z"}"#),
        ]);
        for method in [OidcMethod::ClientSecretBasic, OidcMethod::ClientSecretPost, OidcMethod::None] {
            client_credentials(&oidc(method), "http://idp.test/token", Some("s3"), &fetch(&fake)).unwrap();
        }
        let sent = fake.sent.borrow();
        let body = |i: usize| String::from_utf8(sent[i].body.clone().unwrap()).unwrap();
        let auth = |i: usize| sent[i].headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.clone());
        assert_eq!(body(0), "grant_type=client_credentials&scope=a+b");
        assert_eq!(auth(0).unwrap(), "Basic Y2lkOnMz");
        assert_eq!(body(1), "grant_type=client_credentials&scope=a+b&client_id=cid&client_secret=s3");
        assert_eq!(body(2), "grant_type=client_credentials&scope=a+b&client_id=cid");
        assert!(auth(1).is_none() && auth(2).is_none());
    }

    #[test]
    fn discovery() {
        let fake = Fake::new(vec![ok(r#"{"issuer":"x","token_endpoint":"https://idp.test/t"}"#), ok("{}")]);
        assert_eq!(
            discover("https://idp.test/.well-known/openid-configuration", &fetch(&fake)).unwrap(),
            "https://idp.test/t"
        );
        assert!(discover("https://idp.test/.well-known/openid-configuration", &fetch(&fake)).is_err());
        assert_eq!(fake.sent.borrow()[0].method, reqwest::Method::GET);
    }

    #[test]
    fn a_discovered_endpoint_stays_on_the_documents_host_and_scheme() {
        let doc = "https://idp.test/.well-known/openid-configuration";
        assert!(trusted_discovery(doc, "https://idp.test/oauth2/token").is_ok());
        assert!(trusted_discovery("http://idp.test/d", "https://idp.test/t").is_ok(), "an upgrade");
        assert!(trusted_discovery("http://idp.test:8080/d", "http://idp.test:8080/t").is_ok());
        for refused in [
            "http://idp.test/oauth2/token",
            "https://evil.test/oauth2/token",
            "https://idp.test:8443/oauth2/token",
            "ftp://idp.test/t",
            "not a url",
        ] {
            let e = trusted_discovery(doc, refused).unwrap_err();
            assert!(
                e.to_string().starts_with("token endpoint idp.test: token_endpoint in discovery "),
                "{refused}: {e}"
            );
        }
    }
}
