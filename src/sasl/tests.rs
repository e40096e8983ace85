use base64::engine::general_purpose::STANDARD as B64;

use super::*;

fn b64(raw: &[u8]) -> String {
    B64.encode(raw)
}

fn password(login: &str, password: &str) -> Credentials {
    Credentials::Password { login: login.into(), password: password.into() }
}

fn bearer_of(user: Option<&str>, token: &str) -> Credentials {
    Credentials::Bearer { user: user.map(Into::into), token: token.into() }
}

/// The credentials `start` gives for a mechanism and a raw initial response.
fn initial(mechanism: &str, raw: &[u8]) -> Step {
    Exchange::start(mechanism, Some(&b64(raw)), true)
}

fn creds(mechanism: Mechanism, credentials: Credentials) -> Step {
    Step::Credentials { mechanism, credentials }
}

/// The challenge and the exchange waiting for the answer.
fn challenge(step: Step) -> (&'static [u8], Exchange) {
    match step {
        Step::Challenge { challenge, exchange } => (challenge, exchange),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

const INVALID_REQUEST: Step = Step::Fail(FailReason::InvalidRequest);

#[test]
fn plain_with_initial_response() {
    assert_eq!(initial("PLAIN", b"\0u@x.org\0pa ss"), creds(Mechanism::Plain, password("u@x.org", "pa ss")));
    assert_eq!(
        initial("plain", "\0jürgen\0pässwörd".as_bytes()),
        creds(Mechanism::Plain, password("jürgen", "pässwörd"))
    );
}

#[test]
fn plain_authzid_must_be_empty_or_the_login() {
    assert_eq!(initial("PLAIN", b"u@x.org\0u@x.org\0pw"), creds(Mechanism::Plain, password("u@x.org", "pw")));
    // Logging in as someone else with one's own password (a Dovecot master-user login).
    assert_eq!(initial("PLAIN", b"boss@x.org\0u@x.org\0pw"), INVALID_REQUEST);
    assert_eq!(initial("PLAIN", b"U@x.org\0u@x.org\0pw"), INVALID_REQUEST);
}

#[test]
fn plain_without_initial_response_gets_an_empty_challenge() {
    let (sent, exchange) = challenge(Exchange::start("PLAIN", None, false));
    assert_eq!(sent, b"");
    assert_eq!(exchange.mechanism(), Mechanism::Plain);
    assert_eq!(exchange.next(&b64(b"\0u\0p")), creds(Mechanism::Plain, password("u", "p")));
}

#[test]
fn plain_with_an_empty_initial_response_fails() {
    // `AUTH PLAIN =` arrives as `resp==`: a response of zero bytes, not a request for a challenge.
    assert_eq!(Exchange::start("PLAIN", Some("="), false), INVALID_REQUEST);
    assert_eq!(Exchange::start("PLAIN", Some(""), false), INVALID_REQUEST);
}

#[test]
fn plain_needs_exactly_two_nuls_and_non_empty_fields() {
    for bad in [&b""[..], b"u\0p", b"\0u", b"\0u\0p\0", b"\0u\0pass\0word", b"\0\0p", b"\0u\0", b"\0\0", b"up"] {
        assert_eq!(initial("PLAIN", bad), INVALID_REQUEST, "{}", bad.escape_ascii());
    }
}

#[test]
fn control_characters_in_names_or_passwords_fail() {
    for bad in ["a\tb", "a\rb", "a\nb", "a\x01b", "a\x1bb", "a\x7fb", "a\u{85}b", "a\u{9b}b"] {
        let login = format!("\0{bad}\0pw");
        let pass = format!("\0user\0{bad}");
        assert_eq!(initial("PLAIN", login.as_bytes()), INVALID_REQUEST, "{bad:?}");
        assert_eq!(initial("PLAIN", pass.as_bytes()), INVALID_REQUEST, "{bad:?}");
        assert_eq!(initial("LOGIN", bad.as_bytes()), INVALID_REQUEST, "{bad:?}");
        let (_, exchange) = challenge(initial("LOGIN", b"user"));
        assert_eq!(exchange.next(&b64(bad.as_bytes())), INVALID_REQUEST, "{bad:?}");
    }
    assert_eq!(initial("PLAIN", b"\0u\xff\0pw"), INVALID_REQUEST);
    assert_eq!(initial("PLAIN", b"\0u\0p\xc3"), INVALID_REQUEST);
}

#[test]
fn a_name_that_would_forge_a_reply_line_fails() {
    let forged = format!("\0{}\nOK\t22\tuser=victim@example.org\0pw", "a".repeat(4080));
    assert_eq!(initial("PLAIN", forged.as_bytes()), INVALID_REQUEST);
    assert_eq!(initial("LOGIN", b"x\nOK\t22\tuser=victim@example.org"), INVALID_REQUEST);
}

#[test]
fn base64_with_or_without_padding_nothing_else() {
    // "\0u\0pw" is AHUAcHc= padded.
    for good in ["AHUAcHc=", "AHUAcHc"] {
        assert_eq!(Exchange::start("PLAIN", Some(good), false), creds(Mechanism::Plain, password("u", "pw")), "{good}");
    }
    for bad in ["AHUAcHc==", "AHUA cHc=", "AHUAcHc=\r", "AHU*cHc=", "A", "AH=AcHc=", "AHUA-_c=", "AB==", "====", "==="]
    {
        assert_eq!(Exchange::start("PLAIN", Some(bad), false), INVALID_REQUEST, "{bad}");
        let (_, exchange) = challenge(Exchange::start("PLAIN", None, false));
        assert_eq!(exchange.next(bad), INVALID_REQUEST, "{bad}");
    }
}

#[test]
fn login_asks_for_username_then_password() {
    let (sent, exchange) = challenge(Exchange::start("LOGIN", None, false));
    assert_eq!(sent, b"Username:");
    let (sent, exchange) = challenge(exchange.next("dXNlckB4Lm9yZw=="));
    assert_eq!(sent, b"Password:");
    assert_eq!(exchange.next("c2VjcmV0"), creds(Mechanism::Login, password("user@x.org", "secret")));
}

#[test]
fn login_initial_response_is_the_username() {
    let (sent, exchange) = challenge(initial("login", b"user@x.org"));
    assert_eq!(sent, b"Password:");
    assert_eq!(exchange.next(&b64(b"pw")), creds(Mechanism::Login, password("user@x.org", "pw")));
    // An empty initial response still gets `Username:`, as in Dovecot.
    assert_eq!(challenge(Exchange::start("LOGIN", Some("="), false)).0, b"Username:");
}

#[test]
fn login_refuses_empty_answers_and_bad_base64() {
    let (_, exchange) = challenge(Exchange::start("LOGIN", None, false));
    assert_eq!(exchange.next(""), INVALID_REQUEST);
    let (_, exchange) = challenge(initial("LOGIN", b"u"));
    assert_eq!(exchange.next(""), INVALID_REQUEST);
    let (_, exchange) = challenge(initial("LOGIN", b"u"));
    assert_eq!(exchange.next("c2VjcmV0*"), INVALID_REQUEST);
    assert_eq!(Exchange::start("LOGIN", Some("dXNlcg=*"), false), INVALID_REQUEST);
}

#[test]
fn unknown_and_disabled_mechanisms_are_unsupported() {
    let unsupported = Step::Fail(FailReason::UnsupportedMechanism);
    for name in ["CRAM-MD5", "DIGEST-MD5", "ANONYMOUS", "EXTERNAL", "", "PLAIN\u{0}"] {
        assert_eq!(Exchange::start(name, Some("AHUAcA=="), true), unsupported, "{name:?}");
    }
    let token = b64(b"user=u\x01auth=Bearer t\x01\x01");
    assert_eq!(Exchange::start("XOAUTH2", Some(&token), false), unsupported);
    assert_eq!(Exchange::start("OAUTHBEARER", None, false), unsupported);
}

#[test]
fn xoauth2_as_google_documents_it() {
    let raw = b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01";
    let token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
    assert_eq!(initial("XOAUTH2", raw), creds(Mechanism::XOAuth2, bearer_of(Some("someuser@example.com"), token)));
    // Scheme in any case, several spaces, padding, no user, other keys ignored.
    let raw = b"auth=bEaReR  a-b._~+/c==\x01host=x\x01\x01";
    assert_eq!(initial("xoauth2", raw), creds(Mechanism::XOAuth2, bearer_of(None, "a-b._~+/c==")));
    let (sent, exchange) = challenge(Exchange::start("XOAUTH2", None, true));
    assert_eq!(sent, b"");
    assert_eq!(
        exchange.next(&b64(b"user=u\x01auth=Bearer t\x01\x01")),
        creds(Mechanism::XOAuth2, bearer_of(Some("u"), "t"))
    );
}

#[test]
fn malformed_xoauth2_fails() {
    for bad in [
        &b""[..],
        b"user=u\x01auth=Bearer t\x01",
        b"user=u\x01auth=Bearer t",
        b"user=u\x01\x01",
        b"user=\x01auth=Bearer t\x01\x01",
        b"user=u\nOK\x01auth=Bearer t\x01\x01",
        b"user=u\x01auth=Basic dTpw\x01\x01",
        b"user=u\x01auth=Bearer\x01\x01",
        b"user=u\x01auth=Bearer \x01\x01",
        b"user=u\x01auth=Bearer a b\x01\x01",
        b"user=u\x01auth=Bearer a=b\x01\x01",
        b"user=u\x01auth=Bearer t\r\x01\x01",
        b"user=u\x01auth=Bearer t\x01auth=Bearer s\x01\x01",
        b"user=u\x01user=v\x01auth=Bearer t\x01\x01",
        b"user=u\x01\x01auth=Bearer t\x01\x01",
        b"user=u\x01noequals\x01auth=Bearer t\x01\x01",
        b"us3r=u\x01auth=Bearer t\x01\x01",
        b"user=\xff\x01auth=Bearer t\x01\x01",
    ] {
        assert_eq!(initial("XOAUTH2", bad), INVALID_REQUEST, "{}", bad.escape_ascii());
    }
}

#[test]
fn oauthbearer_as_rfc_7628_shows_it() {
    let raw = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01\
                auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
    let token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";
    assert_eq!(initial("OAUTHBEARER", raw), creds(Mechanism::OAuthBearer, bearer_of(Some("user@example.com"), token)));
    assert_eq!(
        initial("oauthbearer", b"n,,\x01auth=Bearer t\x01\x01"),
        creds(Mechanism::OAuthBearer, bearer_of(None, "t"))
    );
    assert_eq!(
        initial("OAUTHBEARER", b"y,,\x01auth=Bearer t\x01\x01"),
        creds(Mechanism::OAuthBearer, bearer_of(None, "t"))
    );
    // `,` and `=` in the authzid travel escaped.
    let raw = b"n,a=a=2Cb=3Dc,\x01auth=Bearer t\x01\x01";
    assert_eq!(initial("OAUTHBEARER", raw), creds(Mechanism::OAuthBearer, bearer_of(Some("a,b=c"), "t")));
}

#[test]
fn malformed_oauthbearer_fails() {
    for bad in [
        &b""[..],
        // The client's answer to an error challenge is not a login.
        b"\x01",
        b"n,,\x01\x01",
        b"p=tls-unique,,\x01auth=Bearer t\x01\x01",
        b"n,a=u\x01auth=Bearer t\x01\x01",
        b"n,a=u,x,\x01auth=Bearer t\x01\x01",
        b"n,b=u,\x01auth=Bearer t\x01\x01",
        b"n,a=,\x01auth=Bearer t\x01\x01",
        b"n,a=u=41,\x01auth=Bearer t\x01\x01",
        b"n,a=u=2,\x01auth=Bearer t\x01\x01",
        b"n,a=u\tv,\x01auth=Bearer t\x01\x01",
        b"n,a=u\nOK,\x01auth=Bearer t\x01\x01",
        b"N,,\x01auth=Bearer t\x01\x01",
        b"n,,\x01auth=Bearer t\x01",
        b"n,,\x01auth=Bearer t\x01auth=Bearer s\x01\x01",
        b"n,,\x01auth=Bearer t\x01host=a\x7f\x01\x01",
    ] {
        assert_eq!(initial("OAUTHBEARER", bad), INVALID_REQUEST, "{}", bad.escape_ascii());
    }
}

#[test]
fn credentials_debug_hides_secrets() {
    let shown = format!("{:?} {:?}", password("u@x.org", "hunter2"), bearer_of(Some("v"), "tok3n"));
    assert!(shown.contains("u@x.org") && shown.contains("\"v\""), "{shown}");
    assert!(!shown.contains("hunter2") && !shown.contains("tok3n"), "{shown}");
    let (_, exchange) = challenge(initial("LOGIN", b"u"));
    assert!(!format!("{exchange:?}").contains("hunter2"));
}

#[test]
fn credentials_name_the_user() {
    assert_eq!(password("u", "p").user(), Some("u"));
    assert_eq!(bearer_of(Some("v"), "t").user(), Some("v"));
    assert_eq!(bearer_of(None, "t").user(), None);
}
