//! What the model holds right after a fault, in every mode: a classic session through a
//! resync, Spark's REST API unreachable, jobs retired here but still in Spark, a job whose end
//! Spark's bus dropped, a vanished driver, a half-open connection that dies late, a restarted
//! agent meeting a listener's drop history.

use serde_json::{json, Value};
use sparkscope::model::app::NoticeKind;
use sparkscope::model::event::ListenerInfo;
use sparkscope::model::jobs::{JobStatus, StageStatus};
use sparkscope::model::{AppState, Retention};
use sparkscope::spark_api::{JobData, SparkDate};

mod common;
use common::spark_lines::*;

const LOOPBACK: [u8; 4] = [127, 0, 0, 1];

fn info(classic_session: bool) -> ListenerInfo {
    ListenerInfo {
        app_id: "local-1".into(),
        spark_user: "ana".into(),
        classic_session,
        coalesced_tasks: true,
        ..ListenerInfo::default()
    }
}

fn spark_job(id: i32, status: JobStatus, completed: i32, tags: Vec<String>) -> JobData {
    JobData {
        job_id: id,
        name: "n".into(),
        description: None,
        submission_time: Some(SparkDate(1_000)),
        completion_time: (status != JobStatus::Running).then_some(SparkDate(3_000)),
        stage_ids: vec![id * 10],
        job_group: None,
        job_tags: tags,
        status,
        num_tasks: completed,
        num_active_tasks: 0,
        num_completed_tasks: completed,
        num_skipped_tasks: 0,
        num_failed_tasks: 0,
        num_killed_tasks: 0,
        num_active_stages: 0,
        num_completed_stages: 1,
        num_skipped_stages: 0,
        num_failed_stages: 0,
    }
}

fn one_stage_job(id: i32, tags: &str) -> Vec<Value> {
    vec![
        job_start(id, &[stage_info(id * 10, 0, 4, false, false)], tags),
        stage_submitted(stage_info(id * 10, 0, 4, true, false)),
        progress(id * 10, 2, 1, 0, 0),
    ]
}

fn notices_of(a: &AppState, kind: NoticeKind) -> usize {
    a.notices().filter(|n| n.kind == kind).count()
}

#[test]
fn a_classic_session_keeps_its_session_and_its_jobs_through_snapshots() {
    let mut a = app();
    let first = a.listener_connected(1, info(true), LOOPBACK.into());
    // the first connection's snapshot: idle
    feed(&mut a, &snapshot(vec![]));
    assert!(a
        .session_of("local-1", "ana")
        .is_some_and(|s| s.end_time.is_none()));
    feed(&mut a, &one_stage_job(0, "sparkscope-cell-a"));
    let attributed = a
        .job(0)
        .and_then(|j| j.connect.clone())
        .expect("attributed");
    // the listener reconnects mid-job and resends it
    a.listener_disconnected(2, false, first);
    a.listener_connected(3, info(true), LOOPBACK.into());
    feed(&mut a, &snapshot(one_stage_job(0, "sparkscope-cell-a")));
    let s = a.session_of("local-1", "ana").expect("the session");
    assert_eq!(s.end_time, None, "the hello's session stays open");
    let j = a.job(0).expect("job");
    assert_eq!(j.status, JobStatus::Running);
    assert_eq!(
        j.connect.as_ref(),
        Some(&attributed),
        "attributed as before"
    );
    let slice = a.session_slice("local-1", "ana", 0);
    assert_eq!(slice.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(), [0]);
    assert_eq!(a.broken_invariants(), Vec::<String>::new());
}

