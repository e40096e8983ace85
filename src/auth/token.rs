//! Tokens as token endpoints return them.

use crate::state::{Token, now_ms};
use base64::Engine as _;

/// How long a token without any expiry information is used.
const DEFAULT_LIFETIME_MS: i64 = 5 * 60 * 1000;

/// Reads a token endpoint's JSON answer: `access_token` or `token`, `refresh_token`,
/// `expires_at` (unix seconds) or `expires_in` (seconds); without either, the JWT's `exp`
/// claim; without that, five minutes.
pub fn parse(body: &[u8]) -> Result<Token, String> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
    let text = |name: &str| doc.get(name).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_string);
    let access = text("access_token").or_else(|| text("token")).ok_or("the answer has no access_token or token")?;
    let now = now_ms();
    let number = |name: &str| doc.get(name).and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()));
    let expires_at = if let Some(at) = number("expires_at") {
        (at * 1000.0) as i64
    } else if let Some(secs) = number("expires_in").filter(|s| *s > 0.0) {
        now + (secs * 1000.0) as i64
    } else {
        jwt_exp(&access).map_or(now + DEFAULT_LIFETIME_MS, |exp| exp * 1000)
    };
    if expires_at <= now {
        return Err("the token is already expired".into());
    }
    Ok(Token { access, refresh: text("refresh_token"), expires_at })
}

/// The `exp` claim (unix seconds) of a JWT, read without checking the signature (it only
/// schedules the refresh).
pub fn jwt_exp(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_f64().map(|e| e as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: i64) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"none"}"#), enc(&format!(r#"{{"sub":"x","exp":{exp}}}"#)))
    }

    #[test]
    fn fields_in_order_of_preference() {
        let now = now_ms();
        let t = parse(br#"{"token":"t1","refresh_token":"r1","expires_at":4102444800}"#).unwrap();
        assert_eq!((t.access.as_str(), t.refresh.as_deref(), t.expires_at), ("t1", Some("r1"), 4_102_444_800_000));
        let t = parse(br#"{"access_token":"a","token":"b","expires_in":60}"#).unwrap();
        assert_eq!(t.access, "a");
        assert!((t.expires_at - now - 60_000).abs() < 2_000);
        let exp = now / 1000 + 600;
        assert_eq!(parse(format!(r#"{{"access_token":"{}"}}"#, jwt(exp)).as_bytes()).unwrap().expires_at, exp * 1000);
        let t = parse(br#"{"access_token":"opaque"}"#).unwrap();
        assert!((t.expires_at - now - DEFAULT_LIFETIME_MS).abs() < 2_000);
    }

    #[test]
    fn bad_answers() {
        for body in [&b"<html>"[..], b"{}", br#"{"access_token":""}"#, br#"{"token":"t","expires_at":1}"#] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn refresh_ahead() {
        let t = Token { access: "a".into(), refresh: None, expires_at: 3_600_000 };
        assert_eq!(t.refresh_from(0), 3_240_000, "10 % of an hour");
        let t = Token { access: "a".into(), refresh: None, expires_at: 60_000 };
        assert_eq!(t.refresh_from(0), 30_000, "at least 30 s");
        let t = Token { access: "a".into(), refresh: None, expires_at: 20_000 };
        assert_eq!(t.refresh_from(0), 10_000, "a short-lived token: halfway");
        assert_eq!(format!("{t:?}"), "Token(***, expires_at 20000)");
    }
}
