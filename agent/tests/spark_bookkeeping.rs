//! Scenarios on event-log lines in Spark's own JSON layout (`JsonProtocol`, Spark 4.3), read by
//! ingest into the model: jobs, stages and tasks counted as Spark's `AppStatusListener` counts
//! them, attribution to Connect operations, retention.

use serde_json::json;
use sparkscope::ingest::ingest_line;
use sparkscope::model::connect::{ConnectRef, OpState};
use sparkscope::model::jobs::{JobStatus, StageStatus};
use sparkscope::model::{AppState, Retention};

mod common;
use common::spark_lines::*;

#[test]
fn skipped_stages_are_counted_when_the_job_ends() {
    let mut a = app();
    // Job 0 computes the shuffle (stage 0) and the result (stage 1).
    let s0 = stage_info(0, 0, 4, false, false);
    let s1 = stage_info(1, 0, 2, false, false);
    let mut lines = vec![job_start(0, &[s0.clone(), s1.clone()], "")];
    lines.push(stage_submitted(stage_info(0, 0, 4, true, false)));
    lines.extend(run_tasks(0, 0, &["Success"; 4]));
    lines.push(stage_completed(stage_info(0, 0, 4, true, true), None));
    lines.push(stage_submitted(stage_info(1, 0, 2, true, false)));
    lines.extend(run_tasks(1, 0, &["Success"; 2]));
    lines.push(stage_completed(stage_info(1, 0, 2, true, true), None));
    lines.push(job_end(0, true));
    // Job 1 reuses stage 0's output: it lists stage 0 (already completed) and a new stage 2.
    lines.push(job_start(
        1,
        &[
            stage_info(0, 0, 4, true, true),
            stage_info(2, 0, 3, false, false),
        ],
        "",
    ));
    lines.push(stage_submitted(stage_info(2, 0, 3, true, false)));
    lines.extend(run_tasks(2, 0, &["Success"; 3]));
    lines.push(stage_completed(stage_info(2, 0, 3, true, true), None));
    lines.push(job_end(1, true));
    feed(&mut a, &lines);

    let j0 = a.job(0).expect("job 0");
    assert_eq!(
        (j0.num_tasks, j0.completed_tasks, j0.active_tasks),
        (6, 6, 0)
    );
    assert_eq!(j0.completed_stages.len(), 2);
    assert!(j0.skipped_stages.is_empty());
    let j1 = a.job(1).expect("job 1");
    assert_eq!(j1.status, JobStatus::Succeeded);
    // Spark's estimate leaves out stages already completed when the job started.
    assert_eq!(j1.num_tasks, 3);
    assert_eq!(
        j1.skipped_stages.iter().copied().collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(j1.skipped_tasks, 4);
    assert_eq!(j1.completed_tasks, 3);
    assert_eq!(j1.completed_stages.len(), 1);
    // As Spark 4.3 reports it: skipping a stage that never ran leaves the active count alone.
    assert_eq!(j1.active_stages, 0);
    assert_eq!(
        a.stage((0, 0)).map(|s| s.status),
        Some(StageStatus::Skipped)
    );
    assert_eq!(a.active_tasks(), 0);
}

#[test]
fn stage_retry_after_fetch_failure() {
    let mut a = app();
    let mut lines = vec![job_start(
        0,
        &[
            stage_info(0, 0, 2, false, false),
            stage_info(1, 0, 2, false, false),
        ],
        "",
    )];
    lines.push(stage_submitted(stage_info(0, 0, 2, true, false)));
    lines.extend(run_tasks(0, 0, &["Success", "Success"]));
    lines.push(stage_completed(stage_info(0, 0, 2, true, true), None));
    lines.push(stage_submitted(stage_info(1, 0, 2, true, false)));
    lines.extend(run_tasks(1, 0, &["Success", "FetchFailed"]));
    lines.push(stage_completed(
        stage_info(1, 0, 2, true, true),
        Some("FetchFailed"),
    ));
    // Both stages run again as attempt 1.
    lines.push(stage_submitted(stage_info(0, 1, 1, true, false)));
    lines.extend(run_tasks(0, 1, &["Success"]));
    lines.push(stage_completed(stage_info(0, 1, 1, true, true), None));
    lines.push(stage_submitted(stage_info(1, 1, 1, true, false)));
    lines.extend(run_tasks(1, 1, &["Success"]));
    lines.push(stage_completed(stage_info(1, 1, 1, true, true), None));
    lines.push(job_end(0, true));
    feed(&mut a, &lines);

    let j = a.job(0).expect("job");
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(j.completed_tasks, 5);
    assert_eq!(j.failed_tasks, 1);
    assert_eq!(j.failed_stages, 1);
    assert_eq!(j.completed_stages.len(), 2);
    assert_eq!(j.active_stages, 0);
    assert_eq!(j.active_tasks, 0);
    assert_eq!(a.stage((1, 0)).map(|s| s.status), Some(StageStatus::Failed));
    assert_eq!(
        a.stage((1, 1)).map(|s| s.status),
        Some(StageStatus::Complete)
    );
}

#[test]
fn killed_and_failed_tasks_and_a_failed_job() {
    let mut a = app();
    let mut lines = vec![job_start(3, &[stage_info(5, 0, 4, false, false)], "")];
    lines.push(stage_submitted(stage_info(5, 0, 4, true, false)));
    lines.extend(run_tasks(
        5,
        0,
        &[
            "Success",
            "ExceptionFailure",
            "TaskKilled",
            "TaskCommitDenied",
        ],
    ));
    lines.push(stage_completed(
        stage_info(5, 0, 4, true, true),
        Some("Job aborted"),
    ));
    lines.push(job_end(3, false));
    feed(&mut a, &lines);
    let j = a.job(3).expect("job");
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.error.as_deref(), Some("boom"));
    assert_eq!(
        (
            j.completed_tasks,
            j.failed_tasks,
            j.killed_tasks,
            j.active_tasks
        ),
        (1, 1, 2, 0)
    );
    assert_eq!(j.failed_stages, 1);
    let s = a.stage((5, 0)).expect("stage");
    assert_eq!(s.metrics.input_bytes, 400);
    assert_eq!(s.metrics.shuffle_read_bytes, 12);
    // From the task ends of an event log: the run times of the successful task, and the
    // first failure with where it ran.
    let d = s.durations.expect("durations");
    assert_eq!((d.min_ms, d.median_ms, d.max_ms), (10, 10, 10));
    let f = s.failure.as_deref().expect("failure");
    assert_eq!(
        (f.exception_class.as_str(), f.message.as_str()),
        ("java.lang.RuntimeException", "bad")
    );
    assert!(
        s.histogram.is_none(),
        "a finished stage keeps only its summary"
    );
}

