//! Templates: realistic sources in every context, rendered with a hostile key.
//!
//! The first input byte picks a filter and a mode, the rest is the key (bytes, read as UTF-8
//! with replacement, as a lookup key is). Each context must keep what template.rs promises:
//! JSON string content stays inside its string, URL parts are percent-encoded, header values
//! lose control characters, form values are form-encoded. One mode in eight compiles the rest
//! as a template source instead, which must never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfxhttp::template::{self, Context, Template};
use std::collections::BTreeMap;

const FILTERS: [&str; 5] = ["", " | lower", " | upper", " | localpart", " | domain"];

fn apply(filter: &str, key: &str) -> String {
    match filter {
        "" => key.to_string(),
        " | lower" => key.to_lowercase(),
        " | upper" => key.to_uppercase(),
        " | localpart" => key.rsplit_once('@').map_or(key, |(l, _)| l).to_string(),
        " | domain" => key.rsplit_once('@').map_or("", |(_, d)| d).to_string(),
        _ => unreachable!(),
    }
}

fn render(source: &str, ctx: Context, vars: &upon::Value) -> String {
    let t = Template::compile(source, ctx).unwrap_or_else(|e| panic!("{source:?} does not compile: {e}"));
    t.render(vars).unwrap_or_else(|e| panic!("{source:?} does not render: {e}"))
}

fn percent_decode(s: &str, form: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn json_context(key: &str, filter: &str, vars: &upon::Value) {
    let want = apply(filter, key);
    let sources = [
        format!(r#"{{"key":"{{{{ key{filter} }}}}"}}"#),
        format!(r#"{{"key":{{{{ key{filter} | json }}}}}}"#),
        format!(r#"{{ "name": "{{{{ name }}}}", "key": "{{{{ key{filter} }}}}" }}"#),
    ];
    for source in &sources {
        let out = render(source, Context::Json, vars);
        let parsed: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{source:?} rendered {out:?}: {e}"));
        assert_eq!(parsed["key"].as_str(), Some(want.as_str()), "{source:?} rendered {out:?}");
    }
    // A Go pfxhttp payload, rewritten at load.
    let go = template::from_go(r#"{"key":"{{ .Key }}","map":"{{ .Name }}"}"#).unwrap();
    let out = render(&go, Context::Json, vars);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["key"].as_str(), Some(key));
}

fn url_context(key: &str, filter: &str, vars: &upon::Value) {
    let want = apply(filter, key);
    let source = format!("http://h/x/{{{{ key{filter} }}}}?q={{{{ key{filter} | urlencode }}}}");
    let out = render(&source, Context::Url, vars);
    let (path, query) = out.strip_prefix("http://h/x/").unwrap().split_once("?q=").expect("the query moved");
    for part in [path, query] {
        assert!(part.bytes().all(|b| unreserved(b) || b == b'%'), "{part:?} is not percent-encoded");
        assert_eq!(percent_decode(part, false), want.as_bytes());
    }
    // reserved and unreserved characters only, nothing a URL parser would rewrite
    assert!(out.bytes().all(|b| unreserved(b) || b":/?#[]@!$&'()*+,;=%".contains(&b)), "{out:?}");
    let url = reqwest::Url::parse(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(url.host_str(), Some("h"));
    // A key of `.` or `..` is a dot segment that URL parsing resolves; lookup.rs refuses such
    // keys before parsing, so only other paths must come through unchanged.
    if path != "." && path != ".." {
        assert_eq!(url.path(), format!("/x/{path}"));
    }
    assert_eq!(url.query(), Some(format!("q={query}").as_str()));

    let go = template::from_go("https://api.example.org/v1/{{ .Name }}/{{ .Key }}").unwrap();
    let out = render(&go, Context::Url, vars);
    let last = out.rsplit_once('/').unwrap().1;
    assert_eq!(percent_decode(last, false), key.as_bytes());
}

fn header_context(key: &str, filter: &str, vars: &upon::Value) {
    let want: String = apply(filter, key).chars().filter(|c| !c.is_control()).collect();
    let out = render(&format!("Bearer {{{{ key{filter} }}}}"), Context::Header, vars);
    assert!(!out.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0), "{out:?}");
    assert_eq!(out, format!("Bearer {want}"));
    assert!(reqwest::header::HeaderValue::from_str(&out).is_ok(), "not a header value: {out:?}");
}

fn form_context(key: &str, filter: &str, vars: &upon::Value) {
    let want = apply(filter, key);
    let out = render(&format!("user={{{{ key{filter} }}}}&grant_type=password"), Context::Form, vars);
    let value = out.strip_prefix("user=").unwrap().strip_suffix("&grant_type=password").expect("a field moved");
    assert!(value.bytes().all(|b| unreserved(b) || b == b'%' || b == b'+'), "{value:?}");
    assert_eq!(percent_decode(value, true), want.as_bytes());
}

fn raw_context(key: &str, filter: &str, vars: &upon::Value) {
    assert_eq!(render(&format!("{{{{ key{filter} }}}}"), Context::Raw, vars), apply(filter, key));
}

/// Policy requests: `key` and `attrs` are the attributes as one JSON object.
fn policy(key: &str) {
    let attrs: BTreeMap<String, String> = key
        .split('\n')
        .filter_map(|l| l.split_once('='))
        .filter(|(n, _)| !n.is_empty())
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let vars = template::policy_vars("pol", &attrs, "0123456789abcdef");
    let want: serde_json::Map<String, serde_json::Value> =
        attrs.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let sender = attrs.get("sender").map_or("", String::as_str);
    for (source, nested) in
        [("{{ key }}", false), ("{{ key | json }}", false), (r#"{"attrs":{{ attrs }},"sender":"{{ sender }}"}"#, true)]
    {
        let out = render(source, Context::Json, &vars);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
        let obj = if nested {
            assert_eq!(parsed["sender"].as_str(), Some(sender), "{source:?} rendered {out:?}");
            &parsed["attrs"]
        } else {
            &parsed
        };
        assert_eq!(obj.as_object(), Some(&want), "{source:?} rendered {out:?}");
    }
    let out = render("http://h/p?s={{ sender }}&a={{ attrs }}", Context::Url, &vars);
    assert!(out.bytes().all(|b| unreserved(b) || b":/?#[]@!$&'()*+,;=%".contains(&b)), "{out:?}");
}

/// Any source: compiling and rendering may fail, but only with an error.
fn any_source(source: &str) {
    let lookup = template::lookup_vars("demo", "user@example.org", "0123456789abcdef");
    let attrs = BTreeMap::from([("recipient".to_string(), "user@example.org".to_string())]);
    let policy = template::policy_vars("pol", &attrs, "0123456789abcdef");
    let Ok(source) = template::from_go(source) else { return };
    for ctx in [Context::Json, Context::Url, Context::Header, Context::Form, Context::Raw] {
        if let Ok(t) = Template::compile(&source, ctx) {
            let _ = t.render(&lookup);
            let _ = t.render(&policy);
            let _ = t.source();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let key = String::from_utf8_lossy(rest);
    if selector % 8 == 7 {
        any_source(&key);
        return;
    }
    let filter = FILTERS[usize::from(selector / 8) % FILTERS.len()];
    let vars = template::lookup_vars("demo", &key, "0123456789abcdef");
    json_context(&key, filter, &vars);
    url_context(&key, filter, &vars);
    header_context(&key, filter, &vars);
    form_context(&key, filter, &vars);
    raw_context(&key, filter, &vars);
    policy(&key);
});
