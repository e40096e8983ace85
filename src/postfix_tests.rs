use super::*;

/// `postconf -c DIR -M` of the end-to-end suite's instance (Postfix 3.7), as printed.
const MASTER: &str = "\
smtp       inet  n       -       y       -       -       smtpd
127.0.0.1:2625 inet n    -       n       -       -       smtpd -o smtpd_sasl_type=dovecot -o smtpd_sasl_path=private/pfxhttp-auth
pfxhttp-map unix -       n       n       -       0       spawn user=nobody argv=/usr/local/bin/pfxhttp --config /etc/pfxhttp/pfxhttp.yml socketmap
pfxhttp-policy unix -    n       n       -       0       spawn user=nobody argv=/usr/local/bin/pfxhttp --config /etc/pfxhttp/pfxhttp.yml policy
127.0.0.1:10141 inet n   n       n       -       0       spawn user=nobody:nogroup argv=/usr/local/bin/pfxhttp -c /x.yml tcp mymap
postlog    unix-dgram n  -       n       -       1       postlogd
";

#[test]
fn master_services() {
    let services = parse_master(MASTER);
    assert_eq!(services.len(), 6);
    let smtpd = &services[1];
    assert_eq!((smtpd.name.as_str(), smtpd.kind.as_str(), smtpd.command.as_str()), ("127.0.0.1:2625", "inet", "smtpd"));
    assert_eq!(smtpd.args, ["-o", "smtpd_sasl_type=dovecot", "-o", "smtpd_sasl_path=private/pfxhttp-auth"]);
    assert_eq!(smtpd.port(), Some("2625"));
    assert_eq!((services[0].unpriv.as_str(), services[0].chroot.as_str()), ("-", "y"));
    assert_eq!(services[2].port(), None);
    assert_eq!(services[5].kind, "unix-dgram");
}

#[test]
fn pfxhttp_command_lines() {
    let services = parse_master(MASTER);
    let run = |i: usize| pfxhttp_of(&services[i]);
    assert_eq!(run(0), None, "smtpd");
    assert_eq!(run(5), None, "postlogd");
    assert_eq!(
        run(2),
        Some(Pfxhttp {
            program: "/usr/local/bin/pfxhttp".into(),
            user: Some("nobody".into()),
            config: Some("/etc/pfxhttp/pfxhttp.yml".into()),
            format: Format::Yaml,
            command: Run::Socketmap,
        })
    );
    assert_eq!(run(3).unwrap().command, Run::Policy(None));
    let tcp = run(4).unwrap();
    assert_eq!((tcp.user.as_deref(), tcp.config.as_deref()), (Some("nobody"), Some("/x.yml")));
    assert_eq!(tcp.command, Run::Tcp(Some("mymap".into())));
    let line = "x unix - n n - 0 spawn user=pfx argv=/opt/pfxhttp socketmap --config=/a.json --format=json";
    let other = pfxhttp_of(&parse_master(line)[0]).unwrap();
    assert_eq!((other.config.as_deref(), other.format, other.command), (Some("/a.json"), Format::Json, Run::Socketmap));
    let line = "x unix - n n - 0 spawn user=pfx argv=/usr/bin/other-daemon pfxhttp";
    assert_eq!(pfxhttp_of(&parse_master(line)[0]), None, "only the program's name counts");
}

/// `postconf -n` and `postconf -P` lines, values as printed (with -x: expanded).
#[test]
fn parameters() {
    let text = "\
mail_owner = postfix
pfxhttp-policy_time_limit = 3600s
relayhost =
127.0.0.1:2625/inet/smtpd_sasl_path = private/pfxhttp-auth
";
    let params = parse_params(text);
    assert_eq!(params[0], ("mail_owner".into(), "postfix".into()));
    assert_eq!(params[2], ("relayhost".into(), String::new()));
    assert_eq!(params[3], ("127.0.0.1:2625/inet/smtpd_sasl_path".into(), "private/pfxhttp-auth".into()));
}

#[test]
fn references_in_values() {
    let unix = |n: &str| Endpoint::Unix(n.into());
    let value = "reject_unauth_destination, check_recipient_access socketmap:unix:private/pfxhttp-map:access, \
                 check_policy_service { unix:private/pfxhttp-policy, policy_context=e2e }";
    assert_eq!(
        references(value),
        [
            Reference::Socketmap(unix("pfxhttp-map"), "access".into()),
            Reference::Policy(unix("pfxhttp-policy"), Some("e2e".into()))
        ]
    );
    assert_eq!(
        references("check_policy_service unix:private/pol,check_policy_service inet:127.0.0.1:9998"),
        [
            Reference::Policy(unix("pol"), None),
            Reference::Policy(Endpoint::Inet("127.0.0.1".into(), "9998".into()), None)
        ]
    );
    assert_eq!(references("check_policy_service {unix:private/pol}"), [Reference::Policy(unix("pol"), None)]);
    assert_eq!(
        references("proxy:socketmap:unix:/var/spool/postfix/private/m:virtual tcp:[::1]:10141 hash:/etc/x"),
        [
            Reference::Socketmap(unix("m"), "virtual".into()),
            Reference::Tcp(Endpoint::Inet("::1".into(), "10141".into()))
        ]
    );
    assert_eq!(
        references("socketmap:inet:127.0.0.1:9000:demo"),
        [Reference::Socketmap(Endpoint::Inet("127.0.0.1".into(), "9000".into()), "demo".into())]
    );
    assert_eq!(references("socketmap:unix:/run/other.sock:demo, check_policy_service"), []);
}

#[test]
fn time_values() {
    assert_eq!(time_value("3600s"), Some(Duration::from_secs(3600)));
    assert_eq!(time_value("1000"), Some(Duration::from_secs(1000)));
    assert_eq!(time_value("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(time_value("1d"), Some(Duration::from_secs(86_400)));
    assert_eq!(time_value("$command_time_limit"), None);
    assert_eq!(time_value("10x"), None);
}
