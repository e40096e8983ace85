//! Backend faults (`docs/design.md#failure-rules`): the fault matrix of
//! [`crate::common::Faults`] for each protocol, on one host, on the first of two hosts, and as
//! the token endpoint of `jwt_auth` and of `backend_oidc_auth`.
//!
//! Every reply is compared byte for byte and timed against the configured deadline. Only the
//! rows where a backend really gave a value, or really said "none", may answer OK / 200 / an
//! action, or NOTFOUND / 500 / DUNNO; the failing answers carry a `REJECT` value that must never
//! get through, and a redirect to `/followed` that must never be followed. Each process logs
//! exactly one request line (and, when no token could be had, the one line saying why).

use std::thread;
use std::time::Duration;

use crate::common::*;
use crate::support::*;

/// The backends answer nothing but the fault rows.
fn no_extra(r: &Recorded) -> Reply {
    Reply::status(404, format!("unexpected path {}", r.path()))
}

/// Everything wrong with a matrix run: the reply against `expect(row)`, the time against the
/// deadline (and a TIMEOUT against the least time it can take), and the log lines: one request
/// line and `extra(row)` others.
fn check_rows(
    label: &str,
    proto: Proto,
    rows: &[Fault],
    ran: &[Ran],
    expect: &dyn Fn(&Fault) -> Expect,
    extra: &dyn Fn(&Fault) -> usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (row, ran) in rows.iter().zip(ran) {
        let name = format!("{label} {proto:?} {}", row.name);
        let expect = expect(row);
        let expected = proto.wire(&expect);
        if ran.reply != expected {
            problems.push(format!("{name}: reply {} instead of {}", show(&ran.reply), show(&expected)));
        }
        if ran.elapsed > ran.deadline + MARGIN {
            problems.push(format!("{name}: answered after {:?}, deadline {:?}", ran.elapsed, ran.deadline));
        }
        let slack = Duration::from_millis(100);
        if matches!(expect, Expect::Fail("TIMEOUT", _)) && ran.elapsed + slack < ran.least_timeout {
            problems.push(format!("{name}: TIMEOUT after {:?}, before the time ran out", ran.elapsed));
        }
        let request_lines = ran.logs.iter().filter(|l| l.starts_with("proto=")).count();
        if request_lines != 1 || ran.logs.len() != 1 + extra(row) {
            problems.push(format!(
                "{name}: expected one request log line and {} more, got {:#?}",
                extra(row),
                ran.logs
            ));
        }
        eprintln!("{name:<40} {:>5} ms  {}", ran.elapsed.as_millis(), show(&ran.reply));
    }
    problems
}

/// Checks that row `name` made `n` requests at a backend, when `n` is known.
fn count(problems: &mut Vec<String>, what: &str, got: usize, n: Option<usize>) {
    if let Some(n) = n
        && got != n
    {
        problems.push(format!("{what}: {got} request(s) instead of {n}"));
    }
}

// ------------------------------------------------------------------ one host

/// The fault matrix on one host: the answers of [`Fault::expect`], and the requests each row
/// made (two for the faults that are tried again).
fn one_host(proto: Proto) {
    let _machine = crate::alone();
    let faults = Faults::new(no_extra);
    let ran = run_matrix(proto, &faults.rows, &|row| Setup::new(&row.url).timing_for(row, TIGHT));
    let mut problems = check_rows("one host", proto, &faults.rows, &ran, &|row| row.expect.clone(), &|_| 0);
    for row in &faults.rows {
        count(&mut problems, row.name, faults.requests(row.name), row.requests);
    }
    assert_eq!(faults.requests("followed"), 0, "a redirect was followed");
    assert!(problems.is_empty(), "{proto:?} fault matrix:\n{}", problems.join("\n"));
}

#[test]
fn socketmap_faults_on_one_host() {
    one_host(Proto::Socketmap);
}

#[test]
fn tcp_faults_on_one_host() {
    one_host(Proto::Tcp);
}

#[test]
fn policy_faults_on_one_host() {
    one_host(Proto::Policy);
}

// ------------------------------------------------------------------ two hosts

/// The slow rows' timing with two hosts: room for two full attempts, and for the second host's
/// answer after a hang.
const TWO_HOSTS: Timing = Timing { timeout: Duration::from_millis(1500), deadline: Duration::from_secs(4) };

