//! `sasl_oidc_auth`: the identity provider that vouches for XOAUTH2 and OAUTHBEARER tokens.

use super::super::auth::{block_client, client_secret, existing_file, url_field};
use super::super::http_client::Inherited;
use super::super::tree::{self, Diagnostics, Table};
use super::super::*;
use serde_yaml::Value;

/// The claim Dovecot's oauth2 passdb names the user by.
const DEFAULT_ACCOUNT_CLAIM: &str = "email";

/// Reads the block; `None` when it is disabled or has errors (then noted in `d`).
pub(super) fn sasl_oidc(
    path: &str,
    v: &Value,
    server: &Inherited,
    clients: &mut Vec<ClientSpec>,
    d: &mut Diagnostics,
) -> Option<SaslOidc> {
    let errors_before = d.errors.len();
    let mut t = Table::open(v, path, d)?;
    let client = block_client(&mut t, server, clients, d);
    let enabled = t.take("enabled").and_then(|(p, v)| tree::boolean(&p, v, d)).unwrap_or(true);
    let configuration_uri = url_field(&mut t, "configuration_uri", d);
    let client_id = t.take("client_id").and_then(|(p, v)| tree::string(&p, v, d)).unwrap_or_default();
    let client_secret = client_secret(&mut t, d);
    let client_secret_file = existing_file(&mut t, "client_secret_file", d);
    let validation = validation(&mut t, d);
    let audience = t.take("audience").and_then(|(p, v)| tree::string(&p, v, d)).filter(|s| !s.is_empty());
    let account_claim = t.take("account_claim").and_then(|(p, v)| tree::string(&p, v, d)).filter(|s| !s.is_empty());
    t.finish(
        d,
        &[
            ("scopes", "scopes are not checked; the audience is"),
            ("auth_method", "introspection authenticates with client_secret_basic"),
            ("jwks_cache_ttl", "keys are cached for 10 minutes and fetched again for an unknown kid"),
        ],
    );
    if !enabled {
        return None;
    }
    let Some(configuration_uri) = configuration_uri else {
        d.error(path, "configuration_uri is required");
        return None;
    };
    if client_id.is_empty() {
        d.error(path, "client_id is required");
    }
    let introspects = validation != Validation::Jwks;
    if introspects && client_secret.is_none() && client_secret_file.is_none() {
        d.error(path, "client_secret or client_secret_file is required for introspection");
    }
    let audience = audience.unwrap_or_else(|| client_id.clone());
    let account_claim = account_claim.unwrap_or_else(|| DEFAULT_ACCOUNT_CLAIM.into());
    let oidc = SaslOidc {
        client,
        configuration_uri,
        client_id,
        client_secret,
        client_secret_file,
        validation,
        audience,
        account_claim,
    };
    (d.errors.len() == errors_before).then_some(oidc)
}

/// `validation`: introspection (the default), jwks or auto.
fn validation(t: &mut Table<'_>, d: &mut Diagnostics) -> Validation {
    let Some((s, p)) = t.take_str("validation", d) else { return Validation::Introspection };
    match s.to_ascii_lowercase().as_str() {
        "introspection" | "" => Validation::Introspection,
        "jwks" => Validation::Jwks,
        "auto" => Validation::Auto,
        _ => {
            d.error(&p, format!("{s:?} is not one of: introspection, jwks, auto"));
            Validation::Introspection
        }
    }
}
