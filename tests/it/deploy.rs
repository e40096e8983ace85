//! Deployment artefacts: every example config passes `pfxhttp check`, and the master.cf snippet's
//! commands are ones the program really serves.

use crate::support::*;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `examples/*.yml` (and `*.toml`) loads without errors, and without a risky
/// `not_found_status`.
#[test]
fn examples_pass_check() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "toml") {
            let out = run(&["--config", path.to_str().unwrap(), "check"], b"", T);
            assert_eq!(out.code(), Some(0), "{}: {}", path.display(), out.stderr_str());
            assert!(!out.stderr_str().contains("error:"), "{}: {}", path.display(), out.stderr_str());
            // A 404 mapped to "not found" on a fixed path would turn a wrong URL into rejects.
            assert!(!out.stderr_str().contains("not_found_status"), "{}: {}", path.display(), out.stderr_str());
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} examples");
}

/// examples/pfxhttp.toml is examples/pfxhttp.yml in TOML: the same `check` output.
#[test]
fn the_toml_example_is_the_yaml_example() {
    let check = |name: &str| {
        let path = repo(&format!("examples/{name}"));
        let out = run(&["--config", path.to_str().unwrap(), "check"], b"", T);
        (out.code(), out.stdout_str().replace(path.to_str().unwrap(), "FILE"), out.stderr_str())
    };
    assert_eq!(check("pfxhttp.toml"), check("pfxhttp.yml"));
}

/// The spawn entries of master.cf.snippet: unpriv and chroot `n`, maxproc 0, a `user=`, and an
/// argv that pfxhttp serves (run with a test config in place of the snippet's).
#[test]
fn master_cf_snippet_commands_serve() {
    let snippet = std::fs::read_to_string(repo("master.cf.snippet")).unwrap();
    let backend = Backend::fixed(Reply::json(200, r#"{"result":"v","action":"DUNNO"}"#));
    let target = q(&backend.url("/x"));
    let conf = Config::bare().entry("socket_maps", "demo").set("target", &target).set("value_field", "result");
    let conf = conf.entry("policy_services", "p").set("target", &target).set("value_field", "action");
    let conf = conf.entry("dovecot_sasl", "smtp-auth").set("target", &target);
    let config = conf.path();
    let lines: Vec<&str> = snippet.lines().collect();
    let mut services = 0;
    for (i, line) in lines.iter().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with('#') || cols.last() != Some(&"spawn") {
            continue;
        }
        services += 1;
        assert_eq!((cols[3], cols[4], cols[6]), ("n", "n", "0"), "unpriv, chroot, maxproc of {line}");
        let argv_line = lines[i + 1].trim();
        assert!(argv_line.starts_with("user=pfxhttp argv=/usr/local/bin/pfxhttp "), "{argv_line}");
        let mut args: Vec<String> = argv_line.split_whitespace().skip(2).map(str::to_string).collect();
        let at = args.iter().position(|a| a == "--config").expect("--config is always given");
        args[at + 1] = config.display().to_string();
        let (request, reply): (&[u8], &[u8]) = match args.last().unwrap().as_str() {
            "socketmap" => (b"7:demo ok,", b"4:OK v,"),
            "policy" => (b"request=smtpd_access_policy\n\n", b"action=DUNNO\n\n"),
            // After the handshake (its SPID and COOKIE vary).
            "sasl" => {
                (b"VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\tresp=AHUAcA==\n", b"DONE\nOK\t1\tuser=u\n")
            }
            _ => (b"get ok\n", b"200 v\n"),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, request, T);
        assert_clean(&out);
        let tail = &out.stdout[out.stdout.len().saturating_sub(reply.len())..];
        assert_wire(if args.last() == Some(&"sasl") { tail } else { &out.stdout }, reply);
    }
    assert_eq!(services, 4, "socketmap, policy, sasl and tcp");
}

/// The man pages render without warnings and name every command `--help` lists.
#[test]
fn man_pages_render_and_match_the_program() {
    for page in ["man/pfxhttp.8", "man/pfxhttp.yml.5"] {
        let out = std::process::Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(repo(page))
            .output()
            .expect("groff (package groff-base) is needed");
        assert!(out.status.success() && out.stderr.is_empty(), "{page}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let help = run(&["--help"], b"", T).stdout_str();
    let page = std::fs::read_to_string(repo("man/pfxhttp.8")).unwrap();
    let commands = help_commands(&help);
    assert!(commands.len() >= 8, "{help}");
    // The first word of each tagged paragraph: `.TP` then `.B socketmap`, `.BI "tcp " MAP`, ...
    let lines: Vec<&str> = page.lines().collect();
    let described: Vec<String> = lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| {
            let tag = w[1].strip_prefix(".BI ").or_else(|| w[1].strip_prefix(".B "))?;
            Some(tag.trim_start_matches('"').split([' ', '"']).next()?.replace("\\-", "-"))
        })
        .collect();
    for command in commands {
        assert!(described.iter().any(|d| d == command), "pfxhttp.8 does not describe {command}: {described:?}");
    }
}

/// The map and policy service names README, master.cf.snippet and pfxhttp(8) use are those of
/// the example README's installation installs: followed literally, every command finds its map.
#[test]
fn installation_names_agree() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let install = &readme[readme.find("## Installation").expect("README has an Installation section")..];
    let install = &install[..install[3..].find("\n## ").map_or(install.len(), |i| i + 3)];
    let example = install
        .lines()
        .filter(|l| l.starts_with("install ") && l.ends_with(" /etc/pfxhttp/pfxhttp.yml"))
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("examples/")))
        .expect("the installation installs an example as /etc/pfxhttp/pfxhttp.yml");
    for step in ["install -D", "master.cf", "postfix reload", "postmap -q", "postconf -MX"] {
        assert!(install.contains(step), "the installation lacks {step:?}:\n{install}");
    }
    let out = run(&["--config", repo(example).to_str().unwrap(), "check"], b"", T);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_str());
    let (maps, policies) = (listed(&out.stdout_str(), "socket map(s)"), listed(&out.stdout_str(), "policy service(s)"));
    assert_eq!((maps.as_slice(), policies.as_slice()), (&["demo".to_string()][..], &["policy".to_string()][..]));
    let snippet = std::fs::read_to_string(repo("master.cf.snippet")).unwrap();
    let man = std::fs::read_to_string(repo("man/pfxhttp.8")).unwrap().replace("\\-", "-");
    let mut used = 0;
    for (file, text) in [("README.md", &readme), ("master.cf.snippet", &snippet), ("pfxhttp.8", &man)] {
        let in_sockets = text.split("private/pfxhttp-map:").skip(1);
        let in_tcp = text.lines().filter_map(|l| l.split(" tcp ").nth(1).filter(|_| l.contains("argv=")));
        for name in in_sockets.chain(in_tcp) {
            let name: String = name.chars().take_while(|c| c.is_alphanumeric() || "_-".contains(*c)).collect();
            assert!(maps.contains(&name), "{file} uses map {name:?}; {example} has {maps:?}");
            used += 1;
        }
        for argv in text.lines().filter(|l| l.contains("argv=") && l.contains(" policy")) {
            let name = argv.split(" policy").nth(1).unwrap().trim();
            assert!(name.is_empty() || policies.iter().any(|p| p == name), "{file}: {argv}");
        }
    }
    assert!(used >= 5, "only {used} uses of a map name");
}

