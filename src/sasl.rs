//! SASL mechanisms as a pure state machine: an `AUTH` and the client's `CONT` answers in,
//! a challenge to send, credentials to check or a `FAIL` out. No I/O, no HTTP.
//!
//! - PLAIN (RFC 4616): `[authzid] NUL login NUL password`. The authzid must be empty or the login
//!   name itself: another one would be a login as someone else (Dovecot's master users).
//! - LOGIN: challenges `Username:` then `Password:`; an initial response is the username.
//! - XOAUTH2 (Google): `user=<name>^Aauth=Bearer <token>^A^A`.
//! - OAUTHBEARER (RFC 7628): `n,a=<name>,^A<key=value>^A…^A^A`; channel binding is refused.
//!
//! Without an initial response the first challenge is empty (LOGIN's is `Username:`); an empty
//! one (`AUTH PLAIN =`) is a response of zero bytes, as in Dovecot. Names, passwords and tokens
//! must be non-empty UTF-8 without control characters (NUL, TAB, CR, LF, DEL, C1 …), anything
//! else is `invalid request` before any backend sees it: such text could split a reply line, a
//! log line or a backend request. Base64 is read with or without padding (smtpd checks only the
//! alphabet).

use std::fmt;

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::proto::dovecot::{FailReason, Mechanism};

mod session;
pub use session::{Action, Check, Refused, Session};

/// What the client proved it knows, for the backend to judge.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// PLAIN and LOGIN.
    Password { login: String, password: String },
    /// XOAUTH2 and OAUTHBEARER: the user the client named (if it named one) and its token.
    Bearer { user: Option<String>, token: String },
}

impl Credentials {
    /// The name the client gave, for the log and as the default `user=` of an `OK`.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Password { login, .. } => Some(login),
            Self::Bearer { user, .. } => user.as_deref(),
        }
    }
}

/// Never shows the password or the token.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password { login, .. } => f.debug_struct("Password").field("login", login).finish_non_exhaustive(),
            Self::Bearer { user, .. } => f.debug_struct("Bearer").field("user", user).finish_non_exhaustive(),
        }
    }
}

/// The next step of an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `challenge` (raw bytes; the codec encodes it) in a `CONT`, then pass the client's
    /// `CONT` data to `exchange.next`.
    Challenge { challenge: &'static [u8], exchange: Exchange },
    /// Ask the backend.
    Credentials { mechanism: Mechanism, credentials: Credentials },
    /// Answer `FAIL` without asking anyone.
    Fail(FailReason),
}

/// An exchange waiting for the client's next answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// The mechanism's one message (PLAIN, XOAUTH2, OAUTHBEARER).
    Response,
    LoginUser,
    LoginPassword {
        login: String,
    },
}

const INVALID: Step = Step::Fail(FailReason::InvalidRequest);

