//! Config loading: any text, as YAML and as JSON, must load or be refused with diagnostics,
//! never panic or hang. A config that loads must be usable: every entry's templates render
//! with a hostile key without panicking, and what `check` accepted can be sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfxhttp::config::{self, Config, Entry, Format, Kind};
use pfxhttp::template;
use std::collections::BTreeMap;

const HOSTILE: &str = "a\"b\\c\r\nX-Injected: 1\0\u{7f}\u{85} é/../?#%zz{{ key }}@Example.ORG";

fn check_entry(e: &Entry, kind: Kind) {
    assert!(!e.targets.is_empty(), "{}: no target", e.name);
    assert!(!e.retry.timeout.is_zero() && !e.retry.deadline.is_zero() && e.retry.max_attempts >= 1);
    assert!(
        reqwest::header::HeaderValue::from_str(&e.request.user_agent).is_ok(),
        "user_agent {:?}",
        e.request.user_agent
    );
    assert!(
        reqwest::header::HeaderValue::from_str(&e.request.content_type).is_ok(),
        "content_type {:?}",
        e.request.content_type
    );
    if kind == Kind::Policy {
        let a = &e.answer.default_action;
        assert!(!a.is_empty() && a.trim() == a && !a.chars().any(char::is_control), "default_action {a:?}");
    }
    let samples = match kind {
        Kind::Map => vec![
            template::lookup_vars(&e.name, "user@example.org", "0123456789abcdef"),
            template::lookup_vars(&e.name, HOSTILE, "0123456789abcdef"),
        ],
        Kind::Policy => {
            let sample = BTreeMap::from([
                ("request".to_string(), "smtpd_access_policy".to_string()),
                ("recipient".to_string(), "user@example.org".to_string()),
            ]);
            let hostile = BTreeMap::from([
                ("recipient".to_string(), HOSTILE.to_string()),
                ("sender".to_string(), HOSTILE.to_string()),
                (HOSTILE.to_string(), HOSTILE.to_string()),
            ]);
            vec![
                template::policy_vars(&e.name, &sample, "0123456789abcdef"),
                template::policy_vars(&e.name, &hostile, "0123456789abcdef"),
            ]
        }
        // SASL services are not entries of socket_maps or policy_services.
        Kind::Sasl => Vec::new(),
    };
    for (i, vars) in samples.iter().enumerate() {
        // The first sample is the one the loader tried: what it accepted must work with it.
        let loader_sample = i == 0;
        for t in &e.targets {
            match t.template.render(vars) {
                Ok(url) if loader_sample => {
                    let parsed = reqwest::Url::parse(&url).unwrap_or_else(|err| panic!("target {url:?}: {err}"));
                    assert!(matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some(), "{url:?}");
                    // A target without variables is parsed once at load; it must be that URL.
                    if let Some(fixed) = &t.fixed {
                        assert_eq!(fixed, &parsed, "fixed target");
                    }
                }
                Ok(url) => {
                    if let Some(fixed) = &t.fixed {
                        assert_eq!(fixed.as_str(), reqwest::Url::parse(&url).unwrap().as_str(), "fixed target");
                    }
                }
                Err(err) => assert!(!loader_sample, "target of {} fails on the sample: {err}", e.name),
            }
        }
        for (name, t) in &e.request.headers {
            match t.render(vars) {
                // What the loader accepted can be sent. With a hostile key, `{{ key | raw }}` may
                // render a line break: lookup.rs refuses to send that (HeaderValue checks it),
                // so only the default escaping must give a sendable value.
                Ok(v) if loader_sample || !t.source().contains('|') => {
                    assert!(reqwest::header::HeaderValue::from_str(&v).is_ok(), "header {name}: {v:?} cannot be sent")
                }
                Ok(_) => {}
                Err(err) => assert!(!loader_sample, "header {name} fails on the sample: {err}"),
            }
        }
        if let Some(p) = &e.request.payload {
            let rendered = p.render(vars);
            assert!(rendered.is_ok() || !loader_sample, "payload fails on the sample: {rendered:?}");
        }
    }
}

fn check(c: &Config) {
    assert!(!c.maps.is_empty() || !c.policies.is_empty());
    assert!(c.limits.max_request_bytes >= 64 && c.limits.max_policy_attributes >= 1);
    for (list, kind) in [(&c.maps, Kind::Map), (&c.policies, Kind::Policy)] {
        for e in list {
            check_entry(e, kind);
            assert!(e.client < c.clients.len());
        }
        for (i, a) in list.iter().enumerate() {
            assert!(list[..i].iter().all(|b| !b.name.eq_ignore_ascii_case(&a.name)), "{} twice", a.name);
        }
    }
    for e in &c.maps {
        assert!(c.map(&e.name.to_ascii_uppercase()).is_some());
    }
}

/// Whether a string in the document could name a special file. `http_auth_basic_file` is read
/// at load: /dev/zero would read forever, /dev/stdin, /proc/self/fd/0 or a FIFO under /run would
/// wait. The strings are looked at after YAML/JSON decoding, so escapes (`"\x2Fdev"`) count.
fn special_file(v: &serde_yaml::Value) -> bool {
    use serde_yaml::Value;
    match v {
        Value::String(s) => {
            let s = s.to_ascii_lowercase();
            ["dev", "proc", "sys", "run", "fd"].iter().any(|p| s.contains(p))
        }
        Value::Sequence(items) => items.iter().any(special_file),
        Value::Mapping(m) => m.iter().any(|(k, v)| special_file(k) || special_file(v)),
        Value::Tagged(t) => special_file(&t.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for format in [Format::Yaml, Format::Json, Format::Toml] {
        // The document as load_str decodes it; what does not decode is refused without reading.
        let decoded = config::parse(&text, format).ok();
        if decoded.as_ref().is_some_and(special_file) {
            continue;
        }
        let loaded = config::load_str(&text, format, "fuzz");
        match &loaded.config {
            Ok(c) => check(c),
            Err(errors) => assert!(!errors.is_empty(), "refused without an error"),
        }
    }
});
