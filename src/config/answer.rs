//! The answer part of an entry: how the backend's response is read, and what a policy service
//! answers when no good answer can be had.

use super::tree::{self, Diagnostics, Table};
use super::{DEFAULT_POLICY_ACTION, Kind, ResponseMode};
use crate::value::FieldPath;

/// How an entry reads the backend's response.
#[derive(Debug)]
pub struct Answer {
    /// Statuses of a good answer (`status_code`).
    pub status_codes: Vec<u16>,
    /// Statuses that mean "not found".
    pub not_found_status: Vec<u16>,
    /// Where the value stands: a JSON body, the whole text, or a header (`response`).
    pub mode: ResponseMode,
    pub value_field: Option<FieldPath>,
    /// In `header` mode, the header name (lowercase).
    pub value_header: Option<String>,
    pub error_field: Option<FieldPath>,
    pub error_header: Option<String>,
    pub no_error_value: String,
    pub value_separator: String,
    pub max_response_bytes: usize,
    /// Ask for and accept a gzip body (`http_response_compression`).
    pub compression: bool,
    /// Policy only: the action sent when no good answer can be had.
    pub default_action: String,
}

/// Reads `status_code`, `not_found_status`, `response`, the fields, `no_error_value` and
/// `value_separator`; `path` is the entry's. `compression` and `default_action` are read later,
/// after the keys before them in the entry, and are empty here.
pub(super) fn answer(path: &str, t: &mut Table<'_>, max_response_bytes: usize, d: &mut Diagnostics) -> Answer {
    let (status_codes, not_found_status) = statuses(t, d);
    let modes = [("json", ResponseMode::Json), ("text", ResponseMode::Text), ("header", ResponseMode::Header)];
    let mode = t.choice("response", &modes, ResponseMode::Json, d);
    let value_text = t.take_str("value_field", d);
    let error_text = t.take_str("error_field", d);
    let (value_field, value_header) = field(mode, value_text.clone(), d);
    let (error_field, error_header) = field(mode, error_text, d);
    if value_text.as_ref().is_none_or(|(s, _)| s.is_empty()) && mode != ResponseMode::Text {
        d.error(path, "value_field is required (where the value is in the answer), unless response is text");
    }
    let no_error_value = t.take("no_error_value").and_then(|(p, v)| tree::string(&p, v, d)).unwrap_or_default();
    let value_separator = t.take("value_separator").and_then(|(p, v)| tree::string(&p, v, d)).unwrap_or(",".into());
    Answer {
        status_codes,
        not_found_status,
        mode,
        value_field,
        value_header,
        error_field,
        error_header,
        no_error_value,
        value_separator,
        max_response_bytes,
        compression: false,
        default_action: String::new(),
    }
}

/// `status_code` (200 when not given) and `not_found_status`.
fn statuses(t: &mut Table<'_>, d: &mut Diagnostics) -> (Vec<u16>, Vec<u16>) {
    let status_codes = t
        .take("status_code")
        .and_then(|(p, v)| tree::uints(&p, v, 100, 599, d))
        .map_or(vec![200], |v| v.into_iter().map(|n| n as u16).collect());
    let not_found_status: Vec<u16> = match t.take("not_found_status") {
        None => Vec::new(),
        Some((p, v)) => {
            let codes: Vec<u16> =
                tree::uints(&p, v, 100, 599, d).unwrap_or_default().into_iter().map(|n| n as u16).collect();
            if codes.iter().any(|&c| c == 429 || c >= 500) {
                d.error(&p, "5xx and 429 mean the backend is in trouble, never \"not found\"");
            }
            if codes.iter().any(|c| status_codes.contains(c)) {
                d.warn(&p, "shares a status with status_code; not_found_status wins");
            }
            codes
        }
    };
    (status_codes, not_found_status)
}

/// A value or error field: a header name in header mode, else a JSON path.
fn field(
    mode: ResponseMode,
    text: Option<(String, String)>,
    d: &mut Diagnostics,
) -> (Option<FieldPath>, Option<String>) {
    let Some((s, p)) = text.filter(|(s, _)| !s.is_empty()) else { return (None, None) };
    if mode == ResponseMode::Header {
        if reqwest::header::HeaderName::from_bytes(s.as_bytes()).is_err() {
            d.error(&p, format!("{s:?} is not a valid header name"));
        }
        return (None, Some(s.to_ascii_lowercase()));
    }
    match FieldPath::parse(&s) {
        Ok(f) => (Some(f), None),
        Err(e) => {
            d.error(&p, e);
            (None, None)
        }
    }
}

/// `default_action`: policy services only, one line.
pub(super) fn default_action(t: &mut Table<'_>, kind: Kind, d: &mut Diagnostics) -> String {
    match t.take("default_action") {
        Some((p, _)) if kind == Kind::Map => {
            d.error(&p, "default_action is for policy_services only");
            String::new()
        }
        Some((p, v)) => {
            let s = tree::string(&p, v, d).unwrap_or_default();
            if s.trim().is_empty() || s.chars().any(char::is_control) {
                d.error(&p, "must be one non-empty line");
            }
            s.trim().to_string()
        }
        None => DEFAULT_POLICY_ACTION.to_string(),
    }
}
