//! Backend authentication (`docs/design.md#authentication`): `jwt_auth` and `backend_oidc_auth` tokens fetched
//! by real pfxhttp processes from token servers on 127.0.0.1, shared between processes through
//! the state database (one fetcher, refresh ahead, a lease that outlives a killed fetcher), one
//! new token and one retry after a 401, failures of the token endpoint, `pfxhttp token`, and
//! secrets that must never show.
//!
//! Every test has a state database of its own (a file in its temp dir). Every serving run checks
//! the spawn(8) rules: nothing on stderr, exit status 0. Time limits are upper bounds with a
//! generous margin for a noisy two-core machine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use crate::state::is_root;
use crate::support::*;

/// Attacks on the auth code: TLS settings, discovery, the cache key, planted leases.
#[path = "auth_security.rs"]
mod security;

/// Upper bound for one pfxhttp run (start, all lookups, exit).
const RUN: Duration = Duration::from_secs(20);
/// Upper bound for one reply read from an interactive child.
const READ: Duration = Duration::from_secs(20);
/// What a noisy machine may add to a time limit.
const MARGIN: Duration = Duration::from_millis(4000);
/// What a noisy machine may add to the wait for a dead process's lease: smaller than MARGIN, so
/// that a lease of 5 s instead of 3 s is noticed.
const LEASE_MARGIN: Duration = Duration::from_millis(1500);

/// The jwt_auth password, the OIDC client and its secret: never to be seen outside the token
/// request. Tokens all contain `VerySecretToken`, refresh tokens `VerySecretRefresh`.
const PASSWORD: &str = "Sup3rS3cret";
const CLIENT_ID: &str = "mailclient";
const CLIENT_SECRET: &str = "0idcS3cret";
const TOKEN_MARK: &str = "VerySecretToken";
const REFRESH_MARK: &str = "VerySecretRefresh";

/// How many processes the stampede test starts at once. The harness Backend accepts on one
/// thread and serves every connection on a thread of its own, from a std listener whose backlog
/// is 128: that many connections arriving at once are queued, none dropped (a dropped SYN would
/// cost a client a 1 s retransmit). Keep this below 128.
const STAMPEDE: usize = 100;

// ------------------------------------------------------------------ config

/// A config with the map `demo` asking `target` (see [`Config::map`]). The state database is
/// `state.db` in the config's temp dir unless set otherwise.
fn map_cfg(target: &str) -> Config {
    Config::new().map("demo", target)
}

/// A config with the policy service `pol` asking `target` (see [`Config::policy`]) and a default
/// action of its own.
fn policy_cfg(target: &str) -> Config {
    Config::new().policy("pol", target).set("default_action", &q("DEFER_IF_PERMIT auth test default"))
}

/// How these tests run a config.
trait Runs {
    /// `pfxhttp socketmap` fed `stdin`, checked with [`assert_clean`].
    fn serve(&self, stdin: &[u8]) -> Output;
    /// `pfxhttp policy` fed `stdin`, checked with [`assert_clean`].
    fn serve_policy(&self, stdin: &[u8]) -> Output;
    /// One socketmap lookup of `key` in its own process; the reply's payload.
    fn lookup(&self, key: &str) -> String;
    /// An interactive `pfxhttp socketmap` on this config.
    fn child(&self) -> Child;
    /// `pfxhttp --config F ARGS...` (an interactive command).
    fn command(&self, args: &[&str]) -> Output;
    /// `pfxhttp token demo [--refresh]`.
    fn token(&self, refresh: bool) -> Output;
    /// Creates the state database the documented way (`pfxhttp state init`).
    fn init_db(&self);
}

impl Runs for Config {
    fn serve(&self, stdin: &[u8]) -> Output {
        self.run_serving(&["socketmap"], stdin, RUN)
    }

    fn serve_policy(&self, stdin: &[u8]) -> Output {
        self.run_serving(&["policy"], stdin, RUN)
    }

    fn lookup(&self, key: &str) -> String {
        single_reply(&self.serve(&req(key)).stdout)
    }

    fn child(&self) -> Child {
        self.spawn(&["socketmap"])
    }

    fn command(&self, args: &[&str]) -> Output {
        self.run_command(args, b"", RUN)
    }

    fn token(&self, refresh: bool) -> Output {
        if refresh { self.command(&["token", "demo", "--refresh"]) } else { self.command(&["token", "demo"]) }
    }

    fn init_db(&self) {
        let out = if is_root() {
            self.command(&["state", "init", "--user", "root"])
        } else {
            self.command(&["state", "init"])
        };
        assert_eq!(out.code(), Some(0), "state init: {out:?}");
        assert!(self.db_path().exists(), "state init made no {}", self.db_path().display());
    }
}

/// A `jwt_auth` block with `credentials: { username: admin, password: PASSWORD }`; `extra` adds
/// keys (`, content_type: application/json`).
fn jwt(token_endpoint: &str, extra: &str) -> String {
    format!(
        "{{ token_endpoint: {}, credentials: {{ username: admin, password: {PASSWORD} }}{extra} }}",
        q(token_endpoint)
    )
}

// ------------------------------------------------------------------ servers

