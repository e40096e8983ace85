//! One auth connection: client lines in, what to do out.
//!
//! smtpd sends `VERSION` first and then one request at a time, many per connection. When an SMTP
//! client aborts an exchange with `*`, smtpd tells us nothing and later sends an `AUTH` with a new
//! id: a new `AUTH` simply replaces the exchange in progress.

use super::{Credentials, Exchange, Step};
use crate::proto::dovecot::{self, FailReason, Id, Mechanism, Params, Request};

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Session {
    tokens: bool,
    greeted: bool,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    id: Id,
    params: Params,
    exchange: Exchange,
}

/// What the serving loop does with a client line.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to send.
    Nothing,
    /// Send these bytes (a `CONT` challenge) and read on.
    Send(Vec<u8>),
    /// Answer `FAIL` ([`Refused::reply`]) without asking the backend.
    Refuse(Refused),
    /// Ask the backend, then answer `dovecot::ok(check.id, user)` or
    /// `dovecot::fail(check.id, FailReason::InvalidLogin)`.
    Check(Check),
    /// The client broke the protocol: log the reason and close the connection without a reply.
    Close(String),
}

/// A request answered `FAIL` without a backend call.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub id: Id,
    pub reason: FailReason,
    /// `None` for an unsupported mechanism and for a `CONT` without an exchange.
    pub mechanism: Option<Mechanism>,
    pub params: Params,
}

impl Refused {
    /// The `FAIL` line.
    pub fn reply(&self) -> Vec<u8> {
        dovecot::fail(self.id, self.reason)
    }
}

/// Credentials to check with the backend, with what the `AUTH` told about the SMTP session.
#[derive(Debug, PartialEq, Eq)]
pub struct Check {
    pub id: Id,
    pub mechanism: Mechanism,
    pub params: Params,
    pub credentials: Credentials,
}

impl Session {
    /// A new connection; `tokens` enables XOAUTH2 and OAUTHBEARER (offer the same mechanisms in
    /// the handshake: `Mechanism::offered(tokens)`).
    pub fn new(tokens: bool) -> Session {
        Session { tokens, greeted: false, pending: None }
    }

    /// Handles one decoded client line.
    pub fn input(&mut self, request: Request) -> Action {
        match (self.greeted, request) {
            (false, Request::Version { .. }) => {
                self.greeted = true;
                Action::Nothing
            }
            (false, _) => Action::Close("auth client did not start with VERSION".into()),
            (true, Request::Version { .. }) => Action::Close("auth client sent VERSION twice".into()),
            (true, Request::Cpid(_)) => Action::Nothing,
            (true, Request::Auth(auth)) => {
                let step = Exchange::start(&auth.mechanism, auth.resp.as_deref(), self.tokens);
                let mechanism = Mechanism::parse(&auth.mechanism);
                self.advance(auth.id, mechanism, auth.params, step)
            }
            (true, Request::Cont { id, data }) => match self.pending.take() {
                Some(pending) if pending.id == id => {
                    let mechanism = Some(pending.exchange.mechanism());
                    self.advance(id, mechanism, pending.params, pending.exchange.next(&data))
                }
                // A CONT for an exchange that is not (or no longer) in progress.
                _ => Action::Refuse(Refused {
                    id,
                    reason: FailReason::InvalidRequest,
                    mechanism: None,
                    params: Params::default(),
                }),
            },
        }
    }

