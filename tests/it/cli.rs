//! The interactive commands (`--version`, `--help`, `check`, `query`, `policy-query`), config
//! compatibility with the Go pfxhttp, and the config search path (`docs/design.md#configuration`).

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// Bound for every run.
const T: Duration = Duration::from_secs(5);

/// base64 of `user:secretpw`.
const BASIC_B64: &str = "dXNlcjpzZWNyZXRwdw==";

/// `pfxhttp --config CFG ARGS...` with `stdin`.
fn pfx(cfg: &Config, args: &[&str], stdin: &[u8]) -> Output {
    cfg.run_command(args, stdin, T)
}

/// Whether some line of `text` contains all of `words`.
fn has_line(text: &str, words: &[&str]) -> bool {
    text.lines().any(|l| words.iter().all(|w| l.contains(w)))
}

/// Backend for `demo` maps: `found@x` → `{"result":"value here"}`, anything else `{}`.
fn map_backend() -> Backend {
    Backend::start(|r| {
        if r.body_json()["key"] == "found@x" {
            Reply::json(200, r#"{"result":"value here"}"#)
        } else {
            Reply::json(200, "{}")
        }
    })
}

/// Map `demo` at `url` (see [`Config::map`]), and nothing else.
fn demo_cfg(url: &str) -> Config {
    Config::bare().map("demo", url)
}

// ------------------------------------------------------------------ version, help

/// `--version` prints `pfxhttp <version>`.
#[test]
fn version() {
    let out = run(&["--version"], b"", T);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str(), format!("pfxhttp {}\n", env!("CARGO_PKG_VERSION")));
    assert!(out.stderr.is_empty(), "{out:?}");
}

/// `--help` lists every command.
#[test]
fn help_lists_the_commands() {
    let out = run(&["--help"], b"", T);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let text = out.stdout_str();
    for command in ["socketmap", "policy", "tcp", "check", "query", "policy-query"] {
        assert!(
            text.lines().any(|l| l.split_whitespace().next() == Some(command)),
            "--help does not list {command}:\n{text}"
        );
    }
}

// ------------------------------------------------------------------ check

