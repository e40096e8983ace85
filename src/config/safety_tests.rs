//! What `check` must catch beyond plain validity: settings that weaken security, and files
//! that would cost a serving process far more than their size.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

const DEMO: &str = "socket_maps:\n  demo: { target: 'http://127.0.0.1:8080/x', value_field: result }\n";

fn load(yaml: &str) -> Loaded {
    load_str(yaml, Format::Yaml, "test.yml")
}

/// The skip_verify warnings of a config: (path, message).
fn skip_verify_warnings(yaml: &str) -> Vec<(String, String)> {
    let loaded = load(yaml);
    assert!(loaded.config.is_ok(), "{:?}", loaded.config.as_ref().err());
    let split = |w: &String| w.split_once(": ").map(|(p, m)| (p.to_string(), m.to_string())).unwrap();
    loaded.warnings.iter().filter(|w| w.contains("skip_verify")).map(split).collect()
}

#[test]
fn skip_verify_warns_the_same_in_every_spelling_and_place() {
    let tls = skip_verify_warnings(&format!("server:\n  tls: {{ skip_verify: true }}\n{DEMO}"));
    assert_eq!(tls.len(), 1, "{tls:?}");
    let message = &tls[0].1;
    for (server, path) in [
        ("tls: { http_client_skip_verify: true }", "server.tls"),
        ("http_client: { skip_verify: true }", "server.http_client"),
        ("http_client: { http_client_skip_verify: true }", "server.http_client"),
    ] {
        let got = skip_verify_warnings(&format!("server:\n  {server}\n{DEMO}"));
        assert_eq!(got, [(path.to_string(), message.clone())], "{server}");
    }
    let entry = "socket_maps:\n  demo:\n    target: http://127.0.0.1/x\n    value_field: result\n";
    let got = skip_verify_warnings(&format!("{entry}    http_client: {{ skip_verify: true }}\n"));
    assert_eq!(got, [("socket_maps.demo.http_client".to_string(), message.clone())]);
    assert_eq!(skip_verify_warnings(&format!("server:\n  http_client: {{ skip_verify: false }}\n{DEMO}")), []);
}

#[test]
fn proxy_schemes_reqwest_would_ignore_are_errors() {
    for scheme in ["ftp", "socks5", "socks5h", "socks4", "socks4a"] {
        let url = format!("{scheme}://proxy.example:1080");
        let errors =
            load(&format!("server:\n  http_client: {{ proxy: '{url}' }}\n{DEMO}")).config.err().unwrap_or_default();
        assert!(
            errors.iter().any(|e| e.starts_with("server.http_client.proxy: ") && e.contains(&format!("{scheme:?}"))),
            "{url}: {errors:?}"
        );
        let entry = format!("socket_maps:\n  demo: {{ target: 'http://a/x', value_field: r, proxy: '{url}' }}\n");
        let errors = load(&entry).config.err().unwrap_or_default();
        assert!(errors.iter().any(|e| e.starts_with("socket_maps.demo.proxy: ")), "{url}: {errors:?}");
    }
    for url in ["http://proxy.example:3128", "https://user:pw@proxy.example", ""] {
        let loaded = load(&format!("server:\n  http_client: {{ proxy: '{url}' }}\n{DEMO}"));
        assert!(loaded.config.is_ok(), "{url}: {:?}", loaded.config.as_ref().err());
    }
}

/// A config file in a temp dir with `mode`, loaded.
fn load_file(yaml: &str, mode: u32, dir: &std::path::Path) -> Loaded {
    let path = dir.join("pfxhttp.yml");
    std::fs::write(&path, yaml).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    super::load(&path, Format::Yaml)
}

const SECRETS: &str = r#"server:
  http_client: { proxy: "http://squid:proxypw@127.0.0.1:3128" }