#[test]
fn a_finished_stage_stays_live_until_its_last_task_ends() {
    let mut a = app();
    feed(
        &mut a,
        &[
            job_start(0, &[stage_info(0, 0, 2, false, false)], ""),
            stage_submitted(stage_info(0, 0, 2, true, false)),
            task_start(0, 0, 0),
            task_start(0, 0, 1),
            task_end(0, 0, "Success"),
            stage_completed(stage_info(0, 0, 2, true, true), Some("cancelled")),
            job_end(0, false),
            task_end(0, 0, "TaskKilled"),
        ],
    );
    let j = a.job(0).expect("job");
    assert_eq!(
        (j.completed_tasks, j.killed_tasks, j.active_tasks),
        (1, 1, 0)
    );
    assert_eq!(a.active_tasks(), 0);
}

#[test]
fn unknown_and_malformed_lines_are_counted_and_skipped() {
    let mut a = app();
    ingest_line(&mut a, br#"{"Event":"SparkListenerSomethingNew","x":1}"#);
    ingest_line(&mut a, br#"{"Event":"SparkListenerJobStart","Job ID":"#);
    ingest_line(&mut a, b"not json at all");
    ingest_line(&mut a, br#"{"no":"event"}"#);
    ingest_line(
        &mut a,
        br#"{"Event":"SparkListenerJobEnd","Job ID":"seven"}"#,
    );
    ingest_line(&mut a, b"   ");
    feed(
        &mut a,
        &[job_start(0, &[stage_info(0, 0, 1, false, false)], "")],
    );
    assert_eq!(a.stats().unknown_events, 1);
    assert_eq!(a.stats().parse_errors, 4);
    assert_eq!(a.stats().lines, 6);
    assert!(a.job(0).is_some(), "a good line after bad ones is applied");
}

#[test]
fn jobs_are_attributed_from_the_operation_event() {
    let mut a = app();
    let user = "bob_smith";
    feed(
        &mut a,
        &[
            json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectSessionStarted",
               "sessionId": SID, "userId": user, "eventTime": 5, "extraTags": {}}),
            json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted",
               "jobTag": op_tag(user), "operationId": OID, "eventTime": 6, "sessionId": SID,
               "userId": user, "userName": "", "statementText": "range { end: 10 }",
               "sparkSessionTags": ["cell-2", "cell-1"], "extraTags": {}}),
            job_start(
                0,
                &[stage_info(0, 0, 1, false, false)],
                &connect_tags(user, &["cell-1", "cell-2"]),
            ),
            json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectOperationFinished",
               "jobTag": op_tag(user), "operationId": OID, "eventTime": 9, "producedRowCount": 1,
               "extraTags": {}}),
            json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectOperationClosed",
               "jobTag": op_tag(user), "operationId": OID, "eventTime": 10, "extraTags": {}}),
        ],
    );
    let c = a
        .job(0)
        .and_then(|j| j.connect.clone())
        .expect("attributed");
    assert_eq!(
        c,
        ConnectRef {
            user_id: user.into(),
            session_id: SID.into(),
            operation_id: OID.into(),
            tags: vec!["cell-1".into(), "cell-2".into()],
        }
    );
    let op = a.operation(OID).expect("op");
    assert_eq!(op.job_ids, vec![0]);
    assert_eq!(op.state, OpState::Closed);
    assert_eq!(op.final_state, Some(OpState::Finished));
    assert_eq!(op.produced_rows, Some(1));
    assert_eq!(a.job(0).map(|j| j.job_tags.len()), Some(4));
}