#[test]
fn spark_unreachable_backs_off_with_one_notice_and_ends_stages_as_unknown() {
    let mut a = app();
    let c = a.listener_connected(1, info(false), LOOPBACK.into());
    feed(&mut a, &one_stage_job(0, &connect_tags("ana", &["cell-1"])));
    a.listener_disconnected(2, false, c);
    // the job ended while the agent was away: the next snapshot lacks it
    a.listener_connected(10_000, info(false), LOOPBACK.into());
    feed(&mut a, &snapshot(vec![]));
    let j = a.job(0).expect("job");
    assert_eq!(j.status, JobStatus::Unknown);
    assert_eq!((j.active_tasks, j.active_stages), (0, 0));
    assert_eq!(j.completion_time, Some(51), "ended at the snapshot");
    let st = a.stage((0, 0)).expect("its stage");
    assert_eq!((st.status, st.active_tasks), (StageStatus::Unknown, 0));
    assert_eq!(a.running_jobs() + a.active_stages(), 0);
    // Spark's REST API fails again and again: tries back off, one notice in all
    let mut now = 10_000;
    let mut tries = 0;
    while now < 10_000 + 60_000 {
        if a.reconcile_due(now, 500, 2_000) {
            tries += 1;
            a.reconcile_failed(now, "connection refused", 2_000, 30_000);
        }
        now += 100;
    }
    assert!((4..=6).contains(&tries), "{tries} tries in a minute");
    assert_eq!(notices_of(&a, NoticeKind::Unreconciled), 1);
    assert!(a.reconcile_wanted(), "still wanted, for when Spark answers");
    // Spark answers: the unknown end becomes Spark's, counted once
    assert!(a.reconcile_due(now + 30_000, 500, 2_000));
    let done = a.reconcile(
        now,
        vec![spark_job(0, JobStatus::Succeeded, 4, vec![])],
        a.generation(),
    );
    assert_eq!(done.ended, 1);
    assert_eq!(a.job(0).map(|j| j.status), Some(JobStatus::Succeeded));
    assert_eq!(
        a.stage((0, 0)).map(|s| s.status),
        Some(StageStatus::Complete)
    );
    assert_eq!(a.job_counters().jobs_succeeded, 1);
    // the next outage gives its own notice
    a.listener_connected(now, info(false), LOOPBACK.into());
    feed(
        &mut a,
        &[json!({"Event": "SparkscopeListenerStats", "time": 1, "sent": 1, "dropped": 0})],
    );
    feed(
        &mut a,
        &[json!({"Event": "SparkscopeListenerStats", "time": 2, "sent": 2, "dropped": 3})],
    );
    assert!(a.reconcile_due(now + 1_000, 500, 2_000));
    a.reconcile_failed(now + 1_000, "connection refused", 2_000, 30_000);
    assert_eq!(notices_of(&a, NoticeKind::Unreconciled), 2);
    assert_eq!(a.broken_invariants(), Vec::<String>::new());
}

#[test]
fn retired_jobs_are_not_taken_back_nor_counted_twice() {
    let mut a = AppState::new(
        "local-1",
        Retention {
            jobs: 5,
            ..Retention::default()
        },
    );
    a.listener_connected(1, info(false), LOOPBACK.into());
    for id in 0..20 {
        feed(&mut a, &one_stage_job(id, ""));
        feed(
            &mut a,
            &[
                progress(id * 10, 4, 4, 0, 0),
                stage_completed(stage_info(id * 10, 0, 4, true, true), None),
                job_end(id, true),
            ],
        );
    }
    let c = a.job_counters().clone();
    assert_eq!(
        (c.jobs_started, c.jobs_succeeded, c.tasks_succeeded),
        (20, 20, 80)
    );
    assert!(a.jobs().count() <= 5);
    // Spark retains all twenty; periodic reconciliation, again and again
    let spark: Vec<JobData> = (0..20)
        .map(|id| spark_job(id, JobStatus::Succeeded, 4, vec![]))
        .collect();
    for t in 0..3 {
        let done = a.reconcile(10_000 + t, spark.clone(), a.generation());
        assert_eq!(done.total(), 0, "try {t}: {done:?}");
    }
    let c = a.job_counters();
    assert_eq!(
        (c.jobs_started, c.jobs_succeeded, c.tasks_succeeded),
        (20, 20, 80)
    );
    assert!(a.jobs().count() <= 5);
}

#[test]
fn reconciliation_leaves_alone_what_changed_since_its_fetch() {
    let mut a = app();
    a.listener_connected(1, info(false), LOOPBACK.into());
    feed(&mut a, &one_stage_job(0, ""));
    let fetched_at = a.generation();
    // the listener's end arrives while the request is out
    feed(
        &mut a,
        &[
            progress(0, 4, 4, 0, 0),
            stage_completed(stage_info(0, 0, 4, true, true), None),
            job_end(0, true),
        ],
    );
    // Spark's answer is older: still running with 2 done
    let mut stale = spark_job(0, JobStatus::Running, 2, vec![]);
    stale.num_active_tasks = 2;
    let done = a.reconcile(5_000, vec![stale], fetched_at);
    assert_eq!(done.total(), 0);
    let j = a.job(0).expect("job");
    assert_eq!((j.status, j.completed_tasks), (JobStatus::Succeeded, 4));
}

