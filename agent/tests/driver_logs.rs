//! The driver's WARN and ERROR lines: each kept with whose it is, by identity (the thread's job
//! tags, the stage it names, Spark's logging context), never by timing; a session's follower
//! gets only its own lines, each once; the tail is bounded.

use serde_json::{json, Value};
use sparkscope::model::retention::LiveBound;
use sparkscope::model::{AppState, Retention};

mod common;
use common::spark_lines::*;

const OTHER_SID: &str = "11111111-2222-4333-8444-555555555555";

fn log(level: &str, message: &str, thread: &str, tags: &str, context: Value) -> Value {
    json!({"Event": "SparkscopeLogLine", "Timestamp": 1_700_000_000_000i64, "Level": level,
           "Logger": "org.apache.spark.scheduler.TaskSetManager", "Thread": thread,
           "Message": message, "Thrown": "", "Job Tags": tags, "Context": context})
}

fn session_started(sid: &str, user: &str) -> Value {
    json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectSessionStarted",
           "sessionId": sid, "userId": user, "eventTime": 5, "extraTags": {}})
}

/// ivy's cell-1 job 0 runs stage 0; zed has a session of his own.
fn shared_server() -> AppState {
    let mut a = app();
    feed(
        &mut a,
        &[
            session_started(SID, "ivy"),
            session_started(OTHER_SID, "zed"),
            job_start(
                0,
                &[stage_info(0, 0, 2, false, false)],
                &connect_tags("ivy", &["cell-1"]),
            ),
            stage_submitted(stage_info(0, 0, 2, true, false)),
        ],
    );
    a
}

#[test]
fn each_line_belongs_to_whoever_its_identity_names() {
    let mut a = shared_server();
    feed(
        &mut a,
        &[
            // an executor's line after its task ended: only the stage it names ties it
            log(
                "ERROR",
                "Exception in task 0.0 in stage 0.0 (TID 0)",
                "Executor task launch worker for task 0.0 in stage 0.0 (TID 0)",
                "",
                json!({"task_name": "task 0.0 in stage 0.0 (TID 0)"}),
            ),
            // the Connect operation's own thread: its job tags
            log(
                "WARN",
                "slow plan",
                "SparkConnectExecuteThread_opId=x",
                &connect_tags("ivy", &["cell-1"]),
                json!({}),
            ),
            // a stage nobody ran: nobody's
            log(
                "WARN",
                "Lost task 1.0 in stage 9.0 (TID 3)",
                "task-result-getter-0",
                "",
                json!({}),
            ),
            // Spark's structured-logging context naming zed's session
            log(
                "ERROR",
                "zed's failure",
                "main",
                "",
                json!({"session_id": OTHER_SID, "user_id": "zed"}),
            ),
            // a context naming zed's session under another user: nobody's
            log(
                "ERROR",
                "forged",
                "main",
                "",
                json!({"session_id": OTHER_SID, "user_id": "ivy"}),
            ),
            // plain driver noise
            log(
                "WARN",
                "Truncated the string representation of a plan",
                "main",
                "",
                json!({}),
            ),
        ],
    );
    let lines: Vec<_> = a.log_lines().collect();
    assert_eq!(lines.len(), 6);
    let owner = |i: usize| lines[i].owner.as_ref();
    let o = owner(0).expect("the stage's job's");
    assert_eq!((o.user_id.as_str(), o.session_id.as_str()), ("ivy", SID));
    assert_eq!((o.job_id, o.stage), (Some(0), Some((0, 0))));
    assert_eq!(o.operation_id, OID);
    assert_eq!(o.tags, ["cell-1"]);
    let o = owner(1).expect("the operation's");
    assert_eq!(
        (o.session_id.as_str(), o.operation_id.as_str(), o.job_id),
        (SID, OID, None)
    );
    assert_eq!(o.tags, ["cell-1"]);
    assert!(owner(2).is_none());
    let o = owner(3).expect("zed's session");
    assert_eq!(
        (o.user_id.as_str(), o.session_id.as_str()),
        ("zed", OTHER_SID)
    );
    assert!(
        owner(4).is_none(),
        "a user id that is not the session's ties nothing"
    );
    assert!(owner(5).is_none());
    let seqs: Vec<u64> = lines.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);

    // a follower of ivy's session gets ivy's two lines, never zed's; then only what is new
    let slice = a.session_slice(SID, "ivy", 0);
    let got: Vec<_> = slice
        .log_lines
        .iter()
        .map(|e| e.line.message.as_str())
        .collect();
    assert_eq!(
        got,
        ["Exception in task 0.0 in stage 0.0 (TID 0)", "slow plan"]
    );
    assert!(a.session_slice(SID, "zed", 0).log_lines.is_empty());
    let zed = a.session_slice(OTHER_SID, "zed", 0);
    assert_eq!(zed.log_lines.len(), 1);
    let seen = a.generation();
    assert!(a.session_slice(SID, "ivy", seen).log_lines.is_empty());
    feed(
        &mut a,
        &[log(
            "ERROR",
            "Task 1 in stage 0.0 failed 1 times",
            "t",
            "",
            json!({}),
        )],
    );
    let slice = a.session_slice(SID, "ivy", seen);
    assert_eq!(slice.log_lines.len(), 1);
    assert!(a.sessions_changed_since(seen).contains(SID));
    assert!(!a.sessions_changed_since(seen).contains(OTHER_SID));
}

