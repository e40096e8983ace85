//! Secrets never show (`docs/design.md#logging`): the whole backend fault matrix, for
//! every protocol, with each way of authenticating configured in turn: Basic credentials in the
//! target URL, `http_auth_basic`, an `Authorization` and an API key header from
//! `custom_headers`, `jwt_auth`, `backend_oidc_auth` (client_secret_basic with discovery,
//! client_secret_post with a direct token endpoint), and secrets in the target's query string and
//! in custom headers whose names do not say they are credentials.
//!
//! For each way: the fault matrix on the target (token endpoints served by the matrix's
//! backend); for the token kinds also the fault matrix on the token endpoint (whose answers hold
//! tokens in shapes pfxhttp cannot use); `pfxhttp query -v` and `policy-query -v` for every row;
//! and `pfxhttp token`, `token --refresh` (a jwt_auth refresh with `X-Refresh-Token`) and
//! `state check`.
//!
//! Every secret contains [`MARK`]. No reply, no syslog line (at level debug), no output of those
//! commands (stdout and stderr) may contain it, nor the base64 of a `user:password` pair; the
//! state database may hold tokens, but no password, client secret or API key. The backends must
//! have received every secret, so finding none is not vacuous; each reply is checked byte for
//! byte too.

use std::thread;

use base64::Engine as _;
use serde_json::json;

use crate::common::*;
use crate::support::*;

const URL_USER: &str = "urluser";
const URL_PASS: &str = "UrlPass-5ecret-1";
const BASIC_USER: &str = "basicuser";
const BASIC_PASS: &str = "BasicPass-5ecret-2";
const STATIC_BEARER: &str = "StaticBearer-5ecret-3";
const API_KEY: &str = "ApiKey-5ecret-3";
const JWT_PASS: &str = "JwtPass-5ecret-4";
const CLIENT_ID: &str = "mailclient";
const CLIENT_SECRET: &str = "ClientSecret-5ecret-5";
/// In the target URL's query string.
const QUERY_KEY: &str = "QueryKey-5ecret-6";
/// In a custom header whose name does not look like a credential.
const PLAIN_HEADER: &str = "PlainHeader-5ecret-7";

/// The slow rows' timing: a hundred processes and more run at once here, so the token request
/// before the target's (or the token request alone, on the token path) gets room of its own.
const SLOW: Timing =
    Timing { timeout: std::time::Duration::from_millis(1500), deadline: std::time::Duration::from_secs(3) };

/// Upper bound for an interactive command.
const RUN: std::time::Duration = std::time::Duration::from_secs(15);

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The encoded `user:password` pairs: they hold a secret without its mark.
fn encoded_pairs() -> [String; 3] {
    [
        b64(&format!("{URL_USER}:{URL_PASS}")),
        b64(&format!("{BASIC_USER}:{BASIC_PASS}")),
        b64(&format!("{CLIENT_ID}:{CLIENT_SECRET}")),
    ]
}

/// The token endpoints: `/jwt/token` (jwt_auth login and refresh), the OIDC discovery document
/// and `/oauth2/token`. Tokens are numbered; each comes with a refresh token. A request without
/// the right credentials gets a 401 that echoes nothing.
fn tokens() -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let n = std::sync::atomic::AtomicUsize::new(0);
    move |r| {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let body = r.body_str();
        let basic = format!("Basic {}", b64(&format!("{CLIENT_ID}:{CLIENT_SECRET}")));
        match r.path() {
            "/jwt/token" if body.contains(JWT_PASS) || r.header("x-refresh-token").is_some() => Reply::json(
                200,
                &json!({"token": format!("AccessTok-{MARK}-jwt-{n}"), "refresh_token": format!("RefreshTok-{MARK}-{n}"),
                        "expires_in": 3600})
                .to_string(),
            ),
            "/.well-known/openid-configuration" => {
                let host = r.header("host").unwrap_or("?");
                Reply::json(200, &json!({"token_endpoint": format!("http://{host}/oauth2/token")}).to_string())
            }
            "/oauth2/token" if body.contains(CLIENT_SECRET) || r.header("authorization") == Some(&basic) => {
                Reply::json(200, &json!({"access_token": format!("AccessTok-{MARK}-oidc-{n}"), "expires_in": 3600}).to_string())
            }
            _ => Reply::json(401, r#"{"error":"invalid_client"}"#),
        }
    }
}

