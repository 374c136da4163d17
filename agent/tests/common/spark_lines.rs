//! Spark's own event-log lines (`JsonProtocol`, Spark 4.3) and the listener's `Sparkscope*`
//! lines, built for the model's scenarios.

use serde_json::{json, Value};
use sparkscope::ingest::ingest_line;
use sparkscope::model::{AppState, Retention};

pub const OID: &str = "95b7284b-ed00-4470-91a8-2e06100c9fd1";

pub const SID: &str = "39ed1fc5-ed53-4117-945b-fae9e26c0ce8";

pub fn app() -> AppState {
    AppState::new("local-1", Retention::default())
}

pub fn feed(app: &mut AppState, lines: &[Value]) {
    for l in lines {
        ingest_line(app, l.to_string().as_bytes());
    }
}

pub fn stage_info(id: i32, attempt: i32, tasks: i32, submitted: bool, done: bool) -> Value {
    let mut v = json!({
        "Stage ID": id, "Stage Attempt ID": attempt, "Stage Name": format!("stage {id}"),
        "Number of Tasks": tasks, "RDD Info": [], "Parent IDs": [], "Details": "",
        "Accumulables": [], "Resource Profile Id": 0, "Shuffle Push Enabled": false,
        "Shuffle Push Mergers Count": 0
    });
    if submitted {
        v["Submission Time"] = json!(1000 + id);
    }
    if done {
        v["Completion Time"] = json!(2000 + id);
    }
    v
}

pub fn job_start(id: i32, stages: &[Value], tags: &str) -> Value {
    let ids: Vec<Value> = stages.iter().map(|s| s["Stage ID"].clone()).collect();
    json!({"Event": "SparkListenerJobStart", "Job ID": id, "Submission Time": 1000 + id,
        "Stage Infos": stages, "Stage IDs": ids,
        "Properties": {"spark.job.tags": tags, "spark.job.description": "d",
                       "spark.sql.execution.id": "7", "spark.app.name": "ignored"}})
}

pub fn job_end(id: i32, ok: bool) -> Value {
    let result = if ok {
        json!({"Result": "JobSucceeded"})
    } else {
        json!({"Result": "JobFailed", "Exception": {"Message": "boom", "Stack Trace": []}})
    };
    json!({"Event": "SparkListenerJobEnd", "Job ID": id, "Completion Time": 3000 + id, "Job Result": result})
}

pub fn stage_submitted(info: Value) -> Value {
    json!({"Event": "SparkListenerStageSubmitted", "Stage Info": info, "Properties": {}})
}

pub fn stage_completed(mut info: Value, failure: Option<&str>) -> Value {
    if let Some(f) = failure {
        info["Failure Reason"] = json!(f);
    }
    json!({"Event": "SparkListenerStageCompleted", "Stage Info": info})
}

pub fn task_start(stage: i32, attempt: i32, index: i32) -> Value {
    json!({"Event": "SparkListenerTaskStart", "Stage ID": stage, "Stage Attempt ID": attempt,
        "Task Info": {"Task ID": index, "Index": index, "Attempt": 0, "Launch Time": 1,
                      "Executor ID": "driver", "Host": "localhost", "Locality": "PROCESS_LOCAL",
                      "Speculative": false, "Getting Result Time": 0, "Finish Time": 0,
                      "Failed": false, "Killed": false, "Accumulables": []}})
}

