//! Finding a value in a JSON answer and turning it into reply text.
//!
//! A field is a dot path (`data.result`, `items.0.address`; numeric segments index arrays), a JSON
//! Pointer (`/data/result`), or a single name. A single name missing at the top level is searched
//! for at any depth, breadth-first in document order, as the Go pfxhttp did (in random order).

use serde_json::Value;

/// Where a value is in a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    /// A single name: the top level first, then anywhere (breadth-first, objects only).
    Name(String),
    /// Dot-separated segments.
    Dots(Vec<String>),
    /// RFC 6901 JSON Pointer segments, unescaped.
    Pointer(Vec<String>),
}

/// What a lookup found.
#[derive(Debug, PartialEq)]
pub enum Found<'a> {
    /// A value (which may still convert to no text).
    Value(&'a Value),
    /// The field is not there.
    Absent,
    /// The document does not have the shape the path expects (a scalar where a container was
    /// needed); that is a bad answer, not "not found".
    WrongShape(String),
}

impl FieldPath {
    /// Parses a field as written in the config.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        if text.is_empty() {
            return Err("empty field".into());
        }
        if let Some(pointer) = text.strip_prefix('/') {
            return Ok(FieldPath::Pointer(
                pointer.split('/').map(|s| s.replace("~1", "/").replace("~0", "~")).collect(),
            ));
        }
        if text.contains('.') {
            let segs: Vec<String> = text.split('.').map(str::to_string).collect();
            if segs.iter().any(String::is_empty) {
                return Err(format!("{text:?} has an empty path segment"));
            }
            return Ok(FieldPath::Dots(segs));
        }
        Ok(FieldPath::Name(text.to_string()))
    }

    /// Looks the field up in `doc`.
    /// The document itself must be an object (or, for a path starting with an index, a list).
    pub fn find<'a>(&self, doc: &'a Value) -> Found<'a> {
        if !(doc.is_object() || doc.is_array() && !matches!(self, FieldPath::Name(_))) {
            return Found::WrongShape(format!("expected a JSON object, found {}", kind(doc)));
        }
        match self {
            FieldPath::Pointer(segs) => walk(doc, segs),
            FieldPath::Dots(segs) => match walk(doc, segs) {
                // Compatibility: the Go pfxhttp matched a key literally named "data.result".
                Found::Absent => match doc.get(segs.join(".")) {
                    Some(v) => Found::Value(v),
                    None => Found::Absent,
                },
                other => other,
            },
            FieldPath::Name(name) => search(doc, name).map_or(Found::Absent, Found::Value),
        }
    }
}

fn walk<'a>(doc: &'a Value, segs: &[String]) -> Found<'a> {
    let mut cur = doc;
    for seg in segs {
        cur = match cur {
            Value::Object(m) => match m.get(seg) {
                Some(v) => v,
                None => return Found::Absent,
            },
            Value::Array(items) => match seg.parse::<usize>() {
                Ok(i) => match items.get(i) {
                    Some(v) => v,
                    None => return Found::Absent,
                },
                Err(_) => return Found::WrongShape(format!("expected an object at {seg:?}, found a list")),
            },
            Value::Null => return Found::Absent,
            other => return Found::WrongShape(format!("expected an object at {seg:?}, found {}", kind(other))),
        };
    }
    Found::Value(cur)
}

/// Breadth-first search over objects in document order; arrays are not entered.
fn search<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    let mut level = vec![doc];
    let mut depth = 0;
    while !level.is_empty() && depth < 64 {
        let mut next = Vec::new();
        for node in level {
            if let Value::Object(m) = node {
                if let Some(v) = m.get(name) {
                    return Some(v);
                }
                next.extend(m.values().filter(|v| v.is_object()));
            }
        }
        level = next;
        depth += 1;
    }
    None
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Converts a found value to text: strings as they are, numbers as JSON writes them (`42`,
/// `3.5`), booleans, arrays joined with `separator`. Null, objects, empty strings and empty
/// arrays are no value (`None`).
pub fn to_text(v: &Value, separator: &str) -> Option<String> {
    match v {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(|i| to_text(i, separator)).collect();
            if parts.is_empty() { None } else { Some(parts.join(separator)) }
        }
        Value::Null | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(field: &str, doc: Value) -> Result<Option<String>, String> {
        match FieldPath::parse(field).unwrap().find(&doc) {
            Found::Value(v) => Ok(to_text(v, ",")),
            Found::Absent => Ok(None),
            Found::WrongShape(e) => Err(e),
        }
    }

    #[test]
    fn dot_paths_and_indexes() {
        assert_eq!(text("data.result", json!({"data":{"result":"x"}})), Ok(Some("x".into())));
        assert_eq!(text("items.1.address", json!({"items":[{"address":"a"},{"address":"b"}]})), Ok(Some("b".into())));
        assert_eq!(text("items.5.address", json!({"items":[]})), Ok(None));
        assert_eq!(text("data.result", json!({"data":null})), Ok(None));
        assert_eq!(text("data.result", json!({"other":1})), Ok(None));
        assert!(text("data.result", json!({"data":"str"})).is_err());
        assert_eq!(text("data.result", json!({"data.result":"literal"})), Ok(Some("literal".into())));
    }

    #[test]
    fn json_pointer() {
        assert_eq!(text("/a~1b/0", json!({"a/b":["first"]})), Ok(Some("first".into())));
        assert_eq!(text("/missing", json!({})), Ok(None));
    }

    #[test]
    fn bare_name_searches_breadth_first_in_document_order() {
        assert_eq!(text("result", json!({"result":"top"})), Ok(Some("top".into())));
        let doc: Value =
            serde_json::from_str(r#"{"a":{"x":{"result":"deep"}},"b":{"result":"shallow"},"c":{"result":"later"}}"#)
                .unwrap();
        assert_eq!(text("result", doc), Ok(Some("shallow".into())));
        assert_eq!(text("result", json!({"list":[{"result":"in array"}]})), Ok(None));
        assert!(text("result", json!("just a string")).is_err());
        assert!(text("result", json!(null)).is_err());
        assert!(text("result", json!([{"result":"x"}])).is_err());
        assert!(text("data.result", json!(null)).is_err());
        assert_eq!(text("0.result", json!([{"result":"x"}])), Ok(Some("x".into())));
    }

    #[test]
    fn conversion() {
        assert_eq!(to_text(&json!(42), ","), Some("42".into()));
        assert_eq!(to_text(&json!(3.5), ","), Some("3.5".into()));
        assert_eq!(to_text(&json!(-7), ","), Some("-7".into()));
        assert_eq!(to_text(&json!(true), ","), Some("true".into()));
        assert_eq!(to_text(&json!(["a@x", "b@y", 3]), ","), Some("a@x,b@y,3".into()));
        assert_eq!(to_text(&json!(["a", ["b", "c"]]), " "), Some("a b c".into()));
        for none in [json!(null), json!({}), json!(""), json!([])] {
            assert_eq!(to_text(&none, ","), None, "{none}");
        }
    }

    #[test]
    fn parse_errors() {
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse("a..b").is_err());
    }
}