socket_maps:
  basic: { target: http://a/x, value_field: r, http_auth_basic: "user:basicpw" }
  jwt:
    target: http://a/x
    value_field: r
    jwt_auth:
      token_endpoint: http://a/token?api_key=tokpw
      credentials: { username: admin, password: jwtpw }
  oidc:
    target: http://a/x
    value_field: r
    backend_oidc_auth: { token_endpoint: http://a/token, client_id: pfx, client_secret: oidcpw }
policy_services:
  hdr:
    target: http://a/x
    value_field: r
    custom_headers: ["Authorization: Bearer hdrpw", "X-Trace: 1", "X-API-Key: keypw"]
"#;

const SECRET_PATHS: &[&str] = &[
    "server.http_client.proxy",
    "socket_maps.basic.http_auth_basic",
    "socket_maps.jwt.jwt_auth.token_endpoint",
    "socket_maps.jwt.jwt_auth.credentials.password",
    "socket_maps.oidc.backend_oidc_auth.client_secret",
    "policy_services.hdr.custom_headers[0]",
    "policy_services.hdr.custom_headers[2]",
];

#[test]
fn inline_secrets_in_a_file_others_can_read_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load_file(SECRETS, 0o644, dir.path());
    assert!(loaded.config.is_ok(), "{:?}", loaded.config.as_ref().err());
    let warnings: Vec<&String> = loaded.warnings.iter().filter(|w| w.contains("0644")).collect();
    assert_eq!(warnings.len(), 1, "{:?}", loaded.warnings);
    let w = warnings[0];
    assert!(w.starts_with(&format!("{}: ", dir.path().join("pfxhttp.yml").display())), "{w}");
    for path in SECRET_PATHS {
        assert!(w.contains(path), "{path} missing: {w}");
    }
    for not_secret in ["credentials.username", "custom_headers[1]"] {
        assert!(!w.contains(not_secret), "{not_secret}: {w}");
    }
    assert!(w.contains("_file"), "suggests the *_file forms: {w}");
    for pw in ["proxypw", "basicpw", "tokpw", "jwtpw", "oidcpw", "hdrpw", "keypw"] {
        assert!(!loaded.warnings.concat().contains(pw), "secret {pw} in a warning");
    }

    // Group-readable only: no warning, nor for secrets kept in files.
    let quiet = |l: &Loaded| !l.warnings.iter().any(|w| w.contains("mode 0"));
    assert!(quiet(&load_file(SECRETS, 0o640, dir.path())), "group-readable is the usual root:postfix 0640");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "user:pw").unwrap();
    let files = format!(
        "socket_maps:\n  demo: {{ target: http://a/x, value_field: r, http_auth_basic_file: '{}' }}\n",
        pw.display()
    );
    let loaded = load_file(&files, 0o644, dir.path());
    assert!(loaded.config.is_ok() && quiet(&loaded), "{:?}", loaded.warnings);
}

/// User info, and a secret-looking parameter with a value written out, are secrets in a URL; a
/// value that is only a template expression is not.
#[test]
fn secrets_in_a_url_as_written() {
    use super::auth::url_holds_secret;
    let secret = [
        "https://u:URLPW@api.example/x",
        "https://TOKEN@api.example/x",
        "https://api.example/x?a=1&api_key=abc",
        "https://api.example/{{ key }}?a=1;pin=1234",
        "https://api.example/x?token=pre{{ key }}",
        "https://api.example/x#access_token=abc",
        "https://api.example/x?P%41SSWORD=abc",
    ];
    for url in secret {
        assert!(url_holds_secret(url), "{url}");
    }
    let harmless = [
        "https://api.example/x",
        "https://api.example/a@b/x?user=a@b",
        "https://api.example/x?k=abc&format=json",
        "https://api.example/x?token={{ key }}&session={{ .Key }}&sig=",
        "https://api.example/x?auth={% if key %}{{ key }}{% endif %}",
    ];
    for url in harmless {
        assert!(!url_holds_secret(url), "{url}");
    }
}

