//! `GET /metrics` after a small workload: typed, only catalogued names, values that follow the
//! events, users capped, and nothing secret (session ids, tags, statements) in any label.

mod common;

use sparkscope::ingest::ingest_line_at;
use sparkscope::model::lock;
use sparkscope::telemetry::CATALOG;
use std::collections::{HashMap, HashSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SESSION: &str = "39ed1fc5-ed53-4117-945b-fae9e26c0ce8";

fn op(user: &str, n: u32) -> (String, String) {
    let op = format!("95b7284b-ed00-4470-91a8-2e06100c9f{n:02}");
    let tag = format!("SparkConnect_OperationTag_User_{user}_Session_{SESSION}_Operation_{op}");
    (op, tag)
}

fn lines() -> Vec<String> {
    let mut v = vec![
        r#"{"Event":"SparkListenerExecutorAdded","Timestamp":1,"Executor ID":"driver","Executor Info":{"Host":"h","Total Cores":2}}"#.to_owned(),
        format!(r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectSessionStarted","sessionId":"{SESSION}","userId":"alice","eventTime":1}}"#),
    ];
    for (n, user) in ["alice", "bob", "carol"].iter().enumerate() {
        let (op, tag) = op(user, n as u32);
        v.push(format!(r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted","jobTag":"{tag}","operationId":"{op}","eventTime":1000,"sessionId":"{SESSION}","userId":"{user}","statementText":"SELECT secret_column","sparkSessionTags":["cell-tag-{n}"]}}"#));
        v.push(format!(r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationFinished","jobTag":"{tag}","operationId":"{op}","eventTime":3500}}"#));
        v.push(format!(r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationClosed","jobTag":"{tag}","operationId":"{op}","eventTime":3600}}"#));
    }
    v.extend([
        r#"{"Event":"SparkListenerJobStart","Job ID":0,"Submission Time":5,"Stage Infos":[{"Stage ID":0,"Stage Attempt ID":0,"Number of Tasks":3}],"Stage IDs":[0],"Properties":{}}"#.to_owned(),
        r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":0,"Stage Attempt ID":0,"Number of Tasks":3,"Submission Time":6},"Properties":{}}"#.to_owned(),
        r#"{"Event":"SparkListenerTaskStart","Stage ID":0,"Stage Attempt ID":0,"Task Info":{}}"#.to_owned(),
        r#"{"Event":"SparkListenerTaskStart","Stage ID":0,"Stage Attempt ID":0,"Task Info":{}}"#.to_owned(),
        r#"{"Event":"SparkListenerTaskEnd","Stage ID":0,"Stage Attempt ID":0,"Task End Reason":{"Reason":"Success"}}"#.to_owned(),
        r#"{"Event":"SparkListenerTaskEnd","Stage ID":0,"Stage Attempt ID":0,"Task End Reason":{"Reason":"TaskKilled"}}"#.to_owned(),
        "this line is broken".to_owned(),
        r#"{"Event":"SparkscopeListenerStats","time":7,"dropped":4}"#.to_owned(),
    ]);
    v
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("read");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// `name{labels} value` lines → (name, labels, value).
fn samples(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (head, value) = l.rsplit_once(' ').expect("sample");
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("label");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("value"))
        })
        .collect()
}

fn value(s: &[(String, HashMap<String, String>, f64)], name: &str, want: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

#[tokio::test]
async fn metrics_are_typed_catalogued_bounded_and_follow_the_state() {
    let mut cfg = common::config();
    cfg.metrics.max_users = 2;
    let agent = common::start(cfg).await;
    {
        let app = agent.store().app("local-9");
        let mut a = lock(&app);
        // As a listener's lines are: seen now, so the age limit leaves the application alone.
        a.seen(sparkscope::clock::now_ms());
        for l in lines() {
            ingest_line_at(&mut a, l.as_bytes(), Some(10_000));
        }
    }
    let addr = agent.addrs().http;

    let text = scrape(addr).await;
    let s = samples(&text);
    let app = [("application", "local-9")];

    // Typed: every family has HELP and TYPE, and every family is in the catalog.
    let catalog: HashMap<&str, &str> = CATALOG.iter().map(|d| (d.name, d.kind.as_str())).collect();
    let mut families = HashSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().expect("name"), parts.next().expect("type"));
        assert_eq!(
            catalog.get(name),
            Some(&kind),
            "{name} is not catalogued as {kind}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
        families.insert(name.to_owned());
    }
    for (name, _, _) in &s {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name.as_str(), |n, suf| {
                n.strip_suffix(suf)
                    .filter(|b| families.contains(*b))
                    .unwrap_or(n)
            });
        assert!(families.contains(family), "sample {name} has no TYPE");
    }

    // Values follow the events.
    assert_eq!(value(&s, "sparkscope_jobs_started_total", &app), 1.0);
    assert_eq!(value(&s, "sparkscope_jobs_running", &app), 1.0);
    assert_eq!(value(&s, "sparkscope_tasks_started_total", &app), 2.0);
    assert_eq!(
        value(
            &s,
            "sparkscope_tasks_finished_total",
            &[app[0], ("result", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "sparkscope_tasks_finished_total",
            &[app[0], ("result", "killed")]
        ),
        1.0
    );
    assert_eq!(value(&s, "sparkscope_executor_cores", &app), 2.0);
    assert_eq!(
        value(
            &s,
            "sparkscope_connect_operations_total",
            &[app[0], ("state", "finished")]
        ),
        3.0
    );
    assert_eq!(
        value(&s, "sparkscope_ingest_malformed_lines_total", &app),
        1.0
    );
    assert_eq!(
        value(&s, "sparkscope_listener_dropped_lines_total", &app),
        4.0
    );
    assert_eq!(
        value(
            &s,
            "sparkscope_ingest_lines_total",
            &[app[0], ("kind", "task_end")]
        ),
        2.0
    );
    // Operation durations: 2.5 s each; two users by name, the third as "other".
    for user in ["alice", "bob", "other"] {
        let count = value(
            &s,
            "sparkscope_connect_operation_duration_seconds_count",
            &[app[0], ("user", user)],
        );
        assert_eq!(count, 1.0, "user {user}");
    }
    assert_eq!(
        value(
            &s,
            "sparkscope_connect_operation_duration_seconds_sum",
            &[app[0], ("user", "bob")]
        ),
        2.5
    );
    assert!(value(&s, "sparkscope_ingest_lag_seconds_count", &[]) >= 5.0);

    // Nothing secret, nothing unbounded.
    for secret in [
        SESSION,
        "cell-tag-",
        "secret_column",
        "carol",
        "SparkConnect_",
    ] {
        assert!(!text.contains(secret), "/metrics leaks {secret}");
    }

    // A second scrape does not count closed operations twice.
    let again = samples(&scrape(addr).await);
    assert_eq!(
        value(
            &again,
            "sparkscope_connect_operation_duration_seconds_count",
            &[app[0], ("user", "alice")]
        ),
        1.0
    );
}