/// Each fault on the first of two hosts, twice at once: with a good second host, the faults
/// that move on get the second host's value and the others their own answer (the second host
/// is not asked); with the same fault on the second host, the faults that move on get the
/// second host's failure, the others the first host's. The first host is always asked first
/// and once.
fn two_hosts(proto: Proto) {
    let _machine = crate::alone();
    let (first, second) = (Faults::new(no_extra), Faults::new(no_extra));
    let good = Backend::fixed(Reply::json(200, r#"{"data":{"result":"v-second"}}"#));
    let twin = |row: &Fault| second.rows.iter().find(|r| r.name == row.name).expect("same rows");
    let timing = |s: Setup, row: &Fault| s.timing_for(row, TWO_HOSTS);
    let (then_good, then_same) = thread::scope(|s| {
        let then_good = s.spawn(|| {
            run_matrix(proto, &first.rows, &|row| {
                timing(Setup::hosts(&[row.url.as_str(), good.url(&format!("/good/{}", row.name)).as_str()]), row)
            })
        });
        let then_same = s.spawn(|| {
            run_matrix(proto, &first.rows, &|row| {
                timing(Setup::hosts(&[row.url.as_str(), twin(row).url.as_str()]), row)
            })
        });
        let join =
            |h: thread::ScopedJoinHandle<'_, Vec<Ran>>| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (join(then_good), join(then_same))
    });
    let rows = &first.rows;
    let mut problems = check_rows(
        "then a good host",
        proto,
        rows,
        &then_good,
        &|row| if row.retry { Expect::Value("v-second") } else { row.expect.clone() },
        &|_| 0,
    );
    problems.extend(check_rows(
        "then the same fault",
        proto,
        rows,
        &then_same,
        &|row| if row.retry { twin(row).expect.clone() } else { row.expect.clone() },
        &|_| 0,
    ));
    let good_asked = |name: &str| good.requests().iter().filter(|r| r.path() == format!("/good/{name}")).count();
    for row in rows {
        let scripted = row.url.contains(&first.base());
        // Once from each of the two runs.
        count(
            &mut problems,
            &format!("{} at the first host", row.name),
            first.requests(row.name),
            scripted.then_some(2),
        );
        let at_second = if row.retry { 1 } else { 0 };
        count(&mut problems, &format!("{} at the good host", row.name), good_asked(row.name), Some(at_second));
        count(
            &mut problems,
            &format!("{} at the second host", row.name),
            second.requests(row.name),
            scripted.then_some(at_second),
        );
    }
    assert_eq!(first.requests("followed") + second.requests("followed"), 0, "a redirect was followed");
    assert!(problems.is_empty(), "{proto:?} two-host fault matrix:\n{}", problems.join("\n"));
}

#[test]
fn socketmap_faults_on_the_first_of_two_hosts() {
    two_hosts(Proto::Socketmap);
}

#[test]
fn tcp_faults_on_the_first_of_two_hosts() {
    two_hosts(Proto::Tcp);
}

#[test]
fn policy_faults_on_the_first_of_two_hosts() {
    two_hosts(Proto::Policy);
}

// ------------------------------------------------------------------ the token endpoint

/// The slow rows' timing on the token path: the token request (which is not tried again) has
/// its full timeout even when the process was slow to get to it.
const TOKEN_PATH: Timing = Timing { timeout: Duration::from_secs(1), deadline: Duration::from_secs(3) };

/// The entry line for token auth at `endpoint`: `jwt_auth`, or `backend_oidc_auth` with a
/// direct token endpoint.
pub(crate) fn token_auth(kind: &str, endpoint: &str) -> String {
    match kind {
        "jwt_auth" => format!(
            "jwt_auth: {{ token_endpoint: {}, credentials: {{ username: postfix, password: pw }} }}",
            q(endpoint)
        ),
        _ => format!(
            "backend_oidc_auth: {{ token_endpoint: {}, client_id: mail, client_secret: s, \
             auth_method: client_secret_basic }}",
            q(endpoint)
        ),
    }
}

/// Each fault as the token endpoint, for `jwt_auth` and `backend_oidc_auth` at once: a failure
/// that names the endpoint (never the target's answer: the target is asked only with a token),
/// one token request per row and kind, and the line saying why there is no token.
fn token_endpoint(proto: Proto) {
    let _machine = crate::alone();
    let faults = Faults::new(no_extra);
    let kinds = ["jwt_auth", "backend_oidc_auth"];
    let ran: Vec<Vec<Ran>> = thread::scope(|s| {
        let handles: Vec<_> = kinds
            .map(|kind| {
                let faults = &faults;
                s.spawn(move || {
                    run_matrix(proto, &faults.token_rows, &|row| {
                        Setup::new(&faults.target()).timing_for(row, TOKEN_PATH).entry(&token_auth(kind, &row.url))
                    })
                })
            })
            .into_iter()
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut problems = Vec::new();
    for (kind, ran) in kinds.iter().zip(&ran) {
        let no_token = |row: &Fault| usize::from(!matches!(row.token, Expect::Value(_)));
        problems.extend(check_rows(kind, proto, &faults.token_rows, ran, &|row| row.token.clone(), &no_token));
        for (row, ran) in faults.token_rows.iter().zip(ran) {
            let why = ran.logs.iter().find(|l| !l.starts_with("proto="));
            if let (Some(why), Expect::Fail(_, reason)) = (why, &row.token)
                && *why != format!("no token: {reason}")
            {
                problems.push(format!("{kind} {proto:?} {}: log line {why:?}", row.name));
            }
        }
    }
    for row in &faults.token_rows {
        count(&mut problems, row.name, faults.requests(row.name), row.requests.map(|n| n * kinds.len()));
    }
    let with_token = faults.token_rows.iter().filter(|r| matches!(r.token, Expect::Value(_))).count();
    count(&mut problems, "the target", faults.requests_at("/target"), Some(with_token * kinds.len()));
    assert_eq!(faults.requests("followed"), 0, "a redirect was followed");
    assert!(problems.is_empty(), "{proto:?} token endpoint fault matrix:\n{}", problems.join("\n"));
}

#[test]
fn socketmap_faults_at_the_token_endpoint() {
    token_endpoint(Proto::Socketmap);
}

#[test]
fn tcp_faults_at_the_token_endpoint() {
    token_endpoint(Proto::Tcp);
}

#[test]
fn policy_faults_at_the_token_endpoint() {
    token_endpoint(Proto::Policy);
}
