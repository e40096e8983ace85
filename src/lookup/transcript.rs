//! The HTTP exchange as text for `query -v` and `policy-query -v`, with every value that may be
//! a credential masked: it is printed on a terminal, and pasted into tickets.
//!
//! Masked are the user info of the URL, the value of every query parameter whose name suggests a
//! secret ([`crate::text::is_secret_name`]; `&` and `;` both separate parameters), and the value
//! of every request header but a few that describe the request's format. Whether a header
//! carries a secret cannot be told from its name (`X-Pass`, `X-Sig`, `X-Tenant`…), so the rule
//! lists the harmless ones instead. The body is shown with the same masking where its form is
//! known (JSON members, form fields), and otherwise only when no name in it suggests a secret.
//! One line says that values were masked.

use crate::http::{self, Request};
use crate::template::Context;
use crate::text::{is_secret_name, is_secret_parameter};
use reqwest::header::{self, HeaderName};
use serde_json::Value;
use std::io::Read;

/// The line added once to a transcript where something was masked.
pub(super) const MASKED_NOTE: &str = "* values shown as *** are masked";

/// Request headers whose values are shown: they describe the request, never a credential.
const HARMLESS_HEADERS: &[&str] =
    &["accept", "accept-encoding", "content-encoding", "content-type", "user-agent", "x-request-id"];

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
        let (shown, body_masked) = described_body(request, body);
        out.push(format!("> {shown}"));
        masked |= body_masked;
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

/// `a=1&b=2;c=3` with the values of secret-looking names masked; whether any was.
fn masked_parameters(query: &str) -> (String, bool) {
    let mut masked = false;
    let mut out = String::with_capacity(query.len());
    for piece in query.split_inclusive(['&', ';']) {
        let (pair, separator) = piece.split_at(piece.len() - usize::from(piece.ends_with(['&', ';'])));
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_parameter(name) => {
                masked = true;
                out.push_str(&format!("{name}={MASK}"));
            }
            _ => out.push_str(pair),
        }
        out.push_str(separator);
    }
    (out, masked)
}

/// The body's line (after `> `): its size, then the body with secret-looking values masked
/// where its form is known, or the body as it is where no name in it suggests a secret, or
/// nothing more; whether a value was masked. A gzip body is shown uncompressed.
fn described_body(request: &Request, body: &[u8]) -> (String, bool) {
    let header = |name: &HeaderName| {
        request.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.to_str().ok()).unwrap_or("")
    };
    let plain =
        if header(&header::CONTENT_ENCODING).eq_ignore_ascii_case("gzip") { gunzip(body) } else { Some(body.to_vec()) };
    let text = plain.map(|p| String::from_utf8_lossy(&p).into_owned());
    let shown = text.and_then(|text| match Context::for_content_type(header(&header::CONTENT_TYPE)) {
        Context::Json => masked_json(&text).or_else(|| unmasked(text)),
        Context::Form => Some(masked_parameters(&text)),
        _ => unmasked(text),
    });
    match shown {
        Some((text, masked)) => (format!("({} bytes) {}", body.len(), preview(text.as_bytes())), masked),
        None => (format!("({} bytes, not shown: may hold a secret)", body.len()), false),
    }
}

/// `text` when no name in it suggests a secret (also percent-decoded).
fn unmasked(text: String) -> Option<(String, bool)> {
    (!is_secret_name(&text) && !is_secret_parameter(&text)).then_some((text, false))
}

/// A JSON object or array with the value of every member whose name suggests a secret masked,
/// written compactly (members keep their order); `None` for anything else.
fn masked_json(text: &str) -> Option<(String, bool)> {
    let mut value: Value = serde_json::from_str(text).ok()?;
    if !(value.is_object() || value.is_array()) {
        return None;
    }
    let masked = mask_members(&mut value);
    Some((value.to_string(), masked))
}

/// Masks the value of secret-looking members at any depth (`null` and `""` hide nothing);
/// whether any was. The parser's depth limit bounds the recursion. A member named just `key`
/// holding a string stays shown: that is where the default payloads (the Go pfxhttp's, this
/// README's) put the lookup key, which the administrator typed on the command line.
fn mask_members(value: &mut Value) -> bool {
    match value {
        Value::Object(members) => members.iter_mut().fold(false, |masked, (name, v)| {
            let lookup_key = name.eq_ignore_ascii_case("key") && v.is_string();
            if is_secret_name(name) && !lookup_key && !v.is_null() && *v != "" {
                *v = Value::String(MASK.to_string());
                true
            } else {
                mask_members(v) | masked
            }
        }),
        Value::Array(items) => items.iter_mut().fold(false, |masked, v| mask_members(v) | masked),
        _ => false,
    }
}

