use super::*;
use crate::answer::Failure;

fn totals_of(counts: &Counts) -> Totals {
    counts.iter().map(|(s, labels, n)| ((s, labels), n)).collect()
}

#[test]
fn a_duration_falls_in_the_first_bucket_it_does_not_exceed() {
    let mut counts = Counts::default();
    for us in [0, 1_000, 1_001, 10_000_000, 10_000_001] {
        counts.observe("tcp", "m", Duration::from_micros(us));
    }
    let totals = totals_of(&counts);
    let bucket = |le: &str| totals.get(&(Series::DurationBucket, vec!["tcp".into(), "m".into(), le.into()])).copied();
    assert_eq!(
        (bucket("0.001"), bucket("0.0025"), bucket("10"), bucket("+Inf"), bucket("5")),
        (Some(2), Some(1), Some(1), Some(1), None)
    );
    assert_eq!(totals[&(Series::DurationSumMicros, vec!["tcp".into(), "m".into()])], 20_002_002);
    assert_eq!(totals[&(Series::DurationCount, vec!["tcp".into(), "m".into()])], 5);
}

#[test]
fn the_text_format_has_every_family_cumulative_buckets_and_escaped_labels() {
    let mut counts = Counts::default();
    counts.add(Series::Requests, &["socketmap", "a\"b\\c\nd", "found"], 3);
    counts.add(Series::Requests, &["socketmap", "a\"b\\c\nd", "found"], 0);
    counts.add(Series::Cache, &["2:x y", ""], 1);
    counts.observe("policy", "p", Duration::from_millis(3));
    counts.observe("policy", "p", Duration::from_millis(30));
    counts.add(Series::Processes, &["policy"], 2);
    counts.add(Series::Attempts, &["p", "h:1"], 9); // wrong label count: left out
    let live =
        Live { hosts: vec![("m".into(), "a:80".into(), true), ("m".into(), "b:80".into(), false)], connections: 4 };
    let text = render(&totals_of(&counts), &live);
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let mut expected = vec![
        r#"pfxhttp_requests_total{kind="socketmap",name="a\"b\\c\nd",outcome="found"} 3"#.to_string(),
        r#"pfxhttp_cache_total{name="2:x y",result=""} 1"#.to_string(),
        r#"pfxhttp_processes_total{command="policy"} 2"#.to_string(),
    ];
    let cumulative = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2];
    for (le, n) in LE.iter().zip(cumulative) {
        expected.push(format!(r#"pfxhttp_request_duration_seconds_bucket{{kind="policy",name="p",le="{le}"}} {n}"#));
    }
    expected.extend([
        r#"pfxhttp_request_duration_seconds_sum{kind="policy",name="p"} 0.033"#.to_string(),
        r#"pfxhttp_request_duration_seconds_count{kind="policy",name="p"} 2"#.to_string(),
        r#"pfxhttp_host_down{name="m",host="a:80"} 1"#.to_string(),
        r#"pfxhttp_host_down{name="m",host="b:80"} 0"#.to_string(),
        "pfxhttp_connections_active 4".to_string(),
    ]);
    assert_eq!(samples, expected);
    let types: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    assert_eq!(
        types,
        [
            "pfxhttp_requests_total counter",
            "pfxhttp_backend_attempts_total counter",
            "pfxhttp_cache_total counter",
            "pfxhttp_token_fetches_total counter",
            "pfxhttp_processes_total counter",
            "pfxhttp_request_duration_seconds histogram",
            "pfxhttp_host_down gauge",
            "pfxhttp_connections_active gauge",
        ]
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("# HELP ")).count(), 8);
}

#[test]
fn counts_taken_back_never_go_below_zero_and_zeros_are_not_flushed() {
    let mut counts = Counts::default();
    counts.add(Series::Attempts, &["m", "h", "ok"], 1);
    counts.take_back(Series::Attempts, &["m", "h", "ok"], 2);
    counts.take_back(Series::Attempts, &["m", "h", "never"], 1);
    assert!(counts.is_empty() && counts.iter().next().is_none());
}

#[test]
fn outcomes_and_attempt_results_have_their_labels() {
    let failure = |kind| Outcome::Failure(Failure { kind, reason: String::new() });
    let labels: Vec<&str> = [
        Outcome::Found("v".into()),
        Outcome::NotFound,
        failure(FailureKind::Temporary),
        failure(FailureKind::Timeout),
        failure(FailureKind::Permanent),
    ]
    .iter()
    .map(map_outcome)
    .collect();
    assert_eq!(labels, ["found", "not_found", "temporary", "timeout", "permanent"]);
    assert_eq!(policy_outcome(Some(&Outcome::Found("OK".into()))), "action");
    assert_eq!(policy_outcome(Some(&Outcome::NotFound)), "not_found");
    assert_eq!(policy_outcome(Some(&failure(FailureKind::Timeout))), "default_action");
    assert_eq!(policy_outcome(None), "default_action");

    let status = |s| Ok(Response { status: s, headers: Default::default(), body: Vec::new() });
    let results: Vec<&str> = [
        (status(200), true),
        (status(404), true),
        (status(404), false),
        (status(429), false),
        (status(503), false),
        (status(301), false),
        (Err(HttpError::Connect("x".into())), false),
        (Err(HttpError::Tls("x".into())), false),
        (Err(HttpError::Timeout), false),
        (Err(HttpError::TooLarge(1)), false),
    ]
    .iter()
    .map(|(r, answer)| attempt_result(r, *answer))
    .collect();
    assert_eq!(
        results,
        ["ok", "ok", "http_4xx", "http_429", "http_5xx", "invalid", "connect", "tls", "timeout", "invalid"]
    );
}
