//! Dovecot auth protocol: client lines through `proto::dovecot::decode` and a `sasl::Session`.
//!
//! The first input byte enables the token mechanisms (lowest bit); the rest is what smtpd (or
//! anything else on the socket) sent, read line after line as the serving loop reads it. Every
//! line must frame exactly, and everything the server would write must be exactly one reply line
//! with the request's id: a client must never be able to make the server write a second line.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use pfxhttp::proto::Decoded;
use pfxhttp::proto::dovecot::{self, FailReason, Id, MAX_LINE};
use pfxhttp::sasl::{Action, Credentials, Session};

/// `bytes` is one line `<command>\t<id>\t…\n` with no other LF or control byte but TAB.
fn one_line<'a>(bytes: &'a [u8], command: &str, id: Id) -> &'a str {
    let line = std::str::from_utf8(bytes).expect("reply is UTF-8").strip_suffix('\n').expect("reply ends with LF");
    assert!(!line.chars().any(|c| c.is_control() && c != '\t'), "control character in {line:?}");
    let mut fields = line.split('\t');
    assert_eq!(fields.next(), Some(command));
    assert_eq!(fields.next(), Some(id.to_string().as_str()));
    let rest = fields.next().expect("a third field");
    assert_eq!(fields.next(), None, "more than three fields: {line:?}");
    rest
}

fn clean(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(char::is_control)
}

fn check_action(action: Action) {
    match action {
        Action::Nothing | Action::Close(_) => {}
        Action::Send(bytes) => {
            let id = dovecot::line_id(&bytes).expect("CONT carries an id");
            let data = one_line(&bytes, "CONT", id);
            let challenge = STANDARD.decode(data).expect("challenge is base64");
            assert!([&b""[..], b"Username:", b"Password:"].contains(&challenge.as_slice()));
        }
        Action::Refuse(refused) => {
            let reason = one_line(&refused.reply(), "FAIL", refused.id).to_string();
            let texts = [FailReason::InvalidRequest, FailReason::UnsupportedMechanism].map(|r| r.text());
            assert!(texts.iter().any(|t| reason == format!("reason={t}")), "{reason}");
        }
        Action::Check(check) => {
            match &check.credentials {
                Credentials::Password { login, password } => assert!(clean(login) && clean(password)),
                Credentials::Bearer { user, token } => {
                    assert!(user.as_deref().is_none_or(clean) && clean(token) && !token.contains(' '));
                }
            }
            if let Some(user) = check.credentials.user() {
                let ok = dovecot::ok(check.id, user).expect("a checked name is a safe user= value");
                assert_eq!(one_line(&ok, "OK", check.id), format!("user={user}"));
            }
            one_line(&dovecot::fail(check.id, FailReason::InvalidLogin), "FAIL", check.id);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, buf @ ..] = data else { return };
    let mut session = Session::new(flags & 1 == 1);
    let mut rest = buf;
    loop {
        match dovecot::decode(rest) {
            Decoded::Frame(request, used) => {
                assert!(used > 0 && used <= MAX_LINE && used <= rest.len());
                assert_eq!(rest[used - 1], b'\n');
                assert!(!rest[..used - 1].contains(&b'\n'), "a frame spans two lines");
                // Bytes after the line change nothing.
                assert_eq!(dovecot::decode(&rest[..used]), Decoded::Frame(request, used));
                let Decoded::Frame(request, _) = dovecot::decode(rest) else { unreachable!() };
                check_action(session.input(request));
                rest = &rest[used..];
            }
            Decoded::Incomplete => {
                assert!(rest.len() < MAX_LINE && !rest.contains(&b'\n'), "waiting after a full line");
                break;
            }
            Decoded::Invalid(why) => {
                assert!(!why.is_empty());
                break;
            }
        }
    }
    // Whatever name a backend answers with, an OK is one line or is refused.
    let name = String::from_utf8_lossy(buf);
    if let Ok(ok) = dovecot::ok(Id::MIN, &name) {
        assert_eq!(one_line(&ok, "OK", Id::MIN), format!("user={name}"));
    }
});
