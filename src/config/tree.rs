//! A walk over the parsed YAML tree that records *every* problem with its path.
//!
//! Keys match ASCII case-insensitively (the Go pfxhttp's config loader lowercased them). A table
//! remembers which keys were taken; [`Table::finish`] reports the rest as unknown, except keys
//! known to have no effect here, which become warnings.

use serde_yaml::Value;
use std::fmt::Display;
use std::time::Duration;

/// Errors and warnings found while loading, each starting with the YAML path it concerns.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// Problems that make the configuration unusable.
    pub errors: Vec<String>,
    /// Things that load but do not do what the file may expect.
    pub warnings: Vec<String>,
    /// Paths of secrets written in the file itself (not the secrets), for the warning about a
    /// file other users can read.
    pub inline_secrets: Vec<String>,
}

impl Diagnostics {
    /// Records an error at `path`.
    pub fn error(&mut self, path: &str, msg: impl Display) {
        self.errors.push(format!("{path}: {msg}"));
    }

    /// Records a warning at `path`.
    pub fn warn(&mut self, path: &str, msg: impl Display) {
        self.warnings.push(format!("{path}: {msg}"));
    }

    /// Records that the value at `path` is a secret written inline.
    pub fn secret(&mut self, path: &str) {
        self.inline_secrets.push(path.to_string());
    }
}

/// A YAML mapping being taken apart key by key.
pub struct Table<'a> {
    path: String,
    /// Lowercased key, key as written, value, taken.
    entries: Vec<(String, String, &'a Value, bool)>,
}

/// Joins a parent path and a key.
pub fn join(parent: &str, key: &str) -> String {
    // Every key read builds its path, so without `format!`'s machinery.
    if parent.is_empty() {
        return key.to_string();
    }
    let mut path = String::with_capacity(parent.len() + 1 + key.len());
    path.push_str(parent);
    path.push('.');
    path.push_str(key);
    path
}

/// The path of item `i` of the list at `parent`: `parent[i]`.
pub fn item_path(parent: &str, i: usize) -> String {
    let mut path = String::with_capacity(parent.len() + 4);
    path.push_str(parent);
    path.push('[');
    crate::text::push_decimal(&mut path, i as u64);
    path.push(']');
    path
}

