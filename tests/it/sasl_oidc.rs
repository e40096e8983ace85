//! `pfxhttp sasl` with `sasl_oidc_auth`: XOAUTH2 and OAUTHBEARER tokens checked with an identity
//! provider on 127.0.0.1 (discovery, key set, introspection), JWTs signed here with ring.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use crate::support::*;

const RUN: Duration = Duration::from_secs(15);
const HELLO: &str = "VERSION\t1\t0\nCPID\t4242\n";
const PARAMS: &str = "service=smtp\tnologin\tlip=192.0.2.1\trip=198.51.100.7";
const ISSUER: &str = "https://idp.example.org";
const SECRET: &str = "Introspect-9f2e-Secret";
/// An opaque token the provider says is active, and one it says is not.
const ACTIVE: &str = "opaque-Active-4b7c";
const INACTIVE: &str = "opaque-Inactive-0d1a";
const USER: &str = "u@x.org";

struct Key {
    pair: EcdsaKeyPair,
    kid: &'static str,
}

impl Key {
    fn new(kid: &'static str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key { pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(), kid }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid, "x": x, "y": y})
    }

    /// A JWT with `claims` over the valid ones (`null` removes a claim).
    fn token(&self, kid: &str, change: Value) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut claims =
            json!({"iss": ISSUER, "aud": ["account", "postfix"], "exp": now + 300, "iat": now, "email": USER});
        for (k, v) in change.as_object().unwrap() {
            match v {
                Value::Null => drop(claims.as_object_mut().unwrap().remove(k)),
                v => claims[k] = v.clone(),
            }
        }
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let signed =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// The identity provider: discovery, a key set (`keys` for the first fetch, `later` after it),
/// and introspection of the two opaque tokens for client `postfix` with `SECRET`.
fn idp(keys: Vec<Value>, later: Vec<Value>) -> (Backend, Arc<AtomicUsize>) {
    idp_failing(keys, later, "")
}

/// The same, with the endpoint at `failing` answering 503.
fn idp_failing(keys: Vec<Value>, later: Vec<Value>, failing: &'static str) -> (Backend, Arc<AtomicUsize>) {
    idp_on(None, keys, later, failing)
}

/// The same, over TLS with `tls`'s certificate when given.
fn idp_on(
    tls: Option<&TlsFiles>,
    keys: Vec<Value>,
    later: Vec<Value>,
    failing: &'static str,
) -> (Backend, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let known = base.clone();
    let handler = move |r: &Recorded| {
        let base = known.get().cloned().unwrap_or_default();
        if r.path() == failing {
            return Reply::json(503, "{}");
        }
        match r.path() {
            "/.well-known/openid-configuration" => Reply::json(
                200,
                &json!({"issuer": ISSUER, "jwks_uri": format!("{base}/jwks"),
                    "introspection_endpoint": format!("{base}/introspect")})
                .to_string(),
            ),
            "/jwks" => {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let keys = if n == 0 { &keys } else { &later };
                Reply::json(200, &json!({ "keys": keys }).to_string())
            }
            "/introspect" => {
                let basic = format!("Basic {}", STANDARD.encode(format!("postfix:{SECRET}")));
                if r.header("authorization") != Some(basic.as_str()) {
                    return Reply::json(401, r#"{"error":"invalid_client"}"#);
                }
                match r.body_str().as_str() {
                    b if b == format!("token={ACTIVE}&token_type_hint=access_token") => {
                        Reply::json(200, &json!({"active": true, "email": USER, "sub": "1234"}).to_string())
                    }
                    // With the user, so that only `active` can refuse it.
                    _ => Reply::json(200, &json!({"active": false, "email": USER}).to_string()),
                }
            }
            _ => Reply::status(404, ""),
        }
    };
    let b = match tls {
        Some(tls) => Backend::start_tls(tls, handler),
        None => Backend::start(handler),
    };
    base.set(b.url("").trim_end_matches('/').to_string()).unwrap();
    (b, fetches)
}

fn config(idp: &Backend, validation: &str) -> Config {
    let oidc = format!(
        "{{ configuration_uri: {}, client_id: postfix, client_secret: {SECRET}, validation: {validation} }}",
        q(&idp.url("/.well-known/openid-configuration"))
    );
    // The password backend is never asked for a token.
    Config::new().sasl("a", &closed_url("/auth")).set("sasl_oidc_auth", &oidc).set("deadline", "2s")
}

fn xoauth2(id: u32, user: &str, token: &str) -> String {
    let resp = STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    format!("AUTH\t{id}\tXOAUTH2\t{PARAMS}\tresp={resp}\n")
}

fn oauthbearer(id: u32, user: Option<&str>, token: &str) -> String {
    let a = user.map_or(String::new(), |u| format!("a={u}"));
    let resp = STANDARD.encode(format!("n,{a},\x01host=mx.x.org\x01port=587\x01auth=Bearer {token}\x01\x01"));
    format!("AUTH\t{id}\tOAUTHBEARER\t{PARAMS}\tresp={resp}\n")
}

const HANDSHAKE: &str = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n\
                         MECH\tXOAUTH2\tplaintext\nMECH\tOAUTHBEARER\tplaintext\nSPID\t";

/// Runs `pfxhttp sasl` with `input`; returns the replies after the handshake, which must offer
/// the token mechanisms.
fn serve(cfg: &Config, input: &str) -> String {
    let out = cfg.run_serving(&["sasl"], input.as_bytes(), RUN);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with(HANDSHAKE), "{text:?}");
    let end = text.find("DONE\n").expect("DONE") + 5;
    text[end..].to_string()
}

#[test]
fn introspection_accepts_an_active_token_for_its_user() {
    let (b, _) = idp(vec![], vec![]);
    let cfg = config(&b, "introspection");
    let input = [
        HELLO,
        &xoauth2(1, USER, ACTIVE),
        &oauthbearer(2, None, ACTIVE),
        &oauthbearer(3, Some(USER), INACTIVE),
        &xoauth2(4, "other@x.org", ACTIVE),
    ]
    .concat();
    let fail = |id: u32| format!("FAIL\t{id}\treason=Invalid login or password\n");
    assert_eq!(serve(&cfg, &input), format!("OK\t1\tuser={USER}\nOK\t2\tuser={USER}\n{}{}", fail(3), fail(4)));
    let asked: Vec<String> = b.requests().iter().filter(|r| r.path() == "/introspect").map(|r| r.body_str()).collect();
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert_eq!(b.requests().iter().filter(|r| r.path() == "/jwks").count(), 0);
}

#[test]
fn jwks_accepts_a_valid_jwt_and_refuses_every_flaw() {
    let key = Key::new("k1");
    let (b, _) = idp(vec![key.jwk()], vec![key.jwk()]);
    let cfg = config(&b, "jwks");
    let forged = Key::new("k1").token("k1", json!({}));
    let flawed = [
        key.token("k1", json!({"exp": 1_000_000_000})),
        key.token("k1", json!({"exp": null})),
        key.token("k1", json!({"aud": "account"})),
        key.token("k1", json!({"iss": "https://evil.example.org"})),
        key.token("k1", json!({"nbf": 4_000_000_000i64})),
        forged,
    ];
    let mut input =
        [HELLO, &xoauth2(1, USER, &key.token("k1", json!({}))), &oauthbearer(2, None, &key.token("k1", json!({})))]
            .concat();
    let mut expected = format!("OK\t1\tuser={USER}\nOK\t2\tuser={USER}\n");
    for (i, token) in flawed.iter().enumerate() {
        let id = 3 + i as u32;
        input.push_str(&xoauth2(id, USER, token));
        expected.push_str(&format!("FAIL\t{id}\treason=Invalid login or password\n"));
    }
    input.push_str(&oauthbearer(20, Some("other@x.org"), &key.token("k1", json!({}))));
    expected.push_str("FAIL\t20\treason=Invalid login or password\n");
    assert_eq!(serve(&cfg, &input), expected);
    assert_eq!(b.requests().iter().filter(|r| r.path() == "/introspect").count(), 0);
}

#[test]
fn auto_takes_jwks_for_a_jwt_and_introspection_for_the_rest() {
    let key = Key::new("k1");
    let (b, _) = idp(vec![key.jwk()], vec![key.jwk()]);
    let cfg = config(&b, "auto");
    let input = [HELLO, &xoauth2(1, USER, &key.token("k1", json!({}))), &xoauth2(2, USER, ACTIVE)].concat();
    assert_eq!(serve(&cfg, &input), format!("OK\t1\tuser={USER}\nOK\t2\tuser={USER}\n"));
    let paths: Vec<String> = b.requests().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(paths, ["/.well-known/openid-configuration", "/jwks", "/introspect"], "discovery is fetched once");
}

/// A token naming a key the stored set lacks fetches the set again, but not within a minute of
/// the last fetch (shared through the state database): made-up `kid`s cannot make every AUTH
/// fetch it, and are plain invalid tokens, not an outage.
#[test]
fn an_unknown_kid_fetches_the_key_set_again_at_most_once_a_minute() {
    let (k1, k2) = (Key::new("k1"), Key::new("k2"));
    let (b, fetches) = idp(vec![k1.jwk()], vec![k1.jwk(), k2.jwk()]);
    let cfg = config(&b, "jwks");
    let fail = |id: u32| format!("FAIL\t{id}\treason=Invalid login or password\n");
    let mut input =
        [HELLO, &xoauth2(1, USER, &k1.token("k1", json!({}))), &xoauth2(2, USER, &k2.token("k2", json!({})))].concat();
    let mut expected = format!("OK\t1\tuser={USER}\n{}", fail(2));
    for id in 3..8 {
        let kid: &'static str = Box::leak(format!("random-{id}").into_boxed_str());
        input.push_str(&xoauth2(id, USER, &Key::new(kid).token(kid, json!({}))));
        expected.push_str(&fail(id));
    }
    assert_eq!(serve(&cfg, &input), expected);
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched on first use only");

    // A minute later (the stored fetch made older), another process fetches once for k2, and
    // the next unknown kid is refused from the new set without a fetch.
    let db = rusqlite::Connection::open(cfg.db_path()).expect("open the state database");
    let moved = db.execute("UPDATE idp_documents SET fetched_at = fetched_at - 61000 WHERE uri LIKE '%/jwks'", []);
    assert_eq!(moved.expect("age the key set"), 1);
    drop(db);
    let input = [
        HELLO,
        &xoauth2(1, USER, &k2.token("k2", json!({}))),
        &xoauth2(2, USER, &Key::new("k3").token("k3", json!({}))),
        &xoauth2(3, USER, &k1.token("k1", json!({}))),
    ]
    .concat();
    assert_eq!(serve(&cfg, &input), format!("OK\t1\tuser={USER}\n{}OK\t3\tuser={USER}\n", fail(2)));
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "one fetch for k2, none for k3");
}

