//! Templates for URLs, headers and bodies (upon), with escaping chosen by where they are used.
//!
//! upon has no auto-escaping, so each [`Context`] has its own engine whose *default formatter*
//! escapes every `{{ value }}` for that context: JSON string content in JSON bodies, percent-
//! encoding in URLs, control characters removed in headers, form-encoding in form bodies. A key
//! such as `x", "admin": true` therefore stays inside its JSON string. Maps and lists (the policy
//! `key` and `attrs`) are written as JSON objects, which is what a Go pfxhttp payload
//! `{{ .Key }}` produced.
//!
//! The formatters `json` (a complete JSON value), `raw` (no escaping) and `urlencode` replace the
//! context's escaping; the filters `lower`, `upper`, `localpart` and `domain` transform a value
//! before it is escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use upon::{Engine, Value, fmt};

/// Where a rendered template goes, which decides how values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A JSON document: strings become JSON string content.
    Json,
    /// A URL: values are percent-encoded.
    Url,
    /// An HTTP header value: control characters are removed.
    Header,
    /// An `application/x-www-form-urlencoded` body.
    Form,
    /// Anything else: values as they are.
    Raw,
}

impl Context {
    /// The escaping for a body of this content type.
    pub fn for_content_type(content_type: &str) -> Context {
        let ct = content_type.to_ascii_lowercase();
        if ct.contains("json") {
            Context::Json
        } else if ct.contains("x-www-form-urlencoded") {
            Context::Form
        } else {
            Context::Raw
        }
    }
}

/// A compiled template and the context it renders for.
pub struct Template {
    context: Context,
    compiled: upon::Template<'static>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({:?}, {:?})", self.context, self.compiled.source())
    }
}

struct Engines {
    json: Engine<'static>,
    url: Engine<'static>,
    header: Engine<'static>,
    form: Engine<'static>,
    raw: Engine<'static>,
}

static ENGINES: LazyLock<Engines> = LazyLock::new(|| Engines {
    json: engine(&format_json_content),
    url: engine(&format_url),
    header: engine(&format_header),
    form: engine(&format_form),
    raw: engine(&format_raw),
});

