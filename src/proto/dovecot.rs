//! Dovecot's auth protocol, server side, as Postfix's smtpd speaks it (`smtpd_sasl_type = dovecot`).
//!
//! Lines end in LF and fields are separated by TAB. smtpd sends `VERSION\t1\t<minor>` and
//! `CPID\t<pid>` on connect, then one request at a time:
//! `AUTH\t<id>\t<mech>\tservice=smtp\tnologin\tlip=…\trip=…[\tsecured][\tresp=<base64>]` and
//! `CONT\t<id>\t<base64>`. The server greets with `VERSION`, one `MECH` line per mechanism,
//! `SPID`, `CUID`, `COOKIE` and `DONE`, and answers a request with `CONT\t<id>\t<base64>`,
//! `OK\t<id>\tuser=<name>` or `FAIL\t<id>\treason=<text>`. smtpd ignores a reply whose id is not
//! the one it waits for (it then times out), so every reply carries the request's own id.
//!
//! Dovecot escapes TAB and LF inside values with `\x01` sequences, but Postfix neither escapes
//! what it sends nor unescapes what it reads: it uses a value byte for byte. So nothing here
//! unescapes, a client line holding a control byte other than TAB is refused, and the encoders
//! never send a value holding a control character. A user name that holds one is refused rather
//! than escaped: escaped it would become another `sasl_username`, and a raw LF would start a
//! reply line of its own (a forged `OK` for the next request).

use std::fmt::Write as _;
use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Decoded;

/// The longest client line, LF included, as in Dovecot's auth server.
pub const MAX_LINE: usize = 16 * 1024;

/// A request id: smtpd counts from 1 and never sends 0.
pub type Id = NonZeroU32;

/// The mechanisms offered, by their names on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    const ALL: [Mechanism; 4] = [Self::Plain, Self::Login, Self::XOAuth2, Self::OAuthBearer];

    /// The mechanisms to offer: the token ones only when token validation is configured.
    pub fn offered(tokens: bool) -> &'static [Mechanism] {
        if tokens { &Self::ALL } else { &Self::ALL[..2] }
    }

    /// The name as sent in `MECH` lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::XOAuth2 => "XOAUTH2",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism an `AUTH` names. smtpd forwards the name as the SMTP client typed it, and
    /// SASL mechanism names are case-insensitive.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Whether the mechanism carries a bearer token rather than a password.
    pub fn is_token(self) -> bool {
        matches!(self, Self::XOAuth2 | Self::OAuthBearer)
    }
}

/// The only reasons a `FAIL` ever gives: smtpd shows the text to the SMTP client, so it is fixed
/// and does not tell an unknown user from a wrong password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    InvalidLogin,
    InvalidRequest,
    UnsupportedMechanism,
}

impl FailReason {
    pub fn text(self) -> &'static str {
        match self {
            Self::InvalidLogin => "Invalid login or password",
            Self::InvalidRequest => "invalid request",
            Self::UnsupportedMechanism => "unsupported mechanism",
        }
    }
}

/// One client line.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `VERSION\t1\t<minor>`; any other major version is invalid.
    Version {
        minor: u32,
    },
    /// `CPID\t<pid>`: the smtpd process.
    Cpid(u32),
    Auth(Auth),
    /// `CONT\t<id>\t<data>`: the client's answer to a challenge, base64 as sent (may be empty).
    Cont {
        id: Id,
        data: String,
    },
}

/// An `AUTH` request. Parameters other than these are ignored, as Dovecot does.
#[derive(Debug, PartialEq, Eq)]
pub struct Auth {
    pub id: Id,
    /// The mechanism name as the SMTP client typed it.
    pub mechanism: String,
    pub params: Params,
    /// The initial response, base64 as sent: `None` when the client gave none, `Some("")` or
    /// `Some("=")` when it gave an empty one (smtpd forwards `AUTH PLAIN =` as `resp==`).
    pub resp: Option<String>,
}

/// What an `AUTH` tells about the SMTP session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `service=` (`smtpd_sasl_service`, `smtp` by default).
    pub service: Option<String>,
    /// `lip=`: the server address the SMTP client connected to.
    pub local_ip: Option<String>,
    /// `rip=`: the SMTP client's address.
    pub remote_ip: Option<String>,
    /// The `secured` flag: the SMTP session uses TLS.
    pub secured: bool,
}

/// Decodes the client line at the start of `buf`.
///
/// A line of [`MAX_LINE`] bytes or more without its LF, a control byte other than TAB, bytes
/// that are not UTF-8, an unknown command or a malformed one are invalid: the connection cannot
/// be trusted to stay in step any more. Messages for the log never quote a `resp=` or `CONT`
/// payload.
pub fn decode(buf: &[u8]) -> Decoded<Request> {
    let Some(nl) = buf.iter().take(MAX_LINE).position(|&b| b == b'\n') else {
        if buf.len() >= MAX_LINE {
            return Decoded::Invalid(format!("auth client line longer than {} bytes", MAX_LINE - 1));
        }
        return Decoded::Incomplete;
    };
    let line = &buf[..nl];
    if let Some(b) = line.iter().find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Decoded::Invalid(format!("control byte 0x{b:02x} in an auth client line"));
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Decoded::Invalid("auth client line is not UTF-8".into());
    };
    match parse(line) {
        Ok(request) => Decoded::Frame(request, nl + 1),
        Err(why) => Decoded::Invalid(why),
    }
}

