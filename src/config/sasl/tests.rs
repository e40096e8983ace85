use crate::config::{Format, Loaded, load_str};
use std::time::Duration;

fn load(yaml: &str) -> Loaded {
    load_str(yaml, Format::Yaml, "test.yml")
}

#[test]
fn defaults_for_what_the_go_section_leaves_out() {
    let loaded = load("dovecot_sasl:\n  smtp-auth:\n    target: https://n.example/api/v1/auth/json\n");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = loaded.config.expect("valid");
    let sasl = config.sasl(Some("SMTP-AUTH")).expect("names match case-insensitively");
    assert_eq!(sasl.entry.answer.status_codes, [200], "Go had no default: every login failed");
    assert_eq!(sasl.entry.retry.deadline, Duration::from_secs(8));
    assert_eq!(sasl.failure_delay, Duration::from_secs(2));
    assert_eq!(sasl.default_local_port, "");
    assert_eq!(sasl.entry.request.payload.as_ref().unwrap().source(), super::DEFAULT_PAYLOAD);
    assert!(std::ptr::eq(config.sasl(None).unwrap(), sasl), "the only one needs no name");
}

#[test]
fn the_go_keys_are_read() {
    let yaml = r#"
dovecot_sasl:
  defaults:
    http_auth_basic: "user:pass"
  a:
    target: [https://n1.example/auth, https://n2.example/auth]
    transport: json
    status_code: 200
    default_local_port: "587"
    deadline: 5s
    failure_delay: 0
    custom_headers: ["X-Tenant: t"]
  b:
    target: https://n.example/auth
    default_local_port: 465
"#;
    let config = load(yaml).config.expect("valid");
    let a = config.sasl(Some("a")).unwrap();
    assert_eq!(a.entry.targets.len(), 2);
    assert_eq!((a.default_local_port.as_str(), a.failure_delay), ("587", Duration::ZERO));
    assert_eq!(a.entry.retry.deadline, Duration::from_secs(5));
    assert!(a.entry.request.basic_auth.is_some(), "from defaults");
    assert_eq!(config.sasl(Some("b")).unwrap().default_local_port, "465");
    assert!(config.sasl(None).unwrap_err().contains("name one"));
    assert!(config.sasl(Some("c")).unwrap_err().contains("dovecot_sasl service c is not configured"));
}

#[test]
fn what_is_not_offered_is_an_error_with_its_path() {
    let yaml = r#"
dovecot_sasl:
  a:
    target: https://n.example/auth
    transport: grpc
    grpc: { address: "n.example:9443" }
    default_local_port: smtp
    status_code: 99
    failure_delay: soon
    sasl_oidc_auth:
      configuration_uri: https://idp.example/.well-known/openid-configuration
      client_id: postfix
  b: {}
"#;
    let loaded = load(yaml);
    let errors = loaded.config.unwrap_err();
    let expected = [
        "dovecot_sasl.a.transport: transport grpc is not offered",
        "dovecot_sasl.a.status_code: 99 is out of range",
        "dovecot_sasl.a.default_local_port: expected a port number (1 to 65535), found \"smtp\"",
        "dovecot_sasl.a.failure_delay: ",
        "dovecot_sasl.a.sasl_oidc_auth: XOAUTH2 and OAUTHBEARER are not offered yet",
        "dovecot_sasl.b: target is required",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, start) in errors.iter().zip(expected) {
        assert!(error.starts_with(start), "{error:?} does not start with {start:?}");
    }
    assert!(
        loaded.warnings.iter().any(|w| w.starts_with("dovecot_sasl.a.grpc: has no effect")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn sasl_keys_on_maps_and_policies_are_warnings() {
    let yaml = r#"
socket_maps:
  defaults:
    sasl_oidc_auth: { client_id: x }
  m:
    target: https://n.example/map
    value_field: result
    transport: json
    grpc: { address: "n.example:9443" }
    default_local_port: "587"
policy_services:
  p:
    target: https://n.example/policy
    value_field: action
    transport: json
"#;
    let loaded = load(yaml);
    assert!(loaded.config.is_ok(), "{:?}", loaded.config.err());
    let warnings = loaded.warnings.join("\n");
    for path in ["socket_maps.m.transport", "socket_maps.m.grpc", "socket_maps.m.default_local_port"] {
        let line = format!("{path}: has no effect here: a dovecot_sasl setting, which has no effect on a socket map");
        assert!(warnings.contains(&line), "no {line:?} in:\n{warnings}");
    }
    assert!(warnings.contains("socket_maps.m.sasl_oidc_auth: has no effect"), "through defaults:\n{warnings}");
    assert!(warnings.contains("policy_services.p.transport: has no effect here: a dovecot_sasl setting, which has no effect on a policy service"), "{warnings}");
}

#[test]
fn a_deadline_smtpd_would_not_wait_for_is_a_warning() {
    let loaded = load("dovecot_sasl:\n  a: { target: 'https://n.example/auth', deadline: 12s }\n");
    assert!(loaded.config.is_ok());
    assert!(
        loaded.warnings.iter().any(|w| w.starts_with("dovecot_sasl.a: deadline reaches smtpd's 10 s")),
        "{:?}",
        loaded.warnings
    );
}