impl<'a> Table<'a> {
    /// Opens `value` as a table; `null` (an empty section) is an empty table.
    pub fn open(value: &'a Value, path: &str, d: &mut Diagnostics) -> Option<Table<'a>> {
        let mut table = Table { path: path.to_string(), entries: Vec::new() };
        match value {
            Value::Null => {}
            Value::Mapping(m) => {
                for (k, v) in m {
                    let Some(key) = scalar_text(k) else {
                        d.error(path, "a key must be a plain string");
                        continue;
                    };
                    let lower = key.to_ascii_lowercase();
                    if table.entries.iter().any(|(seen, ..)| *seen == lower) {
                        d.error(&join(path, &key), "given twice (keys match case-insensitively)");
                        continue;
                    }
                    table.entries.push((lower, key, v, false));
                }
            }
            Value::Tagged(t) => return Table::open(&t.value, path, d),
            _ => {
                d.error(path, format!("expected a mapping, found {}", kind(value)));
                return None;
            }
        }
        Some(table)
    }

    /// The table's path, for messages about the table as a whole.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Takes `key` if present. The returned path is owned by the caller.
    pub fn take(&mut self, key: &str) -> Option<(String, &'a Value)> {
        let entry = self.entries.iter_mut().find(|(k, _, _, taken)| k == key && !*taken)?;
        entry.3 = true;
        Some((join(&self.path, key), entry.2))
    }

    /// Takes the first of `keys` present (aliases); a second one present is an error.
    pub fn take_any(&mut self, keys: &[&str], d: &mut Diagnostics) -> Option<(String, &'a Value)> {
        let mut found = None;
        for key in keys {
            if let Some(hit) = self.take(key) {
                if found.is_some() {
                    d.error(&hit.0, format!("is an alias of {}; give only one", keys[0]));
                } else {
                    found = Some(hit);
                }
            }
        }
        found
    }

    /// Takes `key` as a string; returns the string and its path.
    pub fn take_str(&mut self, key: &str, d: &mut Diagnostics) -> Option<(String, String)> {
        let (path, v) = self.take(key)?;
        Some((string(&path, v, d)?, path))
    }

    /// Takes `key` as one of `options` (ASCII case-insensitive); `default` when absent or wrong.
    pub fn choice<T: Copy>(&mut self, key: &str, options: &[(&str, T)], default: T, d: &mut Diagnostics) -> T {
        let Some((s, path)) = self.take_str(key, d) else { return default };
        match options.iter().find(|(name, _)| name.eq_ignore_ascii_case(&s)) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                d.error(&path, format!("{s:?} is not one of: {}", names.join(", ")));
                default
            }
        }
    }

    /// Takes every key not taken yet (the entries of a section), as written.
    pub fn take_rest(&mut self) -> Vec<(String, &'a Value)> {
        let mut rest = Vec::new();
        for (_, written, v, taken) in &mut self.entries {
            if !*taken {
                *taken = true;
                rest.push((written.clone(), *v));
            }
        }
        rest
    }

    /// Reports keys nobody took: those in `no_effect` (key, reason) as warnings, others as errors.
    pub fn finish(self, d: &mut Diagnostics, no_effect: &[(&str, &str)]) {
        for (key, written, _, taken) in &self.entries {
            if *taken {
                continue;
            }
            let path = join(&self.path, written);
            match no_effect.iter().find(|(k, _)| k == key) {
                Some((_, why)) => d.warn(&path, format!("has no effect here: {why}")),
                None => d.error(&path, "unknown key"),
            }
        }
    }
}

/// The text of a scalar (strings, numbers and booleans; YAML writers quote inconsistently).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

/// A short name for the kind of a value, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Typed readers; each records an error and returns `None` when the value does not fit.
pub fn string(path: &str, v: &Value, d: &mut Diagnostics) -> Option<String> {
    let text = scalar_text(v);
    if text.is_none() {
        d.error(path, format!("expected a string, found {}", kind(v)));
    }
    text
}

pub fn boolean(path: &str, v: &Value, d: &mut Diagnostics) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => {
            d.error(path, format!("expected true or false, found {}", kind(v)));
            None
        }
    }
}

pub fn uint(path: &str, v: &Value, min: u64, max: u64, d: &mut Diagnostics) -> Option<u64> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Some(n),
        Some(n) => {
            d.error(path, format!("{n} is out of range ({min} to {max})"));
            None
        }
        None => {
            d.error(path, format!("expected a whole number, found {}", kind(v)));
            None
        }
    }
}

pub fn duration(path: &str, v: &Value, d: &mut Diagnostics) -> Option<Duration> {
    let text = string(path, v, d)?;
    match super::duration::parse(&text) {
        Ok(dur) => Some(dur),
        Err(e) => {
            d.error(path, e);
            None
        }
    }
}

/// A string or a list of strings.
pub fn strings(path: &str, v: &Value, d: &mut Diagnostics) -> Option<Vec<String>> {
    match v {
        Value::Sequence(items) => {
            let out: Vec<Option<String>> =
                items.iter().enumerate().map(|(i, item)| string(&item_path(path, i), item, d)).collect();
            out.into_iter().collect()
        }
        other => string(path, other, d).map(|s| vec![s]),
    }
}

/// A whole number or a list of them, each within `min..=max`.
pub fn uints(path: &str, v: &Value, min: u64, max: u64, d: &mut Diagnostics) -> Option<Vec<u64>> {
    match v {
        Value::Sequence(items) => {
            let out: Vec<Option<u64>> =
                items.iter().enumerate().map(|(i, item)| uint(&item_path(path, i), item, min, max, d)).collect();
            out.into_iter().collect()
        }
        other => uint(path, other, min, max, d).map(|n| vec![n]),
    }
}
