//! One SASL check: the credentials of a PLAIN or LOGIN exchange sent to a `dovecot_sasl`
//! service's backend, and its answer read as Nauthilus gives it.
//!
//! A status in `status_code` accepts the login, as the user the `Auth-User` header names (else
//! the login name); 403 refuses it. Everything else is no answer at all: smtpd turns every
//! `FAIL` into a permanent 535, so an outage must never become one (see `docs/design.md`).
//!
//! The bearer token of XOAUTH2 or OAUTHBEARER goes to the identity provider instead
//! ([`crate::auth::idp`]); the backend is not asked.

use super::{Last, Report, failure, send};
use crate::answer::{Failure, Outcome};
use crate::auth::idp::TokenError;
use crate::config::SaslService;
use crate::http::Transport;
use crate::proto::dovecot;
use crate::sasl::{Check, Credentials};
use crate::state::Store;
use crate::template;

/// The status Nauthilus answers for a wrong user name or password.
const INVALID_LOGIN: u16 = 403;

/// What the backend said of the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted, as this user (safe for an `OK` line: non-empty, no control character).
    Ok(String),
    /// Refused: wrong user name or password.
    Fail,
    /// Refused: a token the identity provider does not vouch for, or for another user. The
    /// reason is for the log (a fixed text, never the token).
    Refused(String),
    /// No usable answer; the reason is for the log and never holds the password.
    Temporary(String),
}

/// Asks `service`'s backend about `check`'s credentials. The report's request id is sent as
/// `X-Request-Id`; its transcript (when `verbose`) shows the body with the password masked.
pub fn check(
    service: &SaslService,
    check: &Check,
    request_id: &str,
    transport: &dyn Transport,
    store: &Store,
    verbose: bool,
) -> (Verdict, Report) {
    let mut report = Report::without_request(Outcome::temporary("no attempt was made"), request_id);
    let (login, password) = match &check.credentials {
        Credentials::Password { login, password } => (login, password),
        Credentials::Bearer { user, token } => {
            let deadline = std::time::Instant::now() + service.entry.retry.deadline;
            let verdict = token_verdict(service, user.as_deref(), token, transport, store, deadline);
            return (verdict, report);
        }
    };
    let vars = vars(service, check, login, password, request_id);
    let sent = send(&service.entry, &vars, transport, store, verbose, &mut report);
    if verbose {
        mask(service, check, (login, password), request_id, &mut report.transcript);
    }
    let verdict = match sent {
        Ok(last) => verdict(service, last, login),
        Err(Outcome::Failure(Failure { reason, .. })) => Verdict::Temporary(reason),
        Err(other) => Verdict::Temporary(format!("{other:?}")),
    };
    let verdict = match verdict {
        Verdict::Temporary(reason) => Verdict::Temporary(scrub(reason, password)),
        other => other,
    };
    (verdict, report)
}

/// XOAUTH2 and OAUTHBEARER: the identity provider's word on `token`, and the user its
/// `account_claim` names, which must be the one the client named (if it named one).
fn token_verdict(
    service: &SaslService,
    user: Option<&str>,
    token: &str,
    transport: &dyn Transport,
    store: &Store,
    deadline: std::time::Instant,
) -> Verdict {
    let Some(oidc) = &service.oidc else { return Verdict::Temporary("token mechanisms are not offered".into()) };
    let claims = match crate::auth::idp::token_claims(oidc, token, &service.entry, transport, store, deadline) {
        Ok(claims) => claims,
        Err(TokenError::Invalid(reason)) => return Verdict::Refused(reason),
        Err(TokenError::Outage(reason)) => return Verdict::Temporary(reason),
    };
    let Some(named) = claims.get(&oidc.account_claim).and_then(serde_json::Value::as_str) else {
        return Verdict::Refused(format!("the token has no {} claim", oidc.account_claim));
    };
    // The name goes into the OK line: one that cannot is no user.
    if dovecot::ok(dovecot::Id::MIN, named).is_err() || named.is_empty() {
        return Verdict::Refused(format!("the token's {} claim is not a usable user name", oidc.account_claim));
    }
    match user {
        Some(user) if user != named => Verdict::Refused("the token is for another user".into()),
        _ => Verdict::Ok(named.to_string()),
    }
}

