//! Attacks on backend authentication: an entry's lax TLS settings used for the token endpoint,
//! a discovery document or a planted discovery row sending the client secret elsewhere, plain
//! http that `check` must point out, a cache key that changes with the password, and planted
//! leases that would make every lookup wait for a token nobody fetches.

use super::*;

/// A token server over TLS with a certificate of the test CA (which the system does not trust):
/// `tok-VerySecretToken-N` for the n-th request.
fn tls_tokens(tls: &TlsFiles) -> Backend {
    let n = AtomicUsize::new(0);
    Backend::start_tls(tls, move |_| {
        let n = n.fetch_add(1, Ordering::SeqCst) + 1;
        token_json(&format!("tok-{TOKEN_MARK}-{n}"), r#","expires_in":3600"#)
    })
}

/// The entry's `tls` (skip_verify, or its own root_ca) is for its backend: the token request
/// verifies the token endpoint with the server-level settings, or the auth block's own `tls`.
/// Without a trusted certificate the password is never sent.
#[test]
fn an_entrys_tls_settings_never_reach_the_token_endpoint() {
    let tls = make_tls_files();
    let ca = q(&tls.ca_pem.display().to_string());
    let refused = ["{ skip_verify: true }".to_string(), format!("{{ root_ca: {ca} }}")];
    for entry_tls in &refused {
        let (ts, t) = (tls_tokens(&tls), target());
        let cfg = map_cfg(&t.url("/lookup")).set("tls", entry_tls).set("jwt_auth", &jwt(&ts.url("/token"), ""));
        let reply = cfg.lookup("a@example.org");
        let host = host_port(&ts.url("/token"));
        assert!(reply.starts_with(&format!("TEMP token endpoint {host}: TLS error")), "entry tls {entry_tls}: {reply}");
        assert_eq!(ts.request_count(), 0, "entry tls {entry_tls}: the password went out");
        assert_eq!(t.request_count(), 0);
    }
    // The auth block's own tls, or the server's, trusts the test CA: the token is fetched.
    let (ts, t) = (tls_tokens(&tls), target());
    let own = jwt(&ts.url("/token"), &format!(", tls: {{ root_ca: {ca} }}"));
    let cfg = map_cfg(&t.url("/lookup")).set("tls", "{ skip_verify: true }").set("jwt_auth", &own);
    assert_eq!(cfg.lookup("a@example.org"), "OK ok");
    assert_eq!(authorizations(&t), [bearer(1)]);
    let (ts, t) = (tls_tokens(&tls), target());
    let cfg = map_cfg(&t.url("/lookup"))
        .server(&format!("tls: {{ root_ca: {ca} }}"))
        .set("tls", "{ skip_verify: true }")
        .set("jwt_auth", &jwt(&ts.url("/token"), ""));
    assert_eq!(cfg.lookup("a@example.org"), "OK ok");
    assert_eq!(ts.request_count(), 1);
}

/// A `backend_oidc_auth` block on `uri` with client_secret_post (the secret in the body).
fn oidc_on(uri: &str) -> String {
    format!(
        "{{ configuration_uri: {}, client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, auth_method: client_secret_post }}",
        q(uri)
    )
}

/// An https discovery document naming a plain http token endpoint, or one on another host:
/// refused, the secret is not sent; the same host over https is used.
#[test]
fn a_discovered_token_endpoint_may_not_downgrade_or_move() {
    let tls = make_tls_files();
    let plain = numbered_tokens();
    let cases = [
        (plain.url("/oauth2/token"), "is plain http; name it in token_endpoint to use it".to_string()),
        (
            String::from("https://localhost:PORT/oauth2/token"),
            "is on another host (localhost:PORT); name it in token_endpoint to use it".to_string(),
        ),
        (String::from("https://127.0.0.1:PORT/oauth2/token"), String::new()),
    ];
    for (named, refusal) in cases {
        let served = named.clone();
        let idp = Backend::start_tls(&tls, move |r| match r.path() {
            "/.well-known/openid-configuration" => {
                let port = r.header("host").and_then(|h| h.rsplit(':').next()).unwrap_or("?");
                Reply::json(200, &json!({ "token_endpoint": served.replace("PORT", port) }).to_string())
            }
            _ => token_json(&format!("tok-{TOKEN_MARK}-1"), r#","expires_in":3600"#),
        });
        let named = named.replace("PORT", &idp.port().to_string());
        let t = target();
        let cfg = map_cfg(&t.url("/lookup"))
            .server(&format!("tls: {{ root_ca: {} }}", q(&tls.ca_pem.display().to_string())))
            .set("backend_oidc_auth", &oidc_on(&idp.url("/.well-known/openid-configuration")));
        let reply = cfg.lookup("a@example.org");
        let posted: Vec<String> = idp.requests().iter().filter(|r| r.method == "POST").map(|r| r.body_str()).collect();
        if refusal.is_empty() {
            assert_eq!(reply, "OK ok", "{named}");
            assert_eq!(posted.len(), 1, "{named}");
            continue;
        }
        let refusal = refusal.replace("PORT", &idp.port().to_string());
        let expected =
            format!("TEMP token endpoint {}: token_endpoint in discovery {refusal}", host_port(&idp.url("")));
        assert_eq!(reply, expected, "{named}");
        assert!(posted.is_empty(), "{named}: the secret went to the idp: {posted:?}");
        assert_eq!(t.request_count(), 0);
    }
    assert_eq!(plain.request_count(), 0, "the secret went over plain http");
}

/// A discovery row planted in the state database naming another server: refused like a fresh
/// document would be, the document is fetched again and its own endpoint used.
#[test]
fn a_planted_discovery_row_is_checked_like_a_fresh_document() {
    let (idp, evil, t) = (idp(), numbered_tokens(), target());
    let uri = idp.url("/.well-known/openid-configuration");
    let cfg = map_cfg(&t.url("/lookup")).set("backend_oidc_auth", &oidc_on(&uri));
    cfg.init_db();
    let db = rusqlite::Connection::open(cfg.db_path()).expect("open the state database");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    db.execute(
        "INSERT INTO discovery (uri, token_endpoint, fetched_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![uri, evil.url("/oauth2/token"), now],
    )
    .expect("plant the discovery row");
    assert_eq!(cfg.lookup("a@example.org"), "OK ok");
    assert_eq!(evil.request_count(), 0, "the client secret went to the planted endpoint");
    let paths: Vec<String> = idp.requests().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(paths, ["/.well-known/openid-configuration", "/oauth2/token"]);
    let stored: String = db
        .query_row("SELECT token_endpoint FROM discovery WHERE uri = ?1", [&uri], |r| r.get(0))
        .expect("the discovery row");
    assert_eq!(stored, idp.url("/oauth2/token"));
}

/// `check` warns about credentials over plain http beyond the loopback: a token endpoint, a
/// refresh endpoint, a discovery document, http_auth_basic; not on the loopback, not over https.
#[test]
fn check_warns_about_credentials_over_plain_http() {
    let dir = temp_dir();
    let yaml = format!(
        "server: {{ state_db: {db} }}
socket_maps:
  basic: {{ target: 'http://192.0.2.1/x', value_field: v, http_auth_basic: 'u:p' }}
  basic_local: {{ target: ['http://127.0.0.1:9/x', 'http://[::1]:9/x', 'https://192.0.2.1/x'], value_field: v, http_auth_basic: 'u:p' }}
  jwt: {{ target: 'https://192.0.2.1/x', value_field: v, jwt_auth: {{ token_endpoint: 'http://192.0.2.1/t', refresh_endpoint: 'http://idp.example/r', credentials: {{ a: b }} }} }}
  jwt_local: {{ target: 'https://192.0.2.1/x', value_field: v, jwt_auth: {{ token_endpoint: 'http://localhost:9/t', credentials: {{ a: b }} }} }}
  oidc: {{ target: 'https://192.0.2.1/x', value_field: v, backend_oidc_auth: {{ configuration_uri: 'http://idp.example/d', client_id: c }} }}
",
        db = q(&dir.path().join("state.db").display().to_string())
    );
    let path = write_config(dir.path(), &yaml);
    let out = run(&["--config", &path.display().to_string(), "check"], b"", RUN);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let plain = "plain http:// beyond the loopback: credentials and tokens can be read on the way";
    let mut warned: Vec<String> =
        out.stderr_str().lines().filter(|l| l.contains("http://")).map(str::to_string).collect();
    warned.sort();
    assert_eq!(
        warned,
        [
            "warning: socket_maps.basic.target: http_auth_basic is sent over plain http:// beyond the loopback, \
             where it can be read on the way"
                .to_string(),
            format!("warning: socket_maps.jwt.jwt_auth.refresh_endpoint: {plain}"),
            format!("warning: socket_maps.jwt.jwt_auth.token_endpoint: {plain}"),
            format!("warning: socket_maps.oidc.backend_oidc_auth.configuration_uri: {plain}"),
        ]
    );
}

/// A jwt_auth block with `password`.
fn jwt_with(token_endpoint: &str, password: &str) -> String {
    format!("{{ token_endpoint: {}, credentials: {{ username: admin, password: {password} }} }}", q(token_endpoint))
}

/// Every key in the token table.
fn token_keys(cfg: &Config) -> Vec<String> {
    let db = rusqlite::Connection::open(cfg.db_path()).expect("open the state database");
    let mut stmt = db.prepare("SELECT key FROM tokens ORDER BY key").expect("query");
    stmt.query_map([], |r| r.get(0)).expect("rows").collect::<Result<_, _>>().expect("keys")
}

/// The cache key takes no secret: a password change keeps it. The old token, refused by the
/// backend after the change, is dropped and a new one fetched with the new password.
#[test]
fn a_password_change_keeps_the_key_and_a_refused_token_brings_the_new_password() {
    const NEW: &str = "N3wS3cret";
    let rotated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r1 = rotated.clone();
    let ts = Backend::start(move |r| {
        let password = form(&r.body).into_iter().find(|(k, _)| k == "password").map(|(_, v)| v);
        match (r1.load(Ordering::SeqCst), password.as_deref()) {
            (false, Some(PASSWORD)) => token_json(&format!("tok-{TOKEN_MARK}-old"), r#","expires_in":3600"#),
            (true, Some(NEW)) => token_json(&format!("tok-{TOKEN_MARK}-new"), r#","expires_in":3600"#),
            _ => Reply::json(401, r#"{"error":"invalid_client"}"#),
        }
    });
    let r2 = rotated.clone();
    let t = Backend::start(move |r| {
        let current = if r2.load(Ordering::SeqCst) { "new" } else { "old" };
        if r.header("authorization") == Some(&format!("Bearer tok-{TOKEN_MARK}-{current}")) {
            Reply::json(200, r#"{"result":"ok"}"#)
        } else {
            Reply::json(401, r#"{"error":"token revoked"}"#)
        }
    });
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt_with(&ts.url("/token"), PASSWORD));
    assert_eq!(cfg.lookup("a@example.org"), "OK ok");
    let before = token_keys(&cfg);
    assert_eq!(before.len(), 1);

    rotated.store(true, Ordering::SeqCst);
    let cfg = cfg.set("jwt_auth", &jwt_with(&ts.url("/token"), NEW));
    assert_eq!(cfg.lookup("b@example.org"), "OK ok");
    assert_eq!(token_keys(&cfg), before, "the key changed with the password");
    let sent: Vec<String> =
        ts.requests().iter().filter_map(|r| form(&r.body).into_iter().nth(1).map(|p| p.1)).collect();
    assert_eq!(sent, [PASSWORD, NEW]);
    assert_eq!(
        authorizations(&t),
        [
            format!("Bearer tok-{TOKEN_MARK}-old"),
            format!("Bearer tok-{TOKEN_MARK}-old"),
            format!("Bearer tok-{TOKEN_MARK}-new")
        ]
    );
}

/// A lease row planted with a far-future end, held by a pid that does not exist or by a live
/// process (this test's): the lookup takes the lease over and answers within the token
/// request's timeout, instead of waiting out its deadline and answering TIMEOUT.
#[test]
fn a_planted_lease_is_trusted_no_longer_than_a_token_request() {
    for holder in [999_999_999_u32, std::process::id()] {
        let (ts, t) = (numbered_tokens(), target());
        let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), "")).set("timeout", "1s");
        assert_eq!(cfg.lookup("a@example.org"), "OK ok");
        let db = rusqlite::Connection::open(cfg.db_path()).expect("open the state database");
        let far = 4_102_444_800_000_i64; // 2100-01-01
        let planted = db
            .execute(
                "UPDATE tokens SET token = NULL, refresh_token = NULL, expires_at = 0, lease_pid = ?1, lease_until = ?2",
                rusqlite::params![holder, far],
            )
            .expect("plant the lease");
        assert_eq!(planted, 1);
        let started = Instant::now();
        assert_eq!(cfg.lookup("b@example.org"), "OK ok", "lease held by {holder}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1) + MARGIN, "lease held by {holder}: answered after {took:?}");
        assert_eq!(authorizations(&t), [bearer(1), bearer(2)]);
    }
}