#[test]
fn the_tail_is_bounded_and_its_evictions_counted() {
    let mut retention = Retention::default();
    retention.live.log_lines = 3;
    let mut a = AppState::new("local-1", retention);
    let lines: Vec<Value> = (0..5)
        .map(|i| log("WARN", &format!("line {i}"), "main", "", json!({})))
        .collect();
    feed(&mut a, &lines);
    let kept: Vec<_> = a.log_lines().map(|e| e.line.message.clone()).collect();
    assert_eq!(kept, ["line 2", "line 3", "line 4"]);
    assert_eq!(a.take_evictions().of(LiveBound::LogLines), 2);
    assert_eq!(a.take_evictions().of(LiveBound::LogLines), 0);
}

#[test]
fn a_broken_log_line_is_counted_and_changes_nothing() {
    let mut a = shared_server();
    let before = a.stats().parse_errors;
    feed(
        &mut a,
        &[
            json!({"Event": "SparkscopeLogLine", "Timestamp": 1, "Level": "DEBUG", "Message": "x"}),
            json!({"Event": "SparkscopeLogLine", "Timestamp": -5, "Level": "WARN", "Message": "x"}),
            json!({"Event": "SparkscopeLogLine", "Timestamp": 1, "Level": "WARN", "Message": 3}),
            json!({"Event": "SparkscopeLogLine", "Timestamp": 1, "Level": "WARN", "Message": "x",
                   "Context": {"session_id": ["not", "a", "string"]}}),
        ],
    );
    assert_eq!(a.stats().parse_errors, before + 4);
    assert_eq!(a.log_lines().count(), 0);
    // a long line is cut to the kept bound
    feed(
        &mut a,
        &[log("WARN", &"é".repeat(10_000), "main", "", json!({}))],
    );
    let kept = a.log_lines().next().expect("kept");
    let m = &kept.line.message;
    assert!(
        m.len() <= 4096 + '…'.len_utf8() && m.ends_with('…'),
        "{}",
        m.len()
    );
}

#[test]
fn an_executors_log_addresses_are_kept_when_they_are_web_addresses() {
    let mut a = app();
    feed(
        &mut a,
        &[
            json!({"Event": "SparkListenerExecutorAdded", "Timestamp": 1, "Executor ID": "0",
                 "Executor Info": {"Host": "10.0.0.9", "Total Cores": 1, "Log Urls": {
                     "stdout": "http://10.0.0.9:8081/logPage/?appId=app-1&executorId=0&logType=stdout",
                     "stderr": "javascript:alert(1)"}}}),
        ],
    );
    let e = a.executors().next().expect("executor 0");
    assert_eq!(
        e.log_urls,
        [(
            "stdout".to_owned(),
            "http://10.0.0.9:8081/logPage/?appId=app-1&executorId=0&logType=stdout".to_owned()
        )]
    );
}
