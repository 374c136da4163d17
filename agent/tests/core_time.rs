//! Task time per user (chargeback): every ended task's run time counts once, for the user whose
//! session's job ran it, also across a listener's reconnect; jobs of no session are
//! `unattributed`.

use serde_json::json;
use sparkscope::model::jobs::UNATTRIBUTED;

mod common;
use common::spark_lines::*;

#[test]
fn task_time_adds_up_per_user_and_a_snapshot_does_not_count_it_twice() {
    let mut a = app();
    let ivy_job = job_start(
        0,
        &[stage_info(0, 0, 40, false, false)],
        &connect_tags("ivy", &["cell-1"]),
    );
    let nobodys = job_start(1, &[stage_info(1, 0, 40, false, false)], "");
    feed(
        &mut a,
        &[
            hello(),
            ivy_job.clone(),
            stage_submitted(stage_info(0, 0, 40, true, false)),
            nobodys,
            stage_submitted(stage_info(1, 0, 40, true, false)),
            progress(0, 10, 5, 0, 0),  // 50 ms
            progress(0, 20, 12, 0, 0), // 120 ms
            json!({"Event": "SparkscopeStageProgress", "time": 1, "stageId": 1,
                   "stageAttemptId": 0, "started": 3, "succeeded": 3, "failed": 0,
                   "killed": 0, "executorRunTime": 7}),
        ],
    );
    let by_user = |a: &sparkscope::model::AppState| a.job_counters().run_time_ms_by_user.clone();
    assert_eq!(by_user(&a).get("ivy"), Some(&120));
    assert_eq!(by_user(&a).get(UNATTRIBUTED), Some(&7));
    // both stages are under way (ivy's with 8 tasks running): two sessions compete, the
    // unattributed work counting as one
    assert_eq!(a.busy_sessions(), 2);
    feed(
        &mut a,
        &[stage_completed(stage_info(1, 0, 40, true, true), None)],
    );
    assert_eq!(a.busy_sessions(), 1, "a completed stage competes no more");

    // the listener reconnects: its snapshot resends the stage with its cumulative counters,
    // then a later line adds 30 ms
    feed(
        &mut a,
        &snapshot(vec![
            ivy_job,
            stage_submitted(stage_info(0, 0, 40, true, false)),
            progress(0, 20, 12, 0, 0),
        ]),
    );
    assert_eq!(
        by_user(&a).get("ivy"),
        Some(&120),
        "resent, not counted again"
    );
    feed(&mut a, &[progress(0, 20, 15, 0, 0)]);
    assert_eq!(by_user(&a).get("ivy"), Some(&150));
}