/// An identity provider that cannot be asked is an outage: no reply, the connection closed,
/// and the request after it is not read.
#[test]
fn an_idp_outage_closes_the_connection_without_a_reply() {
    let key = Key::new("k1");
    let oidc = format!("{{ configuration_uri: {}, client_id: postfix, client_secret: x }}", q(&closed_url("/d")));
    let down = Config::new().sasl("a", &closed_url("/auth")).set("sasl_oidc_auth", &oidc).set("deadline", "1s");
    let input = [HELLO, &xoauth2(1, USER, ACTIVE), &xoauth2(2, USER, ACTIVE)].concat();
    assert_eq!(serve(&down, &input), "", "discovery unreachable");
    let jwt = key.token("k1", json!({}));
    for (validation, failing, token) in [
        ("introspection", "/introspect", ACTIVE),
        ("jwks", "/jwks", jwt.as_str()),
        ("jwks", "/.well-known/openid-configuration", jwt.as_str()),
    ] {
        let (b, _) = idp_failing(vec![key.jwk()], vec![key.jwk()], failing);
        let input = [HELLO, &xoauth2(1, USER, token), &xoauth2(2, USER, token)].concat();
        assert_eq!(serve(&config(&b, validation), &input), "", "{failing} answers 503");
        assert!(b.requests().iter().any(|r| r.path() == failing), "{failing} was asked");
    }
}