/// One way of authenticating: how the target URL and the entry are written.
struct Variant {
    name: &'static str,
    /// `user:password@` to put into the target URL.
    userinfo: Option<String>,
    /// A query string to put after the target URL.
    query: Option<String>,
    /// Lines for the entries.
    entry: Vec<String>,
    /// The entry line with the token endpoint at another URL (the token kinds).
    token_at: Option<TokenAt>,
}

/// Writes the entry line of a token kind for a token endpoint URL.
type TokenAt = Box<dyn Fn(&str) -> String + Sync>;

fn jwt_line(endpoint: &str) -> String {
    format!(
        "jwt_auth: {{ token_endpoint: {}, credentials: {{ username: postfix, password: {} }} }}",
        q(endpoint),
        q(JWT_PASS)
    )
}

fn oidc_line(endpoint: &str, method: &str) -> String {
    format!(
        "backend_oidc_auth: {{ {endpoint}, client_id: {CLIENT_ID}, client_secret: {}, auth_method: {method}, \
         scopes: [lookup] }}",
        q(CLIENT_SECRET)
    )
}

fn variants(base: &str) -> Vec<Variant> {
    let direct = |method: &'static str| move |url: &str| oidc_line(&format!("token_endpoint: {}", q(url)), method);
    vec![
        Variant {
            name: "url",
            userinfo: Some(format!("{URL_USER}:{URL_PASS}@")),
            query: None,
            entry: vec![],
            token_at: None,
        },
        Variant {
            name: "query and plain headers",
            userinfo: None,
            query: Some(format!("?format=json&api_key={QUERY_KEY}&sig={QUERY_KEY}")),
            entry: vec![format!(
                "custom_headers: [{}, {}]",
                q(&format!("X-Pass: {PLAIN_HEADER}")),
                q(&format!("X-Sig: {PLAIN_HEADER}"))
            )],
            token_at: None,
        },
        Variant {
            name: "http_auth_basic",
            userinfo: None,
            query: None,
            entry: vec![format!("http_auth_basic: {}", q(&format!("{BASIC_USER}:{BASIC_PASS}")))],
            token_at: None,
        },
        Variant {
            name: "custom_headers",
            userinfo: None,
            query: None,
            entry: vec![format!(
                "custom_headers: [{}, {}]",
                q(&format!("Authorization: Bearer {STATIC_BEARER}")),
                q(&format!("X-Api-Key: {API_KEY}"))
            )],
            token_at: None,
        },
        Variant {
            name: "jwt_auth",
            userinfo: None,
            query: None,
            entry: vec![jwt_line(&format!("{base}/jwt/token"))],
            token_at: Some(Box::new(jwt_line)),
        },
        Variant {
            name: "oidc client_secret_basic",
            userinfo: None,
            query: None,
            entry: vec![oidc_line(
                &format!("configuration_uri: {}", q(&format!("{base}/.well-known/openid-configuration"))),
                "client_secret_basic",
            )],
            token_at: Some(Box::new(direct("client_secret_basic"))),
        },
        Variant {
            name: "oidc client_secret_post",
            userinfo: None,
            query: None,
            entry: vec![direct("client_secret_post")(&format!("{base}/oauth2/token"))],
            token_at: Some(Box::new(direct("client_secret_post"))),
        },
    ]
}

impl Variant {
    /// A debug-level setup for the fault row `row`.
    fn setup(&self, row: &Fault) -> Setup {
        let mut url = match &self.userinfo {
            Some(info) => row.url.replacen("http://", &format!("http://{info}"), 1),
            None => row.url.clone(),
        };
        url.push_str(self.query.as_deref().unwrap_or(""));
        let setup = Setup::new(&url).level("debug").timing_for(row, SLOW);
        self.entry.iter().fold(setup, |s, line| s.entry(line))
    }