#[test]
fn jobs_are_attributed_from_tags_when_the_operation_event_was_missed() {
    let mut a = app();
    feed(
        &mut a,
        &[job_start(
            0,
            &[stage_info(0, 0, 1, false, false)],
            &connect_tags("", &["nb_cell_Tag_x"]),
        )],
    );
    let c = a
        .job(0)
        .and_then(|j| j.connect.clone())
        .expect("attributed");
    assert_eq!(
        (
            c.user_id.as_str(),
            c.session_id.as_str(),
            c.operation_id.as_str()
        ),
        ("", SID, OID)
    );
    assert_eq!(c.tags, vec!["nb_cell_Tag_x".to_owned()]);
    // A job without Connect tags is not attributed.
    feed(
        &mut a,
        &[job_start(
            1,
            &[stage_info(1, 0, 1, false, false)],
            "spark-session-x",
        )],
    );
    assert!(a.job(1).is_some_and(|j| j.connect.is_none()));
}

/// The agent was away when the operation started: it learns of it from a later event (here
/// its end), without the client tags Started carries. Its jobs' tags name the cell, and so
/// does the operation from then on.
#[test]
fn an_operation_whose_start_was_missed_takes_its_cell_from_its_jobs() {
    let mut a = app();
    let user = "alice";
    feed(
        &mut a,
        &[
            json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectOperationReadyForExecution",
               "jobTag": op_tag(user), "operationId": OID, "eventTime": 7, "extraTags": {}}),
            job_start(
                0,
                &[stage_info(0, 0, 1, false, false)],
                &connect_tags(user, &["cell-1"]),
            ),
        ],
    );
    let c = a
        .job(0)
        .and_then(|j| j.connect.clone())
        .expect("attributed");
    assert_eq!((c.session_id.as_str(), c.operation_id.as_str()), (SID, OID));
    assert_eq!(c.tags, vec!["cell-1".to_owned()]);
    assert_eq!(
        a.operation(OID).expect("op").tags,
        vec!["cell-1".to_owned()]
    );
}