/// A valid config: an OK line on stdout, exit 0.
#[test]
fn check_accepts_a_valid_config() {
    let cfg = demo_cfg("http://127.0.0.1:8080/lookup");
    let out = pfx(&cfg, &["check"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(has_line(&out.stdout_str(), &["OK"]), "{out:?}");
    assert!(!out.stderr_str().contains("error"), "{out:?}");
}

/// Several errors: exit 78 and every one of them on stderr with its YAML path.
#[test]
fn check_reports_every_error_with_its_path() {
    let cfg = Config::text(
        r#"server:
  http_client:
    timeout: 5 parsecs
socket_maps:
  demo:
    target: http://127.0.0.1:1/x
    value_field: result
    bogus_key: 1
  notarget:
    value_field: result
policy_services:
  pol:
    target: http://127.0.0.1:1/p
    value_field: action
    payload: '{{ printf "%q" .Key }}'
"#,
    );
    let out = pfx(&cfg, &["check"], b"");
    assert_eq!(out.code(), Some(78), "{out:?}");
    let err = out.stderr_str();
    for path in [
        "server.http_client.timeout",
        "socket_maps.demo.bogus_key",
        "socket_maps.notarget",
        "policy_services.pol.payload",
    ] {
        assert!(has_line(&err, &["error", path]), "no error line for {path}:\n{err}");
    }
    assert!(has_line(&err, &["policy_services.pol.payload", "{{ key"]), "no hint what to write instead:\n{err}");
    assert!(!has_line(&out.stdout_str(), &["OK"]), "{out:?}");
}

/// Daemon-only keys are warnings, not errors.
#[test]
fn check_warns_about_daemon_only_keys() {
    let cfg = Config::text(
        r#"server:
  listen:
    - { kind: socket_map, name: demo, type: tcp, address: 127.0.0.1, port: 23450 }
  worker_pool: { max_workers: 8 }
  run_as_user: pfxhttp
  response_cache: { enabled: true, ttl: 300s }
dovecot_sasl:
  dovecot:
    target: https://nauthilus.example/api/v1/auth/json
socket_maps:
  demo:
    target: http://127.0.0.1:8080/lookup
    value_field: result
"#,
    );
    let out = pfx(&cfg, &["check"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let err = out.stderr_str();
    for path in ["server.listen", "server.worker_pool", "server.run_as_user"] {
        assert!(has_line(&err, &["warning", path]), "no warning for {path}:\n{err}");
    }
    // The Go pfxhttp's response cache is honoured, not ignored.
    assert!(!has_line(&err, &["warning", "server.response_cache"]), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("error")), "{err}");
    assert!(has_line(&out.stdout_str(), &["OK"]), "{out:?}");
}

/// `--format json` reads a JSON config (and refuses YAML).
#[test]
fn check_and_query_with_a_json_config() {
    let b = map_backend();
    let json = serde_json::json!({
        "socket_maps": { "demo": {
            "target": b.url("/lookup"),
            "payload": "{\"key\":\"{{ key }}\"}",
            "value_field": "result",
        }}
    });
    let dir = temp_dir();
    let path = dir.path().join("pfxhttp.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let p = path.to_str().unwrap();
    let out = run(&["--config", p, "--format", "json", "check"], b"", T);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(has_line(&out.stdout_str(), &["OK"]), "{out:?}");
    let out = run(&["--format", "json", "--config", p, "query", "demo", "found@x"], b"", T);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str(), "OK value here\n");

    // --format decides for a name that does not say the format itself.
    let conf = dir.path().join("pfxhttp.conf");
    std::fs::write(&conf, demo_cfg(&b.url("/lookup")).yaml()).unwrap();
    let out = run(&["--config", conf.to_str().unwrap(), "--format", "json", "check"], b"", T);
    assert_eq!(out.code(), Some(78), "YAML is not JSON: {out:?}");
}

/// A missing config file is a configuration error (78).
#[test]
fn check_missing_file() {
    let dir = temp_dir();
    let missing = dir.path().join("nope.yml");
    let out = run(&["--config", missing.to_str().unwrap(), "check"], b"", T);
    assert_eq!(out.code(), Some(78), "{out:?}");
    assert!(out.stderr_str().contains("nope.yml"), "{out:?}");
}

// ------------------------------------------------------------------ compatibility

/// A Go pfxhttp v1.1 file (listeners, jwt_db_path, pool keys, `DemoMap`, `{{ .Key }}`) passes
/// `check` with warnings and serves socketmap and policy lookups.
#[test]
fn go_v1_1_config_works_end_to_end() {
    let b = Backend::start(|r| match r.path() {
        "/api/v1/custom/postfix" => {
            if r.body_json()["key"] == "user@example.org" {
                Reply::json(200, r#"{"demo_value":"mapped@example.org","error":"not-found"}"#)
            } else {
                Reply::json(200, r#"{"error":"not-found"}"#)
            }
        }
        "/api/v1/custom/policy" => Reply::json(200, r#"{"result":"REJECT go v1"}"#),
        _ => Reply::status(404, ""),
    });
    let dir = temp_dir();
    let yaml = format!(
        r#"server:
  listen:
    - kind: socket_map
      name: demo
      type: tcp
      address: 127.0.0.1
      port: 23450
    - kind: policy_service
      name: policy
      type: unix
      address: /run/pfxhttp/policy.sock
      mode: "0660"
  logging:
    json: false
    level: info
  http_client:
    max_connections_per_host: 10
    max_idle_connections: 4
    max_idle_connections_per_host: 1
    idle_connection_timeout: 10s
    timeout: 10s
  tls:
    enabled: true
    http_client_skip_verify: true
  jwt_db_path: {db}
  socketmap_max_reply_size: 100000
socket_maps:
  DemoMap:
    target: {url}/api/v1/custom/postfix
    payload: >
      {{
        "key": "{{{{ .Key }}}}"
      }}
    status_code: 200
    value_field: "demo_value"
    error_field: "error"
    no_error_value: "not-found"
policy_services:
  policy:
    target: {url}/api/v1/custom/policy
    payload: "{{{{ .Key }}}}"
    status_code: 200
    value_field: "result"
"#,
        db = dir.path().join("pfxhttp.db").display(),
        url = b.url(""),
    );
    let cfg = Config::text(&yaml);

    let out = pfx(&cfg, &["check"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let err = out.stderr_str();
    for path in ["server.listen", "server.http_client.max_idle_connections_per_host"] {
        assert!(has_line(&err, &["warning", path]), "no warning for {path}:\n{err}");
    }

    let input = [netstring(b"DemoMap user@example.org"), netstring(b"demomap nobody@example.org")].concat();
    let out = pfx(&cfg, &["socketmap"], &input);
    assert_clean(&out);
    assert_eq!(text(&out.stdout), text(&[netstring(b"OK mapped@example.org"), netstring(b"NOTFOUND ")].concat()));
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body_json(), serde_json::json!({ "key": "user@example.org" }));

    let out = pfx(&cfg, &["policy"], b"request=smtpd_access_policy\nsender=a@b\nrecipient=c@d\n\n");
    assert_clean(&out);
    assert_eq!(text(&out.stdout), "action=REJECT go v1\n\n");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[2].body_str(), r#"{"recipient":"c@d","request":"smtpd_access_policy","sender":"a@b"}"#);
}

/// A Go pfxhttp v2 file (`defaults` with target, status_code and headers; daemon-only sections)
/// passes `check` with warnings; the defaults are merged into the entries.
#[test]
fn go_v2_config_works_end_to_end() {
    let b = Backend::start(|r| match r.path() {
        "/api/v1/custom/postfix" => {
            let key = r.body_json()["key"].as_str().unwrap_or("").to_string();
            Reply::json(201, &serde_json::json!({ "result": format!("v2:{key}") }).to_string())
        }
        "/other" => Reply::json(200, r#"{"result":"other"}"#),
        "/policy" => Reply::json(200, r#"{"result":"OK v2"}"#),
        _ => Reply::status(404, ""),
    });
    let yaml = format!(
        r#"server:
  listen:
    - {{ kind: socket_map, name: maps, type: tcp, address: "[::]", port: 23450 }}
  run_as_user: pfxhttp
  run_as_group: pfxhttp
  logging: {{ json: true, level: debug, use_systemd: true }}
  http_client: {{ timeout: 10s, proxy: "" }}
  tls: {{ enabled: true, skip_verify: false }}
  response_cache: {{ enabled: true, ttl: 300s }}
  worker_pool: {{ max_workers: 8, max_queue: 80 }}
  observability: {{ prometheus_enabled: true, prometheus_port: 9464 }}
dovecot_sasl:
  dovecot:
    target: https://nauthilus.example/api/v1/auth/json
socket_maps:
  defaults:
    target: {url}/api/v1/custom/postfix
    status_code: 201
    custom_headers: ["X-From-Defaults: yes"]
  demo:
    payload: '{{"key":"{{{{ .Key }}}}"}}'
    value_field: result
    custom_headers: ["X-Own: 1"]
  Other:
    target: {url}/other
    status_code: 200
    value_field: result
policy_services:
  policy:
    target: {url}/policy
    payload: '{{{{ .Key }}}}'
    value_field: result
"#,
        url = b.url(""),
    );
    let cfg = Config::text(&yaml);

    let out = pfx(&cfg, &["check"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let err = out.stderr_str();
    for path in ["server.listen", "server.worker_pool", "server.observability"] {
        assert!(has_line(&err, &["warning", path]), "no warning for {path}:\n{err}");
    }

    let input = [netstring(b"demo a@b.example"), netstring(b"OTHER x@y"), netstring(b"Demo c@d")].concat();
    let out = pfx(&cfg, &["socketmap"], &input);
    assert_clean(&out);
    assert_eq!(
        text(&out.stdout),
        text(&[netstring(b"OK v2:a@b.example"), netstring(b"OK other"), netstring(b"OK v2:c@d")].concat())
    );
    let reqs = b.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].header("x-from-defaults"), Some("yes"), "{:?}", reqs[0].headers);
    assert_eq!(reqs[0].header("x-own"), Some("1"), "{:?}", reqs[0].headers);
    assert_eq!(reqs[0].body_json(), serde_json::json!({ "key": "a@b.example" }));
    assert_eq!(reqs[1].header("x-from-defaults"), Some("yes"), "{:?}", reqs[1].headers);

    let out = pfx(&cfg, &["policy"], b"request=smtpd_access_policy\nrecipient=c@d\n\n");
    assert_clean(&out);
    assert_eq!(text(&out.stdout), "action=OK v2\n\n");
    assert_eq!(b.requests()[3].body_str(), r#"{"recipient":"c@d","request":"smtpd_access_policy"}"#);
}

// ------------------------------------------------------------------ query

/// `query`: found → `OK value`, exit 0; not found → `NOTFOUND `, exit 1.
#[test]
fn query_found_and_not_found() {
    let b = map_backend();
    let cfg = demo_cfg(&b.url("/lookup"));
    let out = pfx(&cfg, &["query", "demo", "found@x"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str(), "OK value here\n");
    let out = pfx(&cfg, &["query", "demo", "missing@x"], b"");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout_str(), "NOTFOUND \n");
    assert_eq!(b.request_count(), 2);
}

/// `query` with the backend down: `TEMP …`, exit 75.
#[test]
fn query_backend_down_is_temp() {
    let cfg = demo_cfg(&closed_url("/lookup")).set("connect_timeout", "1s");
    let out = pfx(&cfg, &["query", "demo", "found@x"], b"");
    assert_eq!(out.code(), Some(75), "{out:?}");
    assert!(out.stdout_str().starts_with("TEMP "), "{out:?}");
    assert_eq!(out.stdout_str().lines().count(), 1, "{out:?}");
}

/// `query -v` prints what the backend sent with its control characters escaped: a response
/// header and body holding terminal control sequences reach the terminal as text.
#[test]
fn query_verbose_escapes_what_the_backend_sent() {
    let b = Backend::fixed(
        Reply::json(200, "{\"result\":\"v\",\"x\":\"\\u001b[2J\"}\r\n\u{1b}]0;owned\u{7}")
            .with_header("x-evil", "a\u{9b}31mred"),
    );
    let cfg = demo_cfg(&b.url("/lookup"));
    let out = pfx(&cfg, &["query", "-v", "demo", "found@x"], b"");
    let err = out.stderr_str();
    assert!(!err.chars().any(|c| "\u{1b}\u{7}\r\u{9b}".contains(c)), "raw control characters:\n{err:?}");
    // HTTP allows no C0 control in a header value, but a C1 one (CSI, U+009B) arrives in UTF-8.
    assert!(err.contains("a\\u{9b}31mred"), "the header, escaped:\n{err}");
    assert!(err.contains("\\r\\n\\u{1b}]0;owned\\u{7}"), "the body, escaped:\n{err}");
}

/// `query -v` shows the HTTP request and response on stderr with `Authorization` masked: the
/// password and its base64 form appear nowhere.
#[test]
fn query_verbose_masks_the_authorization_header() {
    let b = Backend::start(|r| {
        if r.header("authorization") == Some(&format!("Basic {BASIC_B64}")) {
            Reply::json(200, r#"{"result":"value here"}"#)
        } else {
            Reply::json(401, r#"{"error":"no auth"}"#)
        }
    });
    let cfg = demo_cfg(&b.url("/lookup")).set("http_auth_basic", "\"user:secretpw\"");
    let out = pfx(&cfg, &["query", "-v", "demo", "found@x"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str(), "OK value here\n");
    let err = out.stderr_str();
    assert!(has_line(&err, &["POST", "/lookup"]), "request line missing:\n{err}");
    assert!(err.to_ascii_lowercase().contains("authorization"), "Authorization header not shown:\n{err}");
    assert!(has_line(&err, &["200"]), "response status missing:\n{err}");
    assert!(err.contains(r#"{"result":"value here"}"#), "response body missing:\n{err}");
    // A member named just `key` is where the default payload puts the lookup key: shown.
    assert!(err.contains(r#"> (17 bytes) {"key":"found@x"}"#), "request body missing:\n{err}");
    for secret in ["secretpw", BASIC_B64, "dXNlcjpzZWNyZXRwdw"] {
        assert!(!err.contains(secret) && !out.stdout_str().contains(secret), "{secret} shown:\n{err}");
    }
    assert_eq!(b.request_count(), 1);
}

/// `query -v` masks the value of every query parameter whose name suggests a secret and of every
/// custom header but a few harmless ones, and says so in one line; the backend gets them all.
#[test]
fn query_verbose_masks_secret_parameters_and_custom_headers() {
    let b = map_backend();
    let params = [
        ("api_key", "Qp1-5ecret"),
        ("token", "Qp2-5ecret"),
        ("key", "Qp3-5ecret"),
        ("secret", "Qp4-5ecret"),
        ("password", "Qp5-5ecret"),
        ("sig", "Qp6-5ecret"),
        ("X-Amz-Credential", "Qp7-5ecret"),
    ];
    let headers = [
        ("X-Pass", "Hd1-5ecret"),
        ("X-Credential", "Hd2-5ecret"),
        ("X-Access", "Hd3-5ecret"),
        ("X-Sig", "Hd4-5ecret"),
        ("X-Tenant-Id", "Hd5-5ecret"),
    ];
    let query: Vec<String> = params.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let url = b.url(&format!("/lookup?format=json&{}&user=u1", query.join("&")));
    let mut lines: Vec<String> = headers.iter().map(|(n, v)| format!("'{n}: {v}'")).collect();
    lines.push("'Accept: application/json'".into());
    let cfg = demo_cfg(&url).set("custom_headers", &format!("[{}]", lines.join(", ")));
    let out = pfx(&cfg, &["query", "-v", "demo", "found@x"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str(), "OK value here\n");
    let err = out.stderr_str();
    let request_line = format!("> POST {}", b.url("/lookup?format=json&api_key=***&token=***&key=***"));
    assert!(err.contains(&request_line), "{request_line:?} missing:\n{err}");
    assert!(err.contains("&secret=***&password=***&sig=***&X-Amz-Credential=***&user=u1\n"), "{err}");
    for (name, _) in headers {
        assert!(err.contains(&format!("> {}: ***\n", name.to_ascii_lowercase())), "{name} not masked:\n{err}");
    }
    assert!(err.contains("> accept: application/json\n"), "{err}");
    assert!(err.contains("> user-agent: pfxhttp/"), "{err}");
    assert_eq!(err.matches(MASKED_NOTE).count(), 1, "{err}");
    assert!(!err.contains("5ecret") && !out.stdout_str().contains("5ecret"), "a secret shown:\n{err}");
    let sent = &b.requests()[0];
    assert_eq!(sent.query(), Some(&format!("format=json&{}&user=u1", query.join("&"))[..]));
    for (name, value) in headers {
        assert_eq!(sent.header(&name.to_ascii_lowercase()), Some(value));
    }
}

/// `query -v` masks every secret-looking parameter, after `&` or `;`, and the secret-looking
/// members of a JSON body and fields of a form body; a body of another type that names a secret
/// is not shown at all. The backend gets everything as configured.
#[test]
fn query_verbose_masks_more_parameter_names_and_the_body() {
    let b = map_backend();
    let names = ["pw", "passwd", "apikey", "hash", "pin", "assertion", "ticket", "id_token"];
    let mut query: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("{n}=Qs{i}-5ecret")).collect();
    query.push("k=Qk-shown".into());
    let query = format!("{};key=Qs8-5ecret&client_assertion=Qs9-5ecret&SAMLResponse=Qs10-5ecret", query.join("&"));
    let url = b.url(&format!("/lookup?{query}&phrase=Qs11-5ecret&a=1"));
    let json = r#"{"key":"{{ key }}","api_key":"Bj1-5ecret","auth":{"password":"Bj2-5ecret"},"user":"u1"}"#;
    let cfg = demo_cfg(&url).set("payload", &q(json));
    let out = pfx(&cfg, &["query", "-v", "demo", "found@x"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    let err = out.stderr_str();
    let masked: Vec<String> = names.iter().map(|n| format!("{n}=***")).collect();
    let shown = format!(
        "/lookup?{}&k=Qk-shown;key=***&client_assertion=***&SAMLResponse=***&phrase=***&a=1\n",
        masked.join("&")
    );
    assert!(err.contains(&shown), "{shown:?} missing:\n{err}");
    assert!(err.contains(r#"> (85 bytes) {"key":"found@x","api_key":"***","auth":"***","user":"u1"}"#), "{err}");
    assert_eq!(err.matches(MASKED_NOTE).count(), 1, "{err}");
    assert!(!err.contains("5ecret"), "a secret shown:\n{err}");
    let sent = &b.requests()[0];
    assert_eq!(sent.query(), Some(&format!("{query}&phrase=Qs11-5ecret&a=1")[..]));
    assert_eq!(sent.body_json()["auth"]["password"], "Bj2-5ecret");

    let form = cfg.set("content_type", "application/x-www-form-urlencoded").set("payload", "'user=u1&otp=Bf1-5ecret'");
    let err = pfx(&form, &["query", "-v", "demo", "found@x"], b"").stderr_str();
    assert!(err.contains("> (22 bytes) user=u1&otp=***\n"), "{err}");
    let plain = form.set("content_type", "text/plain").set("payload", "'user u1, passphrase Bp1-5ecret'");
    let err = pfx(&plain, &["query", "-v", "demo", "found@x"], b"").stderr_str();
    assert!(err.contains("> (30 bytes, not shown: may hold a secret)\n"), "{err}");
    assert!(!err.contains("5ecret"), "a secret shown:\n{err}");
}

/// The transcript's line about masking.
const MASKED_NOTE: &str = "* values shown as *** are masked\n";

// ------------------------------------------------------------------ policy-query

/// Backend for `pol`: `bad@x` is rejected, anything else OK.
fn policy_cfg() -> (Backend, Config) {
    let b = Backend::start(|r| {
        if r.body_json()["recipient"] == "bad@x" {
            Reply::json(200, r#"{"action":"REJECT no such user"}"#)
        } else {
            Reply::json(200, r#"{"action":"OK"}"#)
        }
    });
    let cfg = Config::bare().policy("pol", &b.url("/p"));
    (b, cfg)
}

/// `policy-query SERVICE NAME=VALUE...` prints the backend's action.
#[test]
fn policy_query_with_arguments() {
    let (b, cfg) = policy_cfg();
    let out = pfx(&cfg, &["policy-query", "pol", "recipient=bad@x", "request=smtpd_access_policy"], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str().trim_end(), "action=REJECT no such user", "{out:?}");
    assert_eq!(b.requests()[0].body_str(), r#"{"recipient":"bad@x","request":"smtpd_access_policy"}"#);
}

/// `policy-query SERVICE` reads `name=value` lines from stdin.
#[test]
fn policy_query_from_stdin() {
    let (b, cfg) = policy_cfg();
    let out = pfx(&cfg, &["policy-query", "pol"], b"request=smtpd_access_policy\nrecipient=bad@x\nsender=s@x\n\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str().trim_end(), "action=REJECT no such user", "{out:?}");
    let out = pfx(&cfg, &["policy-query", "pol"], b"request=smtpd_access_policy\nrecipient=good@x\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str().trim_end(), "action=OK", "{out:?}");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body_str(), r#"{"recipient":"bad@x","request":"smtpd_access_policy","sender":"s@x"}"#);
}

// ------------------------------------------------------------------ search path

/// Runs pfxhttp with no `--config` in working directory `cwd` (via /bin/sh, since the harness
/// sets no working directory), with `env`.
fn run_in(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let bin = bin();
    let script = "cd \"$1\" && shift && exec \"$0\" \"$@\"";
    let mut all = vec!["-c", script, bin.to_str().unwrap(), cwd.to_str().unwrap()];
    all.extend_from_slice(args);
    run_program(Path::new("/bin/sh"), &all, env, b"", T)
}

/// Without `--config`: `$HOME/.pfxhttp/pfxhttp.yml` comes before `./pfxhttp.yml`, which is used
/// when nothing else exists; with none, exit 78. (Skipped when a system-wide file exists.)
#[test]
fn config_search_path() {
    for system in ["/usr/local/etc/pfxhttp/pfxhttp.yml", "/etc/pfxhttp/pfxhttp.yml"] {
        if Path::new(system).exists() {
            eprintln!("skipped: {system} exists on this machine");
            return;
        }
    }
    let b = Backend::start(|r| Reply::json(200, &format!(r#"{{"result":"from {}"}}"#, r.path())));
    let cwd_cfg = demo_cfg(&b.url("/cwd"));
    let home = temp_dir();
    std::fs::create_dir(home.path().join(".pfxhttp")).unwrap();
    let home_cfg = demo_cfg(&b.url("/home"));
    std::fs::copy(home_cfg.path(), home.path().join(".pfxhttp/pfxhttp.yml")).unwrap();
    cwd_cfg.path();

    let out = run_in(cwd_cfg.dir(), &[], &["query", "demo", "k@x"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str(), "OK from /cwd\n");

    let h = home.path().to_str().unwrap();
    let out = run_in(cwd_cfg.dir(), &[("HOME", h)], &["query", "demo", "k@x"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout_str(), "OK from /home\n");

    let empty = temp_dir();
    let out = run_in(empty.path(), &[], &["check"]);
    assert_eq!(out.code(), Some(78), "{out:?}");
    assert!(!out.stderr.is_empty(), "{out:?}");
}