/// The template variables of a check.
fn vars(service: &SaslService, check: &Check, login: &str, password: &str, request_id: &str) -> upon::Value {
    let params = &check.params;
    let method = check.mechanism.name().to_ascii_lowercase();
    let fields = [
        ("username", login),
        ("password", password),
        ("protocol", params.service.as_deref().unwrap_or("")),
        ("method", method.as_str()),
        ("client_ip", params.remote_ip.as_deref().unwrap_or("")),
        ("local_ip", params.local_ip.as_deref().unwrap_or("")),
        ("local_port", service.default_local_port.as_str()),
        ("ssl", if params.secured { "on" } else { "" }),
    ];
    template::sasl_vars(&service.entry.name, &fields, request_id)
}

/// The last attempt's meaning.
fn verdict(service: &SaslService, last: Last, login: &str) -> Verdict {
    let entry = &service.entry;
    let response = match last {
        Some((_, Ok(response))) => response,
        Some((host, Err(e))) => return Verdict::Temporary(reason(failure(&host, e))),
        None => return Verdict::Temporary(format!("deadline of {} ms passed", entry.retry.deadline.as_millis())),
    };
    if response.status == INVALID_LOGIN && !entry.answer.status_codes.contains(&INVALID_LOGIN) {
        return Verdict::Fail;
    }
    if !entry.answer.status_codes.contains(&response.status) {
        return Verdict::Temporary(format!("unexpected HTTP status {}", response.status));
    }
    let Some(header) = response.headers.get("auth-user") else { return Verdict::Ok(login.to_string()) };
    // An OK line takes the name as it is: a control character could end the line and start a
    // forged one, so such a name is no answer at all.
    match std::str::from_utf8(header.as_bytes()).map(|user| (user, dovecot::ok(dovecot::Id::MIN, user))) {
        Ok((user, Ok(_))) => Verdict::Ok(user.to_string()),
        Ok((_, Err(e))) => Verdict::Temporary(format!("unusable Auth-User header: {e}")),
        Err(_) => Verdict::Temporary("unusable Auth-User header: not UTF-8".into()),
    }
}

fn reason(outcome: Outcome) -> String {
    match outcome {
        Outcome::Failure(f) => f.reason,
        other => format!("{other:?}"),
    }
}

/// `reason`, unless it holds the password: a reason goes to the log. (Only a failed template
/// could quote it, yet a short password may appear by chance; the reason is dropped either way.)
fn scrub(reason: String, password: &str) -> String {
    if !holds(&reason, password) {
        return reason;
    }
    "the request could not be made (the reason is not shown: it holds the password)".into()
}

/// Whether `text` holds the password as it is, or as a JSON string or a URL or form encodes it
/// (a backend that echoes the request, or an error that quotes it, shows it in those forms).
fn holds(text: &str, password: &str) -> bool {
    if password.is_empty() {
        return false;
    }
    let json = serde_json::to_string(password).unwrap_or_default();
    let json = json.get(1..json.len().saturating_sub(1)).unwrap_or(password);
    let [url, form] = [false, true].map(|form| template::percent_encode(password.as_bytes(), form));
    [password, json, &url, &form].iter().any(|shown| text.contains(shown))
}

/// Replaces the request body lines of a transcript with the body rendered with the password
/// masked, and drops any other line that holds the password: the transcript is printed on a
/// terminal.
fn mask(service: &SaslService, check: &Check, (login, password): (&str, &str), id: &str, transcript: &mut [String]) {
    let masked = vars(service, check, login, "***", id);
    let body = service.entry.request.payload.as_ref().and_then(|p| p.render(&masked).ok());
    for line in transcript.iter_mut() {
        if line.starts_with("> (") {
            *line = match &body {
                Some(body) => format!("> (password masked) {body}"),
                None => "> (body not shown)".to_string(),
            };
        } else if holds(line, password) {
            *line = "* (a line not shown: it holds the password)".to_string();
        }
    }
}

#[cfg(test)]
mod tests;
