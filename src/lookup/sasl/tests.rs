use super::*;
use crate::config::{Format, load_str};
use crate::http::fake::Fake;
use crate::http::{HttpError, Response};
use crate::proto::dovecot::{Id, Mechanism, Params};

fn service(keys: &str) -> SaslService {
    let yaml = format!("dovecot_sasl:\n  auth: {{ target: 'http://a.test/auth', {keys} }}\n");
    let mut config = load_str(&yaml, Format::Yaml, "t").config.expect("valid test config");
    config.sasl.remove(0)
}

fn plain(login: &str, password: &str, secured: bool) -> Check {
    Check {
        id: Id::new(7).unwrap(),
        mechanism: Mechanism::Plain,
        params: Params {
            service: Some("smtp".into()),
            local_ip: Some("192.0.2.1".into()),
            remote_ip: Some("198.51.100.9".into()),
            secured,
        },
        credentials: Credentials::Password { login: login.into(), password: password.into() },
    }
}

fn status(code: u16, headers: &[(&'static str, &[u8])]) -> Result<Response, HttpError> {
    let mut map = reqwest::header::HeaderMap::new();
    for (n, v) in headers {
        map.insert(*n, reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    Ok(Response { status: code, headers: map, body: b"null".to_vec() })
}

fn run(service: &SaslService, check: &Check, script: Vec<Result<Response, HttpError>>) -> (Verdict, Report, Fake) {
    let fake = Fake::new(script);
    let store = Store::new(&crate::config::StateDb::Memory);
    let (verdict, report) = super::check(service, check, "rid", &fake, &store, true);
    (verdict, report, fake)
}

#[test]
fn the_default_body_is_what_nauthilus_reads() {
    let s = service("default_local_port: '587'");
    let (verdict, _, fake) = run(&s, &plain("u@x.org", "p\"w", true), vec![status(200, &[])]);
    assert_eq!(verdict, Verdict::Ok("u@x.org".into()));
    let sent = &fake.sent.borrow()[0];
    let body: serde_json::Value = serde_json::from_slice(sent.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"username": "u@x.org", "password": "p\"w", "protocol": "smtp", "method": "plain",
            "client_ip": "198.51.100.9", "local_ip": "192.0.2.1", "local_port": "587", "ssl": "on"})
    );
    let (_, _, fake) = run(&s, &plain("u", "pw-1234", false), vec![status(200, &[])]);
    let body: serde_json::Value = serde_json::from_slice(fake.sent.borrow()[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(body.get("ssl"), None, "no ssl without TLS");
}

#[test]
fn auth_user_names_the_user_unless_it_is_unsafe() {
    let s = service("failure_delay: 0s");
    let (verdict, ..) = run(&s, &plain("u", "pw-1234", false), vec![status(200, &[("auth-user", b"real@x.org")])]);
    assert_eq!(verdict, Verdict::Ok("real@x.org".into()));
    let (verdict, ..) = run(&s, &plain("u", "pw-1234", false), vec![status(200, &[("auth-user", "jörg".as_bytes())])]);
    assert_eq!(verdict, Verdict::Ok("jörg".into()));
    for bad in [&b"a\tb"[..], b"", b"\xff"] {
        let (verdict, ..) = run(&s, &plain("u", "pw-1234", false), vec![status(200, &[("auth-user", bad)])]);
        assert!(matches!(&verdict, Verdict::Temporary(r) if r.starts_with("unusable Auth-User")), "{verdict:?}");
    }
}

#[test]
fn only_403_is_a_wrong_password_and_other_answers_are_no_answer() {
    let s = service("max_attempts: 1");
    let (verdict, ..) = run(&s, &plain("u", "pw-1234", false), vec![status(403, &[])]);
    assert_eq!(verdict, Verdict::Fail);
    for (answer, reason) in [
        (status(401, &[]), "unexpected HTTP status 401"),
        (status(302, &[]), "unexpected HTTP status 302"),
        (status(404, &[]), "unexpected HTTP status 404"),
        (status(429, &[]), "unexpected HTTP status 429"),
        (status(500, &[]), "unexpected HTTP status 500"),
        (Err(HttpError::Timeout), "no answer from a.test in time"),
        (Err(HttpError::Connect("refused".into())), "a.test: cannot connect: refused"),
    ] {
        let (verdict, ..) = run(&s, &plain("u", "pw-1234", false), vec![answer]);
        assert_eq!(verdict, Verdict::Temporary(reason.into()));
    }
}

#[test]
fn the_transcript_and_reasons_never_show_the_password() {
    let s = service("custom_headers: ['X-Pw: {{ password }}']");
    let (verdict, report, _) =
        run(&s, &plain("u", "Secret-Pw", false), vec![Err(HttpError::Other("Secret-Pw in an error".into())); 2]);
    assert!(matches!(&verdict, Verdict::Temporary(r) if r.contains("not shown")), "{verdict:?}");
    let transcript = report.transcript.join("\n");
    assert!(!transcript.contains("Secret-Pw"), "{transcript}");
    assert!(transcript.contains(r#""password":"***""#), "{transcript}");
}

#[test]
fn a_password_in_the_target_does_not_load() {
    let yaml = "dovecot_sasl:\n  auth: { target: 'http://a.test/{{ password }}' }\n";
    let errors = load_str(yaml, Format::Yaml, "t").config.unwrap_err();
    assert!(errors[0].starts_with("dovecot_sasl.auth.target[0]: template error"), "{errors:?}");
}

/// A backend that echoes the request shows the password JSON-escaped or percent-encoded: such
/// lines of the transcript are dropped too, and a reason holding it is replaced.
#[test]
fn the_password_is_not_shown_in_an_escaped_form_either() {
    let s = service("custom_headers: ['X-Trace: 1']");
    let password = r#"Se"cr/et\Pw ü+"#;
    let echoed = |body: &str| {
        Ok(Response { status: 500, headers: reqwest::header::HeaderMap::new(), body: body.as_bytes().to_vec() })
    };
    let script =
        vec![echoed(r#"{"echo":{"password":"Se\"cr/et\\Pw ü+"}}"#), echoed("password=Se%22cr%2Fet%5CPw+%C3%BC%2B")];
    let (verdict, report, _) = run(&s, &plain("u", password, false), script);
    assert!(matches!(&verdict, Verdict::Temporary(_)), "{verdict:?}");
    let transcript = report.transcript.join("\n");
    for shown in [r#"Se\"cr/et\\Pw"#, "Se%22cr%2Fet%5CPw"] {
        assert!(!transcript.contains(shown), "{shown} in:\n{transcript}");
    }
    assert!(transcript.contains("< HTTP 500"), "{transcript}");
    assert_eq!(scrub(r#"bad body {"password":"Se\"cr/et\\Pw ü+"}"#.into(), password), scrub(password.into(), password));
}