/// A gzip body uncompressed, within a bound (the body is our own rendered payload).
fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    const MAX: u64 = 16 << 20;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).take(MAX + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= MAX).then_some(out)
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

    #[test]
    fn every_secret_looking_parameter_is_masked_after_either_separator() {
        let url = "http://h/x?pw=S01&passwd=S02&apikey=S03&hash=S05&pin=S06&assertion=S07&ticket=S08&k=S09\
                   &id_token=S10&a=1;key=S12&client_assertion=S15&SAMLResponse=S16&phrase=S18";
        let (text, masked) = shown(url);
        assert!(masked);
        assert_eq!(
            text,
            "http://h/x?pw=***&passwd=***&apikey=***&hash=***&pin=***&assertion=***&ticket=***&k=S09\
             &id_token=***&a=1;key=***&client_assertion=***&SAMLResponse=***&phrase=***"
        );
    }

    fn request_with_body(content_type: &str, body: &[u8]) -> Request {
        let headers = vec![(header::CONTENT_TYPE, content_type.parse().unwrap())];
        let url = reqwest::Url::parse("http://h/").unwrap();
        Request { method: reqwest::Method::POST, url, headers, body: Some(body.to_vec()) }
    }

    fn body_line(content_type: &str, body: &str) -> (String, bool) {
        described_body(&request_with_body(content_type, body.as_bytes()), body.as_bytes())
    }

    #[test]
    fn secret_looking_json_members_are_masked_at_any_depth() {
        let body = r#"{"user":"u1","api_key":"B1","nested":{"Password":42,"list":[{"client_assertion":"B3"}]},"token":null,"pin":"","k":"B4","auth":{"a":"B5"}}"#;
        let (line, masked) = body_line("application/json; charset=utf-8", body);
        assert!(masked);
        let expected = r#"{"user":"u1","api_key":"***","nested":{"Password":"***","list":[{"client_assertion":"***"}]},"token":null,"pin":"","k":"B4","auth":"***"}"#;
        assert_eq!(line, format!("({} bytes) {expected}", body.len()));
        let harmless = r#"{"user":"u1","n":[1,2]}"#;
        assert_eq!(body_line("application/json", harmless), (format!("(23 bytes) {harmless}"), false));
    }

    #[test]
    fn secret_looking_form_fields_are_masked() {
        let body = "user=u1&pass%77ord=B1;otp=B2&k=B3&sig=";
        let (line, masked) = body_line("application/x-www-form-urlencoded", body);
        assert!(masked);
        assert_eq!(line, format!("({} bytes) user=u1&pass%77ord=***;otp=***&k=B3&sig=", body.len()));
    }

    #[test]
    fn other_bodies_are_shown_only_without_a_secret_looking_name() {
        let withheld = |body: &str| (format!("({} bytes, not shown: may hold a secret)", body.len()), false);
        for (ct, body) in [
            ("text/plain", "user=u1 password=B1"),
            ("application/json", r#"{"api_key": "B1""#),
            ("application/json", r#""my passphrase B1""#),
            ("text/plain", "p%41ss=B1"),
        ] {
            assert_eq!(body_line(ct, body), withheld(body), "{body}");
        }
        assert_eq!(body_line("text/plain", "user=u1"), ("(7 bytes) user=u1".to_string(), false));
    }

    #[test]
    fn a_gzip_body_is_masked_uncompressed() {
        use std::io::Write as _;
        let body = r#"{"user":"u1","secret":"B1"}"#;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let mut request = request_with_body("application/json", &gz);
        request.headers.push((header::CONTENT_ENCODING, "gzip".parse().unwrap()));
        let (line, masked) = described_body(&request, &gz);
        assert!(masked);
        assert_eq!(line, format!("({} bytes) {{\"user\":\"u1\",\"secret\":\"***\"}}", gz.len()));
    }

    #[test]
    fn a_masked_body_adds_the_note() {
        let mut out = Vec::new();
        describe_request(&request_with_body("application/json", br#"{"hash":"B1"}"#), &mut out);
        assert_eq!(
            out,
            ["> POST http://h/", "> content-type: application/json", r#"> (13 bytes) {"hash":"***"}"#, MASKED_NOTE]
        );
    }
}