#[test]
fn the_token_is_never_logged() {
    let sink = SyslogSink::new();
    let key = Key::new("k1");
    let (b, _) = idp(vec![key.jwk()], vec![key.jwk()]);
    let cfg = config(&b, "auto").syslog(&sink, ", level: debug");
    let jwt = key.token("k1", json!({}));
    let expired = key.token("k1", json!({"exp": 1_000_000_000}));
    let auths = [
        xoauth2(1, USER, &jwt),
        xoauth2(2, USER, ACTIVE),
        oauthbearer(3, Some(USER), &expired),
        xoauth2(4, USER, INACTIVE),
    ];
    let replies = serve(&cfg, &[HELLO, &auths.concat()].concat());
    assert_eq!(replies.lines().filter(|l| l.starts_with("OK")).count(), 2, "{replies}");
    let line = sink.wait_for("result=fail", Duration::from_secs(5)).unwrap_or_else(|| panic!("{:?}", sink.lines()));
    assert!(line.contains("mechanism=OAUTHBEARER") && line.contains("reason=\"the token has expired"), "{line}");
    let lines = sink.settle(Duration::from_secs(5));
    assert_eq!(lines.iter().filter(|l| l.contains("proto=sasl")).count(), 4, "{lines:#?}");
    let resps: Vec<String> = auths.iter().map(|a| a.rsplit_once("resp=").unwrap().1.trim_end().to_string()).collect();
    let signature = jwt.rsplit_once('.').unwrap().1;
    for line in &lines {
        for secret in [jwt.as_str(), expired.as_str(), signature, ACTIVE, INACTIVE, SECRET]
            .into_iter()
            .chain(resps.iter().map(String::as_str))
        {
            assert!(!line.contains(secret), "{secret:?} logged: {line}");
        }
    }
}

