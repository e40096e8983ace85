use super::*;

fn load(yaml: &str) -> Loaded {
    load_str(yaml, Format::Yaml, "test.yml")
}

fn errors(yaml: &str) -> Vec<String> {
    let loaded = load(yaml);
    assert!(loaded.config.is_err(), "expected errors, got a config");
    loaded.config.err().unwrap_or_default()
}

/// The Go pfxhttp v1.1 era: listeners, jwt_auth with a SQLite path, viper-lowercased names.
const GO_V1_1: &str = r#"
server:
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
  jwt_db_path: /tmp/pfxhttp-test.db
  socketmap_max_reply_size: 100000
socket_maps:
  DemoMap:
    target: https://127.0.0.1:9443/api/v1/custom/postfix
    payload: >
      {
        "key": "{{ .Key }}"
      }
    status_code: 200
    value_field: "demo_value"
    error_field: "error"
    no_error_value: "not-found"
    jwt_auth:
      enabled: true
      token_endpoint: "https://127.0.0.1:9443/api/v1/jwt/token"
      credentials:
        username: "admin"
        password: "secret"
      content_type: "application/x-www-form-urlencoded"
policy_services:
  policy:
    target: https://127.0.0.1:9443/api/v1/custom/policy
    payload: "{{ .Key }}"
    status_code: 200
    value_field: "result"
"#;

/// The Go pfxhttp v2 era: backend_oidc_auth, defaults sections, daemon-only sections.
const GO_V2: &str = r#"
server:
  listen:
    - { kind: socket_map, name: maps, type: tcp, address: "[::]", port: 23450 }
  run_as_user: pfxhttp
  run_as_group: pfxhttp
  logging: { json: true, level: debug, use_systemd: true }
  http_client: { timeout: 30s, proxy: "" }
  tls: { enabled: true, skip_verify: false }
  response_cache: { enabled: true, ttl: 300s }
  worker_pool: { max_workers: 8, max_queue: 80 }
  observability: { prometheus_enabled: true, prometheus_port: 9464 }
dovecot_sasl:
  dovecot:
    target: https://nauthilus.example/api/v1/auth/json
socket_maps:
  defaults:
    target: https://nauthilus.example/api/v1/custom/postfix
    status_code: 200
    custom_headers: ["X-From-Defaults: yes"]
    backend_oidc_auth:
      enabled: true
      configuration_uri: https://idp.example/.well-known/openid-configuration
      client_id: pfxhttp
      client_secret: s3cret
      scopes: [nauthilus:read]
  demo:
    payload: '{"key":"{{ .Key }}"}'
    value_field: result
    custom_headers: ["X-Own: 1"]
    oidc_auth: { enabled: true }
"#;

#[test]
fn go_v1_1_config_loads() {
    let loaded = load(GO_V1_1);
    assert!(loaded.config.is_ok(), "{:?}", loaded.config.as_ref().err());
    let config = loaded.config.unwrap();
    let map = config.map("demomap").expect("names match case-insensitively");
    assert!(config.map("DEMOMAP").is_some());
    assert_eq!(map.request.payload.as_ref().unwrap().source().trim(), "{\n  \"key\": \"{{ key }}\"\n}");
    assert!(matches!(map.auth, Some(Auth::Jwt(_))));
    assert_eq!(map.retry.timeout, Duration::from_secs(10));
    assert!(config.clients[map.client].tls.skip_verify, "http_client_skip_verify is an alias");
    assert_eq!(config.state_db, StateDb::File("/tmp/pfxhttp-test.db".into()));
    let warnings = loaded.warnings.join("\n");
    for key in
        ["server.listen", "server.http_client.max_connections_per_host", "server.http_client.idle_connection_timeout"]
    {
        assert!(warnings.contains(key), "no warning for {key}: {warnings}");
    }
}

#[test]
fn go_v2_config_loads_with_defaults_merged() {
    let loaded = load(GO_V2);
    assert!(loaded.config.is_ok(), "{:?}", loaded.config.as_ref().err());
    let config = loaded.config.unwrap();
    let demo = config.map("demo").unwrap();
    assert_eq!(demo.targets.len(), 1, "target comes from defaults");
    assert!(matches!(&demo.auth, Some(Auth::Oidc(o)) if o.client_id == "pfxhttp" && o.scopes == ["nauthilus:read"]));
    let headers: Vec<&str> = demo.request.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(headers, ["x-from-defaults", "x-own"], "defaults' headers first");
    assert!(config.map("defaults").is_none());
    assert_eq!(config.logging.level, Level::Debug);
    assert!(config.logging.json);
    let warnings = loaded.warnings.join("\n");
    // The Go keys give every socket map a stale-if-error window (and no fresh hits).
    let sasl = config.sasl(None).expect("the dovecot_sasl service is read");
    assert_eq!((sasl.entry.name.as_str(), sasl.entry.retry.deadline), ("dovecot", Duration::from_secs(8)));
    assert!(!warnings.contains("dovecot_sasl"), "{warnings}");
    let cache = demo.cache.as_ref().expect("server.response_cache is honoured");
    assert_eq!((cache.ttl, cache.stale_if_error), (Duration::ZERO, Duration::from_secs(300)));
    assert!(!warnings.contains("server.response_cache"), "{warnings}");
    for key in [
        "server.run_as_user",
        "server.worker_pool",
        "server.observability",
        "server.logging.use_systemd",
        "socket_maps.demo.oidc_auth",
    ] {
        assert!(warnings.contains(key), "no warning for {key}: {warnings}");
    }
}

