//! The Dovecot auth server smtpd talks to (`smtpd_sasl_type = dovecot`): the handshake at once,
//! then one request at a time, PLAIN and LOGIN checked by the `dovecot_sasl` service's backend,
//! XOAUTH2 and OAUTHBEARER (with `sasl_oidc_auth`) by its identity provider.
//!
//! smtpd turns every `FAIL` into a permanent 535 and answers 454 (try again) only when the auth
//! server closes the connection or stays silent. So a request the backend cannot answer (an
//! outage, an unusable answer, no token, a broken configuration) gets no reply: the connection
//! is closed, and smtpd connects again (a new process) for the next `AUTH`.

use super::{Server, finish_fields};
use crate::config::SaslService;
use crate::connection::{Connection, End};
use crate::log::{self, Field};
use crate::lookup::sasl::{self, Verdict};
use crate::lookup::{self, Report};
use crate::proto::Decoded;
use crate::proto::dovecot::{self, FailReason, Id, Mechanism, Request};
use crate::sasl::{Action, Check, Refused, Session};
use std::io::Read as _;
use std::time::{Duration, Instant};

/// A `FAIL` must reach smtpd before its 10 s limit, whatever `failure_delay` says.
const FAIL_BY: Duration = Duration::from_secs(9);

/// A client line: a request, or one that cannot be read (with its id when it has one).
enum Line {
    Request(Request),
    Invalid(Option<Id>, String),
}

/// What one `AUTH` came to, for its log line.
struct Done<'a> {
    /// The `dovecot_sasl` service, as named on the command line or configured.
    service: &'a str,
    mechanism: Option<Mechanism>,
    user: Option<&'a str>,
    /// The user the backend named (`Auth-User`), when not the login name.
    auth_user: Option<&'a str>,
    client: Option<&'a str>,
    result: &'a str,
    reason: Option<&'a str>,
}