    /// A debug-level setup with the token endpoint at the fault row `row`, for the target of
    /// `faults`.
    fn token_setup(&self, faults: &Faults, row: &Fault) -> Setup {
        let line = self.token_at.as_ref().expect("a token kind")(&row.url);
        Setup::new(&faults.target()).level("debug").timing_for(row, SLOW).entry(&line)
    }

    /// The reply a row must give: as without authentication, except that with a token a 401
    /// from the target is a refused new token.
    fn expect(&self, row: &Expect) -> Expect {
        match row {
            Expect::Fail(_, reason) if self.token_at.is_some() && reason == "unexpected HTTP status 401" => {
                Expect::Fail("TEMP", "the backend refused a new token too (HTTP 401)".into())
            }
            other => other.clone(),
        }
    }

    /// Whether `r` carries this variant's credentials (not a token made of them).
    fn carries_credentials(&self, r: &Recorded) -> bool {
        let auth = |value: &str| r.header_all("authorization").contains(&value);
        let [url_pair, basic_pair, client_pair] = encoded_pairs();
        match self.name {
            "url" => auth(&format!("Basic {url_pair}")),
            "http_auth_basic" => auth(&format!("Basic {basic_pair}")),
            "custom_headers" => auth(&format!("Bearer {STATIC_BEARER}")) && r.header("x-api-key") == Some(API_KEY),
            "query and plain headers" => {
                r.query().is_some_and(|q| q.contains(&format!("api_key={QUERY_KEY}")))
                    && r.header("x-pass") == Some(PLAIN_HEADER)
                    && r.header("x-sig") == Some(PLAIN_HEADER)
            }
            "jwt_auth" => r.body_str().contains(JWT_PASS),
            "oidc client_secret_basic" => auth(&format!("Basic {client_pair}")),
            _ => r.body_str().contains(CLIENT_SECRET),
        }
    }
}

