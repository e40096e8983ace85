//! What the backend's HTTP answer means: a value, "not found", or a failure.
//!
//! Only a well-formed, expected answer may say "not found" (`docs/design.md#failure-rules`): an unexpected
//! status, a body that does not parse or has the wrong shape, or an error field all become a
//! [`Failure`], which every protocol turns into a reply that makes Postfix defer.

use crate::config::{Entry, ResponseMode};
use crate::http::Response;
use crate::value::{self, Found};

/// The protocol-independent result of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The value, not yet made safe for the protocol.
    Found(String),
    NotFound,
    Failure(Failure),
}

/// A lookup that could not be answered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// A short reason for Postfix's log; never a URL, a credential or a token.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Try again later (socketmap `TEMP`).
    Temporary,
    /// The deadline ran out (socketmap `TIMEOUT`).
    Timeout,
    /// The request itself cannot succeed as configured (socketmap `PERM`; Postfix still defers).
    Permanent,
}

impl Outcome {
    pub fn temporary(reason: impl Into<String>) -> Outcome {
        Outcome::Failure(Failure { kind: FailureKind::Temporary, reason: reason.into() })
    }

    pub fn timeout(reason: impl Into<String>) -> Outcome {
        Outcome::Failure(Failure { kind: FailureKind::Timeout, reason: reason.into() })
    }

    pub fn permanent(reason: impl Into<String>) -> Outcome {
        Outcome::Failure(Failure { kind: FailureKind::Permanent, reason: reason.into() })
    }
}

/// Maps a response to an outcome as `entry` describes.
pub fn interpret(entry: &Entry, response: &Response) -> Outcome {
    let status = response.status;
    if entry.answer.not_found_status.contains(&status) {
        return Outcome::NotFound;
    }
    if !entry.answer.status_codes.contains(&status) {
        let reason = format!("unexpected HTTP status {status}");
        // 4xx says the request is wrong and will stay wrong; 429 only means "busy".
        return if (400..500).contains(&status) && status != 429 {
            Outcome::permanent(reason)
        } else {
            Outcome::temporary(reason)
        };
    }
    match entry.answer.mode {
        ResponseMode::Text => {
            let html = response
                .headers
                .get(reqwest::header::CONTENT_TYPE)
                .is_some_and(|ct| ct.as_bytes().to_ascii_lowercase().starts_with(b"text/html"));
            if html {
                return Outcome::temporary("invalid backend response: an HTML page, not a text value");
            }
            let text = String::from_utf8_lossy(&response.body);
            let text = text.trim();
            if text.is_empty() { Outcome::NotFound } else { Outcome::Found(text.to_string()) }
        }
        ResponseMode::Header => {
            let header = |name: &Option<String>| {
                name.as_ref()
                    .and_then(|n| response.headers.get(n.as_str()))
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            if let Some(err) = header(&entry.answer.error_header)
                && err != entry.answer.no_error_value
            {
                return Outcome::permanent(format!("backend error: {err}"));
            }
            header(&entry.answer.value_header).map_or(Outcome::NotFound, Outcome::Found)
        }
        ResponseMode::Json => json(entry, &response.body),
    }
}

fn json(entry: &Entry, body: &[u8]) -> Outcome {
    let doc: serde_json::Value = match serde_json::from_slice(body) {
        Ok(doc) => doc,
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => {
            return Outcome::temporary("invalid backend response: empty body");
        }
        Err(e) => return Outcome::temporary(format!("invalid backend response: not JSON ({})", json_error(&e))),
    };
    if let Some(field) = &entry.answer.error_field {
        match field.find(&doc) {
            Found::Value(v) => {
                if let Some(text) = error_text(v)
                    && text != entry.answer.no_error_value
                {
                    return Outcome::permanent(format!("backend error: {text}"));
                }
            }
            Found::Absent => {}
            Found::WrongShape(e) => return Outcome::temporary(format!("invalid backend response: {e}")),
        }
    }
    let Some(field) = &entry.answer.value_field else { return Outcome::NotFound };
    match field.find(&doc) {
        Found::Value(v) => value::to_text(v, &entry.answer.value_separator).map_or(Outcome::NotFound, Outcome::Found),
        Found::Absent => Outcome::NotFound,
        Found::WrongShape(e) => Outcome::temporary(format!("invalid backend response: {e}")),
    }
}

/// What an error field says, or `None` for "no error": null, `false`, `""`, `[]` and `{}`. Any
/// other value is an error, an object or a list written as compact JSON.
fn error_text(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => {
            let text = other.to_string();
            Some(crate::text::cut(&text, 200).to_string())
        }
    }
}

