//! Reading the config file before it is validated: bounds on its size and on what it expands
//! to, and who else may read it.
//!
//! Every serving process loads the file, so a file that costs much to load costs it for every
//! Postfix connection. YAML aliases let a small file stand for a huge tree (serde_yaml limits
//! how often aliases are followed, not how much they copy), so the expanded tree is measured
//! before it is built.

use super::Format;
use super::tree::Diagnostics;
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_yaml::Value;
use std::cell::Cell;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Directories searched in order when no `--config` is given, for `pfxhttp.yml` (and first for
/// `pfxhttp.toml` or `pfxhttp.json` when `--format` names that format).
pub const SEARCH_PATH: &[&str] = &["/usr/local/etc/pfxhttp", "/etc/pfxhttp", "~/.pfxhttp", "."];

/// Finds the config file: `explicit`, else the first that exists of the candidates: in each
/// directory of [`SEARCH_PATH`], `format`'s own name, then `pfxhttp.yml`.
pub fn find(explicit: Option<&Path>, format: Format) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dirs = SEARCH_PATH.iter().filter_map(|dir| match (dir.strip_prefix('~'), &home) {
        (Some(rest), Some(h)) => Some(h.join(rest.trim_start_matches('/'))),
        (Some(_), None) => None,
        (None, _) => Some(PathBuf::from(dir)),
    });
    find_in(dirs, format)
}

/// The first file in `dirs` with `format`'s own name or `pfxhttp.yml`, in that order.
pub(super) fn find_in(dirs: impl Iterator<Item = PathBuf>, format: Format) -> Result<PathBuf, String> {
    let names = if format == Format::Yaml { vec!["pfxhttp.yml"] } else { vec![format.file_name(), "pfxhttp.yml"] };
    let mut tried = Vec::new();
    for dir in dirs {
        for name in &names {
            let path = dir.join(name);
            if path.is_file() {
                return Ok(path);
            }
            tried.push(path.display().to_string());
        }
    }
    Err(format!("no configuration file given (--config) and none found in {}", tried.join(", ")))
}

/// The largest config file read, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Bounds on the tree a file expands to (aliases and `defaults` entries copied out): text of
/// keys and values, and nodes. A file within [`MAX_FILE_BYTES`] without aliases stays below
/// both.
pub const MAX_EXPANDED_BYTES: usize = 4 << 20;
pub const MAX_NODES: usize = 1 << 20;

/// Why a file is not read: too large.
pub fn too_large(bytes: u64) -> String {
    format!("{bytes} bytes, more than the limit of 1 MiB ({MAX_FILE_BYTES} bytes); not read")
}

/// The text of the file at `path` and its permission bits, or why it cannot be had.
pub fn read(path: &Path) -> Result<(String, u32), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(too_large(meta.len()));
    }
    // The length of a pipe or a file still being written is not known in advance; a file's is
    // the usual size, read in one call rather than in doubling steps from 32 bytes.
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(format!("more than the limit of 1 MiB ({MAX_FILE_BYTES} bytes); not read"));
    }
    let text = String::from_utf8(bytes).map_err(|_| "cannot read: stream did not contain valid UTF-8".to_string())?;
    Ok((text, meta.permissions().mode()))
}

/// Warns when others may read a file that holds secrets inline, naming them by path.
pub fn warn_readable_secrets(origin: &str, mode: u32, d: &mut Diagnostics) {
    if mode & 0o004 == 0 || d.inline_secrets.is_empty() {
        return;
    }
    let paths = d.inline_secrets.join(", ");
    d.warn(
        origin,
        format!(
            "mode {:04o} lets every local user read it, and it holds secrets inline: {paths}; \
             make it unreadable for others (chmod o-r) or move them to http_auth_basic_file, \
             credentials_file or client_secret_file",
            mode & 0o7777
        ),
    );
}

/// What a tree costs: text bytes and nodes.
#[derive(Default)]
pub struct Cost {
    bytes: Cell<usize>,
    nodes: Cell<usize>,
    exceeded: Cell<bool>,
}