#[test]
fn coalesced_progress_counts_like_task_events() {
    let mut a = app();
    feed(
        &mut a,
        &[
            hello(),
            job_start(0, &[stage_info(0, 0, 10, false, false)], ""),
            // Progress can overtake the stage's submit line; it is held until the stage is live.
            progress(0, 4, 0, 0, 0),
            stage_submitted(stage_info(0, 0, 10, true, false)),
        ],
    );
    assert_eq!(a.job(0).map(|j| j.active_tasks), Some(4));
    feed(
        &mut a,
        &[
            progress(0, 10, 6, 1, 0),
            progress(0, 10, 6, 1, 0), // a repeated line changes nothing
            // A failed task end comes whole for its error; it must not count twice.
            task_end(0, 0, "ExceptionFailure"),
            progress(0, 10, 8, 1, 1),
            stage_completed(stage_info(0, 0, 10, true, true), None),
            job_end(0, true),
        ],
    );
    let j = a.job(0).expect("job");
    assert_eq!(
        (
            j.completed_tasks,
            j.failed_tasks,
            j.killed_tasks,
            j.active_tasks
        ),
        (8, 1, 1, 0)
    );
    assert_eq!(a.stage((0, 0)).map(|s| s.metrics.input_bytes), Some(800));
    assert_eq!(a.active_tasks(), 0);
}

#[test]
fn resent_live_state_after_a_reconnect_does_not_double_count() {
    let mut a = app();
    let start = job_start(0, &[stage_info(0, 0, 10, false, false)], "");
    let submit = stage_submitted(stage_info(0, 0, 10, true, false));
    feed(
        &mut a,
        &[
            hello(),
            start.clone(),
            submit.clone(),
            progress(0, 5, 2, 0, 0),
        ],
    );
    // The listener reconnects: hello, the live lines again, then cumulative progress.
    feed(&mut a, &[hello(), start, submit, progress(0, 6, 3, 0, 0)]);
    let j = a.job(0).expect("job");
    assert_eq!(
        (j.completed_tasks, j.active_tasks, j.active_stages),
        (3, 3, 1)
    );
}

#[test]
fn job_retention_follows_sparks_cleanup_rule() {
    let mut a = AppState::new(
        "x",
        Retention {
            jobs: 20,
            ..Retention::default()
        },
    );
    for id in 0..25 {
        feed(
            &mut a,
            &[
                job_start(id, &[stage_info(id, 0, 1, false, false)], ""),
                job_end(id, true),
            ],
        );
    }
    // Past 20, Spark drops max(20/10, n-20) of the oldest finished jobs at once.
    let ids: Vec<i32> = a.jobs().map(|j| j.job_id).collect();
    assert!(ids.len() <= 20, "{ids:?}");
    assert_eq!(ids.last(), Some(&24));
    assert!(!ids.contains(&0));
}

#[test]
fn age_retention_keeps_running_jobs() {
    let mut a = AppState::new("x", Retention::default());
    feed(
        &mut a,
        &[
            job_start(0, &[stage_info(0, 0, 1, false, false)], ""),
            job_end(0, true),
            job_start(1, &[stage_info(1, 0, 1, false, false)], ""),
        ],
    );
    a.prune_ended_before(1_000_000 - 1000);
    assert!(a.job(0).is_none());
    assert!(a.job(1).is_some());
}