pub fn task_end(stage: i32, attempt: i32, reason: &str) -> Value {
    let reason = match reason {
        "Success" => json!({"Reason": "Success"}),
        "TaskKilled" => json!({"Reason": "TaskKilled", "Kill Reason": "stage cancelled",
                               "Accumulator Updates": []}),
        "FetchFailed" => json!({"Reason": "FetchFailed", "Block Manager Address": null,
                                "Shuffle ID": 0, "Map ID": 0, "Map Index": 0, "Reduce ID": 0,
                                "Message": "fetch failed"}),
        other => json!({"Reason": other, "Class Name": "java.lang.RuntimeException",
                        "Description": "bad", "Stack Trace": [], "Full Stack Trace": "",
                        "Accumulator Updates": []}),
    };
    json!({"Event": "SparkListenerTaskEnd", "Stage ID": stage, "Stage Attempt ID": attempt,
        "Task Type": "ResultTask", "Task End Reason": reason,
        "Task Info": {"Task ID": 1, "Index": 0, "Attempt": 0},
        "Task Executor Metrics": {"JVMHeapMemory": 0},
        "Task Metrics": {"Executor Run Time": 10, "Executor CPU Time": 5000,
            "Input Metrics": {"Bytes Read": 100, "Records Read": 1},
            "Output Metrics": {"Bytes Written": 0, "Records Written": 0},
            "Shuffle Read Metrics": {"Remote Bytes Read": 1, "Local Bytes Read": 2},
            "Shuffle Write Metrics": {"Shuffle Bytes Written": 30, "Shuffle Write Time": 1,
                                      "Shuffle Records Written": 1},
            "Updated Blocks": []}})
}

pub fn run_tasks(stage: i32, attempt: i32, reasons: &[&str]) -> Vec<Value> {
    let mut v: Vec<Value> = (0..reasons.len())
        .map(|i| task_start(stage, attempt, i as i32))
        .collect();
    v.extend(reasons.iter().map(|r| task_end(stage, attempt, r)));
    v
}

pub fn op_tag(user: &str) -> String {
    format!("SparkConnect_OperationTag_User_{user}_Session_{SID}_Operation_{OID}")
}

pub fn connect_tags(user: &str, client: &[&str]) -> String {
    let mut tags = vec![op_tag(user), format!("spark-session-{SID}")];
    tags.extend(
        client
            .iter()
            .map(|t| format!("SparkConnect_SessionTag_User_{user}_Session_{SID}_Tag_{t}")),
    );
    tags.join(",")
}

pub fn hello() -> Value {
    json!({"Event": "SparkscopeHello", "protocol": 1, "appId": "local-1", "appName": "n",
           "sparkVersion": "4.3.0", "listenerVersion": "0.1.0", "token": "t",
           "startTime": 1, "sparkUser": "u", "taskEvents": "coalesced"})
}

pub fn progress(stage: i32, started: i64, ok: i64, failed: i64, killed: i64) -> Value {
    json!({"Event": "SparkscopeStageProgress", "time": 1, "stageId": stage, "stageAttemptId": 0,
           "started": started, "succeeded": ok, "failed": failed, "killed": killed,
           "executorRunTime": 10 * ok, "inputBytes": 100 * ok})
}

pub fn snapshot(lines: Vec<Value>) -> Vec<Value> {
    let mut v = vec![json!({"Event": "SparkscopeSnapshotStart", "time": 50})];
    v.extend(lines);
    v.push(json!({"Event": "SparkscopeSnapshotEnd", "time": 51}));
    v
}

/// Two stages of 8 and 16 tasks; the first completed while the agent was away.
pub fn two_stage_job_half_done() -> Vec<Value> {
    vec![
        job_start(
            0,
            &[
                stage_info(0, 0, 8, false, false),
                stage_info(1, 0, 16, false, false),
            ],
            &connect_tags("alice", &["cell-1"]),
        ),
        stage_submitted(stage_info(0, 0, 8, true, false)),
        progress(0, 8, 8, 0, 0),
        stage_completed(stage_info(0, 0, 8, true, true), None),
        stage_submitted(stage_info(1, 0, 16, true, false)),
        progress(1, 4, 2, 0, 0),
    ]
}

pub fn finish_second_stage() -> Vec<Value> {
    vec![
        progress(1, 16, 16, 0, 0),
        stage_completed(stage_info(1, 0, 16, true, true), None),
        job_end(0, true),
    ]
}
