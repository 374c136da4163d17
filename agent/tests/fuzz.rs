//! Property tests over everything the agent reads from the network: event lines (raw bytes,
//! Spark-shaped events with hostile numbers and strings, and cut or flipped real lines; the
//! listener's snapshot, stats and jobs-gone lines), Spark's REST job lists, Connect job tags, the
//! listener's hello, and stream clients' frames. Whatever comes in, nothing panics
//! and the model's invariants hold (no negative or wrapped counts).
//!
//! Each property runs `SPARKSCOPE_FUZZ_CASES` cases (2,000 by default, as in `make test`);
//! `scripts/fuzz.sh` runs a million each.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use sparkscope::ingest::ingest_line;
use sparkscope::ingest::parse_line;
use sparkscope::ingest::protocol::parse_hello;
use sparkscope::ingest::validate;
use sparkscope::model::tags::{parse_operation_tag, parse_session_tag};
use sparkscope::model::{AppState, Retention};
use sparkscope::publish::stream::follow::Follower;
use sparkscope::publish::stream::identity::Principal;
use sparkscope::publish::stream::subscriber::{interpret, parse_frame, Incoming};
use sparkscope::spark_api::JobData;

fn config() -> Config {
    let cases = std::env::var("SPARKSCOPE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let cfg = config();
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(cfg.clone());
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    eprintln!(
        "fuzz {name}: {} cases in {:.2} s",
        cfg.cases,
        started.elapsed().as_secs_f64()
    );
}

/// Numbers as hostile input has them: small, boundary, huge, negative.
fn number() -> impl Strategy<Value = i64> {
    prop_oneof![
        0i64..10,
        -3i64..3,
        Just(i64::from(i32::MAX)),
        Just(i64::from(i32::MAX) + 1),
        Just(i64::from(u32::MAX) - 1),
        Just(i64::MAX),
        Just(i64::MIN),
        any::<i64>(),
    ]
}

/// Strings with the characters that matter: separators, multi-byte characters, UUID pieces.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,12}",
        "[_éß€😀a-f0-9-]{0,40}",
        Just("39ed1fc5-ed53-4117-945b-fae9e26c0ce8".to_owned()),
        any::<String>(),
    ]
}

fn tag() -> impl Strategy<Value = String> {
    (text(), text(), text(), text()).prop_map(|(u, s, o, t)| {
        if t.len() % 2 == 0 {
            format!("SparkConnect_OperationTag_User_{u}_Session_{s}_Operation_{o}")
        } else {
            format!("SparkConnect_SessionTag_User_{u}_Session_{s}_Tag_{t}")
        }
    })
}

fn stage_info() -> impl Strategy<Value = Value> {
    (0i32..4, number(), number(), number()).prop_map(|(id, attempt, n, t)| {
        json!({"Stage ID": id, "Stage Attempt ID": attempt.rem_euclid(3),
               "Number of Tasks": n, "Submission Time": t})
    })
}