#[test]
fn live_state_past_its_bounds_evicts_the_oldest_and_counts_it() {
    use sparkscope::model::retention::{LiveBound, LiveLimits};
    let limits = LiveLimits {
        running_jobs: 2,
        live_stages: 3,
        open_sessions: 1,
        unclosed_operations: 2,
        executors: 1,
        log_lines: 100,
        sql_executions: 10,
        plan_nodes: 10,
    };
    let mut a = AppState::new(
        "local-1",
        Retention {
            live: limits,
            ..Retention::default()
        },
    );
    let mut lines = Vec::new();
    for id in 0..3 {
        lines.push(job_start(id, &[stage_info(id, 0, 2, false, false)], ""));
    }
    for (i, e) in ["a", "b"].iter().enumerate() {
        lines.push(
            json!({"Event": "SparkListenerExecutorAdded", "Timestamp": i, "Executor ID": e,
            "Executor Info": {"Host": "h", "Total Cores": 2}}),
        );
    }
    for i in 0..2 {
        lines.push(json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectSessionStarted",
            "sessionId": format!("s{i}"), "userId": "u", "eventTime": 10 + i}));
    }
    for i in 0..3 {
        let op = format!("95b7284b-ed00-4470-91a8-2e06100c9f0{i}");
        lines.push(json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted",
            "jobTag": format!("SparkConnect_OperationTag_User_u_Session_{SID}_Operation_{op}"),
            "operationId": op, "eventTime": 20 + i, "sessionId": SID, "userId": "u",
            "statementText": "", "sparkSessionTags": []}));
    }
    feed(&mut a, &lines);
    assert_eq!(a.job(0).map(|j| j.status), Some(JobStatus::Unknown));
    assert_eq!(a.running_jobs(), 2);
    assert_eq!(
        a.executors().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(a.active_sessions(), 1);
    assert_eq!(a.running_operations(), 2);
    assert!(
        a.stages()
            .filter(|s| s.status == StageStatus::Pending)
            .count()
            <= 3
    );
    let ev = a.take_evictions();
    assert_eq!(ev.of(LiveBound::RunningJobs), 1);
    assert_eq!(ev.of(LiveBound::Executors), 1);
    // Two sessions named, plus the operations' own session: two evicted past a bound of one.
    assert_eq!(ev.of(LiveBound::OpenSessions), 2);
    assert_eq!(ev.of(LiveBound::UnclosedOperations), 1);
    assert_eq!(a.take_evictions().0, [0; 10], "taken once");
    assert_eq!(a.broken_invariants(), Vec::<String>::new());
}

#[test]
fn a_snapshot_after_an_agent_restart_restores_stages_that_completed_meanwhile() {
    // The issue as seen: the first stage was resent as pending and then counted as skipped.
    let mut a = app();
    feed(&mut a, &[hello()]);
    feed(&mut a, &snapshot(two_stage_job_half_done()));
    let j = a.job(0).expect("job restored");
    assert_eq!(j.status, JobStatus::Running);
    assert_eq!(
        (j.completed_tasks, j.active_tasks, j.skipped_tasks),
        (10, 2, 0)
    );
    assert_eq!((j.num_completed_stages(), j.active_stages), (1, 1));
    assert!(j.connect.is_some(), "attributed from its tags");
    feed(&mut a, &finish_second_stage());
    let j = a.job(0).expect("job");
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(
        (j.completed_tasks, j.skipped_tasks, j.active_tasks),
        (24, 0, 0)
    );
    assert_eq!((j.num_completed_stages(), j.num_skipped_stages()), (2, 0));
    assert_eq!(a.stats().resyncs, 1);
    assert!(a.notices().any(|n| n.message.contains("restored")));
    assert_eq!(a.broken_invariants(), Vec::<String>::new());
}

#[test]
fn a_snapshot_after_a_listener_reconnect_counts_nothing_twice() {
    let mut a = app();
    feed(&mut a, &[hello()]);
    feed(&mut a, &two_stage_job_half_done());
    let jobs_started = a.job_counters().jobs_started;
    let tasks_succeeded = a.job_counters().tasks_succeeded;
    // The same job resent, with the second stage further on.
    let mut resent = two_stage_job_half_done();
    resent.push(progress(1, 6, 4, 0, 0));
    feed(&mut a, &snapshot(resent));
    let j = a.job(0).expect("job");
    assert_eq!((j.completed_tasks, j.active_tasks), (12, 2));
    assert_eq!(a.job_counters().jobs_started, jobs_started);
    assert_eq!(a.job_counters().tasks_succeeded, tasks_succeeded + 2);
    // Later progress counts from the snapshot's baseline.
    feed(&mut a, &finish_second_stage());
    let j = a.job(0).expect("job");
    assert_eq!((j.completed_tasks, j.num_completed_stages()), (24, 2));
    assert_eq!(a.job_counters().tasks_succeeded, 24);
}