impl Cost {
    /// Counts one node with `bytes` of text; an error once a bound is passed.
    fn add<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        self.bytes.set(self.bytes.get().saturating_add(bytes));
        self.nodes.set(self.nodes.get() + 1);
        if self.bytes.get() > MAX_EXPANDED_BYTES || self.nodes.get() > MAX_NODES {
            self.exceeded.set(true);
            return Err(E::custom("too large"));
        }
        Ok(())
    }

    /// Adds the cost of `v`; `false` once a bound is passed.
    pub fn value(&self, v: &Value) -> bool {
        let node = |bytes: usize| self.add::<serde_yaml::Error>(bytes).is_ok();
        match v {
            Value::String(s) => node(s.len()),
            Value::Sequence(items) => node(0) && items.iter().all(|i| self.value(i)),
            Value::Mapping(m) => node(0) && m.iter().all(|(k, v)| self.value(k) && self.value(v)),
            Value::Tagged(t) => node(t.tag.to_string().len()) && self.value(&t.value),
            Value::Null | Value::Bool(_) | Value::Number(_) => node(0),
        }
    }

    /// The message for a tree beyond the bounds.
    pub fn message(what: &str) -> String {
        format!(
            "{what} more than 4 MiB of text ({MAX_EXPANDED_BYTES} bytes) or {MAX_NODES} nodes; refused \
             (write the values out instead)"
        )
    }
}

/// Parses YAML text, refusing a document whose aliases expand beyond the bounds. The document
/// is first walked without building anything (aliases replay parser events, nothing is
/// copied), so a hostile file is refused after reading at most the bounds.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    if let Some(line) = too_deep(text) {
        return Err(format!("flow collections ([ ] and {{ }}) nested more than {MAX_FLOW_DEPTH} deep at line {line}"));
    }
    // Only an alias (`*name`) can make the tree larger than the text, which is bounded already:
    // a file without one is parsed once, as every process start parses it.
    let cost = Cost::default();
    if text.contains('*')
        && Count(&cost).deserialize(serde_yaml::Deserializer::from_str(text)).is_err()
        && cost.exceeded.get()
    {
        return Err(Cost::message("its aliases expand to"));
    }
    // Other errors are reported by the parse that builds the tree, as they always were.
    serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
}

/// Parses TOML text into the tree YAML gives, so that validation and its diagnostics are
/// shared. A date or time (TOML has them, no setting takes one) becomes its text. The error
/// names the line and column, never the text there: the line may hold a secret.
pub fn parse_toml(text: &str) -> Result<Value, String> {
    if let Some(line) = too_deep(text) {
        return Err(format!("arrays and inline tables nested more than {MAX_FLOW_DEPTH} deep at line {line}"));
    }
    match text.parse::<toml::Table>() {
        Ok(table) => Ok(from_toml(toml::Value::Table(table))),
        Err(e) => {
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
                format!(" at line {line} column {column}")
            });
            Err(format!("not valid TOML{}: {}", at.unwrap_or_default(), e.message().trim_end()))
        }
    }
}

fn from_toml(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::Number(i.into()),
        toml::Value::Float(f) => Value::Number(f.into()),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Sequence(items.into_iter().map(from_toml).collect()),
        toml::Value::Table(table) => {
            Value::Mapping(table.into_iter().map(|(k, v)| (Value::String(k), from_toml(v))).collect())
        }
    }
}

/// How deep `[`/`{` may nest. The YAML parser takes time quadratic in the depth before its own
/// recursion limit stops it (a 400 KB file kept `check` busy for minutes), so deeper files are
/// refused before parsing; a real config nests a few levels.
pub const MAX_FLOW_DEPTH: usize = 64;

/// The line where `[`/`{` first nest deeper than [`MAX_FLOW_DEPTH`], if they do. Brackets in
/// quoted strings count too: a template's `{{ }}` is two levels, and nothing real comes near.
fn too_deep(text: &str) -> Option<usize> {
    // Every start checks the file: most files have too few brackets to matter at all.
    if text.bytes().filter(|&b| b == b'[' || b == b'{').count() <= MAX_FLOW_DEPTH {
        return None;
    }
    let mut depth = 0usize;
    let mut line = 1;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
        if depth > MAX_FLOW_DEPTH {
            return Some(line);
        }
    }
    None
}

/// A visitor that only counts what it is shown.
#[derive(Clone, Copy)]
struct Count<'a>(&'a Cost);

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.add(s.len())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.add(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.add(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.add(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }

    /// A tagged value (`!tag value`).
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (tag, value): (String, _) = data.variant()?;
        self.0.add(tag.len())?;
        value.newtype_variant_seed(self)
    }
}