/// A Spark-shaped event: known names and field names, hostile values.
fn event() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..6, prop::collection::vec(stage_info(), 0..3), prop::collection::vec(tag(), 0..3))
            .prop_map(|(id, stages, tags)| {
                let ids: Vec<Value> = stages.iter().map(|s| s["Stage ID"].clone()).collect();
                json!({"Event": "SparkListenerJobStart", "Job ID": id, "Submission Time": 5,
                       "Stage Infos": stages, "Stage IDs": ids,
                       "Properties": {"spark.job.tags": tags.join(",")}})
            }),
        (number(), any::<bool>()).prop_map(|(id, ok)| json!({"Event": "SparkListenerJobEnd",
            "Job ID": id, "Completion Time": 9,
            "Job Result": {"Result": if ok { "JobSucceeded" } else { "JobFailed" }}})),
        stage_info().prop_map(|s| json!({"Event": "SparkListenerStageSubmitted", "Stage Info": s})),
        (stage_info(), proptest::option::of(text())).prop_map(|(mut s, why)| {
            if let Some(w) = why { s["Failure Reason"] = json!(w); }
            json!({"Event": "SparkListenerStageCompleted", "Stage Info": s})
        }),
        (0i64..4, number(), number(), number(), number(), number(), number()).prop_map(
            |(id, a, st, ok, f, k, m)| json!({"Event": "SparkscopeStageProgress", "stageId": id,
                "stageAttemptId": a.rem_euclid(2), "started": st, "succeeded": ok, "failed": f,
                "killed": k, "executorRunTime": m, "inputBytes": m})),
        (0i64..4, prop_oneof![Just("Success"), Just("TaskKilled"), Just("FetchFailed")], number())
            .prop_map(|(id, r, m)| json!({"Event": "SparkListenerTaskEnd", "Stage ID": id,
                "Stage Attempt ID": 0, "Task End Reason": {"Reason": r},
                "Task Metrics": {"Executor Run Time": m}})),
        (0i64..4).prop_map(|id| json!({"Event": "SparkListenerTaskStart", "Stage ID": id,
            "Stage Attempt ID": 0, "Task Info": {}})),
        (text(), number()).prop_map(|(id, cores)| json!({"Event": "SparkListenerExecutorAdded",
            "Timestamp": 1, "Executor ID": id, "Executor Info": {"Host": "h", "Total Cores": cores}})),
        (text(), text(), tag(), number(), prop::collection::vec(text(), 0..3)).prop_map(
            |(op, session, job_tag, time, tags)| json!({"Event":
                "org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted",
                "jobTag": job_tag, "operationId": op, "eventTime": time, "sessionId": session,
                "userId": "u", "statementText": "é".repeat(2100), "sparkSessionTags": tags})),
        (text(), tag(), prop_oneof![Just("Finished"), Just("Failed"), Just("Canceled"), Just("Closed")], number())
            .prop_map(|(op, job_tag, what, time)| json!({"Event":
                format!("org.apache.spark.sql.connect.service.SparkListenerConnectOperation{what}"),
                "jobTag": job_tag, "operationId": op, "eventTime": time, "errorMessage": "e",
                "producedRowCount": time})),
        (text(), text(), any::<bool>()).prop_map(|(s, u, open)| json!({"Event": format!(
            "org.apache.spark.sql.connect.service.SparkListenerConnectSession{}",
            if open { "Started" } else { "Closed" }), "sessionId": s, "userId": u, "eventTime": 3})),
        (number(), prop::collection::vec(tag(), 0..2)).prop_map(|(id, tags)| json!({"Event":
            "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart", "executionId": id,
            "time": 1, "jobTags": tags})),
        (number(), number()).prop_map(|(d, s)| json!({"Event": "SparkscopeListenerStats",
            "dropped": d, "sent": s})),
        // Large unsigned counters, as a long-lived listener reports them.
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(d, s, b)| json!({"Event":
            "SparkscopeListenerStats", "time": 1, "dropped": d, "sent": s,
            "busDropped": {"shared": b, "appStatus": b}, "liveEvicted": b,
            "untrackedTaskEvents": b})),
        // A snapshot's frame: lines between them describe state.
        (any::<bool>(), number()).prop_map(|(start, t)| json!({"Event":
            if start { "SparkscopeSnapshotStart" } else { "SparkscopeSnapshotEnd" }, "time": t})),
        (number(), prop::collection::vec(number(), 0..4)).prop_map(|(t, ids)| json!({"Event":
            "SparkscopeJobsGone", "time": t, "jobIds": ids})),
        (number(), prop_oneof![Just("http://driver:4040".to_owned()), ".{0,40}"])
            .prop_map(|(t, url)| json!({"Event": "SparkscopeUiUrl", "time": t, "uiUrl": url})),
        // Shuffle metrics whose sum overflows.
        (0i64..4, number(), number()).prop_map(|(id, remote, local)| json!({"Event":
            "SparkListenerTaskEnd", "Stage ID": id, "Stage Attempt ID": 0,
            "Task End Reason": {"Reason": "Success"}, "Task Metrics": {"Executor Run Time": 1,
            "Shuffle Read Metrics": {"Remote Bytes Read": remote, "Local Bytes Read": local}}})),
    ]
}

/// A job as Spark's REST API lists it: known fields, hostile values and dates.
fn spark_rest_job() -> impl Strategy<Value = Value> {
    let date = prop_oneof![
        Just("2026-12-05T03:20:49.123GMT".to_owned()),
        Just("-9999-01-01T00:00:00.000GMT".to_owned()),
        Just("9999-12-31T23:59:60.999GMT".to_owned()),
        text(),
    ];
    let status = prop_oneof![
        Just("RUNNING"),
        Just("SUCCEEDED"),
        Just("FAILED"),
        Just("UNKNOWN")
    ];
    (
        0i64..6,
        status,
        prop::collection::vec(number(), 10),
        date.clone(),
        date,
        prop::collection::vec(tag(), 0..2),
    )
        .prop_map(|(id, status, n, submitted, completed, tags)| {
            json!({"jobId": id,
            "name": "n", "submissionTime": submitted, "completionTime": completed,
            "stageIds": [n[0], 1], "jobTags": tags, "status": status, "numTasks": n[1],
            "numActiveTasks": n[2], "numCompletedTasks": n[3], "numSkippedTasks": n[4],
            "numFailedTasks": n[5], "numKilledTasks": n[6], "numActiveStages": n[7],
            "numCompletedStages": n[8], "numSkippedStages": n[9], "numFailedStages": 0})
        })
}

/// A real line, cut or with a byte changed.
fn damaged(line: String) -> impl Strategy<Value = Vec<u8>> {
    let len = line.len();
    (0..=len, 0..len.max(1), any::<u8>(), any::<bool>()).prop_map(move |(cut, at, byte, flip)| {
        let mut b = line.clone().into_bytes();
        if flip && !b.is_empty() {
            b[at % len] = byte;
        } else {
            b.truncate(cut);
        }
        b
    })
}