#[test]
fn every_error_is_reported_with_its_path() {
    let errs = errors(
        r#"
server:
  http_client: { timeout: 5 }
  limits: { idle_timeout: soon }
socket_maps:
  a:
    targett: http://x/
    value_field: r
  b:
    target: ftp://x/
    value_field: r
    status_code: 999
    response: xml
policy_services:
  p:
    target: http://x/
    value_field: action
    payload: '{{ printf "%q" .Key }}'
"#,
    );
    let all = errors_joined(&errs);
    for expected in [
        "server.http_client.timeout: invalid duration",
        "server.limits.idle_timeout: invalid duration",
        "socket_maps.a: target is required",
        "socket_maps.a.targett: unknown key",
        "socket_maps.b.target[0]: scheme \"ftp\"",
        "socket_maps.b.status_code: 999 is out of range",
        "socket_maps.b.response: \"xml\" is not one of: json, text, header",
        "policy_services.p.payload: Go template syntax",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert_eq!(errs.len(), 8, "{all}");
}

fn errors_joined(errs: &[String]) -> String {
    errs.join("\n")
}

#[test]
fn names_differing_only_in_case_are_an_error() {
    let errs = errors(
        "socket_maps:\n  Demo: { target: 'http://x/', value_field: r }\n  demo: { target: 'http://x/', value_field: r }\n",
    );
    assert!(errs[0].contains("given twice"), "{errs:?}");
}

#[test]
fn value_field_is_required_except_for_text() {
    let errs = errors("socket_maps:\n  m: { target: 'http://x/' }\n");
    assert!(errs[0].contains("value_field is required"), "{errs:?}");
    assert!(load("socket_maps:\n  m: { target: 'http://x/', response: text }\n").config.is_ok());
}

#[test]
fn template_errors_name_the_entry() {
    let errs = errors("socket_maps:\n  m: { target: 'http://x/{{ nokey }}', value_field: r }\n");
    assert!(errs[0].starts_with("socket_maps.m.target[0]: template error"), "{errs:?}");
}

#[test]
fn policy_defaults() {
    let config = load("policy_services:\n  p: { target: 'http://x/', value_field: action }\n").config.unwrap();
    let p = config.policy("P").unwrap();
    assert_eq!(p.answer.default_action, DEFAULT_POLICY_ACTION);
    assert_eq!(p.request.payload.as_ref().unwrap().source(), "{{ key }}");
    assert_eq!(p.answer.status_codes, [200]);
    assert_eq!(p.retry.max_attempts, 2);
    assert_eq!(p.retry.deadline, Duration::from_secs(15));
}

#[test]
fn json_format() {
    let loaded = load_str(
        r#"{"socket_maps": {"m": {"target": ["http://a/", "http://b/"], "value_field": "r", "status_code": [200, 201]}}}"#,
        Format::Json,
        "x.json",
    );
    let config = loaded.config.unwrap();
    assert_eq!(config.maps[0].targets.len(), 2);
    assert_eq!(config.maps[0].answer.status_codes, [200, 201]);
}

#[test]
fn no_entries_is_an_error() {
    assert!(errors("server: {}\n")[0].contains("no socket_maps, policy_services or dovecot_sasl"));
}

#[test]
fn not_found_status_cannot_swallow_outages() {
    let errs = errors("socket_maps:\n  m: { target: 'http://x/', value_field: r, not_found_status: [404, 503] }\n");
    assert!(errs[0].starts_with("socket_maps.m.not_found_status: 5xx and 429"), "{errs:?}");
    let loaded = load("socket_maps:\n  m: { target: 'http://x/', value_field: r, not_found_status: 200 }\n");
    assert!(loaded.warnings[0].contains("not_found_status wins"), "{:?}", loaded.warnings);
}

#[test]
fn names_keep_their_case() {
    let config = load("socket_maps:\n  DemoMap: { target: 'http://x/', value_field: r }\n").config.unwrap();
    assert_eq!(config.maps[0].name, "DemoMap");
    assert!(config.map("demomap").is_some());
}

#[test]
fn basic_auth_given_twice_is_an_error() {
    let dir = std::env::temp_dir().join(format!("pfxhttp-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("basic");
    std::fs::write(&file, "u:p\n").unwrap();
    let errs = errors(&format!(
        "socket_maps:\n  m: {{ target: 'http://x/', value_field: r, http_auth_basic: 'a:b', http_auth_basic_file: '{}' }}\n",
        file.display()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(errs[0].contains("not both"), "{errs:?}");
    assert!(!errs.join(" ").contains("a:b"));
}

#[test]
fn header_with_a_control_character_is_an_error() {
    // Found by fuzz/fuzz_targets/config.rs: the loader accepted a header that could never be sent.
    let errs = errors(
        "socket_maps:\n  m:\n    target: http://h/x\n    response: text\n    custom_headers: [\"X-A: a\\x01b {{ key }}\"]\n",
    );
    assert!(errors_joined(&errs).contains("custom_headers[0]: not a valid header value"), "{errs:?}");
}

/// Token requests use the server's TLS settings and proxy, or the auth block's own `tls`; never
/// the entry's, whose settings are for its backend.
#[test]
fn auth_blocks_have_their_own_client() {
    let yaml = r#"
server: { http_client: { proxy: "http://proxy.test:3128" } }
socket_maps:
  lax:
    target: https://backend.test/x
    value_field: v
    proxy: "http://other.test:3128"
    tls: { skip_verify: true, min_version: "1.3" }
    jwt_auth: { token_endpoint: https://idp.test/t, credentials: { u: p } }
  own:
    target: https://backend.test/x
    value_field: v
    tls: { skip_verify: true }
    backend_oidc_auth: { token_endpoint: https://idp.test/t, client_id: c, tls: { min_version: "1.3" } }
  missing:
    target: https://backend.test/x
    value_field: v
    jwt_auth: { token_endpoint: https://idp.test/t, credentials: { u: p }, tls: { root_ca: /nonexistent/ca.pem } }
"#;
    assert_eq!(
        errors(yaml),
        [
            "socket_maps.missing.jwt_auth.tls.root_ca: cannot use /nonexistent/ca.pem: No such file or directory (os error 2)"
        ]
    );
    let config = load(&yaml.replace("root_ca: /nonexistent/ca.pem", "min_version: \"1.2\"")).config.expect("valid");
    let spec = |name: &str| &config.clients[config.map(name).unwrap().auth.as_ref().unwrap().client()];
    assert!(config.clients[config.map("lax").unwrap().client].tls.skip_verify);
    let lax = spec("lax");
    assert!(!lax.tls.skip_verify && !lax.tls.tls13_only);
    assert_eq!(lax.proxy.as_deref(), Some("http://proxy.test:3128"), "the server's proxy, not the entry's");
    assert!(!spec("own").tls.skip_verify && spec("own").tls.tls13_only);
    assert_eq!(config.map("lax").unwrap().auth.as_ref().unwrap().owner(), "test.yml|socket_maps/lax");
}

#[test]
fn logging_target() {
    let base = "socket_maps: { m: { target: 'http://127.0.0.1/x', value_field: v } }\n";
    let logging = |yaml: &str| load(&format!("{base}server: {{ logging: {yaml} }}\n")).logging;
    let default = logging("{}");
    assert_eq!(default.target, LogTarget::Auto);
    assert_eq!(default.postlog_socket, Path::new("/var/spool/postfix/public/postlog"));
    let set = logging("{ target: Postlog, postlog_socket: /q/public/postlog }");
    assert_eq!((set.target, set.postlog_socket.as_path()), (LogTarget::Postlog, Path::new("/q/public/postlog")));
    assert_eq!(logging("{ target: stderr }").target, LogTarget::Stderr);
    assert_eq!(
        errors(&format!("{base}server: {{ logging: {{ target: journal }} }}\n")),
        ["server.logging.target: \"journal\" is not one of: auto, syslog, postlog, stderr"]
    );
}

#[test]
fn metrics_are_on_unless_switched_off() {
    const MAP: &str = "socket_maps: { m: { target: 'http://127.0.0.1:9/', value_field: r } }\n";
    let on = load(MAP).config.unwrap();
    let off = load(&format!("server: {{ metrics: false }}\n{MAP}")).config.unwrap();
    assert_eq!((on.metrics, off.metrics), (true, false));
    let errs = errors(&format!("server: {{ metrics: sometimes }}\n{MAP}"));
    assert!(errs.iter().any(|e| e.starts_with("server.metrics")), "{errs:?}");
}