#[test]
fn what_ended_unseen_is_unknown_until_spark_says_how() {
    use sparkscope::spark_api::{JobData, SparkDate};
    let mut a = app();
    feed(&mut a, &[hello()]);
    feed(&mut a, &two_stage_job_half_done());
    // Job 0 ended while the listener was away; job 1 is new.
    feed(
        &mut a,
        &snapshot(vec![job_start(1, &[stage_info(5, 0, 3, false, false)], "")]),
    );
    assert_eq!(a.job(0).map(|j| j.status), Some(JobStatus::Unknown));
    assert!(a.reconcile_wanted());
    let spark = |id: i32, status: JobStatus, tags: Vec<String>| JobData {
        job_id: id,
        name: "collect".into(),
        description: None,
        submission_time: Some(SparkDate(1000)),
        completion_time: Some(SparkDate(3000)),
        stage_ids: vec![0, 1],
        job_group: None,
        job_tags: tags,
        status,
        num_tasks: 24,
        num_active_tasks: 0,
        num_completed_tasks: 24,
        num_skipped_tasks: 0,
        num_failed_tasks: 0,
        num_killed_tasks: 0,
        num_active_stages: 0,
        num_completed_stages: 2,
        num_skipped_stages: 0,
        num_failed_stages: 0,
    };
    let missed_tags: Vec<String> = connect_tags("bob", &["cell-9"])
        .split(',')
        .map(str::to_owned)
        .collect();
    let done = a.reconcile(
        9_000,
        vec![
            spark(0, JobStatus::Succeeded, Vec::new()),
            spark(1, JobStatus::Running, Vec::new()),
            spark(7, JobStatus::Failed, missed_tags),
        ],
        a.generation(),
    );
    assert_eq!((done.filled, done.ended, done.corrected), (1, 1, 0));
    let j = a.job(0).expect("job 0");
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!((j.completed_tasks, j.num_completed_stages()), (24, 2));
    assert!(a
        .stages()
        .all(|s| s.status != StageStatus::Active || s.job_ids == [1]));
    let missed = a.job(7).expect("the missed job is filled in");
    assert_eq!(missed.status, JobStatus::Failed);
    let c = missed.connect.as_ref().expect("attributed from its tags");
    assert_eq!(
        (c.user_id.as_str(), c.tags.clone()),
        ("bob", vec!["cell-9".to_owned()])
    );
    assert_eq!(a.job(1).map(|j| j.status), Some(JobStatus::Running));
    assert!(!a.reconcile_wanted());
    assert!(a
        .notices()
        .any(|n| n.message.contains("1 job(s) filled in")));
    // Asking again changes nothing.
    let again = a.reconcile(
        9_500,
        vec![spark(0, JobStatus::Succeeded, Vec::new())],
        a.generation(),
    );
    assert_eq!(again.total(), 0);
}

#[test]
fn a_snapshot_cut_off_changes_nothing() {
    let mut a = app();
    feed(&mut a, &[hello()]);
    feed(&mut a, &two_stage_job_half_done());
    let mut cut = snapshot(vec![]);
    cut.pop();
    feed(&mut a, &cut);
    a.listener_disconnected(10, false, 0);
    feed(
        &mut a,
        &[json!({"Event": "SparkscopeSnapshotEnd", "time": 51})],
    );
    assert_eq!(a.job(0).map(|j| j.status), Some(JobStatus::Running));
    assert_eq!(a.stats().resyncs, 0);
}

#[test]
fn drops_reported_by_the_listener_or_sparks_bus_ask_for_reconciliation() {
    let mut a = app();
    let stats = |dropped: u64, bus: u64| {
        json!({"Event": "SparkscopeListenerStats", "time": 5, "dropped": dropped,
               "busDropped": {"shared": bus, "appStatus": 0}})
    };
    feed(&mut a, &[stats(0, 0)]);
    assert!(!a.reconcile_wanted());
    feed(&mut a, &[stats(0, 3)]);
    assert!(a.reconcile_wanted());
    assert_eq!(a.stats().bus_dropped, 3);
    assert!(a.notices().any(|n| n.message.contains("dropped 3")));
}

