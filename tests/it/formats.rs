//! One configuration written in YAML, JSON and TOML: the same `check` summary and the same
//! answers from the real binary against a real HTTP server; the file name says the format.

use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

/// The backend: a socket map answering `result` for `known@x.org` (404 for the rest), and a
/// policy service answering `REJECT go away` for one sender.
fn backend() -> Backend {
    Backend::start(|r| match (r.path(), r.body_str()) {
        (p, _) if p == "/map/known@x.org" || p == "/map/known%40x.org" => {
            Reply::json(200, r#"{"result":"ok-from-api"}"#)
        }
        (p, _) if p.starts_with("/map/") => Reply::json(404, "{}"),
        ("/policy", body) if body.contains("spam@x.org") => Reply::json(200, r#"{"action":"REJECT go away"}"#),
        ("/policy", _) => Reply::json(200, r#"{"action":"DUNNO"}"#),
        _ => Reply::status(500, ""),
    })
}

/// The same settings in three formats (`{url}`, `{dir}` filled in).
const YAML: &str = r#"server:
  logging: { syslog_socket: "{dir}/no-syslog", level: debug }
  state_db: "{dir}/state.db"
  http_client: { timeout: 2s }
socket_maps:
  users:
    target: "{url}/map/{{ .Key }}"
    value_field: result
    not_found_status: [404]
    deadline: 3s
policy_services:
  gate:
    target: ["{url}/policy", "{url}/policy"]
    value_field: action
    default_action: DUNNO
"#;

const JSON: &str = r#"{
  "server": {
    "logging": {"syslog_socket": "{dir}/no-syslog", "level": "debug"},
    "state_db": "{dir}/state.db",
    "http_client": {"timeout": "2s"}
  },
  "socket_maps": {
    "users": {"target": "{url}/map/{{ .Key }}", "value_field": "result", "not_found_status": [404],
              "deadline": "3s"}
  },
  "policy_services": {
    "gate": {"target": ["{url}/policy", "{url}/policy"], "value_field": "action", "default_action": "DUNNO"}
  }
}
"#;

const TOML: &str = r#"[server]
logging = { syslog_socket = "{dir}/no-syslog", level = "debug" }
state_db = "{dir}/state.db"

[server.http_client]
timeout = "2s"

[socket_maps.users]
target = "{url}/map/{{ .Key }}"
value_field = "result"
not_found_status = [404]
deadline = "3s"

[policy_services.gate]
target = ["{url}/policy", "{url}/policy"]
value_field = "action"
default_action = "DUNNO"
"#;

const POLICY: &str = "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=spam@x.org\n\n\
                      request=smtpd_access_policy\nprotocol_state=RCPT\nsender=ok@x.org\n\n";

/// What `check`, a socketmap lookup of two keys and two policy requests print, the file's path
/// replaced by `FILE`.
fn outcome(file: &std::path::Path, format: &str) -> Vec<String> {
    let path = file.to_str().unwrap();
    let check = run(&["--format", format, "-c", path, "check"], b"", T);
    assert_eq!(check.code(), Some(0), "{check:?}");
    let mut lookups = netstring(b"users known@x.org");
    lookups.extend(netstring(b"users other@x.org"));
    let map = run(&["--format", format, "-c", path, "socketmap"], &lookups, T);
    let policy = run(&["--format", format, "-c", path, "policy", "gate"], POLICY.as_bytes(), T);
    [check.stdout_str(), check.stderr_str(), map.stdout_str(), policy.stdout_str()]
        .map(|s| s.replace(path, "FILE"))
        .to_vec()
}

#[test]
fn yaml_json_and_toml_give_the_same_check_and_the_same_answers() {
    let b = backend();
    let dir = temp_dir();
    let fill =
        |t: &str| t.replace("{url}", b.url("").trim_end_matches('/')).replace("{dir}", dir.path().to_str().unwrap());
    let files = [("c.yml", YAML), ("c.json", JSON), ("c.toml", TOML)].map(|(name, text)| {
        let path = dir.path().join(name);
        std::fs::write(&path, fill(text)).unwrap();
        path
    });
    // The first run's lookups make the state database, which `check` warns about until then.
    outcome(&files[0], "yaml");
    let from_yaml = outcome(&files[0], "yaml");
    assert!(from_yaml[0].starts_with("FILE: OK (1 socket map(s): users; 1 policy service(s): gate;"), "{from_yaml:?}");
    assert_eq!(from_yaml[2], "14:OK ok-from-api,9:NOTFOUND ,", "{from_yaml:?}");
    assert_eq!(from_yaml[3], "action=REJECT go away\n\naction=DUNNO\n\n", "{from_yaml:?}");
    // Each file read with its own format named and with another: the name decides.
    for (file, format) in [(&files[1], "json"), (&files[1], "yaml"), (&files[2], "toml"), (&files[2], "yaml")] {
        assert_eq!(outcome(file, format), from_yaml, "{} with --format {format}", file.display());
    }
    // A TOML file under another name is read as TOML only when --format says so.
    let conf = dir.path().join("c.conf");
    std::fs::write(&conf, fill(TOML)).unwrap();
    assert_eq!(outcome(&conf, "toml"), from_yaml);
    let as_yaml = run(&["-c", conf.to_str().unwrap(), "check"], b"", T);
    assert_ne!(as_yaml.code(), Some(0), "{as_yaml:?}");
}