impl Exchange {
    /// Starts an exchange for the mechanism an `AUTH` names, with its initial response as sent
    /// (base64). `tokens` enables XOAUTH2 and OAUTHBEARER.
    pub fn start(mechanism: &str, initial: Option<&str>, tokens: bool) -> Step {
        let Some(mechanism) = Mechanism::parse(mechanism).filter(|m| tokens || !m.is_token()) else {
            return Step::Fail(FailReason::UnsupportedMechanism);
        };
        let state = if mechanism == Mechanism::Login { State::LoginUser } else { State::Response };
        let exchange = Exchange { mechanism, state };
        match initial.map(decode_base64) {
            None => exchange.ask(),
            Some(None) => INVALID,
            // As Dovecot does: an empty initial response to LOGIN still gets `Username:`.
            Some(Some(data)) if data.is_empty() && mechanism == Mechanism::Login => exchange.ask(),
            Some(Some(data)) => exchange.step(&data),
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Takes the client's answer to the last challenge (base64 as sent).
    pub fn next(self, data: &str) -> Step {
        match decode_base64(data) {
            Some(data) => self.step(&data),
            None => INVALID,
        }
    }

    fn ask(self) -> Step {
        let challenge: &'static [u8] = match self.state {
            State::Response => b"",
            State::LoginUser => b"Username:",
            State::LoginPassword { .. } => b"Password:",
        };
        Step::Challenge { challenge, exchange: self }
    }

    fn step(self, data: &[u8]) -> Step {
        let mechanism = self.mechanism;
        let credentials = match (self.state, mechanism) {
            (State::LoginUser, _) => {
                let Some(login) = text(data) else { return INVALID };
                return Exchange { state: State::LoginPassword { login }, ..self }.ask();
            }
            (State::LoginPassword { login }, _) => text(data).map(|password| Credentials::Password { login, password }),
            (State::Response, Mechanism::Plain) => plain(data),
            (State::Response, Mechanism::XOAuth2) => xoauth2(data),
            (State::Response, Mechanism::OAuthBearer) => oauthbearer(data),
            (State::Response, Mechanism::Login) => None,
        };
        credentials.map_or(INVALID, |credentials| Step::Credentials { mechanism, credentials })
    }
}

/// PLAIN: exactly two NULs; a NUL in the password is a third one and refused.
fn plain(data: &[u8]) -> Option<Credentials> {
    let mut parts = data.split(|&b| b == 0);
    let (Some(authzid), Some(login), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (login, password) = (text(login)?, text(password)?);
    (authzid.is_empty() || authzid == login.as_bytes()).then_some(Credentials::Password { login, password })
}

/// XOAUTH2: `user=…^Aauth=Bearer …^A^A`.
fn xoauth2(data: &[u8]) -> Option<Credentials> {
    let pairs = pairs(data.strip_suffix(b"\x01\x01")?)?;
    let user = match find(&pairs, "user") {
        Some(user) => Some(text(user.as_bytes())?),
        None => None,
    };
    Some(Credentials::Bearer { user, token: bearer(find(&pairs, "auth")?)? })
}

/// OAUTHBEARER: a GS2 header `n,[a=<saslname>],` (or `y,…`: the client could bind a channel but
/// thinks we cannot), then `^A`-separated `key=value` pairs ended by `^A^A`.
fn oauthbearer(data: &[u8]) -> Option<Credentials> {
    let body = data.strip_suffix(b"\x01\x01")?;
    let (header, rest) = match body.iter().position(|&b| b == 1) {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &b""[..]),
    };
    let header = std::str::from_utf8(header).ok()?;
    let ("n" | "y", authzid, "") = split3(header)? else { return None };
    let user = match authzid {
        "" => None,
        _ => Some(text(saslname(authzid.strip_prefix("a=")?)?.as_bytes())?),
    };
    let pairs = pairs(rest)?;
    Some(Credentials::Bearer { user, token: bearer(find(&pairs, "auth")?)? })
}

fn split3(header: &str) -> Option<(&str, &str, &str)> {
    let mut parts = header.split(',');
    let parts = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if parts.3.is_some() {
        return None;
    }
    Some((parts.0, parts.1, parts.2))
}

/// RFC 5801's saslname: `,` and `=` travel as `=2C` and `=3D`, and no other `=` may appear.
fn saslname(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(eq) = rest.find('=') {
        out.push_str(&rest[..eq]);
        out.push(match rest.get(eq + 1..eq + 3)? {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[eq + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `key=value` pairs separated by `^A`; keys are letters, each at most once, values clean text
/// (possibly empty).
fn pairs(data: &[u8]) -> Option<Vec<(&str, &str)>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut out: Vec<(&str, &str)> = Vec::new();
    if text.is_empty() {
        return Some(out);
    }
    for pair in text.split('\x01') {
        let (key, value) = pair.split_once('=')?;
        let fresh = out.iter().all(|(k, _)| *k != key);
        let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic());
        if !fresh || !key_ok || value.chars().any(char::is_control) {
            return None;
        }
        out.push((key, value));
    }
    Some(out)
}

fn find<'a>(pairs: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `Bearer <token>` (the scheme in any case, RFC 6750's `1*SP`), the token a `b64token`:
/// letters, digits and `-._~+/`, then only `=`.
fn bearer(auth: &str) -> Option<String> {
    let (scheme, token) = auth.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let b64token = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    (scheme.eq_ignore_ascii_case("bearer") && b64token).then(|| token.to_string())
}

/// Non-empty UTF-8 without control characters.
fn text(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.is_empty() && !text.chars().any(char::is_control)).then(|| text.to_string())
}

/// Standard base64 with or without padding; `=` alone (the SMTP way to send an empty initial
/// response) is empty.
fn decode_base64(data: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    if data == "=" {
        return Some(Vec::new());
    }
    LENIENT.decode(data).ok()
}

#[cfg(test)]
mod tests;
