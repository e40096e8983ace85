//! HTTP client settings: proxy, TLS minimum version, timeouts from server and entry level,
//! JSON config files while serving.

use crate::support::*;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn lookup(config: &std::path::Path, key: &str) -> Vec<u8> {
    let payload = format!("demo {key}");
    let out = run(&["--config", config.to_str().unwrap(), "socketmap"], &netstring(payload.as_bytes()), T);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr_str());
    assert_eq!(out.code(), Some(0));
    out.stdout
}

/// `http_client.proxy` sends every request through the proxy, in absolute form.
#[test]
fn proxy_receives_the_request() {
    let proxy = Backend::fixed(Reply::json(200, r#"{"result":"via proxy"}"#));
    let dir = temp_dir();
    let cfg = write_config(
        dir.path(),
        &format!(
            "server:\n  http_client: {{ proxy: '{}' }}\nsocket_maps:\n  demo:\n    target: http://api.invalid/lookup\n    \
             value_field: result\n",
            proxy.url("")
        ),
    );
    assert_eq!(lookup(&cfg, "k"), b"12:OK via proxy,");
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "http://api.invalid/lookup");
}

/// `tls.min_version: "1.3"` refuses a server that only speaks TLS 1.2; "1.2" accepts it.
#[test]
fn tls_min_version() {
    let tls = make_tls_files();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(tls::load_certs(&tls.leaf_cert_pem), tls::load_key(&tls.leaf_key_pem))
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let backend = Backend::start_with_tls_config(Arc::new(server), |_| Reply::json(200, r#"{"result":"tls12"}"#));
    let dir = temp_dir();
    for (version, expected) in [("1.2", &b"8:OK tls12,"[..]), ("1.3", b"TEMP")] {
        let cfg = write_config(
            dir.path(),
            &format!(
                "server:\n  tls: {{ root_ca: '{}', min_version: '{version}' }}\nsocket_maps:\n  demo:\n    \
                 target: {}\n    value_field: result\n",
                tls.ca_pem.display(),
                backend.url("/x")
            ),
        );
        let reply = lookup(&cfg, "k");
        let payload = &reply[reply.iter().position(|&b| b == b':').unwrap() + 1..];
        assert!(
            reply.starts_with(expected) || payload.starts_with(expected),
            "{version}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
}

/// The entry's `timeout` overrides `server.http_client.timeout`; the reply is TIMEOUT and comes
/// well before the backend would have answered.
#[test]
fn entry_timeout_overrides_server_timeout() {
    let backend = Backend::fixed(Reply::Hang(Duration::from_secs(5)));
    let dir = temp_dir();
    let cfg = write_config(
        dir.path(),
        &format!(
            "server:\n  http_client: {{ timeout: 30s }}\nsocket_maps:\n  demo:\n    target: {}\n    timeout: 300ms\n    \
             value_field: result\n",
            backend.url("/x")
        ),
    );
    let started = std::time::Instant::now();
    let reply = lookup(&cfg, "k");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&reply).into_owned();
    assert!(text.contains(":TIMEOUT "), "{text}");
}

/// `deadline` bounds the request even when `timeout` is longer.
#[test]
fn deadline_cuts_a_long_timeout() {
    let backend = Backend::fixed(Reply::Hang(Duration::from_secs(5)));
    let dir = temp_dir();
    let cfg = write_config(
        dir.path(),
        &format!(
            "socket_maps:\n  demo:\n    target: {}\n    timeout: 20s\n    deadline: 400ms\n    value_field: result\n",
            backend.url("/x")
        ),
    );
    let started = std::time::Instant::now();
    let text = String::from_utf8_lossy(&lookup(&cfg, "k")).into_owned();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(text.contains(":TIMEOUT "), "{text}");
}

/// `--format json` reads a JSON config in a serving command.
#[test]
fn json_config_file_serves() {
    let backend = Backend::fixed(Reply::json(200, r#"{"result":"json-config"}"#));
    let dir = temp_dir();
    let path = dir.path().join("pfxhttp.json");
    std::fs::write(
        &path,
        format!(r#"{{"socket_maps": {{"demo": {{"target": "{}", "value_field": "result"}}}}}}"#, backend.url("/x")),
    )
    .unwrap();
    let out = run(&["--config", path.to_str().unwrap(), "--format", "json", "socketmap"], &netstring(b"demo k"), T);
    assert!(out.stderr.is_empty());
    assert_eq!(out.stdout, b"14:OK json-config,");
}