    fn advance(&mut self, id: Id, mechanism: Option<Mechanism>, params: Params, step: Step) -> Action {
        self.pending = None;
        match step {
            Step::Challenge { challenge, exchange } => {
                self.pending = Some(Pending { id, params, exchange });
                Action::Send(dovecot::cont(id, challenge))
            }
            Step::Credentials { mechanism, credentials } => Action::Check(Check { id, mechanism, params, credentials }),
            Step::Fail(reason) => {
                let mechanism = mechanism.filter(|_| reason != FailReason::UnsupportedMechanism);
                Action::Refuse(Refused { id, reason, mechanism, params })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Decoded;

    fn id(n: u32) -> Id {
        Id::new(n).unwrap()
    }

    /// Decodes one line as the serving loop would and hands it to the session.
    fn feed(session: &mut Session, line: &[u8]) -> Action {
        match dovecot::decode(line) {
            Decoded::Frame(request, used) if used == line.len() => session.input(request),
            other => panic!("{}: {other:?}", line.escape_ascii()),
        }
    }

    fn greeted(tokens: bool) -> Session {
        let mut session = Session::new(tokens);
        assert_eq!(feed(&mut session, b"VERSION\t1\t0\n"), Action::Nothing);
        assert_eq!(feed(&mut session, b"CPID\t4711\n"), Action::Nothing);
        session
    }

    fn params(secured: bool) -> Params {
        Params {
            service: Some("smtp".into()),
            local_ip: Some("127.0.0.1".into()),
            remote_ip: Some("192.0.2.9".into()),
            secured,
        }
    }

    fn refused(action: Action) -> Refused {
        match action {
            Action::Refuse(refused) => refused,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const AUTH_HEAD: &str = "service=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.9";

    #[test]
    fn plain_with_initial_response_asks_the_backend() {
        let mut session = greeted(false);
        let line = format!("AUTH\t1\tPLAIN\t{AUTH_HEAD}\tsecured\tresp=AHVAeC5vcmcAcHc=\n");
        assert_eq!(
            feed(&mut session, line.as_bytes()),
            Action::Check(Check {
                id: id(1),
                mechanism: Mechanism::Plain,
                params: params(true),
                credentials: Credentials::Password { login: "u@x.org".into(), password: "pw".into() },
            })
        );
    }

    #[test]
    fn login_over_cont_lines_then_more_requests_on_the_same_connection() {
        let mut session = greeted(false);
        let auth = format!("AUTH\t5\tLOGIN\t{AUTH_HEAD}\n");
        assert_eq!(feed(&mut session, auth.as_bytes()), Action::Send(b"CONT\t5\tVXNlcm5hbWU6\n".to_vec()));
        assert_eq!(feed(&mut session, b"CONT\t5\tdQ==\n"), Action::Send(b"CONT\t5\tUGFzc3dvcmQ6\n".to_vec()));
        let Action::Check(check) = feed(&mut session, b"CONT\t5\tcA==\n") else { panic!("no check") };
        assert_eq!((check.id, check.mechanism, check.params), (id(5), Mechanism::Login, params(false)));
        assert_eq!(check.credentials, Credentials::Password { login: "u".into(), password: "p".into() });
        // The exchange is over: a late CONT for it is refused with its own id.
        let late = refused(feed(&mut session, b"CONT\t5\tcA==\n"));
        assert_eq!(late.reply(), b"FAIL\t5\treason=invalid request\n");
        // And the next request works.
        let auth = format!("AUTH\t6\tPLAIN\t{AUTH_HEAD}\n");
        assert_eq!(feed(&mut session, auth.as_bytes()), Action::Send(b"CONT\t6\t\n".to_vec()));
        assert!(matches!(feed(&mut session, b"CONT\t6\tAHUAcA==\n"), Action::Check(Check { id, .. }) if id.get() == 6));
    }

    #[test]
    fn an_aborted_exchange_is_replaced_by_the_next_auth() {
        let mut session = greeted(false);
        let auth = format!("AUTH\t21\tLOGIN\t{AUTH_HEAD}\n");
        assert_eq!(feed(&mut session, auth.as_bytes()), Action::Send(b"CONT\t21\tVXNlcm5hbWU6\n".to_vec()));
        // The SMTP client sent `*`: smtpd tells us nothing and starts over with a new id.
        let auth = format!("AUTH\t22\tPLAIN\t{AUTH_HEAD}\tresp=AHUAcA==\n");
        assert!(matches!(feed(&mut session, auth.as_bytes()), Action::Check(Check { id, .. }) if id.get() == 22));
        assert_eq!(refused(feed(&mut session, b"CONT\t21\tdQ==\n")).id, id(21));
    }

    #[test]
    fn a_cont_for_another_id_is_refused_with_that_id() {
        let mut session = greeted(false);
        let auth = format!("AUTH\t3\tLOGIN\t{AUTH_HEAD}\n");
        assert!(matches!(feed(&mut session, auth.as_bytes()), Action::Send(_)));
        let other = refused(feed(&mut session, b"CONT\t4\tdQ==\n"));
        assert_eq!(other.reply(), b"FAIL\t4\treason=invalid request\n");
        assert_eq!(other.mechanism, None);
    }

    #[test]
    fn failures_carry_the_request_id_and_a_fixed_reason() {
        let mut session = greeted(false);
        let auth = format!("AUTH\t7\tCRAM-MD5\t{AUTH_HEAD}\n");
        let unsupported = refused(feed(&mut session, auth.as_bytes()));
        assert_eq!(unsupported.reply(), b"FAIL\t7\treason=unsupported mechanism\n");
        assert_eq!((unsupported.mechanism, unsupported.params), (None, params(false)));

        // XOAUTH2 is a known name, but not offered without token validation.
        let auth = format!("AUTH\t8\tXOAUTH2\t{AUTH_HEAD}\tresp=dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==\n");
        let disabled = refused(feed(&mut session, auth.as_bytes()));
        assert_eq!(disabled.reply(), b"FAIL\t8\treason=unsupported mechanism\n");
        assert_eq!(disabled.mechanism, None);

        // A name with a LF inside: refused, nothing of it echoed.
        let auth = format!("AUTH\t9\tPLAIN\t{AUTH_HEAD}\tresp=AHUKT0sJMTAJdXNlcj12AHA=\n");
        let injected = refused(feed(&mut session, auth.as_bytes()));
        assert_eq!(injected.reply(), b"FAIL\t9\treason=invalid request\n");
        assert_eq!(injected.mechanism, Some(Mechanism::Plain));

        let auth = format!("AUTH\t10\tLOGIN\t{AUTH_HEAD}\n");
        assert!(matches!(feed(&mut session, auth.as_bytes()), Action::Send(_)));
        let bad = refused(feed(&mut session, b"CONT\t10\t%%%%\n"));
        assert_eq!(
            (bad.reply(), bad.mechanism),
            (b"FAIL\t10\treason=invalid request\n".to_vec(), Some(Mechanism::Login))
        );
    }

    #[test]
    fn token_mechanisms_when_enabled() {
        let mut session = greeted(true);
        let auth = format!("AUTH\t2\tXOAUTH2\t{AUTH_HEAD}\tresp=dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==\n");
        let Action::Check(check) = feed(&mut session, auth.as_bytes()) else { panic!("no check") };
        assert_eq!(check.mechanism, Mechanism::XOAuth2);
        assert_eq!(check.credentials, Credentials::Bearer { user: Some("u".into()), token: "t".into() });
    }

    #[test]
    fn version_must_come_first_and_once() {
        let mut session = Session::new(false);
        let auth = format!("AUTH\t1\tPLAIN\t{AUTH_HEAD}\tresp=AHUAcA==\n");
        assert!(matches!(feed(&mut session, auth.as_bytes()), Action::Close(_)));
        let mut session = Session::new(false);
        assert!(matches!(feed(&mut session, b"CPID\t1\n"), Action::Close(_)));
        let mut session = greeted(false);
        assert!(matches!(feed(&mut session, b"VERSION\t1\t0\n"), Action::Close(_)));
    }
}
