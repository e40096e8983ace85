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

/// An RS256 token made with `openssl genrsa 2048` and `openssl dgst -sha256 -sign` (ring
/// cannot make RSA keys), and its key.
const RSA_N: &str = "ut1C_1OFPwzqfpeGX4OYMekBwq_rTuR4aNrUmW4Aa9YGOXqkHEdpa26B9xbDAj5mHdbb_TjbD9UnRE2orNLXK8Xb_wRNROsfOV7uhb-DnEa1HfREYbvMOzYLFAlU4J6K_vOTX7j5wzfpEXCHV02a-6EFr060Jqv62FVu7R5N9CumlI-tk6mGoaDgT10Y70fj6RM3bKOKbB9QcAblG3axHOq3ptgdhpXQmjnRFBvoqPmWojz-KMMgBZJ51gdHKaqmkBm4sr1Qh4BZVk9iBC97OaAFTtnG9e74mHaN9oGg9dwkDnqvf5PW3oDjJTfJXL6KfipXOCnDGUY8Kl_-Qy-nyQ";
const RSA_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InIxIn0.eyJpc3MiOiJodHRwczovL2lkcC50ZXN0IiwiYXVkIjoicG9zdGZpeCIsImV4cCI6MTgwMDAwMDA2MCwiZW1haWwiOiJ1QHgub3JnIn0.QDj6IYxXFLQffjMRWYtPrRJzli2Mpu9cj4Yfq5AtWujUQlJGcMKSpuKebaiDeTeCNxz-ecTqEOCblS8T88KJRyfgPqwyxoTZnLNVL9Tn-HLH0UtKfF6hR8DMK9cnyLqO4BBmqiXbdPYqm6S606u3lRVgkyjSTGFFCz8fv_ElfWvZrfiJ7rQ5GeRGNgal-xTs6hcPkBNT6EyCnStZY20M0aBxVPIcSCGYDgpkDuNOz9YL3zg1srh2wQEGJsKZXntbxzXTwVByx6haKe2HJy7OImhcslTc4Mve6WcLm9-kV9dJOB1sjwxil05NLCbOb4TIk6GOCGpScvTo_nrz_YEPYg";

#[test]
fn rs256_with_an_rsa_key() {
    let set = json!({"keys": [{"kty": "RSA", "kid": "r1", "alg": "RS256", "n": RSA_N, "e": "AQAB"}]});
    assert_eq!(verify(RSA_TOKEN, &set, &EXPECT).unwrap()["email"], "u@x.org");
    // One bit of the signature changed.
    let (signed, sig) = RSA_TOKEN.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(verify(&tampered, &set, &EXPECT), Err(JwtError::Signature));
    // An EC key under the same kid is not used for RS256.
    let ec = jwks(&key(), "r1");
    assert_eq!(verify(RSA_TOKEN, &ec, &EXPECT), Err(JwtError::Algorithm));
}
