//! `pfxhttp sasl-query NAME USER`: a PLAIN login checked as smtpd's would be, the password read
//! from stdin (never from the command line, where every user sees it).

use super::admin::Setup;
use crate::config::Format;
use crate::exit;
use crate::lookup::{self, sasl::Verdict};
use crate::proto::dovecot::{FailReason, Id, Params};
use crate::sasl::{Check, Exchange, Step};
use crate::text::printable;
use base64::Engine as _;
use std::io::Read as _;
use std::path::PathBuf;

/// What the check sends for the SMTP session, as smtpd would for a local client.
const LOCAL: &str = "127.0.0.1";

pub(super) fn run(path: Result<PathBuf, String>, format: Format, name: &str, user: &str, verbose: bool) -> u8 {
    let setup = match Setup::load(path, format) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let service = match setup.config.sasl(Some(name)) {
        Ok(service) => service,
        Err(e) => {
            eprintln!("pfxhttp: {}", printable(&e));
            return exit::USAGE;
        }
    };
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut password) {
        eprintln!("pfxhttp: cannot read the password from stdin: {e}");
        return exit::USAGE;
    }
    let password = password.strip_suffix('\n').map_or(password.as_str(), |p| p.strip_suffix('\r').unwrap_or(p));
    // The same path as a PLAIN with an initial response, so the same names are refused.
    let resp = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    if verbose {
        eprintln!("> AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip={LOCAL}\trip={LOCAL}\tresp=*** (masked)");
    }
    let credentials = match Exchange::start("PLAIN", Some(&resp), false) {
        Step::Credentials { credentials, .. } => credentials,
        _ => return fail(FailReason::InvalidRequest, verbose),
    };
    let params = Params {
        service: Some("smtp".into()),
        local_ip: Some(LOCAL.into()),
        remote_ip: Some(LOCAL.into()),
        secured: false,
    };
    let check = Check { id: Id::MIN, mechanism: crate::proto::dovecot::Mechanism::Plain, params, credentials };
    let store = setup.store();
    let id = lookup::request_id();
    let (verdict, report) = lookup::sasl::check(service, &check, &id, &setup.clients, &store, verbose);
    for line in &report.transcript {
        eprintln!("{}", printable(line));
    }
    match verdict {
        Verdict::Ok(user) => {
            if verbose {
                eprintln!("< OK\t1\tuser={}", printable(&user));
            }
            println!("OK user={}", printable(&user));
            exit::OK
        }
        Verdict::Fail => fail(FailReason::InvalidLogin, verbose),
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
