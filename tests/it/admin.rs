//! What the commands run by hand tell an admin: why a lookup failed, what in a valid
//! configuration is risky, and what is missing before the first request.

use crate::support::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn pfx(cfg: &Config, args: &[&str]) -> Output {
    cfg.run_command(args, b"", T)
}

/// `query` of a failure prints the reply on stdout, as before, and the reason on stderr.
#[test]
fn query_failure_says_why() {
    let b = Backend::fixed(Reply::json(503, "{}"));
    let cfg = Config::new().map("demo", &b.url("/lookup"));
    let out = pfx(&cfg, &["query", "nosuch", "a@x"]);
    assert_eq!((out.code(), out.stdout_str().as_str()), (Some(75), "PERM unknown map nosuch\n"), "{out:?}");
    assert_eq!(out.stderr_str(), "pfxhttp: nosuch: unknown map nosuch\n");
    let out = pfx(&cfg, &["query", "demo", "a@x"]);
    assert_eq!(out.code(), Some(75), "{out:?}");
    assert!(out.stderr_str().starts_with("pfxhttp: demo: ") && out.stderr_str().contains("503"), "{out:?}");
    let found = Backend::fixed(Reply::json(200, r#"{"result":"v"}"#));
    let out = pfx(&Config::new().map("demo", &found.url("/lookup")), &["query", "demo", "a@x"]);
    assert_eq!((out.code(), out.stderr_str().as_str()), (Some(0), ""), "{out:?}");
}

/// `policy-query` of a service that does not exist, or whose API fails, prints the default
/// action on stdout and the reason on stderr; an answer prints nothing on stderr.
#[test]
fn policy_query_failure_says_why() {
    let b = Backend::fixed(Reply::json(503, "{}"));
    let cfg = Config::new().policy("policy", &b.url("/policy"));
    let out = pfx(&cfg, &["policy-query", "nosuch", "recipient=a@x"]);
    assert_eq!(out.code(), Some(75), "{out:?}");
    assert_eq!(out.stdout_str(), "action=DEFER_IF_PERMIT Service temporarily unavailable\n");
    assert_eq!(
        out.stderr_str(),
        "pfxhttp: nosuch: policy service nosuch is not configured (the answer is the default_action)\n"
    );
    let out = pfx(&cfg, &["policy-query", "policy", "recipient=a@x"]);
    assert_eq!(out.code(), Some(75), "{out:?}");
    assert!(out.stderr_str().starts_with("pfxhttp: policy: ") && out.stderr_str().contains("503"), "{out:?}");
    let ok = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let out = pfx(&Config::new().policy("policy", &ok.url("/policy")), &["policy-query", "policy", "recipient=a@x"]);
    assert_eq!((out.code(), out.stderr_str().as_str()), (Some(0), ""), "{out:?}");
}

/// `check` warns of `not_found_status: [404]` on a target whose path holds no template (a wrong
/// path would answer "not found"), naming the entry and the path; a key in the path, or a key
/// only in the query string of a templated path, is fine.
#[test]
fn check_warns_of_404_on_a_fixed_path() {
    let cfg = Config::new()
        .map("fixed", "http://127.0.0.1:9/v1/aliases?key={{ key }}")
        .set("not_found_status", "[404]")
        .map("keyed", "http://127.0.0.1:9/mailboxes/{{ key }}")
        .set("not_found_status", "[404, 410]")
        .map("gone", "http://127.0.0.1:9/v1/aliases")
        .set("not_found_status", "[410]")
        .policy("pol", "http://127.0.0.1:9/policy")
        .set("not_found_status", "[404]");
    let out = pfx(&cfg, &["check"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let warnings: Vec<String> = out.stderr_str().lines().filter(|l| l.contains("404")).map(str::to_string).collect();
    assert_eq!(
        warnings,
        [
            "warning: socket_maps.fixed.not_found_status: 404 on the fixed path /v1/aliases means a wrong URL, \
             not a missing key, and answers \"not found\" instead of a temporary failure; put the key in the path \
             or leave 404 out",
            "warning: policy_services.pol.not_found_status: 404 on the fixed path /policy means a wrong URL, not a \
             missing key, and answers \"not found\" instead of a temporary failure; put the key in the path or \
             leave 404 out",
        ],
        "{out:?}"
    );
}

/// A serving process with a broken configuration logs one line that names each error once, and
/// answers with the first.
#[test]
fn config_errors_are_logged_once_each() {
    let sink = SyslogSink::new();
    let cfg = Config::new().syslog(&sink, "").map("m", "ftp://127.0.0.1/x").set("timeout", "5x");
    let out = cfg.run_serving(&["socketmap"], b"3:m x,", T);
    let reply = out.stdout_str();
    assert!(reply.contains(":TEMP pfxhttp configuration error: socket_maps.m."), "{reply}");
    assert!(reply.ends_with(" (and 1 more),"), "{reply}");
    let line = sink.wait_for("configuration error", T).expect("the configuration error is logged");
    let errors = ["socket_maps.m.timeout: invalid duration", "socket_maps.m.target[0]: scheme \"ftp\""];
    for error in errors {
        assert_eq!(line.matches(error).count(), 1, "{error} once in {line}");
    }
    assert!(line.ends_with("; every request is answered with a temporary failure"), "{line}");
}

/// `state check` names the owner of the directory (and of the file) as master.cf's `user=` does,
/// with the uid.
#[test]
fn state_check_names_the_owner() {
    let cfg = Config::new().map("m", "http://127.0.0.1:9/x");
    let id = |flag: &str| {
        let out = std::process::Command::new("id").arg(flag).output().expect("id(1)");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let out = pfx(&cfg, &["state", "check"]);
    let dir = cfg.dir().display().to_string();
    let expected = format!("{dir}: directory, owner {} (uid {}), mode ", id("-un"), id("-u"));
    assert!(out.stdout_str().lines().any(|l| l.starts_with(&expected)), "{expected} in {out:?}");
}

/// `check`'s summary lists the names of each kind after `: `, and says `0 …` alone for a kind
/// with none.
#[test]
fn check_summary_has_no_empty_lists() {
    let cfg = Config::new().map("m", "http://127.0.0.1:9/x/{{ key }}").map("n", "http://127.0.0.1:9/y/{{ key }}");
    let out = pfx(&cfg, &["check"]);
    let expected = format!(
        "{}: OK (2 socket map(s): m, n; 0 policy service(s); 0 dovecot_sasl service(s))\n",
        cfg.path().display()
    );
    assert_eq!((out.code(), out.stdout_str()), (Some(0), expected), "{out:?}");
}

/// `check` says when the state database does not exist yet, with the command that creates it;
/// once it exists, or with `:memory:`, it says nothing about it.
#[test]
fn check_reports_a_missing_state_database() {
    let cfg = Config::new().map("m", "http://127.0.0.1:9/x/{{ key }}");
    let out = pfx(&cfg, &["check"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let expected = format!(
        "warning: server.state_db: {} does not exist; until it does, every process keeps host marks, tokens \
         and the response cache to itself. Create it as root with `pfxhttp state init --user USER` (USER: \
         master.cf's user=)",
        cfg.db_path().display()
    );
    assert!(out.stderr_str().lines().any(|l| l == expected), "{expected}\nin {out:?}");
    std::fs::write(cfg.db_path(), b"").unwrap();
    assert!(!pfx(&cfg, &["check"]).stderr_str().contains("state_db"));
    let memory = Config::new().state_db(":memory:").map("m", "http://127.0.0.1:9/x/{{ key }}");
    assert!(!pfx(&memory, &["check"]).stderr_str().contains("state_db"));
}

/// Every argument of every command is described in its `--help` (`query --help` says what MAP
/// and KEY are, `policy-query --help` what SERVICE is, and so on).
#[test]
fn help_describes_every_argument() {
    let help = run(&["--help"], b"", T).stdout_str();
    let commands = help_commands(&help);
    let mut with = vec![vec!["cache", "stats"], vec!["cache", "flush"], vec!["state", "init"]];
    with.extend(commands.iter().map(|c| vec![*c]));
    let mut arguments = 0;
    for mut args in with {
        args.push("--help");
        let out = run(&args, b"", T).stdout_str();
        let listed = out.lines().skip_while(|l| !l.starts_with("Arguments:")).skip(1).take_while(|l| !l.is_empty());
        for line in listed {
            let described = line.trim().split_once("  ").is_some_and(|(_, text)| !text.trim().is_empty());
            assert!(described, "{args:?}: {line:?} is not described");
            arguments += 1;
        }
    }
    assert!(arguments >= 8, "only {arguments} arguments");
}

/// `check --user NAME` reads the config, the secret files and the state database as NAME would
/// under spawn(8): what root can read but NAME cannot is an error (a state database NAME cannot
/// write, a warning); as root without `--user`, `check` says that NAME may see less.
#[test]
#[ignore = "needs root"]
fn check_as_the_service_user() {
    use std::os::unix::fs::{PermissionsExt, chown};
    assert!(crate::state::is_root(), "this test needs root: run the tests as root, or without --include-ignored");
    let mode =
        |path: &std::path::Path, mode: u32| std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
    let secrets = temp_dir();
    let cred = secrets.path().join("credentials");
    std::fs::write(&cred, "username: postfix\npassword: secret\n").unwrap();
    let jwt =
        format!("{{ token_endpoint: 'http://127.0.0.1:9/t', credentials_file: {} }}", q(&cred.display().to_string()));
    let cfg = Config::new().map("m", "http://127.0.0.1:9/x/{{ key }}").set("jwt_auth", &jwt);
    let config = cfg.path();
    let (db, cfg_dir) = (cfg.db_path(), cfg.dir().to_path_buf());
    std::fs::write(&db, b"").unwrap();
    for (path, m) in [(secrets.path(), 0o755), (&cfg_dir, 0o755), (&config, 0o600), (&cred, 0o600), (&db, 0o600)] {
        mode(path, m);
    }
    let out = pfx(&cfg, &["check"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stderr_str().lines().any(|l| l.starts_with("note: root reads every file; ")), "{out:?}");

    let as_nobody = |what: &str| {
        let out = pfx(&cfg, &["check", "--user", "nobody"]);
        assert!(!out.stderr_str().contains("note: root"), "{what}: {out:?}");
        out
    };
    let out = as_nobody("config 0600");
    assert_eq!(out.code(), Some(78), "{out:?}");
    assert!(
        out.stderr_str().contains(&format!("error: {}: cannot read: Permission denied", config.display())),
        "{out:?}"
    );
    mode(&config, 0o644);
    let out = as_nobody("credentials 0600");
    assert_eq!(out.code(), Some(78), "{out:?}");
    let expected =
        format!("error: socket_maps.m.jwt_auth.credentials_file: cannot use {}: Permission denied", cred.display());
    assert!(out.stderr_str().contains(&expected), "{out:?}");
    mode(&cred, 0o644);
    let out = as_nobody("database root's");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stderr_str().contains(&format!("warning: server.state_db: nobody cannot use {}: ", db.display())),
        "{out:?}"
    );
    chown(&cfg_dir, Some(65534), None).unwrap();
    chown(&db, Some(65534), None).unwrap();
    let out = as_nobody("all readable");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stderr_str().contains("state_db") && !out.stderr_str().contains("error"), "{out:?}");
    let out = pfx(&cfg, &["check", "--user", "no-such-user-here"]);
    assert_eq!(
        (out.code(), out.stderr_str().as_str()),
        (Some(64), "pfxhttp: no user no-such-user-here in /etc/passwd\n")
    );
}
