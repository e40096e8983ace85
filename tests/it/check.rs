//! `pfxhttp check` on configs that are valid but unsafe, and on files that would cost every
//! serving process far more than their size.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::peak::Measured;
use crate::support::*;

/// Bound for every run.
const T: Duration = Duration::from_secs(5);

/// A config with the map `demo` and nothing else.
fn demo() -> Config {
    Config::bare()
        .entry("socket_maps", "demo")
        .set("target", "http://127.0.0.1:8080/lookup")
        .set("value_field", "result")
}

fn check(cfg: &Config) -> Output {
    cfg.run_command(&["check"], b"", T)
}

fn chmod(cfg: &Config, mode: u32) {
    std::fs::set_permissions(cfg.path(), std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether some line of `text` contains all of `words`.
fn has_line(text: &str, words: &[&str]) -> bool {
    text.lines().any(|l| words.iter().all(|w| l.contains(w)))
}

/// Inline secrets in a file every user can read: a warning naming the file, its mode and each
/// secret by path (never the secret), suggesting the `*_file` forms. Not for mode 0640.
#[test]
fn check_warns_about_inline_secrets_others_can_read() {
    let cfg = demo()
        .set("http_auth_basic", "'user:hunter2pw'")
        .set("custom_headers", "['X-Auth-Token: tok3n', 'X-Trace: 1']");
    chmod(&cfg, 0o644);
    let out = check(&cfg);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let err = out.stderr_str();
    let arg = cfg.arg();
    let words = [
        "warning: ",
        &arg,
        "mode 0644",
        "socket_maps.demo.http_auth_basic",
        "socket_maps.demo.custom_headers[0]",
        "http_auth_basic_file",
    ];
    assert!(has_line(&err, &words), "{err}");
    assert!(!err.contains("custom_headers[1]"), "{err}");
    assert!(!err.contains("hunter2pw") && !err.contains("tok3n"), "a secret reached the terminal: {err}");
    assert!(has_line(&out.stdout_str(), &["OK"]), "{out:?}");

    chmod(&cfg, 0o640);
    let out = check(&cfg);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stderr_str().contains("mode 0"), "{out:?}");
}

/// A password in a target's user info and a secret-looking query parameter in a target (one
/// URL or a list) are inline secrets too, named by path; the value of a parameter that only
/// renders the lookup key is not one.
#[test]
fn check_warns_about_secrets_in_target_urls() {
    let cfg = demo()
        .set("target", "'https://u:URLPW@api.example/x'")
        .entry("socket_maps", "list")
        .set("target", "['https://api.example/x?format=json', 'https://api.example/y?a=1;api_key=QKEY9', 'https://api.example/z?token={{ key }}']")
        .set("value_field", "result");
    chmod(&cfg, 0o644);
    let out = check(&cfg);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let err = out.stderr_str();
    let line = err.lines().find(|l| l.contains("mode 0644")).unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(has_line(line, &["socket_maps.demo.target[0]", "socket_maps.list.target[1]"]), "{err}");
    assert!(!line.contains("list.target[0]") && !line.contains("list.target[2]"), "{err}");
    assert!(!err.contains("URLPW") && !err.contains("QKEY9"), "a secret reached the terminal: {err}");
}

/// A proxy scheme reqwest would drop (requests would bypass the proxy) is an error.
#[test]
fn check_refuses_a_proxy_scheme_that_would_be_ignored() {
    let cfg = demo().server("http_client: { proxy: 'ftp://proxy.example:21' }");
    let out = check(&cfg);
    assert_eq!(out.code(), Some(78), "{out:?}");
    assert!(has_line(&out.stderr_str(), &["error: server.http_client.proxy: ", "\"ftp\""]), "{out:?}");
}

/// `server.http_client.skip_verify` (either spelling) warns exactly as `server.tls.skip_verify`.
#[test]
fn check_warns_about_skip_verify_in_every_spelling() {
    let warning = |server: &str| {
        let out = check(&demo().server(server));
        assert_eq!(out.code(), Some(0), "{out:?}");
        let err = out.stderr_str();
        let lines: Vec<String> = err.lines().filter(|l| l.contains("skip_verify")).map(str::to_string).collect();
        assert_eq!(lines.len(), 1, "{server}: {err}");
        lines[0].split_once(": ").map(|(_, rest)| rest.split_once(": ").unwrap().1.to_string()).unwrap()
    };
    let tls = warning("tls: { skip_verify: true }");
    assert!(tls.contains("accepts any server certificate"), "{tls}");
    for server in ["http_client: { skip_verify: true }", "http_client: { http_client_skip_verify: true }"] {
        assert_eq!(warning(server), tls, "{server}");
    }
}

/// A file over 1 MiB is refused unread, whatever its format: `check` names the file and the
/// limit, and a serving process answers every request with a temporary failure.
#[test]
fn a_config_over_1_mib_is_refused() {
    let yaml = format!("{}#{}\n", demo().yaml(), "x".repeat(1 << 20));
    let cfg = Config::text(&yaml);
    let arg = cfg.arg();
    for format in ["yaml", "json"] {
        let out = run(&["--config", &arg, "--format", format, "check"], b"", T);
        assert_eq!(out.code(), Some(78), "{out:?}");
        assert!(has_line(&out.stderr_str(), &["error: ", &arg, "limit of 1 MiB"]), "{out:?}");
    }
    let requests = [netstring(b"demo a"), netstring(b"demo b")].concat();
    let out = run(&["--config", &arg, "socketmap"], &requests, T);
    assert_clean(&out);
    let reason = format!(
        "TEMP pfxhttp configuration error: {}: {} bytes, more than the limit of 1 MiB (1048576 bytes); not read",
        &arg,
        yaml.len()
    );
    assert_wire(&out.stdout, &[netstring(reason.as_bytes()), netstring(reason.as_bytes())].concat());
}

/// A file just under 1 MiB whose aliases would expand to 300 MiB is refused within a second,
/// with a peak RSS of a few MiB.
#[test]
fn check_refuses_an_alias_bomb_quickly_and_in_little_memory() {
    let aliases = vec!["*a"; 300].join(", ");
    let bomb = format!("{}x-big: &a \"{}\"\nx-list: [{aliases}]\n", demo().yaml(), "x".repeat(1_000_000));
    assert!(bomb.len() < 1 << 20);
    let cfg = Config::text(&bomb);
    let arg = cfg.arg();
    let started = Instant::now();
    let (out, kib) = Measured::spawn(&["--config", &arg, "check"]).wait(T);
    let took = started.elapsed();
    eprintln!("alias bomb: peak RSS {kib} KiB, {took:?}");
    assert_eq!(out.code(), Some(78), "{out:?}");
    assert!(has_line(&out.stderr_str(), &["error: ", &arg, "aliases expand to more than 4 MiB"]), "{out:?}");
    assert!(kib < 32 * 1024, "peak RSS {kib} KiB");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// Where serving processes would log: a postlog socket that is not there is a warning that
/// names it and the postdrop group; `target: stderr` is a note that serving processes log as
/// with `auto`.
#[test]
fn check_says_where_serving_processes_log() {
    let nowhere = "/nonexistent/public/postlog";
    let cfg = demo().server(&format!("logging: {{ target: postlog, postlog_socket: {nowhere} }}"));
    let out = check(&cfg);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let warning = ["warning: server.logging.postlog_socket: /nonexistent/public/postlog does not exist", "postdrop"];
    assert!(has_line(&out.stderr_str(), &warning), "{out:?}");
    let cfg =
        demo().server("logging: { target: stderr, syslog_socket: /nonexistent/log, postlog_socket: /nonexistent/pl }");
    let out = check(&cfg);
    assert!(has_line(&out.stderr_str(), &["neither /nonexistent/log (syslog_socket) nor /nonexistent/pl"]), "{out:?}");
    let dir = temp_dir();
    let sock = std::os::unix::net::UnixDatagram::bind(dir.path().join("log")).unwrap();
    let line =
        format!("logging: {{ target: stderr, syslog_socket: {} }}", q(&dir.path().join("log").display().to_string()));
    let out = check(&demo().server(&line));
    assert!(
        has_line(&out.stderr_str(), &["note: server.logging.target: stderr is for commands run by hand"]),
        "{out:?}"
    );
    drop(sock);
}