#[test]
fn a_job_ended_here_stays_ended_when_a_snapshot_resends_it() {
    let mut a = app();
    a.listener_connected(1, info(false), LOOPBACK.into());
    feed(&mut a, &one_stage_job(0, ""));
    feed(&mut a, &[progress(0, 4, 4, 0, 0), job_end(0, true)]);
    let finished = a.job_counters().jobs_succeeded;
    // a listener whose live state kept the job (its end dropped on Spark's bus) resends it
    feed(&mut a, &snapshot(one_stage_job(0, "")));
    assert_eq!(a.job(0).map(|j| j.status), Some(JobStatus::Succeeded));
    assert_eq!(a.job_counters().jobs_started, 1);
    assert_eq!(a.job_counters().jobs_succeeded, finished);
}

#[test]
fn jobs_gone_end_as_unknown_and_spark_gives_their_end_once() {
    let mut a = app();
    a.listener_connected(1, info(false), LOOPBACK.into());
    feed(&mut a, &one_stage_job(0, ""));
    feed(&mut a, &one_stage_job(1, ""));
    feed(
        &mut a,
        &[json!({"Event": "SparkscopeJobsGone", "time": 4_000, "jobIds": [0, 7]})],
    );
    assert_eq!(a.job(0).map(|j| j.status), Some(JobStatus::Unknown));
    assert_eq!(a.job(1).map(|j| j.status), Some(JobStatus::Running));
    assert_eq!(
        a.stage((0, 0)).map(|s| s.status),
        Some(StageStatus::Unknown)
    );
    assert!(a.reconcile_wanted());
    assert_eq!(notices_of(&a, NoticeKind::Dropped), 1);
    let spark = vec![
        spark_job(0, JobStatus::Succeeded, 4, vec![]),
        spark_job(1, JobStatus::Running, 1, vec![]),
    ];
    a.reconcile(5_000, spark.clone(), a.generation());
    a.reconcile(6_000, spark, a.generation());
    assert_eq!(a.job(0).map(|j| j.status), Some(JobStatus::Succeeded));
    assert_eq!(a.job_counters().jobs_succeeded, 1, "counted once");
    assert_eq!(a.running_jobs(), 1);
    // hostile input: too many ids, negative ids
    let many: Vec<i32> = (0..1001).collect();
    let errors = a.stats().parse_errors;
    feed(
        &mut a,
        &[
            json!({"Event": "SparkscopeJobsGone", "time": 1, "jobIds": many}),
            json!({"Event": "SparkscopeJobsGone", "time": 1, "jobIds": [-1]}),
            json!({"Event": "SparkscopeJobsGone", "time": 1, "jobIds": "1"}),
        ],
    );
    assert_eq!(a.stats().parse_errors, errors + 3);
    assert_eq!(a.job(1).map(|j| j.status), Some(JobStatus::Running));
}

#[test]
fn a_job_filled_in_from_spark_reaches_its_cell() {
    let mut a = app();
    a.listener_connected(1, info(false), LOOPBACK.into());
    feed(&mut a, &snapshot(vec![]));
    // the cell's operation ran entirely while the agent was away
    let tags: Vec<String> = connect_tags("ana", &["sparkscope-cell-9"])
        .split(',')
        .map(str::to_owned)
        .collect();
    let done = a.reconcile(
        5_000,
        vec![spark_job(3, JobStatus::Succeeded, 4, tags)],
        a.generation(),
    );
    assert_eq!(done.filled, 1);
    let slice = a.session_slice(SID, "ana", 0);
    assert_eq!(slice.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(), [3]);
    let groups: Vec<_> = slice
        .tag_groups
        .iter()
        .map(|g| (g.tag, g.job_ids.clone()))
        .collect();
    assert_eq!(groups, [("sparkscope-cell-9", vec![3])]);
}