fn apply_and_check(lines: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let mut app = AppState::new("fuzz", Retention::default());
    for l in lines {
        ingest_line(&mut app, l);
        let broken = app.broken_invariants();
        prop_assert!(
            broken.is_empty(),
            "after {:?}: {broken:?}",
            String::from_utf8_lossy(l)
        );
    }
    let s = app.stats();
    prop_assert_eq!(s.lines, s.by_kind.iter().sum::<u64>() + s.parse_errors);
    Ok(())
}

#[test]
fn raw_bytes_never_panic_the_parser_or_the_model() {
    run(
        "raw event bytes",
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8),
        |lines| apply_and_check(&lines),
    );
}

#[test]
fn spark_shaped_events_keep_the_model_consistent() {
    run(
        "Spark-shaped event sequences",
        prop::collection::vec(event(), 1..40),
        |events| {
            let lines: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
            apply_and_check(&lines)
        },
    );
}

#[test]
fn spark_rest_answers_keep_the_model_consistent() {
    let answer = (
        prop::collection::vec(event(), 0..20),
        prop::collection::vec(spark_rest_job(), 0..6),
    );
    run("Spark REST job lists", answer, |(events, jobs)| {
        let mut app = AppState::new("fuzz", Retention::default());
        for e in &events {
            ingest_line(&mut app, e.to_string().as_bytes());
        }
        let raw = Value::Array(jobs).to_string();
        let jobs: Vec<JobData> = match serde_json::from_str(&raw) {
            Ok(j) => j,
            Err(_) => return Ok(()),
        };
        let jobs = jobs.into_iter().filter_map(validate::spark_job).collect();
        let g = app.generation();
        app.reconcile(1, jobs, g);
        let broken = app.broken_invariants();
        prop_assert!(broken.is_empty(), "{broken:?}");
        Ok(())
    });
}

#[test]
fn damaged_real_lines_are_errors_or_events_never_panics() {
    let real = event().prop_flat_map(|e| damaged(e.to_string()));
    run("damaged event lines", real, |line| {
        let _ = parse_line(&line);
        apply_and_check(&[line])
    });
}

#[test]
fn tags_parse_back_to_what_they_were_made_of() {
    run(
        "Connect job tags",
        prop_oneof![tag(), any::<String>()],
        |t| {
            if let Some(p) = parse_operation_tag(&t) {
                let spark4 = format!(
                    "SparkConnect_OperationTag_User_{}_Session_{}_Operation_{}",
                    p.user_id, p.session_id, p.operation_id
                );
                let spark35 = format!(
                    "SparkConnect_OperationTag_User_{}_Session_{}_Operation_{}",
                    p.session_id, p.user_id, p.operation_id
                );
                prop_assert!(t == spark4 || t == spark35, "{t}");
            }
            if let Some(p) = parse_session_tag(&t, None) {
                let back = format!(
                    "SparkConnect_SessionTag_User_{}_Session_{}_Tag_{}",
                    p.user_id, p.session_id, p.tag
                );
                prop_assert_eq!(back, t.clone());
            }
            let _ = parse_session_tag(&t, Some(("u", "39ed1fc5-ed53-4117-945b-fae9e26c0ce8")));
            Ok(())
        },
    );
}

#[test]
fn hellos_never_panic() {
    let hello = (number(), text(), text(), number()).prop_map(|(protocol, app, token, start)| {
        json!({"Event": "SparkscopeHello", "protocol": protocol, "appId": app, "token": token,
               "startTime": start, "taskEvents": "coalesced"})
        .to_string()
        .into_bytes()
    });
    let any_bytes = prop::collection::vec(any::<u8>(), 0..200);
    run("hello lines", prop_oneof![hello, any_bytes], |line| {
        let _ = parse_hello(&line);
        Ok(())
    });
}

#[test]
fn client_frames_are_answered_never_panic() {
    let key = || (text(), text()).prop_map(|(s, u)| json!({"sessionId": s, "userId": u}));
    let frame = prop_oneof![
        prop::collection::vec(key(), 0..6).prop_map(|k| json!({"subscribe": {"sessions": k}})),
        prop::collection::vec(key(), 0..3).prop_map(|k| json!({"unsubscribe": {"sessions": k}})),
        (text(), text(), number()).prop_map(|(s, u, job)| json!({"cancel": {"requestId": "r",
            "sessionId": s, "userId": u, "jobId": job}})),
        Just(json!({})),
        Just(json!({"subscribe": {"sessions": "nope"}})),
    ]
    .prop_map(|v| v.to_string());
    let frames = prop::collection::vec(prop_oneof![frame, any::<String>()], 1..10);
    run("stream client frames", frames, |frames| {
        let mut follower = Follower::new(4, Principal::User("u".into()));
        for f in &frames {
            if let Incoming::Message(msg) = parse_frame(f) {
                let _ = interpret(&mut follower, msg);
            }
            prop_assert!(follower.followed() <= 4);
        }
        Ok(())
    });
}