/// A token server: `f(n, request)` answers the n-th request (1-based).
fn token_server(f: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Backend {
    let n = AtomicUsize::new(0);
    Backend::start(move |r| f(n.fetch_add(1, Ordering::SeqCst) + 1, r))
}

/// A jwt_auth answer `{"token": TOKEN, ...extra}`; `extra` starts with a comma.
fn token_json(token: &str, extra: &str) -> Reply {
    Reply::json(200, &format!(r#"{{"token":"{token}"{extra}}}"#))
}

/// A token server that gives `tok-VerySecretToken-N` (valid an hour) to the n-th request.
fn numbered_tokens() -> Backend {
    token_server(|n, _| token_json(&format!("tok-{TOKEN_MARK}-{n}"), r#","expires_in":3600"#))
}

/// The target: `{"result":"ok"}` for every request.
fn target() -> Backend {
    Backend::fixed(Reply::json(200, r#"{"result":"ok"}"#))
}

/// The `Authorization` headers of every request `b` received, in order, one per request
/// (several headers are joined with ` | `).
fn authorizations(b: &Backend) -> Vec<String> {
    b.requests().iter().map(|r| r.header_all("authorization").join(" | ")).collect()
}

fn bearer(n: usize) -> String {
    format!("Bearer tok-{TOKEN_MARK}-{n}")
}

/// `host:port` of a URL such as `http://127.0.0.1:PORT/path`.
fn host_port(url: &str) -> String {
    url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("").to_string()
}

/// A form body as (name, value) pairs, decoded.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad escape in {s:?}")));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).expect("form value is UTF-8")
    };
    let text = String::from_utf8_lossy(body);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A gate that handlers wait at until the test opens it (or their own time limit passes).
struct Gate {
    open: Mutex<usize>,
    cv: Condvar,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate { open: Mutex::new(0), cv: Condvar::new() })
    }

    /// Lets waiters with a number up to `n` through.
    fn open_to(&self, n: usize) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = n;
        self.cv.notify_all();
    }

    /// Waits until waiter number `n` may pass, at most `max`; true if it may.
    fn wait(&self, n: usize, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while *open < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            open = self.cv.wait_timeout(open, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

// ------------------------------------------------------------------ replies

/// A socketmap request for map `demo`.
fn req(key: &str) -> Vec<u8> {
    netstring(format!("demo {key}").as_bytes())
}

/// Checks that `out` is exactly one netstring and returns its payload.
#[track_caller]
fn single_reply(out: &[u8]) -> String {
    let replies = all_replies(out);
    assert_eq!(replies.len(), 1, "expected exactly one reply: {replies:?}");
    replies[0].clone()
}

/// Every netstring payload in `out` (which must hold nothing else).
#[track_caller]
fn all_replies(mut out: &[u8]) -> Vec<String> {
    let mut replies = Vec::new();
    while !out.is_empty() {
        let n = run::parse_netstring(out)
            .unwrap_or_else(|e| panic!("not a netstring ({e}): {:?}", String::from_utf8_lossy(out)))
            .unwrap_or_else(|| panic!("truncated netstring: {:?}", String::from_utf8_lossy(out)));
        let raw = &out[..n];
        let colon = raw.iter().position(|&b| b == b':').expect("colon");
        replies.push(String::from_utf8_lossy(&raw[colon + 1..n - 1]).into_owned());
        out = &out[n..];
    }
    replies
}

/// The payload of a raw netstring read from a child.
fn payload(raw: &[u8]) -> String {
    all_replies(raw).pop().unwrap_or_default()
}

// ------------------------------------------------------------------ jwt_auth

/// jwt_auth login with a form body; the target gets `Bearer <token>` instead of a configured
/// Authorization header; the next lookup and the next process reuse the token.
#[test]
fn jwt_form_login_gives_a_bearer_token_shared_by_processes() {
    let ts = numbered_tokens();
    let t = target();
    let cfg = map_cfg(&t.url("/lookup"))
        .set("jwt_auth", &jwt(&ts.url("/api/v1/jwt/token"), ""))
        .set("custom_headers", "['Authorization: Basic c3RhbGU6c3RhbGU=', 'X-Other: kept']");
    let out = cfg.serve(&[req("a@example.org"), req("b@example.org")].concat());
    assert_eq!(all_replies(&out.stdout), ["OK ok", "OK ok"]);

    let logins = ts.requests();
    assert_eq!(logins.len(), 1, "one login for two lookups: {logins:?}");
    let login = &logins[0];
    assert_eq!((login.method.as_str(), login.path()), ("POST", "/api/v1/jwt/token"));
    assert_eq!(login.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(login.body_str(), format!("username=admin&password={PASSWORD}"));
    assert!(login.header("authorization").is_none(), "no Authorization to the token endpoint: {login:?}");

    assert_eq!(authorizations(&t), [bearer(1), bearer(1)], "the bearer token replaces the configured header");
    assert!(t.requests().iter().all(|r| r.header("x-other") == Some("kept")));

    // Another process uses the stored token.
    assert_eq!(cfg.lookup("c@example.org"), "OK ok");
    assert_eq!(ts.request_count(), 1, "the second process must not log in again");
    assert_eq!(authorizations(&t), [bearer(1), bearer(1), bearer(1)]);
}

/// `content_type: application/json` posts the credentials (here from `credentials_file`) as a
/// JSON object; an `access_token` field is read as well as `token`.
#[test]
fn jwt_json_login_with_a_credentials_file() {
    let ts = token_server(|_, _| {
        Reply::json(200, &format!(r#"{{"access_token":"tok-{TOKEN_MARK}-json","expires_in":600}}"#))
    });
    let t = target();
    let cfg = map_cfg(&t.url("/lookup"));
    let creds = cfg.dir().join("credentials.yml");
    std::fs::write(&creds, format!("username: admin\npassword: {PASSWORD}\n")).unwrap();
    let auth = format!(
        "{{ token_endpoint: {}, credentials_file: {}, content_type: application/json }}",
        q(&ts.url("/token")),
        q(&creds.display().to_string())
    );
    let cfg = cfg.set("jwt_auth", &auth);
    assert_eq!(cfg.lookup("a@example.org"), "OK ok");
    let logins = ts.requests();
    assert_eq!(logins.len(), 1);
    assert!(logins[0].header("content-type").is_some_and(|c| c.starts_with("application/json")), "{logins:?}");
    assert_eq!(logins[0].body_json(), json!({"username": "admin", "password": PASSWORD}));
    assert_eq!(authorizations(&t), [format!("Bearer tok-{TOKEN_MARK}-json")]);
}

/// A short-lived token (`expires_in: 4`) with a refresh token becomes due before it expires
/// (`pfxhttp token` says `renewed from now`): the next process posts `X-Refresh-Token` with no
/// body to `refresh_endpoint` and uses the refreshed token; the one after that uses it without
/// asking again.
#[test]
fn a_due_token_is_refreshed_with_its_refresh_token() {
    let ts = Backend::start(|r| match r.path() {
        "/login" => token_json(
            &format!("tok-{TOKEN_MARK}-1"),
            &format!(r#","refresh_token":"ref-{REFRESH_MARK}-1","expires_in":4"#),
        ),
        "/refresh" if r.header("x-refresh-token") == Some(&format!("ref-{REFRESH_MARK}-1")) => token_json(
            &format!("tok-{TOKEN_MARK}-2"),
            &format!(r#","refresh_token":"ref-{REFRESH_MARK}-2","expires_in":3600"#),
        ),
        _ => Reply::status(400, "unexpected"),
    });
    let t = target();
    let cfg = map_cfg(&t.url("/lookup"))
        .set("jwt_auth", &jwt(&ts.url("/login"), &format!(", refresh_endpoint: {}", q(&ts.url("/refresh")))));
    assert_eq!(cfg.lookup("first"), "OK ok");
    wait_until_due(&cfg, Duration::from_secs(4) + MARGIN);
    assert_eq!(cfg.lookup("second"), "OK ok");
    assert_eq!(cfg.lookup("third"), "OK ok");

    let reqs = ts.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/login", "/refresh"], "one login, then one refresh, then the refreshed token is used");
    let refresh = &reqs[1];
    assert_eq!(refresh.method, "POST");
    assert_eq!(refresh.header("x-refresh-token"), Some(format!("ref-{REFRESH_MARK}-1").as_str()));
    assert!(refresh.body.is_empty(), "a refresh has no body: {:?}", refresh.body_str());
    assert_eq!(authorizations(&t), [bearer(1), bearer(2), bearer(2)]);
}

/// The refresh endpoint (by default the token endpoint) refusing the refresh token (401): the
/// process logs in again with its credentials and uses that token.
#[test]
fn a_refused_refresh_falls_back_to_a_login() {
    let logins = Arc::new(AtomicUsize::new(0));
    let l = logins.clone();
    let ts = Backend::start(move |r| {
        if r.header("x-refresh-token").is_some() {
            return Reply::json(401, r#"{"error":"refresh token expired"}"#);
        }
        let n = l.fetch_add(1, Ordering::SeqCst) + 1;
        token_json(
            &format!("tok-{TOKEN_MARK}-{n}"),
            &format!(r#","refresh_token":"ref-{REFRESH_MARK}-{n}","expires_in":4"#),
        )
    });
    let t = target();
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), ""));
    assert_eq!(cfg.lookup("first"), "OK ok");
    wait_until_due(&cfg, Duration::from_secs(4) + MARGIN);
    assert_eq!(cfg.lookup("second"), "OK ok");

    let reqs = ts.requests();
    let kinds: Vec<String> = reqs
        .iter()
        .map(|r| match r.header("x-refresh-token") {
            Some(rt) => format!("{} refresh {rt}", r.path()),
            None => format!("{} login {}", r.path(), r.body_str()),
        })
        .collect();
    let login = format!("/token login username=admin&password={PASSWORD}");
    assert_eq!(kinds, [login.clone(), format!("/token refresh ref-{REFRESH_MARK}-1"), login]);
    assert!(reqs[1].body.is_empty());
    assert_eq!(authorizations(&t), [bearer(1), bearer(2)], "the second process uses the new login's token");
}

/// A renewal of a valid, due token that fails (the token endpoint hangs; timeout 2s): the
/// renewing process answers with the valid token after its timeout, and the processes after it
/// neither try again nor wait: they answer at once with the valid token.
#[test]
fn a_failed_renewal_is_not_retried_by_every_process() {
    let ts = token_server(|n, _| {
        if n == 1 {
            token_json(&format!("tok-{TOKEN_MARK}-1"), r#","expires_in":10"#)
        } else {
            Reply::Hang(Duration::from_secs(30))
        }
    });
    let t = target();
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), "")).set("timeout", "2s");
    assert_eq!(cfg.lookup("first"), "OK ok");
    wait_until_due(&cfg, Duration::from_secs(8));
    let renewing = cfg.serve(&req("second"));
    assert_eq!(single_reply(&renewing.stdout), "OK ok", "the valid token is used meanwhile");
    assert!(renewing.elapsed >= Duration::from_millis(1900), "the renewal was tried: {renewing:?}");
    assert_eq!(ts.request_count(), 2);
    let mut times = Vec::new();
    for key in ["third", "fourth", "fifth"] {
        let out = cfg.serve(&req(key));
        assert_eq!(single_reply(&out.stdout), "OK ok", "{key}");
        times.push(out.elapsed);
    }
    assert_eq!(ts.request_count(), 2, "nobody tries the hanging token endpoint again right away");
    assert!(times.iter().all(|t| *t < Duration::from_millis(1500)), "the later processes waited: {times:?}");
    assert_eq!(authorizations(&t), vec![bearer(1); 5]);
}

/// Waits (at most `max`) until `pfxhttp token` says the stored token is due for renewal.
fn wait_until_due(cfg: &Config, max: Duration) {
    let deadline = Instant::now() + max;
    loop {
        let out = cfg.token(false);
        if out.stdout_str().contains("renewed from now") {
            return;
        }
        assert!(Instant::now() < deadline, "the token did not become due within {max:?}: {out:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Where the lifetime comes from, as `pfxhttp token` shows it: `expires_at`, else `expires_in`,
/// else the JWT's `exp` claim, else five minutes; and when it is renewed: max(30 s, 10 % of the
/// lifetime) before expiry, but no earlier than halfway through a short lifetime.
#[test]
fn token_lifetime_and_renewal_time() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let claims = format!(r#"{{"sub":"x","exp":{}}}"#, now + 1200);
    let jwt_token = format!("{}.{}.{TOKEN_MARK}", enc(r#"{"alg":"none"}"#), enc(&claims));
    // (answer, lifetime, renewed from in)
    let answers = [
        (format!(r#"{{"token":"tok-{TOKEN_MARK}-a","expires_at":{},"expires_in":60}}"#, now + 2400), 2400, 2160),
        (format!(r#"{{"token":"tok-{TOKEN_MARK}-b","expires_in":1800}}"#), 1800, 1620),
        (format!(r#"{{"access_token":"{jwt_token}"}}"#), 1200, 1080),
        (format!(r#"{{"token":"tok-{TOKEN_MARK}-d"}}"#), 300, 270),
        (format!(r#"{{"token":"tok-{TOKEN_MARK}-e","expires_in":120}}"#), 120, 90),
        (format!(r#"{{"token":"tok-{TOKEN_MARK}-f","expires_in":40}}"#), 40, 20),
    ];
    let bodies: Vec<String> = answers.iter().map(|(b, _, _)| b.clone()).collect();
    let count = bodies.len();
    let ts = token_server(move |n, _| Reply::json(200, &bodies[(n - 1).min(count - 1)]));
    let cfg = map_cfg(&target().url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), ""));
    cfg.init_db();
    for (answer, lifetime, renew_in) in &answers {
        let out = cfg.token(true);
        let text = out.stdout_str();
        assert_eq!(out.code(), Some(0), "{out:?}");
        assert!(text.contains("fetched a new token"), "{text}");
        let valid = number_after(&text, "token: valid for ").unwrap_or_else(|| panic!("{answer}: {text}"));
        assert!(
            (lifetime - 15..=lifetime + 1).contains(&valid),
            "{answer}: valid for {valid} s, not {lifetime}\n{text}"
        );
        let renew = number_after(&text, "renewed from in ").unwrap_or_else(|| panic!("{answer}: {text}"));
        assert!(
            (renew_in - 15..=renew_in + 1).contains(&renew),
            "{answer}: renewed in {renew} s, not {renew_in}\n{text}"
        );
        assert!(!text.contains(TOKEN_MARK) && !out.stderr_str().contains(TOKEN_MARK), "{out:?}");
    }
    assert_eq!(ts.request_count(), answers.len());
}

/// The number that follows `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<i64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}

// ------------------------------------------------------------------ backend_oidc_auth

/// An identity provider: the discovery document at `/.well-known/openid-configuration` names
/// `/oauth2/token`, which gives `tok-VerySecretToken-oidc`.
fn idp() -> Backend {
    Backend::start(|r| match (r.method.as_str(), r.path()) {
        ("GET", "/.well-known/openid-configuration") => {
            let host = r.header("host").unwrap_or("?");
            let doc =
                json!({"issuer": format!("http://{host}"), "token_endpoint": format!("http://{host}/oauth2/token")});
            Reply::json(200, &doc.to_string())
        }
        ("POST", "/oauth2/token") => Reply::json(
            200,
            &format!(r#"{{"access_token":"tok-{TOKEN_MARK}-oidc","token_type":"Bearer","expires_in":3600}}"#),
        ),
        _ => Reply::status(404, "no such thing"),
    })
}

/// The client-credentials grant, with discovery or a direct token endpoint, for each
/// `auth_method` (and the `oauth2` alias): what the token endpoint received, and the bearer
/// token at the target.
#[test]
fn oidc_client_credentials_for_each_auth_method() {
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    let grant = [("grant_type", "client_credentials"), ("scope", "lookup policy")];
    struct Case {
        what: &'static str,
        key: &'static str,
        discovery: bool,
        block: String,
        authorization: Option<String>,
        form: Vec<(String, String)>,
    }
    let secret_file_dir = temp_dir();
    let secret_file = secret_file_dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let common = format!("client_id: {CLIENT_ID}, scopes: [lookup, policy]");
    let cases = |idp: &Backend| {
        let discovery = q(&idp.url("/.well-known/openid-configuration"));
        let direct = q(&idp.url("/oauth2/token"));
        vec![
            Case {
                what: "discovery, secret, default method (client_secret_basic)",
                key: "backend_oidc_auth",
                discovery: true,
                block: format!("{{ configuration_uri: {discovery}, {common}, client_secret: {CLIENT_SECRET} }}"),
                authorization: Some(basic.clone()),
                form: pairs(&grant),
            },
            Case {
                what: "token_endpoint, client_secret_basic, oauth2 alias",
                key: "oauth2",
                discovery: false,
                block: format!(
                    "{{ token_endpoint: {direct}, {common}, client_secret: {CLIENT_SECRET}, auth_method: client_secret_basic }}"
                ),
                authorization: Some(basic.clone()),
                form: pairs(&grant),
            },
            Case {
                what: "token_endpoint, client_secret_file, client_secret_post",
                key: "backend_oidc_auth",
                discovery: false,
                block: format!(
                    "{{ token_endpoint: {direct}, {common}, client_secret_file: {}, auth_method: client_secret_post }}",
                    q(&secret_file.display().to_string())
                ),
                authorization: None,
                form: pairs(&[grant[0], grant[1], ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]),
            },
            Case {
                what: "discovery, auth_method none",
                key: "backend_oidc_auth",
                discovery: true,
                block: format!("{{ configuration_uri: {discovery}, {common}, auth_method: none }}"),
                authorization: None,
                form: pairs(&[grant[0], grant[1], ("client_id", CLIENT_ID)]),
            },
        ]
    };
    for i in 0..4 {
        let idp = idp();
        let case = cases(&idp).swap_remove(i);
        let t = target();
        let cfg = map_cfg(&t.url("/lookup")).set(case.key, &case.block);
        assert_eq!(cfg.lookup("a@example.org"), "OK ok", "{}", case.what);
        let reqs = idp.requests();
        let mut expected_paths = vec!["/oauth2/token"];
        if case.discovery {
            expected_paths.insert(0, "/.well-known/openid-configuration");
            assert_eq!(reqs[0].method, "GET", "{}: discovery is a GET", case.what);
        }
        let paths: Vec<&str> = reqs.iter().map(|r| r.path()).collect();
        assert_eq!(paths, expected_paths, "{}", case.what);
        let token_req = reqs.last().unwrap();
        assert_eq!(token_req.method, "POST", "{}", case.what);
        assert_eq!(token_req.header("content-type"), Some("application/x-www-form-urlencoded"), "{}", case.what);
        assert_eq!(token_req.header("authorization").map(str::to_string), case.authorization, "{}", case.what);
        assert_eq!(form(&token_req.body), case.form, "{}: body {:?}", case.what, token_req.body_str());
        assert_eq!(authorizations(&t), [format!("Bearer tok-{TOKEN_MARK}-oidc")], "{}", case.what);
    }
}

/// A policy service behind backend_oidc_auth: the action comes from the target with the bearer
/// token; a failing token endpoint gives the default action without asking the target.
#[test]
fn policy_service_with_oidc_and_a_failing_token_endpoint() {
    let idp = idp();
    let t = Backend::fixed(Reply::json(200, r#"{"action":"REJECT from the api"}"#));
    let block = |endpoint: &str| {
        format!("{{ token_endpoint: {}, client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET} }}", q(endpoint))
    };
    let request = b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@example.org\n\n";
    let cfg = policy_cfg(&t.url("/policy")).set("backend_oidc_auth", &block(&idp.url("/oauth2/token")));
    let out = cfg.serve_policy(&[&request[..], &request[..]].concat());
    assert_eq!(out.stdout_str(), "action=REJECT from the api\n\naction=REJECT from the api\n\n");
    assert_eq!(idp.request_count(), 1, "one token for two requests");
    assert_eq!(authorizations(&t), [format!("Bearer tok-{TOKEN_MARK}-oidc"), format!("Bearer tok-{TOKEN_MARK}-oidc")]);

    let broken = Backend::fixed(Reply::json(503, r#"{"error":"down"}"#));
    let cfg = policy_cfg(&t.url("/policy")).set("backend_oidc_auth", &block(&broken.url("/oauth2/token")));
    let out = cfg.serve_policy(request);
    assert_eq!(out.stdout_str(), "action=DEFER_IF_PERMIT auth test default\n\n");
    assert_eq!(broken.request_count(), 1);
    assert_eq!(t.request_count(), 2, "the target is not asked without a token");
}

// ------------------------------------------------------------------ 401 and 403

/// A 401 from the target: the token is dropped, one new token fetched, the request retried
/// once; the next process uses the new token without fetching.
#[test]
fn a_401_gets_one_new_token_and_one_retry() {
    let ts = numbered_tokens();
    let t = Backend::start(|r| {
        if r.header("authorization") == Some(&bearer(1)) {
            Reply::json(401, r#"{"error":"token revoked"}"#)
        } else {
            Reply::json(200, r#"{"result":"ok"}"#)
        }
    });
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), ""));
    assert_eq!(cfg.lookup("a@example.org"), "OK ok");
    assert_eq!(ts.request_count(), 2, "the first token and one new one");
    assert_eq!(authorizations(&t), [bearer(1), bearer(2)]);
    assert_eq!(cfg.lookup("b@example.org"), "OK ok");
    assert_eq!(ts.request_count(), 2, "the new token is shared");
    assert_eq!(authorizations(&t), [bearer(1), bearer(2), bearer(2)]);
}

/// The new token refused too: a temporary failure, no third try.
#[test]
fn a_second_401_is_a_temporary_failure() {
    let ts = numbered_tokens();
    let t = Backend::fixed(Reply::json(401, r#"{"error":"who are you"}"#));
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), ""));
    assert_eq!(cfg.lookup("a@example.org"), "TEMP the backend refused a new token too (HTTP 401)");
    assert_eq!(ts.request_count(), 2);
    assert_eq!(authorizations(&t), [bearer(1), bearer(2)]);
}

/// A 403 is an answer about the request, not the token: PERM, no new token, no retry.
#[test]
fn a_403_is_permanent_without_a_new_token() {
    let ts = numbered_tokens();
    let t = Backend::fixed(Reply::json(403, r#"{"error":"forbidden"}"#));
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), ""));
    assert_eq!(cfg.lookup("a@example.org"), "PERM unexpected HTTP status 403");
    assert_eq!(ts.request_count(), 1);
    assert_eq!(t.request_count(), 1);
}

/// Two processes get a 401 for the same token. The first drops it and fetches a new one; the
/// second, answered only after that, must not drop the new token (it is no longer the one that
/// was refused) and retries with it: two token requests in all, both lookups answered.
#[test]
fn a_401_drops_the_token_only_while_it_is_the_stored_one() {
    let ts = numbered_tokens();
    let gate = Gate::new();
    let refused = Arc::new(AtomicUsize::new(0));
    let (g, n) = (gate.clone(), refused.clone());
    let t = Backend::start(move |r| {
        if r.header("authorization") == Some(&bearer(1)) {
            let mine = n.fetch_add(1, Ordering::SeqCst) + 1;
            g.wait(mine, Duration::from_secs(15));
            Reply::json(401, r#"{"error":"token revoked"}"#)
        } else {
            Reply::json(200, r#"{"result":"ok"}"#)
        }
    });
    // timeout 10s: the process held at the target must not give up and try again meanwhile.
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), "")).set("timeout", "10s");
    cfg.init_db();
    let out = cfg.token(true);
    assert!(out.stdout_str().contains("fetched a new token"), "{out:?}");

    let mut children = [cfg.child(), cfg.child()];
    for c in &mut children {
        c.send(&req("a@example.org"));
    }
    let seen = t.wait_requests(2, READ);
    assert_eq!(seen.len(), 2, "both processes ask with token 1: {:?}", authorizations(&t));
    // The first refused process: drops token 1, fetches token 2, retries with it.
    gate.open_to(1);
    let seen = t.wait_requests(3, READ);
    assert_eq!(seen.len(), 3, "the first process retries: {:?}", authorizations(&t));
    // Token 2 is stored before the retry goes out; now the second process gets its 401.
    gate.open_to(2);
    for c in &mut children {
        assert_eq!(payload(&c.read_netstring(READ)), "OK ok");
    }
    for c in children {
        assert_clean(&c.finish(RUN));
    }
    assert_eq!(authorizations(&t), [bearer(1), bearer(1), bearer(2), bearer(2)]);
    assert_eq!(ts.request_count(), 2, "the second 401 must not drop the new token and fetch a third");
}

// ------------------------------------------------------------------ token endpoint failures

/// The token endpoint refusing connections, hanging (timeout 500ms), answering HTML, an answer
/// without a token, 400 or 500: a temporary failure within the deadline that names the
/// endpoint's host, and the target is not called.
#[test]
fn token_endpoint_failures_are_temporary_and_name_the_host() {
    let html =
        Backend::fixed(Reply::status(200, "<html><body>Login</body></html>").with_header("Content-Type", "text/html"));
    let no_token = Backend::fixed(Reply::json(200, r#"{"status":"ok"}"#));
    let bad_request = Backend::fixed(Reply::json(400, r#"{"error":"invalid credentials"}"#));
    let server_error = Backend::fixed(Reply::status(500, "oops"));
    let hanging = Backend::fixed(Reply::Hang(Duration::from_secs(30)));
    let refused = closed_url("/token");
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("refused", refused, None),
        ("hanging", hanging.url("/token"), None),
        ("HTML", html.url("/token"), None),
        ("no token", no_token.url("/token"), None),
        ("400", bad_request.url("/token"), Some("HTTP 400")),
        ("500", server_error.url("/token"), Some("HTTP 500")),
    ];
    let deadline = Duration::from_secs(3);
    for (what, endpoint, exact) in cases {
        let t = target();
        let cfg = map_cfg(&t.url("/lookup"))
            .set("jwt_auth", &jwt(&endpoint, ""))
            .set("timeout", "500ms")
            .set("deadline", "3s");
        let out = cfg.serve(&req("a@example.org"));
        let reply = single_reply(&out.stdout);
        let prefix = format!("TEMP token endpoint {}: ", host_port(&endpoint));
        assert!(reply.starts_with(&prefix), "{what}: reply {reply:?} should start with {prefix:?}");
        if let Some(rest) = exact {
            assert_eq!(reply, format!("{prefix}{rest}"), "{what}");
        }
        assert!(!reply.contains(PASSWORD), "{what}: {reply}");
        assert!(out.elapsed < deadline + MARGIN, "{what}: answered after {:?}", out.elapsed);
        assert_eq!(t.request_count(), 0, "{what}: the target must not be called without a token");
    }
    assert!(hanging.request_count() >= 1);
}

// ------------------------------------------------------------------ the shared cache

/// One answer in a stampede.
struct Answer {
    index: usize,
    reply: Result<String, String>,
    waited: Duration,
}

/// Starts `n` `pfxhttp socketmap` processes on `cfg`, lets them settle, then sends each one
/// request at the same moment (one thread per process). Answers arrive on the channel; the
/// threads give the children back when joined.
fn stampede(cfg: &Config, n: usize) -> (Vec<JoinHandle<Child>>, Receiver<Answer>) {
    let children: Vec<Child> = (0..n).map(|_| cfg.child()).collect();
    // Let them start up and block reading their request.
    thread::sleep(Duration::from_millis(500));
    let barrier = Arc::new(Barrier::new(n + 1));
    let (tx, rx) = mpsc::channel();
    let handles = children
        .into_iter()
        .enumerate()
        .map(|(index, mut child)| {
            let (barrier, tx) = (barrier.clone(), tx.clone());
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let reply = match child.try_send(&req(&format!("user{index}@example.org"))) {
                    Ok(()) => child.try_read_netstring(READ).map(|raw| payload(&raw)).map_err(|e| e.to_string()),
                    Err(e) => Err(format!("cannot send: {e}")),
                };
                let _ = tx.send(Answer { index, reply, waited: start.elapsed() });
                child
            })
        })
        .collect();
    barrier.wait();
    (handles, rx)
}

/// Receives up to `n` answers, waiting at most `max` in all.
fn collect(rx: &Receiver<Answer>, n: usize, max: Duration) -> Vec<Answer> {
    let deadline = Instant::now() + max;
    let mut answers = Vec::new();
    while answers.len() < n {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(a) => answers.push(a),
            Err(_) => break,
        }
    }
    answers
}

/// Joins the stampede threads and checks that every child exits cleanly at EOF.
fn finish_all(handles: Vec<JoinHandle<Child>>) {
    for h in handles {
        let child = h.join().expect("stampede thread");
        assert_clean(&child.finish(RUN));
    }
}

#[track_caller]
fn assert_all_ok(answers: &[Answer], what: &str) {
    let bad: Vec<String> = answers
        .iter()
        .filter(|a| a.reply.as_deref() != Ok("OK ok"))
        .map(|a| format!("#{}: {:?} after {:?}", a.index, a.reply, a.waited))
        .collect();
    assert!(bad.is_empty(), "{what}: {} of {} answers are not OK: {bad:?}", bad.len(), answers.len());
}

fn slowest(answers: &[Answer]) -> Duration {
    answers.iter().map(|a| a.waited).max().unwrap_or_default()
}

/// STAMPEDE processes with no token yet (and no database file yet: they create it): exactly one
/// token request (the token server takes 200 ms, to widen the race), every process answers OK.
/// Then, with that token valid but due for renewal (`expires_in: 12`: due halfway, after 6 s),
/// STAMPEDE new processes: exactly one refresh request, and nobody waits for it: the refresh is
/// held at the token server until every other process has answered with the old token; the
/// renewing process then answers with the new one.
#[test]
fn stampede_one_fetch_then_one_refresh_nobody_waits() {
    let refresh_gate = Gate::new();
    let logged_in = Arc::new(Mutex::new(None::<Instant>));
    let (g, li) = (refresh_gate.clone(), logged_in.clone());
    let ts = Backend::start(move |r| {
        if r.header("x-refresh-token").is_some() {
            g.wait(1, Duration::from_secs(12));
            token_json(
                &format!("tok-{TOKEN_MARK}-2"),
                &format!(r#","refresh_token":"ref-{REFRESH_MARK}-2","expires_in":3600"#),
            )
        } else {
            thread::sleep(Duration::from_millis(200));
            *li.lock().unwrap() = Some(Instant::now());
            token_json(
                &format!("tok-{TOKEN_MARK}-1"),
                &format!(r#","refresh_token":"ref-{REFRESH_MARK}-1","expires_in":12"#),
            )
        }
    });
    let t = target();
    // timeout 10s, deadline 30s: the renewing process must not give up while the test holds its
    // refresh (a renewal ahead may use what the deadline leaves after one more timeout).
    let cfg = map_cfg(&t.url("/lookup"))
        .set("jwt_auth", &jwt(&ts.url("/token"), ""))
        .set("timeout", "10s")
        .set("deadline", "30s");
    // No `state init`: the processes create the database themselves, all at once.

    // Phase 1: no token yet.
    let (handles, rx) = stampede(&cfg, STAMPEDE);
    let answers = collect(&rx, STAMPEDE, READ + MARGIN);
    finish_all(handles);
    assert_eq!(answers.len(), STAMPEDE, "every process answers");
    assert_all_ok(&answers, "no token yet");
    let token_requests = ts.request_count();
    eprintln!(
        "stampede, no token yet: {STAMPEDE} processes, {token_requests} token request(s), slowest answer {:?}",
        slowest(&answers)
    );
    let bodies: Vec<String> = ts.requests().iter().map(|r| r.body_str()).collect();
    assert_eq!(token_requests, 1, "exactly one process fetches; token requests: {bodies:?}");
    assert_eq!(t.request_count(), STAMPEDE);
    assert!(authorizations(&t).iter().all(|a| *a == bearer(1)));

    // Wait until the token is due, as `pfxhttp token` tells; it must be before it expires.
    let login = logged_in.lock().unwrap().expect("login time");
    wait_until_due(&cfg, (login + Duration::from_secs(11)).saturating_duration_since(Instant::now()));

    // Phase 2: a valid token that is due.
    let (handles, rx) = stampede(&cfg, STAMPEDE);
    let quick = collect(&rx, STAMPEDE - 1, Duration::from_secs(10));
    let refreshes = ts.requests().len() - 1;
    refresh_gate.open_to(1);
    let last = collect(&rx, 1, READ);
    finish_all(handles);
    eprintln!(
        "stampede, token due for refresh: {STAMPEDE} processes, {refreshes} refresh request(s), {} answered while \
         the refresh was held, slowest of those {:?}",
        quick.len(),
        slowest(&quick)
    );
    assert_eq!(quick.len(), STAMPEDE - 1, "all but the renewing process answer while the refresh is under way");
    assert_all_ok(&quick, "due for refresh, others");
    assert_eq!(last.len(), 1, "the renewing process answers once it has the new token");
    assert_all_ok(&last, "due for refresh, renewing process");
    let reqs = ts.requests();
    let kinds: Vec<Option<&str>> = reqs.iter().map(|r| r.header("x-refresh-token")).collect();
    assert_eq!(reqs.len(), 2, "one login, then exactly one refresh; refresh tokens sent: {kinds:?}");
    assert_eq!(reqs[1].header("x-refresh-token"), Some(format!("ref-{REFRESH_MARK}-1").as_str()));
    let phase2 = &authorizations(&t)[STAMPEDE..];
    assert_eq!(phase2.len(), STAMPEDE);
    let old = phase2.iter().filter(|a| **a == bearer(1)).count();
    let new = phase2.iter().filter(|a| **a == bearer(2)).count();
    assert_eq!((old, new), (STAMPEDE - 1, 1), "the others use the old token, the renewing process the new one");
}

/// A process killed while it holds the lease and its token request hangs: another process
/// waits for the lease to run out (timeout 1s: lease 2 × 1 s + 1 s = 3 s), then fetches itself.
#[test]
fn a_killed_lease_holder_delays_others_only_until_its_lease_ends() {
    let ts = token_server(|n, _| {
        if n == 1 {
            Reply::Hang(Duration::from_secs(10))
        } else {
            token_json(&format!("tok-{TOKEN_MARK}-{n}"), r#","expires_in":3600"#)
        }
    });
    let t = target();
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), "")).set("timeout", "1s");
    cfg.init_db();

    let mut a = cfg.child();
    let a_pid = a.id();
    let a_sent = Instant::now();
    a.send(&req("a@example.org"));
    assert_eq!(ts.wait_requests(1, READ).len(), 1, "A asks for a token");
    a.kill();
    let a_out = a.wait(RUN);
    assert!(a_out.stdout.is_empty(), "A answered before it was killed (too slow a machine?): {a_out:?}");

    let b_sent = Instant::now();
    let mut b = cfg.child();
    b.send(&req("b@example.org"));
    let shown = cfg.token(false).stdout_str();
    assert!(shown.contains(&format!("lease: held by process {a_pid} for ")), "{shown}");
    let reply = payload(&b.read_netstring(READ));
    let (b_wait, since_a) = (b_sent.elapsed(), a_sent.elapsed());
    assert_clean(&b.finish(RUN));
    eprintln!("killed lease holder: B answered {b_wait:?} after it started, {since_a:?} after A's request");
    assert_eq!(reply, "OK ok");
    assert_eq!(ts.request_count(), 2, "A's hanging request and B's");
    assert!(since_a >= Duration::from_millis(2900), "B fetched before A's 3 s lease ran out: {since_a:?}");
    assert!(b_wait < Duration::from_secs(3) + LEASE_MARGIN, "B waited {b_wait:?} (lease 3 s)");
    assert_eq!(authorizations(&t), [bearer(2)]);
    let shown = cfg.token(false).stdout_str();
    assert!(shown.contains("lease: free"), "{shown}");
}

/// A state database that cannot be used (missing directory, garbage file): lookups are still
/// answered, with a token per process (one token request per process, whatever its number of
/// lookups) and one error line about the database per process; the garbage is left alone.
#[test]
fn unusable_database_gives_per_process_tokens() {
    for (what, db) in [("missing directory", "missing/state.db"), ("garbage file", "garbage.db")] {
        let ts = numbered_tokens();
        let t = target();
        let sink = SyslogSink::new();
        let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&ts.url("/token"), "")).syslog(&sink, "");
        let db = cfg.dir().join(db).display().to_string();
        let cfg = cfg.state_db(&db);
        let garbage = vec![b'x'; 8192];
        if what == "garbage file" {
            std::fs::write(cfg.db_path(), &garbage).unwrap();
        }
        for process in 1..=2 {
            sink.clear();
            let out = cfg.serve(&[req("a@example.org"), req("b@example.org")].concat());
            assert_eq!(all_replies(&out.stdout), ["OK ok", "OK ok"], "{what}");
            assert_eq!(ts.request_count(), process, "{what}: one token per process");
            // The request lines come last: everything before them has arrived by then.
            let lines = request_lines_then_all(&sink, 2);
            let db_errors: Vec<&String> = lines.iter().filter(|l| l.contains("state database")).collect();
            assert_eq!(db_errors.len(), 1, "{what}: one line about the database: {lines:?}");
            assert!(db_errors[0].contains(&cfg.db_path().display().to_string()), "{what}: {}", db_errors[0]);
            assert_eq!(severity(db_errors[0]), Some(3), "{what}: logged as an error: {}", db_errors[0]);
            assert!(lines.iter().all(|l| !l.contains(TOKEN_MARK) && !l.contains(PASSWORD)), "{lines:?}");
        }
        assert_eq!(authorizations(&t), [bearer(1), bearer(1), bearer(2), bearer(2)], "{what}");
        let shown = cfg.token(false);
        if what == "garbage file" {
            assert_eq!(shown.code(), Some(75), "pfxhttp token on a garbage database: {shown:?}");
            assert!(shown.stderr_str().contains(&cfg.db_path().display().to_string()), "{shown:?}");
            assert_eq!(std::fs::read(cfg.db_path()).unwrap(), garbage, "the garbage file is never rewritten");
        } else {
            assert!(shown.stdout_str().contains("no state database at"), "{shown:?}");
            assert!(!cfg.db_path().parent().unwrap().exists(), "the missing directory is not created");
        }
    }
}

/// The syslog severity (PRI & 7) of a datagram.
fn severity(line: &str) -> Option<u8> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    rest[..end].parse::<u16>().ok().map(|p| (p & 7) as u8)
}

/// Waits (bounded) until `n` request lines (`proto=`) have arrived; returns every line.
fn request_lines_then_all(sink: &SyslogSink, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = sink.lines();
        if lines.iter().filter(|l| l.contains("proto=")).count() >= n || Instant::now() >= deadline {
            return lines;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------ pfxhttp token

/// `pfxhttp token demo` before any database, before and after a lookup, `--refresh`, a failing
/// `--refresh`, and names it cannot use. It never prints the token.
#[test]
fn token_command_shows_the_state_and_refreshes() {
    let ts = token_server(|n, _| {
        if n == 3 {
            Reply::json(500, r#"{"error":"down"}"#)
        } else {
            token_json(&format!("tok-{TOKEN_MARK}-{n}"), r#","expires_in":3600"#)
        }
    });
    let t = target();
    let endpoint = ts.url("/api/token");
    let cfg = map_cfg(&t.url("/lookup")).set("jwt_auth", &jwt(&endpoint, ""));
    let check = |out: &Output| {
        let all = format!("{}{}", out.stdout_str(), out.stderr_str());
        assert!(!all.contains(TOKEN_MARK) && !all.contains(PASSWORD), "secret shown: {all}");
        all
    };

    // No database yet: it says so and creates none.
    let out = cfg.token(false);
    let text = check(&out);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(text.contains(&format!("no state database at {}", cfg.db_path().display())), "{text}");
    assert!(text.contains("token: none yet"), "{text}");
    assert!(!cfg.db_path().exists(), "pfxhttp token must not create the database");

    // A database, no token yet; then a lookup.
    cfg.init_db();
    let text = check(&cfg.token(false));
    assert!(text.contains("token: none yet"), "{text}");
    assert_eq!(ts.request_count(), 0, "showing the state fetches nothing");
    assert_eq!(cfg.lookup("a@example.org"), "OK ok");

    // After the lookup.
    let out = cfg.token(false);
    let text = check(&out);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(text.contains(&format!("demo: jwt_auth, token endpoint at {}", host_port(&endpoint))), "{text}");
    let valid = number_after(&text, "token: valid for ").unwrap_or_else(|| panic!("{text}"));
    assert!((3580..=3600).contains(&valid), "{text}");
    let ago = number_after(&text, "s more, fetched ").unwrap_or_else(|| panic!("{text}"));
    assert!((0..=15).contains(&ago), "{text}");
    let renew_in = number_after(&text, "renewed from in ").unwrap_or_else(|| panic!("{text}"));
    assert!((3220..=3240).contains(&renew_in), "10 % of an hour before expiry: {text}");
    assert!(text.contains("lease: free"), "{text}");
    assert_eq!(ts.request_count(), 1, "showing the state fetches nothing");

    // --refresh fetches one now; lookups use it.
    let out = cfg.token(true);
    let text = check(&out);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(text.contains("fetched a new token"), "{text}");
    assert!(text.contains("token: valid for "), "{text}");
    assert_eq!(ts.request_count(), 2);
    assert_eq!(cfg.lookup("b@example.org"), "OK ok");
    assert_eq!(authorizations(&t), [bearer(1), bearer(2)]);

    // A failing --refresh: exit 75, the reason names the host, the stored token stays.
    let out = cfg.token(true);
    let text = check(&out);
    assert_eq!(out.code(), Some(75), "{out:?}");
    assert!(out.stderr_str().contains(&format!("token endpoint {}: HTTP 500", host_port(&endpoint))), "{out:?}");
    assert_eq!(ts.request_count(), 3);
    let text_after = check(&cfg.token(false));
    assert!(text_after.contains("token: valid for ") && text_after.contains("lease: free"), "{text}\n{text_after}");
    assert_eq!(cfg.lookup("c@example.org"), "OK ok");
    assert_eq!(authorizations(&t), [bearer(1), bearer(2), bearer(2)]);

    // Names it cannot use.
    let out = cfg.command(&["token", "nosuchmap"]);
    assert_eq!(out.code(), Some(64), "{out:?}");
    let plain = map_cfg(&t.url("/lookup"));
    let out = plain.token(false);
    assert_eq!(out.code(), Some(64), "{out:?}");
    assert!(out.stderr_str().contains("no jwt_auth or backend_oidc_auth"), "{out:?}");
}

// ------------------------------------------------------------------ secrets

/// Successes and failures of both auth kinds with logging at debug level: no syslog line, reply,
/// `query -v` output or `pfxhttp token` output contains the password, the client secret (or
/// `client:secret` in base64), a token or a refresh token, while the token servers did receive
/// them.
#[test]
fn secrets_and_tokens_never_show() {
    let sink = SyslogSink::new();
    let mut seen: Vec<String> = Vec::new();
    let mut record = |what: &str, out: &Output| {
        seen.push(format!(
            "[{what}] exit {:?}\nstdout: {}\nstderr: {}",
            out.code(),
            out.stdout_str(),
            out.stderr_str()
        ));
    };

    // jwt_auth: login, refresh, failures that echo the secrets back.
    let jwt_ts = Backend::start(|r| {
        let creds = r.body_str();
        match r.path() {
            "/ok" if r.header("x-refresh-token").is_some() => token_json(
                &format!("tok-{TOKEN_MARK}-refreshed"),
                &format!(r#","refresh_token":"ref-{REFRESH_MARK}-2","expires_in":3600"#),
            ),
            "/ok" => token_json(
                &format!("tok-{TOKEN_MARK}-1"),
                &format!(r#","refresh_token":"ref-{REFRESH_MARK}-1","expires_in":30"#),
            ),
            "/echo400" => Reply::json(400, &json!({"error": format!("bad credentials {creds}")}).to_string()),
            "/html" => Reply::status(200, format!("<html>{creds} tok-{TOKEN_MARK}-html</html>")),
            "/notoken" => {
                Reply::json(200, &format!(r#"{{"refresh_token":"ref-{REFRESH_MARK}-x","user":"{PASSWORD}"}}"#))
            }
            _ => Reply::Hang(Duration::from_secs(30)),
        }
    });
    let idp = Backend::start(|r| match r.path() {
        "/.well-known/openid-configuration" => {
            let host = r.header("host").unwrap_or("?");
            Reply::json(200, &json!({"token_endpoint": format!("http://{host}/oauth2/token")}).to_string())
        }
        "/oauth2/token" => {
            Reply::json(200, &format!(r#"{{"access_token":"tok-{TOKEN_MARK}-oidc","expires_in":3600}}"#))
        }
        _ => Reply::json(401, &format!(r#"{{"error":"invalid_client","got":"{}"}}"#, r.body_str())),
    });
    let ok = Backend::fixed(Reply::json(200, r#"{"result":"ok"}"#));
    let refusing = Backend::fixed(Reply::json(401, r#"{"error":"bad token"}"#));
    let policy_ok = Backend::fixed(Reply::json(200, r#"{"action":"DUNNO"}"#));

    let jwt_block = |path: &str, json: bool| {
        let ct = if json { ", content_type: application/json" } else { "" };
        jwt(&jwt_ts.url(path), ct)
    };
    let oidc_block = |discovery: bool, method: &str, path: &str| {
        let endpoint = if discovery {
            format!("configuration_uri: {}", q(&idp.url("/.well-known/openid-configuration")))
        } else {
            format!("token_endpoint: {}", q(&idp.url(path)))
        };
        format!(
            "{{ {endpoint}, client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, auth_method: {method}, scopes: [s] }}"
        )
    };
    let scenarios: Vec<(&str, &str, String, &Backend)> = vec![
        ("jwt form ok", "jwt_auth", jwt_block("/ok", false), &ok),
        ("jwt json ok", "jwt_auth", jwt_block("/ok", true), &ok),
        ("jwt 400 echoing", "jwt_auth", jwt_block("/echo400", false), &ok),
        ("jwt html", "jwt_auth", jwt_block("/html", true), &ok),
        ("jwt no token", "jwt_auth", jwt_block("/notoken", false), &ok),
        ("jwt hanging", "jwt_auth", jwt_block("/hang", false), &ok),
        ("jwt target 401", "jwt_auth", jwt_block("/ok", false), &refusing),
        ("oidc basic discovery", "backend_oidc_auth", oidc_block(true, "client_secret_basic", ""), &ok),
        ("oidc post", "backend_oidc_auth", oidc_block(false, "client_secret_post", "/oauth2/token"), &ok),
        ("oidc basic 401 echoing", "backend_oidc_auth", oidc_block(false, "client_secret_basic", "/refuse"), &ok),
        ("oidc post 401 echoing", "backend_oidc_auth", oidc_block(false, "client_secret_post", "/refuse"), &ok),
        ("oidc target 401", "backend_oidc_auth", oidc_block(false, "client_secret_basic", "/oauth2/token"), &refusing),
    ];
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let mut replies = Vec::new();
    for (what, key, block, target) in &scenarios {
        let cfg = map_cfg(&target.url("/lookup"))
            .set(key, block)
            .set("timeout", "500ms")
            .set("deadline", "2s")
            .syslog(&sink, ", level: debug");
        // Two processes (the second refreshes a due jwt token), two lookups each.
        for _ in 0..2 {
            let out = cfg.serve(&[req("a@example.org"), req("b@example.org")].concat());
            record(what, &out);
            replies.extend(all_replies(&out.stdout));
        }
        let path = cfg.arg();
        record(what, &run(&["--config", &path, "query", "-v", "demo", "c@example.org"], b"", RUN));
        record(what, &cfg.token(false));
        record(what, &cfg.token(true));
        record(what, &cfg.token(false));
        record(what, &run(&["--config", &path, "check"], b"", RUN));
        // A policy service with the same auth.
        let pcfg = policy_cfg(&policy_ok.url("/policy"))
            .set(key, block)
            .set("timeout", "500ms")
            .set("deadline", "2s")
            .syslog(&sink, ", level: debug");
        record(what, &pcfg.serve_policy(b"request=smtpd_access_policy\nrecipient=a@example.org\n\n"));
        let ppath = pcfg.arg();
        record(what, &run(&["--config", &ppath, "policy-query", "-v", "pol", "recipient=a@example.org"], b"", RUN));
        // The state database holds tokens, never the credentials.
        for db in [cfg.db_path(), pcfg.db_path()] {
            for suffix in ["", "-wal"] {
                let file = PathBuf::from(format!("{}{suffix}", db.display()));
                let bytes = String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
                for s in [PASSWORD, CLIENT_SECRET, basic.as_str()] {
                    assert!(!bytes.contains(s), "{what}: {s:?} is in {}", file.display());
                }
            }
        }
    }
    // The runs did what they were meant to: some lookups answered, some failed.
    assert!(replies.iter().any(|r| r == "OK ok"), "{replies:?}");
    assert!(replies.iter().any(|r| r.starts_with("TEMP token endpoint")), "{replies:?}");
    assert!(replies.iter().any(|r| r == "TEMP the backend refused a new token too (HTTP 401)"), "{replies:?}");
    // ... and the secrets did go where they belong.
    let sent: Vec<String> = jwt_ts
        .requests()
        .iter()
        .chain(idp.requests().iter())
        .chain(ok.requests().iter())
        .map(|r| format!("{:?} {}", r.headers, r.body_str()))
        .collect();
    let secrets = [PASSWORD, CLIENT_SECRET, basic.as_str(), TOKEN_MARK, REFRESH_MARK];
    for s in secrets {
        assert!(sent.iter().any(|r| r.contains(s)), "the test never sent {s:?}: {sent:?}");
    }
    assert!(
        jwt_ts.requests().iter().any(|r| r.header("x-refresh-token").is_some()),
        "a refresh token was used at some point"
    );

    assert!(seen.iter().any(|s| s.contains("> authorization: ***")), "query -v showed the masked header");
    assert!(seen.iter().filter(|s| s.contains("fetched a new token")).count() >= 4, "token --refresh worked");
    // Everything that left pfxhttp: replies, terminal output, syslog.
    thread::sleep(Duration::from_millis(300));
    let logs = sink.lines();
    assert!(logs.iter().any(|l| l.contains("attempt 1 to")), "debug lines were logged: {logs:?}");
    assert!(logs.len() > 50, "only {} log lines", logs.len());
    let mut leaks = Vec::new();
    for text in seen.iter().chain(logs.iter()).chain(replies.iter()) {
        for s in secrets {
            if text.contains(s) {
                leaks.push(format!("{s:?} in: {text}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leak(s):\n{}", leaks.len(), leaks.join("\n"));
}
