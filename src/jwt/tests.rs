use super::*;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::json;

const NOW: i64 = 1_800_000_000;

fn key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

fn jwks(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref();
    let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "x": x, "y": y}]})
}

fn sign(key: &EcdsaKeyPair, header: Value, claims: Value) -> String {
    let signed =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn claims() -> Value {
    json!({"iss": "https://idp.test", "aud": ["other", "postfix"], "exp": NOW + 60, "email": "u@x.org"})
}

const EXPECT: Expect<'static> = Expect { issuer: "https://idp.test", audience: "postfix", now: NOW };

#[test]
fn a_valid_es256_token_gives_its_claims() {
    let k = key();
    let token = sign(&k, json!({"alg": "ES256", "kid": "k1"}), claims());
    assert!(looks_like_jwt(&token));
    assert_eq!(verify(&token, &jwks(&k, "k1"), &EXPECT).unwrap()["email"], "u@x.org");
    // Without a kid, the only key of the set.
    let token = sign(&k, json!({"alg": "ES256"}), claims());
    assert!(verify(&token, &jwks(&k, "k1"), &EXPECT).is_ok());
}

#[test]
fn every_check_refuses_on_its_own() {
    let k = key();
    let set = jwks(&k, "k1");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims();
        change(&mut c);
        verify(&sign(&k, json!({"alg": "ES256", "kid": "k1"}), c), &set, &EXPECT)
    };
    assert_eq!(with(&|c| c["exp"] = json!(NOW - LEEWAY - 1)), Err(JwtError::Expired));
    assert_eq!(with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))), Err(JwtError::Expired));
    assert_eq!(with(&|c| c["nbf"] = json!(NOW + LEEWAY + 10)), Err(JwtError::NotYet));
    assert!(with(&|c| c["nbf"] = json!(NOW - 10)).is_ok());
    assert_eq!(with(&|c| c["iss"] = json!("https://evil.test")), Err(JwtError::Issuer));
    assert_eq!(with(&|c| c["aud"] = json!("other")), Err(JwtError::Audience));
    assert_eq!(with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))), Err(JwtError::Audience));
    assert!(with(&|c| c["aud"] = json!("postfix")).is_ok());

    let token = sign(&k, json!({"alg": "ES256", "kid": "k2"}), claims());
    assert_eq!(verify(&token, &set, &EXPECT), Err(JwtError::UnknownKey));
    let token = sign(&key(), json!({"alg": "ES256", "kid": "k1"}), claims());
    assert_eq!(verify(&token, &set, &EXPECT), Err(JwtError::Signature));
    let token = sign(&k, json!({"alg": "RS256", "kid": "k1"}), claims());
    assert_eq!(verify(&token, &set, &EXPECT), Err(JwtError::Algorithm));
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    assert_eq!(verify(&unsigned, &set, &EXPECT), Err(JwtError::Malformed));
    assert!(!looks_like_jwt("opaque-token") && !looks_like_jwt("a.b") && !looks_like_jwt("a.b.c=d"));
}