/// `pfxhttp query -v demo KEY` and `policy-query -v pol recipient=KEY` for every row, all at
/// once, with `setup(row)`: their stdout and stderr, and the syslog lines.
fn queries(label: &str, rows: &[Fault], setup: &(dyn Fn(&Fault) -> Setup + Sync)) -> Vec<String> {
    let commands = [["query", "demo", "user@example.org"], ["policy-query", "pol", "recipient=user@example.org"]];
    thread::scope(|s| {
        let handles: Vec<_> = rows
            .iter()
            .map(|row| {
                s.spawn(move || {
                    let setup = setup(row);
                    let path = setup.path();
                    let mut texts: Vec<String> = thread::scope(|s| {
                        let runs: Vec<_> = commands
                            .iter()
                            .map(|[command, name, arg]| {
                                let path = path.as_str();
                                s.spawn(move || {
                                    let out = run(&["--config", path, command, "-v", name, arg], b"", RUN);
                                    format!(
                                        "[{label} {} {command}]\n{}{}",
                                        row.name,
                                        out.stdout_str(),
                                        out.stderr_str()
                                    )
                                })
                            })
                            .collect();
                        runs.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
                    });
                    texts.extend(setup.logs().into_iter().map(|l| format!("[{label} {} log] {l}", row.name)));
                    texts.push(state_text(&format!("[{label} {} state]", row.name), &setup.state_bytes()));
                    texts
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// The state database's bytes as a text to search (tagged, so that they are told apart from the
/// output texts: tokens are allowed there).
fn state_text(tag: &str, bytes: &[u8]) -> String {
    format!("{STATE} {tag} {}", String::from_utf8_lossy(bytes))
}

const STATE: &str = "<state database>";

/// Where `text` shows a secret: the mark (outside the state database), a credential, or an
/// encoded `user:password` pair.
fn leaks(text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    let credentials = [URL_PASS, BASIC_PASS, STATIC_BEARER, API_KEY, JWT_PASS, CLIENT_SECRET, QUERY_KEY, PLAIN_HEADER];
    if credentials.iter().any(|c| text.contains(c)) {
        found.push("a credential");
    } else if !text.starts_with(STATE) && text.contains(MARK) {
        found.push("a secret");
    }
    for (pair, what) in encoded_pairs().iter().zip(["url user:password", "http_auth_basic", "client_id:secret"]) {
        if text.contains(pair.as_str()) {
            found.push(what);
        }
    }
    found
}

/// The replies, stderr and log lines of matrix runs, as texts; the replies checked against
/// `expect(row)`.
fn matrix_texts(
    label: &str,
    rows: &[Fault],
    runs: Vec<(Proto, Vec<Ran>)>,
    expect: &dyn Fn(&Fault) -> Expect,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let mut texts = Vec::new();
    for (proto, ran) in runs {
        for (row, ran) in rows.iter().zip(&ran) {
            let expected = proto.wire(&expect(row));
            if ran.reply != expected {
                let (got, want) = (show(&ran.reply), show(&expected));
                problems.push(format!("{label} {proto:?} {}: reply {got} instead of {want}", row.name));
            }
            let tag = format!("[{label} {proto:?} {}]", ran.name);
            texts.push(format!("{tag} reply: {}", text(&ran.reply)));
            texts.push(format!("{tag} stderr: {}", ran.out.stderr_str()));
            texts.extend(ran.logs.iter().map(|l| format!("{tag} log: {l}")));
            texts.push(state_text(&tag, &ran.state));
        }
    }
    texts
}

/// The three protocols' matrix runs and the queries, all at once (the slow rows wait for the
/// deadline; the rest is quick).
fn run_all(
    label: &str,
    rows: &[Fault],
    setup: &(dyn Fn(&Fault) -> Setup + Sync),
) -> (Vec<(Proto, Vec<Ran>)>, Vec<String>) {
    thread::scope(|s| {
        let runs: Vec<_> =
            Proto::ALL.map(|proto| (proto, s.spawn(move || run_matrix(proto, rows, setup)))).into_iter().collect();
        let texts = queries(label, rows, setup);
        let runs =
            runs.into_iter().map(|(p, h)| (p, h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))).collect();
        (runs, texts)
    })
}

/// A lookup served (it stores the token in the state database), then `token`, `token
/// --refresh` (which refreshes that token), `query -v`, `policy-query -v` and `state check`, one
/// after another on one setup with a working target: their output.
fn token_commands(variant: &Variant, faults: &Faults) -> Vec<String> {
    let ok = faults.rows.iter().find(|r| r.name == "ok").expect("the ok row");
    let setup = variant.setup(ok);
    let path = setup.path();
    let out = run(&["--config", &path, "socketmap"], &netstring(b"demo user@example.org"), RUN);
    assert_clean(&out);
    assert_wire(&out.stdout, &netstring(b"OK v-ok"));
    let mut texts = vec![format!("[{} socketmap]\n{}", variant.name, out.stdout_str())];
    for args in [
        vec!["token", "demo"],
        vec!["token", "--refresh", "demo"],
        vec!["token", "pol"],
        vec!["query", "-v", "demo", "user@example.org"],
        vec!["policy-query", "-v", "pol", "recipient=user@example.org"],
        vec!["state", "check"],
    ] {
        let mut all = vec!["--config", path.as_str()];
        all.extend_from_slice(&args);
        let out = run(&all, b"", RUN);
        let tag = format!("[{} {}]", variant.name, args.join(" "));
        if args[0] != "state" {
            assert_eq!(out.code(), Some(0), "{tag}: {out:?}");
        }
        texts.push(format!("{tag}\n{}{}", out.stdout_str(), out.stderr_str()));
    }
    texts.extend(setup.logs().into_iter().map(|l| format!("[{} token commands log] {l}", variant.name)));
    texts.push(state_text(&format!("[{} token commands]", variant.name), &setup.state_bytes()));
    texts
}

#[test]
fn secrets_never_show_across_the_fault_matrix() {
    let _machine = crate::alone();
    let mut problems = Vec::new();
    let mut looked_at = 0;
    for i in 0..variants("").len() {
        // Backends of its own for each variant, so that the recorded requests are its own.
        let faults = Faults::new(tokens());
        let variant = variants(&faults.base()).swap_remove(i);
        let name = variant.name;
        let (runs, mut texts) = run_all(name, &faults.rows, &|row| variant.setup(row));
        texts.extend(matrix_texts(name, &faults.rows, runs, &|row| variant.expect(&row.expect), &mut problems));
        let recorded = faults.recorded();
        let on_target = recorded.iter().filter(|r| r.path().starts_with("/fault/")).collect::<Vec<_>>();
        if variant.token_at.is_some() {
            let bearer = format!("Bearer AccessTok-{MARK}-");
            let sent = on_target.iter().any(|r| r.header("authorization").is_some_and(|a| a.starts_with(&bearer)));
            assert!(sent, "{name}: no token reached the target");
            assert!(
                recorded.iter().any(|r| variant.carries_credentials(r)),
                "{name}: no token endpoint got the credentials"
            );
            // The token endpoint's faults, then the token commands.
            let label = format!("{name} token endpoint");
            let setup = |row: &Fault| variant.token_setup(&faults, row);
            let (runs, more) = run_all(&label, &faults.token_rows, &setup);
            texts.extend(more);
            texts.extend(matrix_texts(&label, &faults.token_rows, runs, &|row| row.token.clone(), &mut problems));
            let at_faults =
                faults.recorded().into_iter().filter(|r| r.path().starts_with("/fault/")).collect::<Vec<_>>();
            assert!(
                at_faults.iter().any(|r| variant.carries_credentials(r)),
                "{label}: the faulty token endpoints never got the credentials"
            );
            texts.extend(token_commands(&variant, &faults));
            if name == "jwt_auth" {
                let refresh = format!("RefreshTok-{MARK}-");
                let refreshed = faults.recorded().iter().any(|r| {
                    r.path() == "/jwt/token" && r.header("x-refresh-token").is_some_and(|t| t.starts_with(&refresh))
                });
                assert!(refreshed, "{name}: token --refresh made no refresh request");
            }
        } else {
            assert!(
                on_target.iter().any(|r| variant.carries_credentials(r)),
                "{name}: the target never got the credentials"
            );
        }
        let masked = match name {
            "url" => "://***@127.0.0.1:",
            "query and plain headers" => "&api_key=***&sig=***",
            _ => "> authorization: ***",
        };
        assert!(texts.iter().any(|t| t.contains(masked)), "{name}: query -v showed no {masked:?}");
        for t in &texts {
            let found = leaks(t);
            if !found.is_empty() {
                let shown: String = t.chars().take(2000).collect();
                problems.push(format!("{name}: {} in: {shown}", found.join(", ")));
            }
        }
        looked_at += texts.len();
    }
    assert!(looked_at > 2000, "only {looked_at} texts looked at");
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// A header value that cannot be sent (a control byte from a `| raw` key next to a bearer token):
/// the socketmap and tcp replies name the header, and no reply, log line (at level debug, keys
/// logged) or stderr shows any part of the value.
#[test]
fn unsendable_header_values_never_show() {
    let _machine = crate::shared();
    let b = echo_backend();
    let header = format!("Authorization: Bearer {STATIC_BEARER}{{{{ key | raw }}}}");
    let setup = Setup::new(&b.url("/lookup")).level("debug").entry(&format!("custom_headers: [{}]", q(&header)));
    let reason = "header authorization: the value holds a byte that cannot be sent";
    for (proto, request, reply) in [
        (Proto::Socketmap, netstring(b"demo tail\x01end"), netstring(format!("TEMP {reason}").as_bytes())),
        (Proto::Tcp, b"get tail%01end\n".to_vec(), format!("400 {reason}\n").into_bytes()),
    ] {
        let mut child = setup.child(proto);
        child.send(&request);
        let out = child.finish(RUN);
        assert_clean(&out);
        assert_wire(&out.stdout, &reply);
    }
    assert_eq!(b.request_count(), 0, "nothing was sent");
    let logs = setup.logs();
    assert_eq!(logs.iter().filter(|l| l.contains(reason)).count(), 2, "{logs:#?}");
    for line in &logs {
        assert!(leaks(line).is_empty() && !line.contains("Bearer"), "a secret logged: {line}");
    }
}
