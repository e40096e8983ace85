//! HTTP client settings: proxy, TLS minimum version, timeouts from server and entry level,
//! JSON config files while serving.

use crate::support::*;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// The map `demo` asking `target` with `value_field: result`, and nothing else.
fn demo(target: &str) -> Config {
    Config::bare().entry("socket_maps", "demo").set("target", &q(target)).set("value_field", "result")
}

fn lookup(config: &Config, key: &str) -> Vec<u8> {
    let payload = format!("demo {key}");
    let out = config.run_command(&["socketmap"], &netstring(payload.as_bytes()), T);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr_str());
    assert_eq!(out.code(), Some(0));
    out.stdout
}

/// `http_client.proxy` sends every request through the proxy, in absolute form.
#[test]
fn proxy_receives_the_request() {
    let proxy = Backend::fixed(Reply::json(200, r#"{"result":"via proxy"}"#));
    let cfg = demo("http://api.invalid/lookup").server(&format!("http_client: {{ proxy: '{}' }}", proxy.url("")));
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
    for (version, expected) in [("1.2", &b"8:OK tls12,"[..]), ("1.3", b"TEMP")] {
        let tls_line = format!("tls: {{ root_ca: '{}', min_version: '{version}' }}", tls.ca_pem.display());
        let cfg = demo(&backend.url("/x")).server(&tls_line);
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
    let cfg = demo(&backend.url("/x")).set("timeout", "300ms").server("http_client: { timeout: 30s }");
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
    let cfg = demo(&backend.url("/x")).set("timeout", "20s").set("deadline", "400ms");
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

/// A keep-alive connection that the server closed while the process waited for the next
/// request is not used for it: the next lookup goes out on a new connection and is answered,
/// in one attempt (a POST sent into a closed connection could not be retried safely).
#[test]
fn a_connection_the_server_closed_between_lookups_is_not_reused() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Each connection: one request, a keep-alive answer, then the server closes it 100 ms later.
    let server = std::thread::spawn(move || {
        let mut connections = 0;
        for stream in listener.incoming().take(2) {
            let stream = stream.unwrap();
            connections += 1;
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            reader.read_exact(&mut vec![0; length]).unwrap();
            let body = br#"{"result":"fresh"}"#;
            let mut out = &stream;
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
            out.write_all(body).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(stream);
        }
        connections
    });
    let log = SyslogSink::new();
    let cfg = demo(&format!("http://127.0.0.1:{port}/x")).syslog(&log, "");
    let mut child = cfg.spawn(&["socketmap"]);
    for key in ["first", "second"] {
        child.send(&netstring(format!("demo {key}").as_bytes()));
        assert_eq!(child.read_netstring(T), b"8:OK fresh,", "lookup of {key}");
        std::thread::sleep(Duration::from_millis(400));
    }
    child.close_stdin();
    let out = child.wait(T);
    assert_eq!(out.code(), Some(0));
    assert_eq!(server.join().unwrap(), 2, "two connections");
    let lines = log.wait_count(2, T);
    for key in ["first", "second"] {
        assert!(
            lines.iter().any(|l| l.contains(&format!("key={key} ")) && l.contains("attempts=1 status=200 reply=OK")),
            "{lines:?}"
        );
    }
}
