//! One `dovecot_sasl` service (`pfxhttp sasl NAME`): the backend call is read with the parts of
//! a socket map (targets, HTTP settings, request, retry, auth); the answer is a status and the
//! `Auth-User` header, so of the answer keys only `status_code` is read.

use super::entry::{Scope, flag, http_settings, targets};
use super::http_client::{Inherited, client_index};
use super::request::{Ctx, request};
use super::retry::retry;
use super::templates::{compile, sample_vars};
use super::tree::{self, Diagnostics, Table};
use super::*;
use crate::template::Context;
use serde_yaml::Value;

/// The body Nauthilus's `/api/v1/auth/json` reads; `ssl` is sent only over TLS.
pub const DEFAULT_PAYLOAD: &str = r#"{"username":"{{ username }}","password":"{{ password }}","protocol":"{{ protocol }}","method":"{{ method }}","client_ip":"{{ client_ip }}","local_ip":"{{ local_ip }}","local_port":"{{ local_port }}"{% if ssl %},"ssl":"{{ ssl }}"{% endif %} }"#;

/// smtpd gives up on the auth server after 10 s; the whole check has to fit well within.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(8);
const DEFAULT_FAILURE_DELAY: Duration = Duration::from_secs(2);
const POSTFIX_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads one service. Keys are taken in a fixed order, which is the order of the diagnostics.
pub(super) fn service(
    path: &str,
    name: &str,
    v: &Value,
    scope: &Scope<'_>,
    clients: &mut Vec<ClientSpec>,
    d: &mut Diagnostics,
) -> Option<SaslService> {
    let errors_before = d.errors.len();
    let mut t = Table::open(v, path, d)?;
    transport(&mut t, d);
    // The server's timeout is for maps (the Go pfxhttp's is 60 s); here it stays within the deadline.
    let timeout = scope.inherited.timeout.min(DEFAULT_DEADLINE);
    let base = Inherited { deadline: DEFAULT_DEADLINE, timeout, ..scope.inherited.clone() };
    let http = http_settings(&mut t, &base, d);
    let sample = sample_vars(Kind::Sasl, name);
    // The password goes in the body only: a URL reaches logs and transcripts.
    let (targets, plain_targets) = targets(path, &mut t, &without_password(&sample), d);
    let retry = retry(&mut t, &http, targets.len(), d);
    let ctx = Ctx { path, kind: Kind::Sasl, sample: &sample, plain_targets: plain_targets.as_deref() };
    let mut request = request(&mut t, &ctx, http.user_agent.clone(), d);
    if request.payload.is_none() {
        request.payload = compile(path, DEFAULT_PAYLOAD, Context::Json, &sample, d);
    }
    let status_codes = t
        .take("status_code")
        .and_then(|(p, v)| tree::uints(&p, v, 100, 599, d))
        .map_or(vec![200], |v| v.into_iter().map(|n| n as u16).collect());
    let mut answer = answer(status_codes, http.max_response_bytes);
    request.compression = flag(&mut t, "http_request_compression", d);
    answer.compression = flag(&mut t, "http_response_compression", d);
    let owner = format!("{}|{}/{name}", scope.identity, scope.section);
    let auth = super::auth::auth(path, &owner, &mut t, scope.inherited, clients, d);
    if auth.is_some() && request.basic_auth.is_some() {
        d.error(path, "http_auth_basic cannot be combined with jwt_auth or backend_oidc_auth");
    }
    let default_local_port = local_port(&mut t, d);
    let failure_delay = t.take("failure_delay").and_then(|(p, v)| tree::duration(&p, v, d));
    let failure_delay = failure_delay.unwrap_or(DEFAULT_FAILURE_DELAY);
    if let Some((p, _)) = t.take("sasl_oidc_auth") {
        d.error(&p, "XOAUTH2 and OAUTHBEARER are not offered yet; remove sasl_oidc_auth to serve PLAIN and LOGIN");
    }
    time_warnings(path, &http, d);
    let ignored = "the Go pfxhttp ignored it for dovecot_sasl too; the answer is the status and Auth-User";
    t.finish(d, &[("value_field", ignored), ("grpc", "only transport json is offered")]);

    let spec = ClientSpec { connect_timeout: http.connect_timeout, proxy: http.proxy, tls: http.tls };
    let client = client_index(clients, spec);
    let entry = Entry { name: name.to_string(), targets, client, request, answer, retry, auth, cache: None };
    (d.errors.len() == errors_before).then_some(SaslService { entry, default_local_port, failure_delay })
}

/// `transport`: `json` (the default); `grpc` is not offered.
fn transport(t: &mut Table<'_>, d: &mut Diagnostics) {
    let Some((s, p)) = t.take_str("transport", d) else { return };
    match s.to_ascii_lowercase().as_str() {
        "json" | "" => {}
        "grpc" => d.error(&p, "transport grpc is not offered: pfxhttp calls the JSON API (transport: json)"),
        _ => d.error(&p, format!("{s:?} is not one of: json")),
    }
}

/// The answer part of the backend call: a status in `status_codes` means success.
fn answer(status_codes: Vec<u16>, max_response_bytes: usize) -> Answer {
    Answer {
        status_codes,
        not_found_status: Vec::new(),
        mode: ResponseMode::Header,
        value_field: None,
        value_header: Some("auth-user".into()),
        error_field: None,
        error_header: None,
        no_error_value: String::new(),
        value_separator: String::new(),
        max_response_bytes,
        compression: false,
        default_action: String::new(),
    }
}

/// `default_local_port`: a port number (a string in the Go pfxhttp), empty when not given.
fn local_port(t: &mut Table<'_>, d: &mut Diagnostics) -> String {
    let Some((p, v)) = t.take("default_local_port") else { return String::new() };
    let text = tree::scalar_text(v).unwrap_or_default();
    match text.parse::<u16>() {
        Ok(n) if n > 0 && text.bytes().all(|b| b.is_ascii_digit()) => text,
        _ => {
            d.error(&p, format!("expected a port number (1 to 65535), found {text:?}"));
            String::new()
        }
    }
}

/// Warns when smtpd would give up before the answer comes. (`failure_delay` is cut short
/// when the backend was slow, so it does not count.)
fn time_warnings(path: &str, http: &Inherited, d: &mut Diagnostics) {
    if http.deadline >= POSTFIX_TIMEOUT {
        d.warn(
            path,
            "deadline reaches smtpd's 10 s limit: a slow answer turns into \"Temporary authentication failure\"",
        );
    }
    if http.timeout > http.deadline {
        d.warn(path, "timeout is longer than deadline; the deadline cuts every attempt short");
    }
}

/// The sample variables without `password`, so that a template naming it fails to load.
fn without_password(sample: &upon::Value) -> upon::Value {
    match sample {
        upon::Value::Map(m) => {
            upon::Value::Map(m.iter().filter(|(k, _)| *k != "password").map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
