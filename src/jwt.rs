//! Verifying a JSON Web Token against a JSON Web Key Set: pure, no I/O.
//!
//! Only signatures pfxhttp can check with `ring` are accepted: RS256, RS384, RS512 (RSA keys,
//! `n` and `e`) and ES256, ES384 (EC keys on P-256 and P-384, `x` and `y`). `none`, HMAC and
//! anything else is refused. The key is the one the header's `kid` names, or the only key of
//! the set when the header names none. Then the claims: `exp` is required and must lie ahead,
//! `nbf` (if present) must have passed, `iss` must be the issuer, and `aud` (a string or a list)
//! must contain the audience. A little clock skew is allowed on `exp` and `nbf`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// Clock skew allowed between the identity provider and this host, in seconds.
const LEEWAY: i64 = 30;

/// Why a token is refused. The texts are fixed: they go to the log, never a token or a claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The header names a key the set does not hold: fetch the set again, once.
    #[error("the token's key is not in the key set")]
    UnknownKey,
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired or has no exp")]
    Expired,
    #[error("the token is not valid yet")]
    NotYet,
    #[error("the token's issuer is not the identity provider")]
    Issuer,
    #[error("the token's audience does not contain ours")]
    Audience,
}

/// What a token is checked against.
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// Seconds since the epoch.
    pub now: i64,
}

/// Whether `token` looks like a JWT: three dot-separated base64url parts.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Verifies `token` with a key of `jwks` (the key set document) and checks its claims; returns
/// the claims.
pub fn verify(token: &str, jwks: &Value, expect: &Expect<'_>) -> Result<Map<String, Value>, JwtError> {
    if !looks_like_jwt(token) {
        return Err(JwtError::Malformed);
    }
    let (signed, sig) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, claims) = signed.split_once('.').ok_or(JwtError::Malformed)?;
    let header = json_object(header)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| JwtError::Malformed)?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(JwtError::Algorithm)?;
    let key = find_key(jwks, header.get("kid").and_then(Value::as_str))?;
    if key.get("alg").and_then(Value::as_str).is_some_and(|a| a != alg)
        || key.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig")
    {
        return Err(JwtError::Algorithm);
    }
    check_signature(alg, key, signed.as_bytes(), &sig)?;
    let claims = json_object(claims)?;
    check_claims(&claims, expect)?;
    Ok(claims)
}

fn json_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

/// The key `kid` names, or the only key when there is no `kid`.
fn find_key<'a>(jwks: &'a Value, kid: Option<&str>) -> Result<&'a Map<String, Value>, JwtError> {
    let keys: Vec<&Map<String, Value>> =
        jwks.get("keys").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object).collect();
    match kid {
        Some(kid) => keys.into_iter().find(|k| k.get("kid").and_then(Value::as_str) == Some(kid)),
        None if keys.len() == 1 => keys.into_iter().next(),
        None => None,
    }
    .ok_or(JwtError::UnknownKey)
}

fn check_signature(alg: &str, key: &Map<String, Value>, signed: &[u8], sig: &[u8]) -> Result<(), JwtError> {
    let part = |name: &str| {
        key.get(name).and_then(Value::as_str).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()).ok_or(JwtError::Algorithm)
    };
    let kty = key.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = key.get("crv").and_then(Value::as_str).unwrap_or("");
    let rsa = match alg {
        "RS256" => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
        _ => None,
    };
    let verified = match (rsa, alg, kty, crv) {
        (Some(params), _, "RSA", _) => {
            let (n, e) = (part("n")?, part("e")?);
            RsaPublicKeyComponents { n: &n, e: &e }.verify(params, signed, sig)
        }
        (None, "ES256", "EC", "P-256") => {
            ec_verify(&signature::ECDSA_P256_SHA256_FIXED, 32, &part("x")?, &part("y")?, signed, sig)?
        }
        (None, "ES384", "EC", "P-384") => {
            ec_verify(&signature::ECDSA_P384_SHA384_FIXED, 48, &part("x")?, &part("y")?, signed, sig)?
        }
        _ => return Err(JwtError::Algorithm),
    };
    verified.map_err(|_| JwtError::Signature)
}

/// An EC signature, with the key as the uncompressed point `0x04 || x || y`.
fn ec_verify(
    alg: &'static signature::EcdsaVerificationAlgorithm,
    size: usize,
    x: &[u8],
    y: &[u8],
    signed: &[u8],
    sig: &[u8],
) -> Result<Result<(), ring::error::Unspecified>, JwtError> {
    if x.len() != size || y.len() != size {
        return Err(JwtError::Algorithm);
    }
    let point = [&[4u8][..], x, y].concat();
    Ok(UnparsedPublicKey::new(alg, point).verify(signed, sig))
}

fn check_claims(claims: &Map<String, Value>, expect: &Expect<'_>) -> Result<(), JwtError> {
    let time = |name: &str| claims.get(name).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
    match time("exp") {
        Some(exp) if exp + LEEWAY > expect.now => {}
        _ => return Err(JwtError::Expired),
    }
    if claims.contains_key("nbf") && time("nbf").is_none_or(|nbf| nbf - LEEWAY > expect.now) {
        return Err(JwtError::NotYet);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expect.issuer) {
        return Err(JwtError::Issuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == expect.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expect.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