impl Server<'_> {
    /// Serves the Dovecot auth protocol for `dovecot_sasl` service `name` (or the only one).
    pub fn sasl(&self, conn: &mut Connection, name: Option<&str>) -> End {
        let service = self.config.as_ref().map_err(Clone::clone).and_then(|c| c.sasl(name));
        // The handshake goes first, whatever the configuration: an auth server that fails it
        // makes smtpd exit, and master then throttles the whole smtpd service.
        let pid = std::process::id();
        let tokens = service.as_ref().is_ok_and(|s| s.oidc.is_some());
        if let Err(end) = conn.reply(&dovecot::handshake(Mechanism::offered(tokens), pid, pid, &cookie())) {
            return end;
        }
        let mut session = Session::new(tokens);
        loop {
            let request = match conn.next(read_line) {
                Ok(Line::Request(request)) => request,
                Ok(Line::Invalid(id, why)) => {
                    if let Some(id) = id {
                        let _ = conn.reply(&dovecot::fail(id, FailReason::InvalidRequest));
                    }
                    return End::Malformed(why);
                }
                Err(end) => return end,
            };
            if let (Request::Auth(auth), Err(reason)) = (&request, &service) {
                let mechanism = Mechanism::parse(&auth.mechanism);
                let client = auth.params.remote_ip.as_deref();
                let (service, result, user) = (name.unwrap_or("-"), "temporary", None);
                let done =
                    Done { service, mechanism, user, auth_user: None, client, result, reason: Some(reason.as_str()) };
                self.log_auth(&done, None, Instant::now());
                return End::Withheld(reason.clone());
            }
            let started = Instant::now();
            let sent = match session.input(request) {
                Action::Nothing => Ok(()),
                Action::Send(challenge) => conn.reply(&challenge),
                Action::Close(why) => return End::Malformed(why),
                Action::Refuse(refused) => self.refuse(conn, name, &refused, started),
                Action::Check(check) => match &service {
                    Ok(service) => self.check(conn, service, &check, started),
                    // Not reached: an AUTH without a service ends above.
                    Err(reason) => Err(End::Withheld(reason.clone())),
                },
            };
            if let Err(end) = sent {
                return end;
            }
        }
    }

    /// Answers `FAIL` to a request refused without a backend call.
    fn refuse(
        &self,
        conn: &mut Connection,
        name: Option<&str>,
        refused: &Refused,
        started: Instant,
    ) -> Result<(), End> {
        let sent = conn.reply(&refused.reply());
        let reason = Some(refused.reason.text());
        let client = refused.params.remote_ip.as_deref();
        let service = self.config.as_ref().ok().and_then(|c| c.sasl(name).ok()).map_or("-", |s| s.entry.name.as_str());
        let done =
            Done { service, mechanism: refused.mechanism, user: None, auth_user: None, client, result: "fail", reason };
        self.log_auth(&done, None, started);
        sent
    }

    /// Asks the backend and answers `OK` or `FAIL`, or closes the connection without a reply.
    fn check(&self, conn: &mut Connection, service: &SaslService, check: &Check, started: Instant) -> Result<(), End> {
        let id = lookup::request_id();
        let (verdict, report) = sasl::check(service, check, &id, self.transport, self.store, self.verbose);
        let client = check.params.remote_ip.as_deref();
        let login = check.credentials.user();
        let service_name = service.entry.name.as_str();
        let mut done = Done {
            service: service_name,
            mechanism: Some(check.mechanism),
            user: login,
            auth_user: None,
            client,
            result: "",
            reason: None,
        };
        if let Verdict::Ok(user) = &verdict
            && Some(user.as_str()) != login
        {
            done.auth_user = Some(user);
        }
        let sent = match &verdict {
            Verdict::Ok(user) => match dovecot::ok(check.id, user) {
                Ok(line) => {
                    done.result = "ok";
                    conn.reply(&line)
                }
                Err(e) => Err(End::Withheld(format!("no OK line for the user: {e}"))),
            },
            Verdict::Fail | Verdict::Refused(_) => {
                done.result = "fail";
                done.reason = Some(match &verdict {
                    Verdict::Refused(why) => why.as_str(),
                    _ => FailReason::InvalidLogin.text(),
                });
                std::thread::sleep(service.failure_delay.min(FAIL_BY.saturating_sub(started.elapsed())));
                conn.reply(&dovecot::fail(check.id, FailReason::InvalidLogin))
            }
            Verdict::Temporary(reason) => Err(End::Withheld(reason.clone())),
        };
        let withheld = match &sent {
            Err(End::Withheld(reason)) => Some(reason.as_str()),
            _ => None,
        };
        if let Some(reason) = withheld {
            done.result = "temporary";
            done.reason = Some(reason);
        }
        self.log_auth(&done, Some(&report), started);
        sent
    }

    /// One line per `AUTH`: mechanism, user, client, result and time; never a password, a
    /// response or a token. The `AUTH` is counted too, and the counts flushed when that is due
    /// (its reply, if any, is out).
    fn log_auth(&self, done: &Done<'_>, report: Option<&Report>, started: Instant) {
        self.store.metrics().request("sasl", done.service, done.result, started.elapsed());
        let mut fields = vec![("proto", Field::Text("sasl")), ("service", Field::Text(done.service))];
        fields.push(("mechanism", Field::Text(done.mechanism.map_or("-", Mechanism::name))));
        if self.config.as_ref().map_or(true, |c| c.logging.log_keys) {
            if let Some(user) = done.user {
                fields.push(("user", Field::Text(user)));
            }
            if let Some(user) = done.auth_user {
                fields.push(("auth_user", Field::Text(user)));
            }
            if let Some(client) = done.client {
                fields.push(("client", Field::Text(client)));
            }
        }
        let mut result = vec![("result", Field::Text(done.result))];
        if let Some(reason) = done.reason {
            result.push(("reason", Field::Text(reason)));
        }
        log::request(&finish_fields(fields, report, &result, started));
        self.store.metrics().after_reply();
    }
}

/// Decodes a client line; one that cannot be read comes back with its id, so that it can be
/// answered before the connection is closed.
fn read_line(buf: &[u8]) -> Decoded<Line> {
    match dovecot::decode(buf) {
        Decoded::Frame(request, used) => Decoded::Frame(Line::Request(request), used),
        Decoded::Incomplete => Decoded::Incomplete,
        Decoded::Invalid(why) => Decoded::Frame(Line::Invalid(dovecot::line_id(buf), why), 0),
    }
}

/// The handshake's cookie: 16 random bytes. smtpd ignores it (it matters to Dovecot's login
/// processes only), so the weaker generator serves when the kernel's cannot be read.
fn cookie() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        bytes = fastrand::u128(..).to_le_bytes();
    }
    bytes
}