fn json_error(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Eof => "truncated",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, load_str};

    fn entry(fields: &str) -> Entry {
        let yaml = format!("socket_maps:\n  m: {{ target: 'http://a.test/', {fields} }}\n");
        load_str(&yaml, Format::Yaml, "t").config.expect("valid test config").maps.remove(0)
    }

    fn response(status: u16, headers: &[(&'static str, &str)], body: &str) -> Response {
        let mut map = reqwest::header::HeaderMap::new();
        for (n, v) in headers {
            map.insert(*n, v.parse().unwrap());
        }
        Response { status, headers: map, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn statuses() {
        let e = entry("value_field: r, not_found_status: [404, 410]");
        assert_eq!(interpret(&e, &response(200, &[], r#"{"r":"v"}"#)), Outcome::Found("v".into()));
        assert_eq!(interpret(&e, &response(410, &[], "gone")), Outcome::NotFound);
        assert_eq!(interpret(&e, &response(403, &[], "{}")), Outcome::permanent("unexpected HTTP status 403"));
        assert_eq!(interpret(&e, &response(429, &[], "{}")), Outcome::temporary("unexpected HTTP status 429"));
        assert_eq!(interpret(&e, &response(500, &[], "{}")), Outcome::temporary("unexpected HTTP status 500"));
        assert_eq!(interpret(&e, &response(301, &[], "{}")), Outcome::temporary("unexpected HTTP status 301"));
        assert_eq!(interpret(&e, &response(204, &[], "")), Outcome::temporary("unexpected HTTP status 204"));
    }

    #[test]
    fn bad_bodies_are_temporary_never_not_found() {
        let e = entry("value_field: data.r");
        for body in ["<html>502</html>", "", "{\"data\":", "\"text\"", r#"{"data":"str"}"#] {
            let out = interpret(&e, &response(200, &[], body));
            assert!(
                matches!(&out, Outcome::Failure(f) if f.kind == FailureKind::Temporary
                    && f.reason.starts_with("invalid backend response")),
                "{body}: {out:?}"
            );
        }
        assert_eq!(interpret(&e, &response(200, &[], r#"{"data":null}"#)), Outcome::NotFound);
    }

    #[test]
    fn error_field() {
        let e = entry("value_field: r, error_field: error, no_error_value: none");
        for (body, expected) in [
            (r#"{"r":"v","error":"boom"}"#, Outcome::permanent("backend error: boom")),
            (r#"{"r":"v","error":"none"}"#, Outcome::Found("v".into())),
            (r#"{"r":"v","error":""}"#, Outcome::Found("v".into())),
            (r#"{"r":"v","error":false}"#, Outcome::Found("v".into())),
            (r#"{"r":"v","error":null}"#, Outcome::Found("v".into())),
            (r#"{"r":"v","meta":{"error":"deep"}}"#, Outcome::permanent("backend error: deep")),
            (
                r#"{"r":"v","error":{"message":"db down"}}"#,
                Outcome::permanent(r#"backend error: {"message":"db down"}"#),
            ),
            (r#"{"r":"v","error":[{"m":"x"}]}"#, Outcome::permanent(r#"backend error: [{"m":"x"}]"#)),
            (r#"{"r":"v","error":{}}"#, Outcome::Found("v".into())),
            (r#"{"r":"v","error":true}"#, Outcome::permanent("backend error: true")),
        ] {
            assert_eq!(interpret(&e, &response(200, &[], body)), expected, "{body}");
        }
    }

    #[test]
    fn text_and_header_modes() {
        let text = entry("response: text");
        assert_eq!(interpret(&text, &response(200, &[], "  v w \n")), Outcome::Found("v w".into()));
        assert_eq!(interpret(&text, &response(200, &[], " \n")), Outcome::NotFound);
        let page = response(200, &[("content-type", "text/html; charset=utf-8")], "<html>maintenance</html>");
        assert!(matches!(interpret(&text, &page), Outcome::Failure(f) if f.kind == FailureKind::Temporary));
        let header = entry("response: header, value_field: X-Result, error_field: X-Error");
        assert_eq!(interpret(&header, &response(200, &[("x-result", "hv")], "")), Outcome::Found("hv".into()));
        assert_eq!(interpret(&header, &response(200, &[], "")), Outcome::NotFound);
        assert_eq!(
            interpret(&header, &response(200, &[("x-error", "no"), ("x-result", "hv")], "")),
            Outcome::permanent("backend error: no")
        );
    }
}
