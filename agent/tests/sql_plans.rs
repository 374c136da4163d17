//! SQL executions' plans and operator metrics: attributed to the session whose operation ran
//! them (by its job tags, never by timing), sent as deltas (a plan once, values as they change),
//! kept across a listener's reconnect, and bounded.

use serde_json::{json, Value};
use sparkscope::model::{AppState, Retention};

mod common;
use common::spark_lines::*;

const OTHER_SID: &str = "11111111-2222-4333-8444-555555555555";

fn operation_started(user: &str) -> Value {
    json!({"Event": "org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted",
           "jobTag": op_tag(user), "operationId": OID, "eventTime": 1, "sessionId": SID,
           "userId": user, "userName": "", "statementText": "count", "sparkSessionTags": ["cell-1"],
           "extraTags": {}})
}

fn plan(join: &str) -> Value {
    json!({"nodeName": join, "simpleString": join, "metrics": [
              {"name": "number of output rows", "accumulatorId": 10, "metricType": "sum"}],
           "children": [
              {"nodeName": "Scan", "simpleString": "Scan range", "metrics": [
                  {"name": "number of output rows", "accumulatorId": 11, "metricType": "sum"}],
               "children": []}]})
}

fn sql_start(user: &str) -> Value {
    json!({"Event": "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart",
           "executionId": 7, "rootExecutionId": 7, "description": "count at cell", "time": 100,
           "jobTags": connect_tags(user, &["cell-1"]).split(',').collect::<Vec<_>>(),
           "sparkPlanInfo": plan("SortMergeJoin")})
}

fn metrics(values: &[(i64, i64)]) -> Value {
    json!({"Event": "SparkscopeSqlMetrics", "time": 5, "executionId": 7,
           "values": values.iter().map(|(a, v)| json!([a, v])).collect::<Vec<_>>()})
}

fn ivy_runs_a_join() -> AppState {
    let mut a = app();
    feed(
        &mut a,
        &[
            hello(),
            operation_started("ivy"),
            sql_start("ivy"),
            job_start(
                0,
                &[stage_info(0, 0, 2, false, false)],
                &connect_tags("ivy", &["cell-1"]),
            ),
            metrics(&[(10, 5), (11, 100), (99, 1)]),
        ],
    );
    a
}

#[test]
fn the_operations_session_gets_its_plan_and_metrics_and_nobody_else() {
    let a = ivy_runs_a_join();
    let slice = a.session_slice(SID, "ivy", 0);
    assert_eq!(slice.sql_executions.len(), 1);
    let (op, e) = slice.sql_executions[0];
    assert_eq!(op, OID);
    assert_eq!(e.description, "count at cell");
    assert_eq!(e.job_ids, [0]);
    let names: Vec<&str> = e.plan.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["SortMergeJoin", "Scan"]);
    assert_eq!(e.values.get(&11).map(|v| v.0), Some(100));
    assert!(!e.values.contains_key(&99), "not an operator of the plan");
    assert!(a.session_slice(SID, "zed", 0).sql_executions.is_empty());
    assert!(a
        .session_slice(OTHER_SID, "ivy", 0)
        .sql_executions
        .is_empty());
}

#[test]
fn deltas_carry_the_plan_once_and_only_changed_values() {
    let mut a = ivy_runs_a_join();
    let seen = a.generation();
    feed(&mut a, &[metrics(&[(10, 5), (11, 250)])]);
    let slice = a.session_slice(SID, "ivy", seen);
    let (op, e) = slice.sql_executions[0];
    let pb = sparkscope::publish::proto::sql_execution("local-1", op, e, seen);
    assert!(pb.nodes.is_empty(), "the plan did not change");
    let values: Vec<(i64, i64)> = pb
        .metric_values
        .iter()
        .map(|v| (v.accumulator_id, v.value))
        .collect();
    assert_eq!(values, [(11, 250)]);

    // An adaptive re-plan: the new plan goes out once, with the next version.
    let seen = a.generation();
    feed(
        &mut a,
        &[
            json!({"Event": "org.apache.spark.sql.execution.ui.SparkListenerSQLAdaptiveExecutionUpdate",
                 "executionId": 7, "sparkPlanInfo": plan("BroadcastHashJoin")}),
        ],
    );
    let slice = a.session_slice(SID, "ivy", seen);
    let (op, e) = slice.sql_executions[0];
    let pb = sparkscope::publish::proto::sql_execution("local-1", op, e, seen);
    assert_eq!(pb.plan_version, 1);
    assert_eq!(pb.nodes[0].name, "BroadcastHashJoin");
    assert!(pb.metric_values.is_empty());
    // A snapshot (since 0) has everything.
    let pb = sparkscope::publish::proto::sql_execution("local-1", op, e, 0);
    assert_eq!((pb.nodes.len(), pb.metric_values.len()), (2, 2));
}

#[test]
fn a_reconnect_keeps_the_values_and_ends_what_it_did_not_resend() {
    let mut a = ivy_runs_a_join();
    feed(
        &mut a,
        &snapshot(vec![operation_started("ivy"), sql_start("ivy")]),
    );
    let e = a.sql_executions().get(7).expect("kept");
    assert_eq!(e.values.get(&11).map(|v| v.0), Some(100));
    assert_eq!(e.end_ms, None, "resent: still running");
    assert_eq!(a.session_slice(SID, "ivy", 0).sql_executions.len(), 1);
    feed(&mut a, &snapshot(vec![]));
    let e = a.sql_executions().get(7).expect("kept");
    assert_eq!(
        e.end_ms,
        Some(100),
        "not resent: it ended while nobody listened"
    );
}

#[test]
fn executions_and_plan_nodes_are_bounded_and_counted() {
    use sparkscope::model::retention::{LiveBound, LiveLimits};
    let mut a = AppState::new(
        "local-1",
        Retention {
            live: LiveLimits {
                sql_executions: 2,
                plan_nodes: 1,
                ..LiveLimits::default()
            },
            ..Retention::default()
        },
    );
    for id in 0..3 {
        let mut start = sql_start("ivy");
        start["executionId"] = json!(id);
        feed(&mut a, &[start]);
    }
    assert_eq!(a.sql_executions().len(), 2);
    let e = a.sql_executions().get(2).expect("the newest stays");
    assert_eq!((e.plan.nodes.len(), e.plan.nodes_dropped), (1, 1));
    let ev = a.take_evictions();
    assert_eq!(ev.of(LiveBound::SqlExecutions), 1);
    assert_eq!(ev.of(LiveBound::PlanNodes), 3);
}