/// The id of the `AUTH` or `CONT` line at the start of `buf`, whether the line is complete,
/// valid or not: lets the server answer `FAIL` with the request's own id to a line it refuses
/// (one too long, say) before it closes the connection.
pub fn line_id(buf: &[u8]) -> Option<Id> {
    let rest = buf.strip_prefix(b"AUTH\t").or_else(|| buf.strip_prefix(b"CONT\t"))?;
    let tab = rest.iter().take(11).position(|&b| b == b'\t')?;
    parse_id(std::str::from_utf8(&rest[..tab]).ok()?).ok()
}

fn parse(line: &str) -> Result<Request, String> {
    let mut fields = line.split('\t');
    let command = fields.next().unwrap_or_default();
    let fields: Vec<&str> = fields.collect();
    match command {
        "VERSION" => match fields[..] {
            [major, minor, ..] if number(major) == Some(1) => {
                number(minor).map(|minor| Request::Version { minor }).ok_or_else(|| "bad VERSION minor".into())
            }
            _ => Err(format!("unsupported auth protocol VERSION {}", shown(fields.first().unwrap_or(&"")))),
        },
        "CPID" => match fields[..] {
            [pid] => number(pid).map(Request::Cpid).ok_or_else(|| format!("bad CPID {}", shown(pid))),
            _ => Err("CPID without exactly one field".into()),
        },
        "AUTH" => auth(&fields).map(Request::Auth),
        "CONT" => match fields[..] {
            [id, data] => Ok(Request::Cont { id: parse_id(id)?, data: data.to_string() }),
            _ => Err("CONT without exactly an id and a data field".into()),
        },
        other => Err(format!("unknown auth client command {}", shown(other))),
    }
}

fn auth(fields: &[&str]) -> Result<Auth, String> {
    let [id, mechanism, params @ ..] = fields else {
        return Err("AUTH without an id and a mechanism".into());
    };
    let mut auth = Auth { id: parse_id(id)?, mechanism: mechanism.to_string(), params: Params::default(), resp: None };
    for param in params {
        if auth.resp.is_some() {
            // As in Dovecot: the initial response comes last.
            return Err(format!("AUTH {} has parameters after resp", auth.id));
        }
        match param.split_once('=') {
            Some(("resp", value)) => auth.resp = Some(value.to_string()),
            Some(("service", value)) => auth.params.service = Some(value.to_string()),
            Some(("lip", value)) => auth.params.local_ip = Some(value.to_string()),
            Some(("rip", value)) => auth.params.remote_ip = Some(value.to_string()),
            None if *param == "secured" => auth.params.secured = true,
            _ => {}
        }
    }
    Ok(auth)
}

/// A request id: decimal digits only, without a leading zero (the reply repeats it as a number,
/// which must read the same to smtpd), not 0, at most `u32::MAX`.
fn parse_id(text: &str) -> Result<Id, String> {
    number(text)
        .filter(|_| !text.starts_with('0'))
        .and_then(NonZeroU32::new)
        .ok_or_else(|| format!("bad request id {}", shown(text)))
}

/// Decimal digits only (no sign, no space) that fit a u32.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The start of a field, printable, for a log message.
fn shown(field: &str) -> String {
    let cut = field.char_indices().nth(24).map_or(field, |(i, _)| &field[..i]);
    cut.escape_default().to_string()
}

/// The greeting, sent before anything is read: `VERSION\t1\t2`, a `MECH` line per mechanism
/// (flagged `plaintext`, as Dovecot flags all four: the secret crosses in the clear, so smtpd's
/// `noplaintext` filters them), `SPID`, `CUID`, `COOKIE` (the 16 bytes in hex) and `DONE`.
pub fn handshake(mechanisms: &[Mechanism], spid: u32, cuid: u32, cookie: &[u8; 16]) -> Vec<u8> {
    let mut out = String::from("VERSION\t1\t2\n");
    for mechanism in mechanisms {
        let _ = writeln!(out, "MECH\t{}\tplaintext", mechanism.name());
    }
    let _ = write!(out, "SPID\t{spid}\nCUID\t{cuid}\nCOOKIE\t");
    for b in cookie {
        let _ = write!(out, "{b:02x}");
    }
    out.push_str("\nDONE\n");
    out.into_bytes()
}

/// `CONT\t<id>\t<challenge in base64>`.
pub fn cont(id: Id, challenge: &[u8]) -> Vec<u8> {
    format!("CONT\t{id}\t{}\n", STANDARD.encode(challenge)).into_bytes()
}

/// `FAIL\t<id>\treason=<text>`.
pub fn fail(id: Id, reason: FailReason) -> Vec<u8> {
    format!("FAIL\t{id}\treason={}\n", reason.text()).into_bytes()
}

/// `OK\t<id>\tuser=<name>`; smtpd needs `user=` (without it the login fails) and takes the name
/// as the session's `sasl_username`.
pub fn ok(id: Id, user: &str) -> Result<Vec<u8>, UnsafeUser> {
    if user.is_empty() {
        return Err(UnsafeUser::Empty);
    }
    if let Some(c) = user.chars().find(|c| c.is_control()) {
        return Err(UnsafeUser::Control(c));
    }
    Ok(format!("OK\t{id}\tuser={user}\n").into_bytes())
}

/// Why [`ok`] refused a user name; the name itself is not repeated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeUser {
    #[error("the user name is empty")]
    Empty,
    #[error("the user name holds the control character {0:?}")]
    Control(char),
}

#[cfg(test)]
mod tests;