/// The names `check` lists after `label: ` ("1 socket map(s): a, b; ...").
fn listed(check: &str, label: &str) -> Vec<String> {
    let rest = check.split(label).nth(1).unwrap_or_else(|| panic!("{label} in {check}"));
    let rest = rest.strip_prefix(": ").unwrap_or("");
    rest.split([';', ')']).next().unwrap().split(", ").filter(|n| !n.is_empty()).map(str::to_string).collect()
}

/// The packages' configuration passes `check` with the names the printed instructions use, and
/// the master.cf lines the .deb's postinst and the .rpm's %post print are master.cf.snippet's,
/// with the packaged binary's path; neither script writes Postfix's files.
#[test]
fn packaged_config_and_printed_lines_agree() {
    let out = run(&["--config", repo("scripts/package.d/pfxhttp.yml").to_str().unwrap(), "check"], b"", T);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_str());
    let (maps, policies) = (listed(&out.stdout_str(), "socket map(s)"), listed(&out.stdout_str(), "policy service(s)"));
    assert_eq!((maps.as_slice(), policies.as_slice()), (&["demo".to_string()][..], &["policy".to_string()][..]));
    let snippet = std::fs::read_to_string(repo("master.cf.snippet")).unwrap().replace("/usr/local/bin/", "/usr/sbin/");
    let mut printed = Vec::new();
    for script in ["scripts/package.d/debian/postinst", "scripts/package.d/rpm/post"] {
        let text = std::fs::read_to_string(repo(script)).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("pfxhttp-") || l.starts_with("  user=")).collect();
        assert_eq!(lines.len(), 4, "{script}: the map and policy entries, two lines each: {lines:?}");
        for line in &lines {
            assert!(snippet.lines().any(|s| s == *line), "{script}: {line:?} is not a line of master.cf.snippet");
        }
        assert!(text.contains("private/pfxhttp-map:demo") && text.contains("unix:private/pfxhttp-policy"), "{script}");
        for write in ["postconf -e", "postconf -M", "> /etc/postfix", ">/etc/postfix", "sed -i"] {
            assert!(!text.contains(write), "{script} changes Postfix's files: {write:?}");
        }
        printed.push(lines.join("\n"));
    }
    assert_eq!(printed[0], printed[1], "postinst and %post print the same master.cf lines");
}