fn engine<F>(default: &'static F) -> Engine<'static>
where
    F: Fn(&mut fmt::Formatter<'_>, &Value) -> fmt::Result + Sync + Send + 'static,
{
    let mut e = Engine::new();
    e.set_default_formatter(default);
    e.add_formatter("json", format_json);
    e.add_formatter("raw", format_raw);
    e.add_formatter("urlencode", format_url);
    e.add_function("lower", |s: &str| s.to_lowercase());
    e.add_function("upper", |s: &str| s.to_uppercase());
    e.add_function("localpart", |s: &str| s.rsplit_once('@').map_or(s, |(l, _)| l).to_string());
    e.add_function("domain", |s: &str| s.rsplit_once('@').map_or("", |(_, d)| d).to_string());
    e
}

fn engine_for(context: Context) -> &'static Engine<'static> {
    let e = &*ENGINES;
    match context {
        Context::Json => &e.json,
        Context::Url => &e.url,
        Context::Header => &e.header,
        Context::Form => &e.form,
        Context::Raw => &e.raw,
    }
}

impl Template {
    /// Compiles `source` for `context`; the error says what upon did not like.
    ///
    /// In JSON, `{"key":{{ key | json }}}` is natural to write but upon reads `}}}` as a syntax
    /// error, so a space is put between a tag and an adjacent brace (insignificant in JSON).
    pub fn compile(source: &str, context: Context) -> Result<Template, String> {
        let source = if context == Context::Json && (source.contains("}}}") || source.contains("{{{")) {
            source.replace("}}}", "}} }").replace("{{{", "{ {{")
        } else {
            source.to_string()
        };
        let compiled = engine_for(context).compile(source).map_err(|e| short(&e))?;
        Ok(Template { context, compiled })
    }

    /// Renders with `vars`; an error names the problem (e.g. an unknown variable).
    pub fn render(&self, vars: &Value) -> Result<String, String> {
        self.compiled.render_from(engine_for(self.context), vars).to_string().map_err(|e| short(&e))
    }

    /// The template text as compiled.
    pub fn source(&self) -> &str {
        self.compiled.source()
    }

    /// Whether the text has no tag, comment or block, and so renders to itself.
    pub fn is_literal(&self) -> bool {
        let s = self.source();
        !(s.contains("{{") || s.contains("{%") || s.contains("{#"))
    }
}

/// upon's message without the source excerpt: the template text may hold a URL's user info or
/// a header's secret, and the message ends up in replies and log lines.
fn short(e: &upon::Error) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Policy attributes Postfix sends (3.7 to 3.12); templates may name any of them, and absent
/// ones render empty.
pub const POLICY_ATTRIBUTES: &[&str] = &[
    "request",
    "protocol_state",
    "protocol_name",
    "client_address",
    "client_name",
    "client_port",
    "reverse_client_name",
    "server_address",
    "server_port",
    "helo_name",
    "sender",
    "recipient",
    "recipient_count",
    "queue_id",
    "instance",
    "size",
    "etrn_domain",
    "stress",
    "sasl_method",
    "sasl_username",
    "sasl_sender",
    "ccert_subject",
    "ccert_issuer",
    "ccert_fingerprint",
    "ccert_pubkey_fingerprint",
    "encryption_protocol",
    "encryption_cipher",
    "encryption_keysize",
    "tls_sni",
    "policy_context",
    "compatibility_level",
    "mail_version",
];

/// Variables of a socketmap or tcp_table lookup.
pub fn lookup_vars(name: &str, key: &str, request_id: &str) -> Value {
    let mut m = BTreeMap::new();
    m.insert("key".to_string(), Value::String(key.to_string()));
    m.insert("name".to_string(), Value::String(name.to_string()));
    m.insert("request_id".to_string(), Value::String(request_id.to_string()));
    Value::Map(m)
}

/// Variables of a policy request: every attribute by name (known ones default to empty),
/// `attrs` (all attributes), `key` (the same as one JSON object), `name` and `request_id`.
pub fn policy_vars(name: &str, attrs: &BTreeMap<String, String>, request_id: &str) -> Value {
    let mut m: BTreeMap<String, Value> =
        POLICY_ATTRIBUTES.iter().map(|a| (a.to_string(), Value::String(String::new()))).collect();
    for (k, v) in attrs {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    let all: BTreeMap<String, Value> = attrs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    m.insert("attrs".to_string(), Value::Map(all.clone()));
    m.insert("key".to_string(), Value::Map(all));
    m.insert("name".to_string(), Value::String(name.to_string()));
    m.insert("request_id".to_string(), Value::String(request_id.to_string()));
    Value::Map(m)
}

/// The variables of a Dovecot SASL check, besides `name` and `request_id`.
pub const SASL_VARIABLES: &[&str] =
    &["username", "password", "protocol", "method", "client_ip", "local_ip", "local_port", "ssl"];

/// Variables of a Dovecot SASL check: `fields` gives values to [`SASL_VARIABLES`] (those it
/// leaves out render empty), with `name` and `request_id`.
pub fn sasl_vars(name: &str, fields: &[(&str, &str)], request_id: &str) -> Value {
    let mut m: BTreeMap<String, Value> =
        SASL_VARIABLES.iter().map(|v| (v.to_string(), Value::String(String::new()))).collect();
    for (k, v) in fields {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    m.insert("name".to_string(), Value::String(name.to_string()));
    m.insert("request_id".to_string(), Value::String(request_id.to_string()));
    Value::Map(m)
}

/// Rewrites Go template field references (`{{ .Key }}`, `{{- .Name -}}`) to upon's form
/// (`{{ key }}`). Other Go syntax cannot run here, and the error says what to write instead.
pub fn from_go(source: &str) -> Result<String, String> {
    const GO_WORDS: &[&str] = &[
        "printf", "print", "println", "if", "else", "end", "range", "with", "index", "len", "template", "define",
        "block", "html", "js", "urlquery", "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "call", "slice",
    ];
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else { break };
        let inner_raw = &rest[open + 2..open + close];
        let inner = inner_raw.trim_start_matches('-').trim_end_matches('-').trim();
        out.push_str(&rest[..open]);
        let field = inner.strip_prefix('.').filter(|f| {
            !f.is_empty()
                && f.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        let first_word = inner.split_whitespace().next().unwrap_or("");
        if let Some(field) = field {
            out.push_str(&format!("{{{{ {} }}}}", field.to_ascii_lowercase()));
        } else if inner.starts_with('.') || inner.contains(" .") || GO_WORDS.contains(&first_word) {
            return Err(format!(
                "Go template syntax {{{{{inner_raw}}}}} cannot run here; write {{{{ key }}}} (escaped for where it \
                 stands), {{{{ key | json }}}} (a quoted JSON value) or {{{{ key | raw }}}}"
            ));
        } else {
            out.push_str(&rest[open..open + close + 2]);
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Writes `v` as a complete JSON value.
pub fn write_json(out: &mut impl std::fmt::Write, v: &Value) -> std::fmt::Result {
    match v {
        Value::None => out.write_str("null"),
        Value::Bool(b) => write!(out, "{b}"),
        Value::Integer(i) => write!(out, "{i}"),
        Value::Float(f) if f.is_finite() => write!(out, "{f}"),
        Value::Float(_) => out.write_str("null"),
        Value::String(s) => out.write_str(&serde_json::to_string(s).unwrap_or_default()),
        Value::List(items) => {
            out.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write_json(out, item)?;
            }
            out.write_char(']')
        }
        Value::Map(m) => {
            out.write_char('{')?;
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                out.write_str(&serde_json::to_string(k).unwrap_or_default())?;
                out.write_char(':')?;
                write_json(out, item)?;
            }
            out.write_char('}')
        }
    }
}

/// A value as plain text: strings as they are, maps and lists as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::None => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        other => {
            let mut s = String::new();
            let _ = write_json(&mut s, other);
            s
        }
    }
}

fn format_json(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    write_json(f, v)?;
    Ok(())
}

fn format_json_content(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::String(s) => {
            let quoted = serde_json::to_string(s).unwrap_or_default();
            f.write_str(&quoted[1..quoted.len() - 1])?;
        }
        Value::None => {}
        other => write_json(f, other)?,
    }
    Ok(())
}

fn format_raw(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    f.write_str(&plain(v))?;
    Ok(())
}

fn format_header(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    let text: String = plain(v).chars().filter(|c| !c.is_control()).collect();
    f.write_str(&text)?;
    Ok(())
}

fn format_url(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    f.write_str(&percent_encode(plain(v).as_bytes(), false))?;
    Ok(())
}

fn format_form(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    f.write_str(&percent_encode(plain(v).as_bytes(), true))?;
    Ok(())
}

/// Percent-encodes all but RFC 3986 unreserved characters; `form` writes a space as `+`.
pub fn percent_encode(bytes: &[u8], form: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            b' ' if form => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: Context, vars: &Value) -> String {
        Template::compile(src, ctx).unwrap().render(vars).unwrap()
    }

    #[test]
    fn json_context_keeps_hostile_keys_inside_the_string() {
        for key in [r#"a"b\c"#, r#"x", "admin": true"#, "line\nbreak\u{0}", "é ✓"] {
            let out = render(r#"{"key":"{{ key }}"}"#, Context::Json, &lookup_vars("demo", key, "id"));
            let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(parsed, serde_json::json!({ "key": key }), "{out}");
        }
    }

    #[test]
    fn json_formatter_writes_a_quoted_value() {
        let out = render(r#"{"key":{{ key | json }}}"#, Context::Json, &lookup_vars("demo", r#"q"q"#, "id"));
        assert_eq!(out, r#"{"key":"q\"q" }"#);
    }

    #[test]
    fn policy_key_is_the_attribute_object() {
        let attrs: BTreeMap<String, String> =
            [("sender", "a@b"), ("recipient", "c\"d")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let vars = policy_vars("pol", &attrs, "id");
        assert_eq!(render("{{ key }}", Context::Json, &vars), r#"{"recipient":"c\"d","sender":"a@b"}"#);
        assert_eq!(render("{{ sender }}|{{ helo_name }}|{{ attrs.recipient }}", Context::Raw, &vars), "a@b||c\"d");
    }

    #[test]
    fn url_header_and_form_escaping() {
        let vars = lookup_vars("demo", "a b/../c?d=e&f\r\nX: y", "id");
        assert_eq!(
            render("http://h/u/{{ key }}", Context::Url, &vars),
            "http://h/u/a%20b%2F..%2Fc%3Fd%3De%26f%0D%0AX%3A%20y"
        );
        assert_eq!(render("k={{ key }}", Context::Header, &vars), "k=a b/../c?d=e&fX: y");
        assert_eq!(render("k={{ key }}", Context::Form, &vars), "k=a+b%2F..%2Fc%3Fd%3De%26f%0D%0AX%3A+y");
        assert_eq!(render("{{ key | raw }}", Context::Url, &vars), "a b/../c?d=e&f\r\nX: y");
    }

    #[test]
    fn filters() {
        let vars = lookup_vars("demo", "User@Example.ORG", "id");
        assert_eq!(
            render(
                "{{ key | lower }} {{ key | upper }} {{ key | localpart }} {{ key | domain | lower }}",
                Context::Raw,
                &vars
            ),
            "user@example.org USER@EXAMPLE.ORG User example.org"
        );
        assert_eq!(render("{{ key | urlencode }}", Context::Json, &vars), "User%40Example.ORG");
    }

    #[test]
    fn go_field_references_are_rewritten() {
        assert_eq!(from_go(r#"{"key":"{{ .Key }}"}"#).unwrap(), r#"{"key":"{{ key }}"}"#);
        assert_eq!(from_go("{{.Key}} {{- .Name -}}").unwrap(), "{{ key }} {{ name }}");
        assert_eq!(from_go("{{ key | json }}").unwrap(), "{{ key | json }}");
        for go in [r#"{{ printf "%q" .Key }}"#, "{{ if .Key }}x{{ end }}", "{{ .Key | js }}", "{{ range .X }}"] {
            assert!(from_go(go).is_err(), "{go}");
        }
    }

    #[test]
    fn unknown_variable_is_an_error() {
        let t = Template::compile("{{ nope }}", Context::Raw).unwrap();
        assert!(t.render(&lookup_vars("m", "k", "id")).is_err());
    }
}
