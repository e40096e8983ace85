//! `pfxhttp sasl-query [--mech M] NAME USER`: a login checked as smtpd's would be, the password
//! or bearer token read from stdin (never from the command line, where every user sees it).
//! Unlike `pfxhttp sasl` it answers a `FAIL` at once: `failure_delay` slows down guessing over
//! SMTP, and an admin at a terminal is not guessing.

use super::admin::Setup;
use crate::cli::SaslMech;
use crate::config::Format;
use crate::exit;
use crate::lookup::{self, sasl::Verdict};
use crate::proto::dovecot::{FailReason, Id, Mechanism, Params};
use crate::sasl::{Check, Credentials, Exchange, Step};
use crate::text::printable;
use base64::Engine as _;
use std::io::Read as _;
use std::path::PathBuf;

/// What the check sends for the SMTP session, as smtpd would for a local client.
const LOCAL: &str = "127.0.0.1";

/// What to try: the service, the user and the mechanism.
pub struct Login<'a> {
    pub name: &'a str,
    pub user: &'a str,
    pub mech: SaslMech,
}

pub(super) fn run(path: Result<PathBuf, String>, format: Format, login: Login, verbose: bool) -> u8 {
    let setup = match Setup::load(path, format) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let service = match setup.config.sasl(Some(login.name)) {
        Ok(service) => service,
        Err(e) => {
            eprintln!("pfxhttp: {}", printable(&e));
            return exit::USAGE;
        }
    };
    let mut secret = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut secret) {
        eprintln!("pfxhttp: cannot read the {} from stdin: {e}", what(login.mech));
        return exit::USAGE;
    }
    let secret = secret.strip_suffix('\n').map_or(secret.as_str(), |p| p.strip_suffix('\r').unwrap_or(p));
    let (mechanism, credentials) = match exchange(login.mech, login.user, secret, service.oidc.is_some(), verbose) {
        Ok(got) => got,
        Err(reason) => return fail(reason, verbose),
    };
    let params = Params {
        service: Some("smtp".into()),
        local_ip: Some(LOCAL.into()),
        remote_ip: Some(LOCAL.into()),
        secured: false,
    };
    let check = Check { id: Id::MIN, mechanism, params, credentials };
    let store = setup.store();
    let id = lookup::request_id();
    let (verdict, report) = lookup::sasl::check(service, &check, &id, &setup.clients, &store, verbose);
    for line in &report.transcript {
        eprintln!("{}", printable(line));
    }
    answer(verdict, verbose)
}

fn what(mech: SaslMech) -> &'static str {
    match mech {
        SaslMech::Plain | SaslMech::Login => "password",
        SaslMech::Xoauth2 | SaslMech::Oauthbearer => "token",
    }
}

/// Runs the client's side of `mech` through the same state machine as `pfxhttp sasl`, so the
/// same names and tokens are refused; shows it with the secret masked.
fn exchange(
    mech: SaslMech,
    user: &str,
    secret: &str,
    tokens: bool,
    verbose: bool,
) -> Result<(Mechanism, Credentials), FailReason> {
    let (name, first, then) = match mech {
        SaslMech::Plain => ("PLAIN", format!("\0{user}\0{secret}"), None),
        SaslMech::Login => ("LOGIN", user.to_string(), Some(secret)),
        SaslMech::Xoauth2 => ("XOAUTH2", format!("user={user}\x01auth=Bearer {secret}\x01\x01"), None),
        SaslMech::Oauthbearer => {
            let saslname = user.replace('=', "=3D").replace(',', "=2C");
            ("OAUTHBEARER", format!("n,a={saslname},\x01auth=Bearer {secret}\x01\x01"), None)
        }
    };
    let b64 = |data: &str| base64::engine::general_purpose::STANDARD.encode(data);
    if verbose {
        eprintln!("> AUTH\t1\t{name}\tservice=smtp\tnologin\tlip={LOCAL}\trip={LOCAL}\tresp=*** (masked)");
    }
    let step = match (Exchange::start(name, Some(&b64(&first)), tokens), then) {
        (Step::Challenge { challenge, exchange }, Some(password)) => {
            if verbose {
                eprintln!("< CONT\t1\t{}", b64(&String::from_utf8_lossy(challenge)));
                eprintln!("> CONT\t1\t*** (masked)");
            }
            exchange.next(&b64(password))
        }
        (step, _) => step,
    };
    match step {
        Step::Credentials { mechanism, credentials } => Ok((mechanism, credentials)),
        Step::Fail(reason) => Err(reason),
        Step::Challenge { .. } => Err(FailReason::InvalidRequest),
    }
}

fn answer(verdict: Verdict, verbose: bool) -> u8 {
    match verdict {
        Verdict::Ok(user) => {
            if verbose {
                eprintln!("< OK\t1\tuser={}", printable(&user));
            }
            println!("OK user={}", printable(&user));
            exit::OK
        }
        Verdict::Fail | Verdict::Refused(_) => fail(FailReason::InvalidLogin, verbose),
        Verdict::Temporary(reason) => {
            if verbose {
                eprintln!("< (no reply: the connection is closed)");
            }
            println!("TEMPORARY (smtpd answers 454 4.7.0 Temporary authentication failure): {}", printable(&reason));
            exit::TEMPFAIL
        }
    }
}

fn fail(reason: FailReason, verbose: bool) -> u8 {
    if verbose {
        eprintln!("< FAIL\t1\treason={}", reason.text());
    }
    println!("FAIL reason={}", reason.text());
    exit::NOT_FOUND
}