#[test]
fn a_vanished_driver_is_told_and_its_work_ends_after_the_grace() {
    let mut a = app();
    let c = a.listener_connected(1_000, info(false), LOOPBACK.into());
    feed(&mut a, &one_stage_job(0, ""));
    let before = a.record_updated();
    a.listener_disconnected(2_000, false, c);
    assert!(!a.is_live());
    assert!(
        a.record_updated() > before,
        "the disconnect reaches subscribers"
    );
    assert!(!a.end_if_gone(31_000, 30_000), "within the grace");
    assert_eq!(a.running_jobs(), 1);
    assert!(a.end_if_gone(32_000, 30_000));
    assert_eq!(a.running_jobs() + a.active_stages(), 0);
    assert_eq!(a.job(0).map(|j| j.status), Some(JobStatus::Unknown));
    assert_eq!(notices_of(&a, NoticeKind::ListenerGone), 1);
    assert!(!a.end_if_gone(90_000, 30_000), "once");
    // a driver that came back in time is left alone; an application that ended is too
    let mut b = app();
    let c = b.listener_connected(1_000, info(false), LOOPBACK.into());
    feed(&mut b, &one_stage_job(0, ""));
    b.listener_disconnected(2_000, false, c);
    b.listener_connected(3_000, info(false), LOOPBACK.into());
    assert!(!b.end_if_gone(90_000, 30_000));
    assert_eq!(b.running_jobs(), 1);
    let before = b.record_updated();
    feed(
        &mut b,
        &[json!({"Event": "SparkListenerApplicationEnd", "Timestamp": 9_000})],
    );
    assert!(b.record_updated() > before, "the end reaches subscribers");
}

#[test]
fn an_old_connection_dying_late_leaves_the_new_snapshot_alone() {
    let mut a = app();
    let old = a.listener_connected(1, info(false), LOOPBACK.into());
    feed(&mut a, &one_stage_job(0, ""));
    // the driver reconnects before the agent notices the old connection is dead
    a.listener_connected(2, info(false), LOOPBACK.into());
    let mut lines = snapshot(one_stage_job(0, ""));
    let end = lines.pop().expect("end");
    feed(&mut a, &lines);
    a.listener_disconnected(3, false, old);
    feed(&mut a, &[end]);
    assert_eq!(a.stats().resyncs, 1, "the snapshot was merged");
    assert!(a.is_live());
}

#[test]
fn a_ui_address_that_came_after_the_hello_is_taken_at_once_and_only_if_it_is_http() {
    let mut a = app();
    a.listener_connected(1, info(false), LOOPBACK.into());
    assert_eq!(
        a.info().ui_url,
        "",
        "the hello went out before Spark's UI was bound"
    );
    let late = |url: &str| json!({"Event": "SparkscopeUiUrl", "time": 5, "uiUrl": url});
    feed(&mut a, &[late("javascript:alert(1)")]);
    assert_eq!(
        a.info().ui_url,
        "",
        "no link that is no http or https address"
    );
    let before = a.generation();
    // in the middle of a snapshot too: the address is the application's
    let mut lines = snapshot(vec![]);
    lines.insert(1, late("http://driver:4040"));
    feed(&mut a, &lines);
    assert_eq!(a.info().ui_url, "http://driver:4040");
    assert!(a.generation() > before, "subscribers are told");
    feed(&mut a, &[json!({"Event": "SparkscopeUiUrl", "time": 6})]);
    assert_eq!(
        a.stats().parse_errors,
        1,
        "a line without its address is malformed"
    );
    assert_eq!(a.info().ui_url, "http://driver:4040");
}

#[test]
fn a_restarted_agent_does_not_report_the_listeners_drop_history_as_a_new_gap() {
    let mut a = app();
    a.listener_connected(1, info(false), LOOPBACK.into());
    feed(&mut a, &snapshot(vec![]));
    let stats = |t: i64, dropped: u64| json!({"Event": "SparkscopeListenerStats", "time": t, "sent": 10, "dropped": dropped});
    feed(&mut a, &[stats(1, 500)]);
    assert_eq!(notices_of(&a, NoticeKind::Dropped), 0, "history, not news");
    feed(&mut a, &[stats(2, 503)]);
    assert_eq!(notices_of(&a, NoticeKind::Dropped), 1, "new drops are news");
}

#[test]
fn a_failed_stages_root_cause_survives_a_snapshot_without_it() {
    let mut a = app();
    a.listener_connected(1, info(false), LOOPBACK.into());
    feed(&mut a, &one_stage_job(0, ""));
    let mut failed = task_end(0, 0, "ExceptionFailure");
    failed["Task Info"]["Failed"] = json!(true);
    feed(&mut a, &[failed]);
    let cause = a.stage((0, 0)).and_then(|s| s.failure.clone());
    assert!(cause.is_some(), "the first failure is kept");
    feed(&mut a, &snapshot(one_stage_job(0, "")));
    assert_eq!(a.stage((0, 0)).and_then(|s| s.failure.clone()), cause);
}
