//! A policy service's cache: keyed by its `key` template (required), an action the API gave
//! (DUNNO included) is a found value, an answer without one is "not found", and the service's
//! `default_action` is never stored.

use super::*;

/// A policy request from `sender`; `queue_id` differs in every message.
fn request(sender: &str, queue_id: &str) -> Vec<u8> {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender={sender}\n\
         recipient=rcpt@x.example\nqueue_id={queue_id}\n\n"
    )
    .into_bytes()
}

const DEFER: &str = "action=DEFER_IF_PERMIT Service temporarily unavailable\n\n";

/// The service `pol` asking `api` once per check, with the cache block `cache`.
fn pol(api: &Api, sink: &SyslogSink, cache: &str) -> Config {
    Config::new().policy("pol", api.url()).set("max_attempts", "1").set("cache", cache).syslog(sink, "")
}

/// One policy check in a process of its own: the reply must be exactly `reply`; returns the
/// request line.
#[track_caller]
fn check(conf: &Config, sink: &SyslogSink, sender: &str, queue_id: &str, reply: &str) -> String {
    sink.clear();
    let out = conf.run_serving(&["policy"], &request(sender, queue_id), RUN);
    assert_wire(&out.stdout, reply.as_bytes());
    one_request_line(sink)
}

#[test]
fn a_policy_cache_needs_a_key_template() {
    let api = Api::new(Reply::json(200, r#"{"action":"OK"}"#));
    let conf = Config::new().policy("pol", api.url()).set("cache", "{ ttl: 60s }");
    let out = command(&conf, &["check"]);
    assert_eq!(out.code(), Some(78), "{out:?}");
    let stderr = out.stderr_str();
    assert!(
        stderr.lines().any(|l| l.starts_with("error: policy_services.pol.cache: key is required for a policy service")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn dunno_from_the_api_is_cached_under_the_key_template() {
    let sink = SyslogSink::new();
    let api = Api::new(Reply::json(200, r#"{"action":"DUNNO"}"#));
    let conf = pol(&api, &sink, "{ ttl: 60s, key: \"{{ sender }} {{ client_address }}\" }");
    let h = host(&api);
    let line = check(&conf, &sink, "a@b.example", "Q1", "action=DUNNO\n\n");
    let who = "client_address=192.0.2.1 sender=a@b.example recipient=rcpt@x.example";
    assert_line(
        &line,
        &format!("proto=policy service=pol {who} host={h} attempts=1 status=200 cache=miss action=DUNNO"),
        0..=0,
    );
    // Another message (another queue_id) from the same sender and client: the same cache key.
    let line = check(&conf, &sink, "a@b.example", "Q2", "action=DUNNO\n\n");
    assert_line(&line, &format!("proto=policy service=pol {who} attempts=0 cache=hit age=# action=DUNNO"), 0..=SLACK);
    assert_eq!(api.requests(), 1);
    // Another sender: another key.
    check(&conf, &sink, "c@d.example", "Q3", "action=DUNNO\n\n");
    assert_eq!(api.requests(), 2);

    // The rendered key text names the row for `cache flush`.
    let out = command(&conf, &["cache", "flush", "pol", "a@b.example 192.0.2.1"]);
    assert_eq!((out.code(), out.stdout_str().as_str()), (Some(0), "removed 1 row(s)\n"), "{out:?}");
    assert!(check(&conf, &sink, "a@b.example", "Q4", "action=DUNNO\n\n").contains(" cache=miss "));
}

#[test]
fn an_answer_without_an_action_is_not_found() {
    let sink = SyslogSink::new();
    let api = Api::new(Reply::json(200, r#"{"action":"REJECT spam"}"#));
    let conf = pol(&api, &sink, "{ stale_if_error: 1h, key: \"{{ sender }}\" }");
    check(&conf, &sink, "a@b.example", "Q1", "action=REJECT spam\n\n");
    assert_eq!(rows(&conf), 1);
    // No action: DUNNO as "not found", which removes the stored action.
    api.set(Reply::json(200, "{}"));
    let line = check(&conf, &sink, "a@b.example", "Q2", "action=DUNNO\n\n");
    assert!(line.contains(" cache=miss action=DUNNO "), "{line}");
    assert_eq!(rows(&conf), 0, "not found is not stored (negative_ttl 0) and removed the action");
    api.set(Reply::json(503, "{}"));
    let line = check(&conf, &sink, "a@b.example", "Q3", DEFER);
    assert!(line.contains(" cache=miss action=\"DEFER_IF_PERMIT Service temporarily unavailable\""), "{line}");
}

#[test]
fn the_default_action_is_never_stored() {
    let sink = SyslogSink::new();
    let api = Api::new(Reply::json(503, "{}"));
    let conf = pol(&api, &sink, "{ ttl: 60s, negative_ttl: 60s, stale_if_error: 1h, key: \"{{ sender }}\" }");
    check(&conf, &sink, "a@b.example", "Q1", DEFER);
    assert_eq!(rows(&conf), 0);
    api.set(Reply::json(200, r#"{"action":"OK"}"#));
    let line = check(&conf, &sink, "a@b.example", "Q2", "action=OK\n\n");
    assert!(line.contains(" cache=miss action=OK "), "{line}");
    assert!(check(&conf, &sink, "a@b.example", "Q3", "action=OK\n\n").contains(" cache=hit "));
    assert_eq!(api.requests(), 2);
}

#[test]
fn the_go_keys_do_not_apply_to_a_policy_service() {
    let sink = SyslogSink::new();
    let api = Api::new(Reply::json(200, r#"{"action":"OK"}"#));
    let conf = Config::new()
        .server("response_cache: { enabled: true, ttl: 1h }")
        .policy("pol", api.url())
        .set("max_attempts", "1")
        .syslog(&sink, "");
    let line = check(&conf, &sink, "a@b.example", "Q1", "action=OK\n\n");
    assert!(!line.contains("cache="), "{line}");
    api.set(Reply::json(503, "{}"));
    check(&conf, &sink, "a@b.example", "Q2", DEFER);
}