/// Requests to the identity provider verify its certificate with the server's TLS settings (or
/// the block's own `tls`), never the backend's lax ones: an untrusted provider is an outage,
/// and no token or secret is sent to it.
#[test]
fn the_idp_is_verified_with_the_server_tls_settings() {
    let tls = make_tls_files();
    let ca = q(&tls.ca_pem.display().to_string());
    let input = [HELLO, &xoauth2(1, USER, ACTIVE)].concat();
    let oidc = |b: &Backend, extra: &str| {
        let uri = q(&b.url("/.well-known/openid-configuration"));
        format!("{{ configuration_uri: {uri}, client_id: postfix, client_secret: {SECRET}{extra} }}")
    };
    let (b, _) = idp_on(Some(&tls), vec![], vec![], "");
    let lax = Config::new()
        .sasl("a", &closed_url("/auth"))
        .set("tls", "{ skip_verify: true }")
        .set("sasl_oidc_auth", &oidc(&b, ""))
        .set("deadline", "2s");
    assert_eq!(serve(&lax, &input), "", "the backend's skip_verify is not the provider's");
    assert_eq!(b.request_count(), 0);
    let own = Config::new()
        .sasl("a", &closed_url("/auth"))
        .set("sasl_oidc_auth", &oidc(&b, &format!(", tls: {{ root_ca: {ca} }}")));
    assert_eq!(serve(&own, &input), format!("OK\t1\tuser={USER}\n"));
    let (b, _) = idp_on(Some(&tls), vec![], vec![], "");
    let server = Config::new()
        .server(&format!("tls: {{ root_ca: {ca} }}"))
        .sasl("a", &closed_url("/auth"))
        .set("sasl_oidc_auth", &oidc(&b, ""));
    assert_eq!(serve(&server, &input), format!("OK\t1\tuser={USER}\n"));
    assert_eq!(b.requests().iter().filter(|r| r.path() == "/introspect").count(), 1);
}

/// The introspection endpoint gets the client secret: one on another host than the discovery
/// document is refused (an outage), and nothing is sent there.
#[test]
fn an_introspection_endpoint_elsewhere_gets_no_secret() {
    let elsewhere = Backend::fixed(Reply::json(200, r#"{"active":true,"email":"u@x.org"}"#));
    let target = elsewhere.url("/introspect").replace("127.0.0.1", "localhost");
    let doc = Backend::start(move |_| {
        Reply::json(200, &json!({"issuer": ISSUER, "jwks_uri": "", "introspection_endpoint": target}).to_string())
    });
    let input = [HELLO, &xoauth2(1, USER, ACTIVE)].concat();
    assert_eq!(serve(&config(&doc, "introspection"), &input), "");
    assert_eq!(elsewhere.request_count(), 0);
}

#[test]
fn check_accepts_the_block_and_warns_of_a_memory_state_db() {
    let (b, _) = idp(vec![], vec![]);
    let out = config(&b, "auto").run_command(&["check"], b"", RUN);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stdout_str().contains("identity provider"), "{out:?}");
    let out = config(&b, "jwks").state_db(":memory:").run_command(&["check"], b"", RUN);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let all = out.stdout_str() + &out.stderr_str();
    assert!(all.contains("every sasl process fetches the identity provider's discovery document"), "{out:?}");
    assert_eq!(b.request_count(), 0, "check asks nobody");
}

/// `sasl-query --mech xoauth2|oauthbearer` checks a token read from stdin as smtpd's AUTH would,
/// and `-v` never shows it.
#[test]
fn sasl_query_checks_a_token() {
    let (b, _) = idp(vec![], vec![]);
    let cfg = config(&b, "introspection");
    for mech in ["xoauth2", "oauthbearer"] {
        let out =
            cfg.run_command(&["sasl-query", "-v", "--mech", mech, "a", USER], format!("{ACTIVE}\n").as_bytes(), RUN);
        assert_eq!((out.code(), out.stdout_str().as_str()), (Some(0), format!("OK user={USER}\n").as_str()), "{out:?}");
        let err = out.stderr_str();
        assert!(err.contains(&format!("> AUTH\t1\t{}\t", mech.to_uppercase())), "{err}");
        assert!(!err.contains(ACTIVE) && !err.contains(SECRET), "{err}");
        let out = cfg.run_command(&["sasl-query", "--mech", mech, "a", USER], INACTIVE.as_bytes(), RUN);
        assert_eq!((out.code(), out.stdout_str().as_str()), (Some(1), "FAIL reason=Invalid login or password\n"));
        let out = cfg.run_command(&["sasl-query", "--mech", mech, "a", "other@x.org"], ACTIVE.as_bytes(), RUN);
        assert_eq!(out.code(), Some(1), "{out:?}");
    }
    let asked: Vec<String> = b.requests().iter().filter(|r| r.path() == "/introspect").map(|r| r.body_str()).collect();
    assert_eq!(asked.len(), 6);
    assert_eq!(asked[0], format!("token={ACTIVE}&token_type_hint=access_token"), "one trailing newline dropped");
}