#[test]
fn jobs_that_ran_through_a_gap_are_asked_about_until_spark_reports_them_ended() {
    use sparkscope::spark_api::{JobData, SparkDate};
    let mut a = app();
    feed(&mut a, &[hello()]);
    feed(&mut a, &two_stage_job_half_done());
    let drop = json!({"Event": "SparkscopeListenerStats", "time": 1_000, "dropped": 0,
                      "busDropped": {"shared": 7}});
    feed(&mut a, &[drop]);
    assert!(
        !a.reconcile_due(1_200, 500, 2_000),
        "Spark's store gets its moment"
    );
    assert!(a.reconcile_due(1_500, 500, 2_000));
    let spark = |status: JobStatus, completed: i32| JobData {
        job_id: 0,
        name: "collect".into(),
        description: None,
        submission_time: Some(SparkDate(1000)),
        completion_time: (status != JobStatus::Running).then_some(SparkDate(3000)),
        stage_ids: vec![0, 1],
        job_group: None,
        job_tags: Vec::new(),
        status,
        num_tasks: 24,
        num_active_tasks: 0,
        num_completed_tasks: completed,
        num_skipped_tasks: 0,
        num_failed_tasks: 0,
        num_killed_tasks: 0,
        num_active_stages: 0,
        num_completed_stages: 2,
        num_skipped_stages: 0,
        num_failed_stages: 0,
    };
    // Still running in Spark: nothing to correct yet, but the job stays suspect.
    assert_eq!(
        a.reconcile(1_500, vec![spark(JobStatus::Running, 12)], a.generation())
            .total(),
        0
    );
    assert!(!a.reconcile_due(2_000, 500, 2_000));
    // The listener's end arrives, with the counts the drops left it.
    feed(&mut a, &finish_second_stage());
    assert!(
        a.reconcile_due(3_500, 500, 2_000),
        "asked again while it is suspect"
    );
    let done = a.reconcile(3_500, vec![spark(JobStatus::Succeeded, 30)], a.generation());
    assert_eq!(done.corrected, 1);
    assert_eq!(a.job(0).map(|j| j.completed_tasks), Some(30));
    assert!(
        !a.reconcile_due(10_000, 500, 2_000),
        "nothing left to ask about"
    );
}

#[test]
fn a_classic_session_is_its_application_and_job_tags_are_its_cells() {
    use sparkscope::model::event::ListenerInfo;
    let hello = |classic_session| ListenerInfo {
        app_id: "local-1".into(),
        spark_user: "ana".into(),
        classic_session,
        ..ListenerInfo::default()
    };
    let mut classic = app();
    classic.listener_connected(1, hello(true), [127, 0, 0, 1].into());
    // followable before its first job
    assert!(classic.knows_session("local-1", "ana"));
    assert!(!classic.knows_session("local-1", "bob"));
    feed(
        &mut classic,
        &[job_start(
            0,
            &[stage_info(0, 0, 2, false, false)],
            "sparkscope-cell-b,sparkscope-cell-a",
        )],
    );
    let job = classic.job(0).expect("job 0");
    assert_eq!(
        job.connect,
        Some(ConnectRef {
            user_id: "ana".into(),
            session_id: "local-1".into(),
            operation_id: String::new(),
            tags: vec!["sparkscope-cell-a".into(), "sparkscope-cell-b".into()],
        })
    );
    // what a subscriber following the session gets: the job, and one group per job tag
    let slice = classic.session_slice("local-1", "ana", 0);
    assert_eq!(slice.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(), [0]);
    assert_eq!(slice.stages.len(), 1);
    let groups: Vec<_> = slice
        .tag_groups
        .iter()
        .map(|g| (g.tag, g.job_ids.clone()))
        .collect();
    assert_eq!(
        groups,
        [
            ("sparkscope-cell-a", vec![0]),
            ("sparkscope-cell-b", vec![0])
        ]
    );
    assert!(classic.session_slice("local-1", "bob", 0).jobs.is_empty());

    // the same job on a Connect server (no classic session) belongs to no session
    let mut shared = app();
    shared.listener_connected(1, hello(false), [127, 0, 0, 1].into());
    feed(
        &mut shared,
        &[job_start(
            0,
            &[stage_info(0, 0, 2, false, false)],
            "sparkscope-cell-a",
        )],
    );
    assert_eq!(shared.job(0).expect("job 0").connect, None);
    assert!(!shared.knows_session("local-1", "ana"));
}