#[test]
fn a_file_over_1_mib_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!("{DEMO}#{}\n", "x".repeat(1 << 20));
    for format in [Format::Yaml, Format::Json] {
        let path = dir.path().join("big.yml");
        std::fs::write(&path, &big).unwrap();
        let loaded = super::load(&path, format);
        let errors = loaded.config.err().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(&format!("{}: ", path.display())), "{errors:?}");
        assert!(
            errors[0].contains("1 MiB") && !errors[0].contains("YAML") && !errors[0].contains("JSON"),
            "{errors:?}"
        );
    }
    // Just under the limit still loads.
    let fits = format!("{DEMO}#{}\n", "x".repeat((1 << 20) - DEMO.len() - 2));
    assert_eq!(fits.len(), 1 << 20);
    assert!(load(&fits).config.is_ok());
}

/// One anchor of `anchor_bytes` repeated `times` times by alias.
fn alias_bomb(anchor_bytes: usize, times: usize) -> String {
    let aliases = vec!["*a"; times].join(", ");
    format!("{DEMO}x-big: &a \"{}\"\nx-list: [{aliases}]\n", "x".repeat(anchor_bytes))
}

#[test]
fn aliases_expanding_beyond_the_bound_are_refused_quickly() {
    // 512 KiB written once, 300 times over by alias: 150 MiB expanded.
    let bomb = alias_bomb(512 << 10, 300);
    assert!(bomb.len() < 1 << 20);
    let started = Instant::now();
    let errors = load(&bomb).config.err().unwrap_or_default();
    assert!(started.elapsed().as_secs() < 2, "took {:?}", started.elapsed());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("test.yml: ") && errors[0].contains("4 MiB"), "{errors:?}");

    // Many small aliases: the node count is bounded as well.
    let nodes =
        format!("{DEMO}x-small: &s [{}]\nx-many: [{}]\n", vec!["1"; 1000].join(","), vec!["*s"; 2000].join(","));
    let errors = load(&nodes).config.err().unwrap_or_default();
    assert!(errors.len() == 1 && errors[0].contains("nodes"), "{errors:?}");

    // Modest use of aliases is fine (the unknown keys are the only errors).
    let errors = load(&alias_bomb(1000, 100)).config.err().unwrap_or_default();
    assert!(errors.iter().all(|e| e.contains("unknown key")), "{errors:?}");
}

#[test]
fn defaults_merged_into_many_entries_are_bounded_too() {
    let payload = "x".repeat(100 << 10);
    let entries: String = (0..100).map(|i| format!("  e{i}: {{}}\n")).collect();
    let yaml =
        format!("socket_maps:\n  defaults: {{ target: http://a/x, value_field: r, payload: '{payload}' }}\n{entries}");
    let errors = load(&yaml).config.err().unwrap_or_default();
    assert!(errors.iter().any(|e| e.starts_with("socket_maps.defaults: ") && e.contains("4 MiB")), "{errors:?}");
    let few: String = (0..10).map(|i| format!("  e{i}: {{}}\n")).collect();
    let yaml =
        format!("socket_maps:\n  defaults: {{ target: http://a/x, value_field: r, payload: '{payload}' }}\n{few}");
    assert!(load(&yaml).config.is_ok());
}

#[test]
fn deeply_nested_flow_collections_are_refused_before_parsing() {
    // 20,000 levels took the YAML parser seconds (quadratic) before its own recursion limit
    // ("recursion limit exceeded"); the depth is now checked first.
    let deep = format!("{DEMO}x: {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let errors = load(&deep).config.err().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("nested more than 64 deep at line"), "{errors:?}");
    let braces = format!("{DEMO}x: {}\n", "{a: ".repeat(100));
    assert!(load(&braces).config.err().unwrap_or_default()[0].contains("nested more than 64 deep"));
    // Templates and ordinary nesting are far from it.
    let fine = format!("{DEMO}x-nested: [[[[{{a: [1, {{b: '{{{{ key }}}}'}}]}}]]]]\n");
    let errors = load(&fine).config.err().unwrap_or_default();
    assert!(errors.iter().all(|e| e.contains("unknown key")), "{errors:?}");
}
