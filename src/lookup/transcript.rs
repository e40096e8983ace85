//! The HTTP exchange as text for `query -v` and `policy-query -v`, with every value that may be
//! a credential masked: it is printed on a terminal, and pasted into tickets.
//!
//! Masked are the user info of the URL, the value of every query parameter whose name suggests a
//! secret, and the value of every request header but a few that describe the request's format.
//! Whether a header carries a secret cannot be told from its name (`X-Pass`, `X-Sig`,
//! `X-Tenant`…), so the rule lists the harmless ones instead. One line says that values were
//! masked.

use crate::http::{self, Request};
use reqwest::header::HeaderName;

/// The line added once to a transcript where something was masked.
pub(super) const MASKED_NOTE: &str = "* values shown as *** are masked";

/// Request headers whose values are shown: they describe the request, never a credential.
const HARMLESS_HEADERS: &[&str] =
    &["accept", "accept-encoding", "content-encoding", "content-type", "user-agent", "x-request-id"];

/// Parts of query parameter names that suggest a secret value (names are compared lowercased
/// and percent-decoded).
const SECRET_PARAMETER_HINTS: &[&str] = &[
    "key", "token", "secret", "pass", "pwd", "sig", "auth", "cred", "session", "access", "jwt", "bearer", "private",
    "otp", "code", "cookie", "hmac", "nonce",
];

const MASK: &str = "***";

/// Whether a request header's value is shown in the transcript (and left unmarked as
/// sensitive for the HTTP client).
pub(super) fn is_harmless_header(name: &HeaderName) -> bool {
    HARMLESS_HEADERS.contains(&name.as_str())
}

/// Adds the request's lines to `out`, and [`MASKED_NOTE`] the first time something is masked.
pub(super) fn describe_request(request: &Request, out: &mut Vec<String>) {
    let (url, mut masked) = masked_url(&request.url);
    out.push(format!("> {} {url}", request.method));
    for (name, value) in &request.headers {
        let shown = if value.is_sensitive() || !is_harmless_header(name) {
            masked = true;
            MASK.to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.push(format!("> {name}: {shown}"));
    }
    if let Some(body) = &request.body {
        out.push(format!("> ({} bytes) {}", body.len(), preview(body)));
    }
    if masked && !out.iter().any(|line| line == MASKED_NOTE) {
        out.push(MASKED_NOTE.to_string());
    }
}

pub(super) fn describe_response(response: &http::Response, out: &mut Vec<String>) {
    out.push(format!("< HTTP {}", response.status));
    for (name, value) in &response.headers {
        out.push(format!("< {name}: {}", String::from_utf8_lossy(value.as_bytes())));
    }
    out.push(format!("< ({} bytes) {}", response.body.len(), preview(&response.body)));
}

/// The URL with its user info and secret-looking parameters masked; whether anything was.
fn masked_url(url: &reqwest::Url) -> (String, bool) {
    let mut shown = url.clone();
    let mut masked = false;
    if !shown.username().is_empty() || shown.password().is_some() {
        let _ = shown.set_username(MASK);
        let _ = shown.set_password(None);
        masked = true;
    }
    if let Some((query, changed)) = url.query().map(masked_parameters) {
        shown.set_query(Some(&query));
        masked |= changed;
    }
    // A fragment is never sent, but OAuth puts tokens there in the same form.
    if let Some((fragment, changed)) = url.fragment().map(masked_parameters) {
        shown.set_fragment(Some(&fragment));
        masked |= changed;
    }
    (shown.to_string(), masked)
}

/// `a=1&b=2` with the values of secret-looking names masked; whether any was.
fn masked_parameters(query: &str) -> (String, bool) {
    let mut masked = false;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_parameter(name) => {
                masked = true;
                format!("{name}={MASK}")
            }
            _ => pair.to_string(),
        })
        .collect();
    (pairs.join("&"), masked)
}

fn is_secret_parameter(name: &str) -> bool {
    let name = super::target::decoded(&name.replace('+', " "));
    let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
    SECRET_PARAMETER_HINTS.iter().any(|hint| name.contains(hint))
}

fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 2000;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX { format!("{text}…") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> (String, bool) {
        masked_url(&reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn secret_looking_parameters_are_masked() {
        let url = "http://u:p@h/x?api_key=1&Access%5FToken=2&user=a&sig=&pwd=3&x-amz-credential=4&q#access_token=5&s=6";
        let (text, masked) = shown(url);
        assert!(masked);
        assert_eq!(
            text,
            "http://***@h/x?api_key=***&Access%5FToken=***&user=a&sig=&pwd=***&x-amz-credential=***&q#access_token=***&s=6"
        );
        assert_eq!(shown("http://h/x?user=a&format=json"), ("http://h/x?user=a&format=json".to_string(), false));
    }

    #[test]
    fn only_harmless_headers_are_shown() {
        let mut headers = crate::http::Headers::new();
        for (name, value) in [("x-tenant", "t1"), ("accept", "application/json"), ("user-agent", "pfxhttp/1")] {
            headers.push((HeaderName::from_static(name), value.parse().unwrap()));
        }
        let request = Request {
            method: reqwest::Method::GET,
            url: reqwest::Url::parse("http://h/").unwrap(),
            headers,
            body: None,
        };
        let mut out = Vec::new();
        describe_request(&request, &mut out);
        describe_request(&request, &mut out);
        let once = ["> GET http://h/", "> x-tenant: ***", "> accept: application/json", "> user-agent: pfxhttp/1"];
        let mut expected: Vec<&str> = once.to_vec();
        expected.push(MASKED_NOTE);
        expected.extend(once);
        assert_eq!(out, expected, "the note once, after the first request that masks something");
    }
}
