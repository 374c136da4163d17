//! Spark's event-log JSON (`JsonProtocol`, 3.5 and 4.x) read into the model's events: what Spark
//! writes to its event logs, and what the listener forwards as Spark would log it. Connect and SQL
//! events use their Scala field names.
//!
//! The parser is tolerant: unknown events and unknown fields are skipped, and a line that is not
//! valid JSON, or lacks a field the event needs, is an error the caller counts and skips.

use super::ParseError;
use crate::model::event::{
    ApplicationStart, Event, ExecutorMetrics, JobEnd, JobStart, MemoryPeaks, OpTransition,
    OperationStarted, Plan, PlanMetric, PlanNode, SqlExecutionStart, StageInfo, TaskEnd,
    TaskFailure, TaskMetricSums, TaskOutcome,
};
use crate::model::truncate_utf8;
use serde::Deserialize;
use std::collections::HashMap;

const SQL: &str = "org.apache.spark.sql.execution.ui.";
const CONNECT: &str = "org.apache.spark.sql.connect.service.SparkListenerConnect";

/// The `Event` value. Spark writes it first, so the fast path reads it without parsing the line;
/// anything else goes through a full parse that ignores the other fields.
pub fn event_name(line: &[u8]) -> Result<std::borrow::Cow<'_, str>, ParseError> {
    const PREFIX: &[u8] = b"{\"Event\":\"";
    let trimmed = line.trim_ascii_start();
    if let Some(rest) = trimmed.strip_prefix(PREFIX) {
        if let Some(end) = rest.iter().position(|&b| b == b'"' || b == b'\\') {
            if rest[end] == b'"' {
                if let Ok(s) = std::str::from_utf8(&rest[..end]) {
                    return Ok(std::borrow::Cow::Borrowed(s));
                }
            }
        }
    }
    #[derive(Deserialize)]
    struct Named {
        #[serde(rename = "Event")]
        event: Option<String>,
    }
    let named: Named = serde_json::from_slice(line)?;
    named
        .event
        .map(std::borrow::Cow::Owned)
        .ok_or(ParseError::NoEventName)
}

/// One of Spark's events, named `name`; [`Event::Unknown`] for a name it does not know.
pub fn parse_event(name: &str, line: &[u8]) -> Result<Event, ParseError> {
    Ok(match name {
        "SparkListenerTaskEnd" => match fast::task_end(line) {
            Some(ev) => ev,
            None => task_end(serde_json::from_slice(line)?),
        },
        "SparkListenerTaskStart" => match fast::task_start(line) {
            Some(ev) => ev,
            None => {
                let r: RawTaskStart = serde_json::from_slice(line)?;
                Event::TaskStart {
                    stage: (r.stage_id, r.stage_attempt_id),
                }
            }
        },
        "SparkListenerJobStart" => job_start(serde_json::from_slice(line)?),
        "SparkListenerJobEnd" => job_end(serde_json::from_slice(line)?),
        "SparkListenerStageSubmitted" => {
            let r: RawStageEvent = serde_json::from_slice(line)?;
            Event::StageSubmitted(r.stage_info.into())
        }
        "SparkListenerStageCompleted" => {
            let r: RawStageEvent = serde_json::from_slice(line)?;
            Event::StageCompleted(r.stage_info.into())
        }
        "SparkListenerLogStart" => {
            let r: RawLogStart = serde_json::from_slice(line)?;
            Event::LogStart {
                spark_version: r.spark_version,
            }
        }
        "SparkListenerApplicationStart" => {
            let r: RawAppStart = serde_json::from_slice(line)?;
            Event::ApplicationStart(ApplicationStart {
                id: r.app_id,
                name: r.app_name,
                time: r.timestamp,
                user: r.user,
            })
        }
        "SparkListenerApplicationEnd" => {
            let r: RawTimestamp = serde_json::from_slice(line)?;
            Event::ApplicationEnd { time: r.timestamp }
        }
        "SparkListenerExecutorAdded" => {
            let r: RawExecutorAdded = serde_json::from_slice(line)?;
            Event::ExecutorAdded {
                id: r.executor_id,
                time: r.timestamp,
                host: r.executor_info.host,
                cores: r.executor_info.total_cores,
                log_urls: r
                    .executor_info
                    .log_urls
                    .into_iter()
                    .filter(|(_, url)| crate::spark_api::is_http_url(url))
                    .collect(),
            }
        }
        "SparkListenerExecutorRemoved" => {
            let r: RawExecutorRemoved = serde_json::from_slice(line)?;
            Event::ExecutorRemoved {
                id: r.executor_id,
                time: r.timestamp,
            }
        }
        "SparkListenerExecutorMetricsUpdate" => {
            let r: RawExecutorMetricsUpdate = serde_json::from_slice(line)?;
            let mut m = ExecutorMetrics {
                executor_id: r.executor_id,
                max_heap: r.max_heap,
                executor: None,
                stages: Vec::new(),
            };
            for u in r.updates {
                let peaks = u.metrics.peaks();
                if (u.stage_id, u.attempt_id) == (-1, -1) {
                    m.executor
                        .get_or_insert_with(Default::default)
                        .raise(&peaks);
                } else {
                    m.stages.push(((u.stage_id, u.attempt_id), peaks));
                }
            }
            Event::ExecutorMetrics(m)
        }
        "SparkListenerStageExecutorMetrics" => {
            // Event logs only (spark.eventLog.logStageExecutorMetrics): the executor's peaks
            // while the stage attempt ran, written when it ended.
            let r: RawStageExecutorMetrics = serde_json::from_slice(line)?;
            let peaks = r.metrics.peaks();
            Event::ExecutorMetrics(ExecutorMetrics {
                executor_id: r.executor_id,
                max_heap: None,
                executor: Some(peaks),
                stages: vec![((r.stage_id, r.attempt_id), peaks)],
            })
        }
        n if n.starts_with(SQL) => match &n[SQL.len()..] {
            "SparkListenerSQLExecutionStart" => {
                // A plan nested deeper than the parser goes (Spark's own event logs are not
                // bounded like the listener's lines) loses the plan, not the execution.
                let r: RawSqlStart = match serde_json::from_slice(line) {
                    Ok(r) => r,
                    Err(_) => serde_json::from_slice::<RawSqlStartBare>(line)?.into(),
                };
                Event::SqlExecutionStart(SqlExecutionStart {
                    execution_id: r.execution_id,
                    time: r.time,
                    job_tags: r.job_tags,
                    description: r.description,
                    plan: r.spark_plan_info.map(|p| plan(p, r.nodes_dropped)),
                })
            }
            "SparkListenerSQLAdaptiveExecutionUpdate" => {
                let r: RawSqlPlanUpdate = serde_json::from_slice(line)?;
                Event::SqlPlanUpdate {
                    execution_id: r.execution_id,
                    plan: plan(r.spark_plan_info, r.nodes_dropped),
                }
            }
            "SparkListenerSQLExecutionEnd" => {
                let r: RawSqlEnd = serde_json::from_slice(line)?;
                Event::SqlExecutionEnd {
                    execution_id: r.execution_id,
                    time: r.time,
                    error: r.error_message.filter(|e| !e.is_empty()),
                }
            }
            _ => Event::Ignored,
        },
        n if n.starts_with(CONNECT) => connect_event(&n[CONNECT.len()..], line)?,
        n if IGNORED.contains(&n) => Event::Ignored,
        _ => Event::Unknown,
    })
}

/// Spark events that are valid but carry nothing the agent models.
const IGNORED: &[&str] = &[
    "SparkListenerEnvironmentUpdate",
    "SparkListenerBlockManagerAdded",
    "SparkListenerBlockManagerRemoved",
    "SparkListenerBlockUpdated",
    "SparkListenerTaskGettingResult",
    "SparkListenerResourceProfileAdded",
    "SparkListenerUnpersistRDD",
    "SparkListenerSpeculativeTaskSubmitted",
    "SparkListenerUnschedulableTaskSetAdded",
    "SparkListenerUnschedulableTaskSetRemoved",
    "SparkListenerExecutorExcluded",
    "SparkListenerExecutorUnexcluded",
    "SparkListenerExecutorExcludedForStage",
    "SparkListenerNodeExcluded",
    "SparkListenerNodeUnexcluded",
    "SparkListenerNodeExcludedForStage",
    "SparkListenerExecutorBlacklisted",
    "SparkListenerExecutorUnblacklisted",
    "SparkListenerMiscellaneousProcessAdded",
];

fn connect_event(suffix: &str, line: &[u8]) -> Result<Event, ParseError> {
    Ok(match suffix {
        "SessionStarted" | "SessionClosed" => {
            let r: RawConnectSession = serde_json::from_slice(line)?;
            if suffix == "SessionStarted" {
                Event::SessionStarted {
                    session_id: r.session_id,
                    user_id: r.user_id,
                    time: r.event_time,
                }
            } else {
                Event::SessionClosed {
                    session_id: r.session_id,
                    user_id: r.user_id,
                    time: r.event_time,
                }
            }
        }
        "OperationStarted" => {
            let r: RawOperationStarted = serde_json::from_slice(line)?;
            let mut tags = r.spark_session_tags;
            tags.sort();
            tags.dedup();
            Event::OperationStarted(OperationStarted {
                operation_id: r.operation_id,
                job_tag: r.job_tag,
                session_id: r.session_id,
                user_id: r.user_id,
                time: r.event_time,
                statement: r.statement_text,
                tags,
            })
        }
        "OperationAnalyzed"
        | "OperationReadyForExecution"
        | "OperationFinished"
        | "OperationFailed"
        | "OperationCanceled"
        | "OperationClosed" => {
            let r: RawOperationState = serde_json::from_slice(line)?;
            let state = match suffix {
                "OperationAnalyzed" => OpTransition::Analyzed,
                "OperationReadyForExecution" => OpTransition::ReadyForExecution,
                "OperationFinished" => OpTransition::Finished {
                    produced_rows: r.produced_row_count,
                },
                "OperationFailed" => OpTransition::Failed {
                    error: r.error_message.unwrap_or_default(),
                },
                "OperationCanceled" => OpTransition::Canceled,
                _ => OpTransition::Closed,
            };
            Event::OperationState {
                operation_id: r.operation_id,
                job_tag: r.job_tag,
                time: r.event_time,
                state,
            }
        }
        "ServiceStarted" => {
            let r: RawConnectService = serde_json::from_slice(line)?;
            Event::ConnectServiceStarted {
                host: r.host_address,
                port: r.binding_port,
            }
        }
        "ServiceEnd" => Event::Ignored,
        _ => Event::Unknown,
    })
}

fn job_start(r: RawJobStart) -> Event {
    let mut props = r.properties;
    let tags = props
        .remove("spark.job.tags")
        .map(|t| {
            let mut v: Vec<String> = t
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            v.sort();
            v.dedup();
            v
        })
        .unwrap_or_default();
    Event::JobStart(JobStart {
        job_id: r.job_id,
        time: r.submission_time.filter(|t| *t > 0),
        stages: r.stage_infos.into_iter().map(Into::into).collect(),
        stage_ids: r.stage_ids,
        tags,
        description: props.remove("spark.job.description"),
        job_group: props.remove("spark.jobGroup.id"),
        sql_execution_id: props
            .get("spark.sql.execution.id")
            .and_then(|s| s.parse().ok()),
    })
}

fn job_end(r: RawJobEnd) -> Event {
    let succeeded = r.job_result.result == "JobSucceeded";
    Event::JobEnd(JobEnd {
        job_id: r.job_id,
        time: r.completion_time.filter(|t| *t > 0),
        succeeded,
        error: r.job_result.exception.and_then(|e| e.message),
    })
}

fn outcome(reason: &str) -> TaskOutcome {
    match reason {
        "Success" => TaskOutcome::Succeeded,
        "TaskKilled" | "TaskCommitDenied" => TaskOutcome::Killed,
        _ => TaskOutcome::Failed,
    }
}

fn metric_sums(m: RawTaskMetrics) -> TaskMetricSums {
    TaskMetricSums {
        executor_run_time_ms: m.executor_run_time,
        executor_cpu_time_ns: m.executor_cpu_time,
        input_bytes: m.input.map_or(0, |i| i.bytes_read),
        output_bytes: m.output.map_or(0, |o| o.bytes_written),
        shuffle_read_bytes: m
            .shuffle_read
            .map_or(0, |s| s.remote.saturating_add(s.local)),
        shuffle_write_bytes: m.shuffle_write.map_or(0, |s| s.bytes_written),
        memory_spilled_bytes: m.memory_spilled,
        disk_spilled_bytes: m.disk_spilled,
        gc_time_ms: m.gc_time,
    }
}

/// A failed task's stack trace is kept up to this many bytes.
const MAX_STACK_TRACE: usize = 16 * 1024;
/// And its message.
const MAX_FAILURE_MESSAGE: usize = 4 * 1024;

fn task_end(r: RawTaskEnd) -> Event {
    let outcome = outcome(&r.reason.reason);
    let failure = (outcome == TaskOutcome::Failed).then(|| {
        let info = r.info.unwrap_or_default();
        let why = r.reason;
        // an exception's own message; other reasons say what happened in their own fields
        let mut message = why
            .description
            .or(why.message)
            .or(why.loss_reason)
            .unwrap_or_default();
        if message.is_empty() && why.reason == "ExecutorLostFailure" {
            message = format!("executor {} was lost", why.executor_id.unwrap_or_default());
        }
        let mut stack_trace = why.full_stack_trace.unwrap_or_default();
        if stack_trace.is_empty() {
            stack_trace = why
                .stack_trace
                .iter()
                .map(|f| {
                    format!(
                        "\tat {}.{}({}:{})",
                        f.class.as_deref().unwrap_or("?"),
                        f.method.as_deref().unwrap_or("?"),
                        f.file.as_deref().unwrap_or("Unknown Source"),
                        f.line.unwrap_or(-1)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        truncate_utf8(&mut message, MAX_FAILURE_MESSAGE);
        truncate_utf8(&mut stack_trace, MAX_STACK_TRACE);
        Box::new(TaskFailure {
            task_id: info.task_id,
            index: info.index,
            attempt: info.attempt,
            executor_id: info.executor_id,
            host: info.host,
            reason: why.reason,
            exception_class: why.class_name.unwrap_or_default(),
            message,
            stack_trace,
            time: info.finish_time,
        })
    });
    Event::TaskEnd(TaskEnd {
        stage: (r.stage_id, r.stage_attempt_id),
        outcome,
        metrics: metric_sums(r.metrics.unwrap_or_default()),
        failure,
    })
}

/// Task lines are most of an event log. Spark writes them in a fixed order, so the few fields
/// the model needs are read where they stand, and only the metrics object goes through serde;
/// the task info and executor metrics in between are never parsed. Any surprise returns `None`
/// and the line takes the general path, which also reports malformed lines.
mod fast {
    use super::{
        metric_sums, outcome, Event, RawTaskMetrics, TaskEnd, TaskMetricSums, TaskOutcome,
    };
    use memchr::memmem;
    use serde::Deserialize;

    pub(super) fn task_start(line: &[u8]) -> Option<Event> {
        let rest = line.strip_prefix(br#"{"Event":"SparkListenerTaskStart","Stage ID":"#)?;
        let (stage, rest) = int(rest)?;
        let rest = rest.strip_prefix(br#","Stage Attempt ID":"#)?;
        let (attempt, rest) = int(rest)?;
        if !rest.starts_with(br#","Task Info":{"#) || !rest.ends_with(b"}}") {
            return None;
        }
        Some(Event::TaskStart {
            stage: (stage, attempt),
        })
    }

    pub(super) fn task_end(line: &[u8]) -> Option<Event> {
        let rest = line.strip_prefix(br#"{"Event":"SparkListenerTaskEnd","Stage ID":"#)?;
        let (stage, rest) = int(rest)?;
        let rest = rest.strip_prefix(br#","Stage Attempt ID":"#)?;
        let (attempt, rest) = int(rest)?;
        const REASON: &[u8] = br#","Task End Reason":{"Reason":""#;
        let head = &rest[..rest.len().min(256)];
        let at = memmem::find(head, REASON)? + REASON.len();
        let reason_len = memchr::memchr2(b'"', b'\\', &rest[at..])?;
        if rest[at + reason_len] != b'"' {
            return None;
        }
        let reason = std::str::from_utf8(&rest[at..at + reason_len]).ok()?;
        let outcome = outcome(reason);
        if outcome == TaskOutcome::Failed {
            return None; // rare, and its reason and task info are wanted: the full parse
        }
        const METRICS: &[u8] = br#","Task Metrics":"#;
        let body = line.strip_suffix(b"}")?;
        let metrics = match memmem::rfind(body, METRICS) {
            Some(m) => {
                let mut de = serde_json::Deserializer::from_slice(&body[m + METRICS.len()..]);
                let raw = Option::<RawTaskMetrics>::deserialize(&mut de).ok()?;
                de.end().ok()?;
                raw.map(metric_sums).unwrap_or_default()
            }
            None => TaskMetricSums::default(),
        };
        Some(Event::TaskEnd(TaskEnd {
            stage: (stage, attempt),
            outcome,
            metrics,
            failure: None,
        }))
    }

    /// A JSON integer at the start of `b`, and what follows it.
    fn int(b: &[u8]) -> Option<(i32, &[u8])> {
        let neg = b.first() == Some(&b'-');
        let digits = &b[usize::from(neg)..];
        let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 10 {
            return None;
        }
        let v: i64 = std::str::from_utf8(&digits[..n]).ok()?.parse().ok()?;
        let v = i32::try_from(if neg { -v } else { v }).ok()?;
        Some((v, &digits[n..]))
    }
}

// ---- Spark's JSON layouts (only the fields used; serde skips the rest) ----

#[derive(Deserialize)]
struct RawLogStart {
    #[serde(rename = "Spark Version")]
    spark_version: String,
}

#[derive(Deserialize)]
struct RawAppStart {
    #[serde(rename = "App Name", default)]
    app_name: String,
    #[serde(rename = "App ID")]
    app_id: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "User", default)]
    user: String,
}

#[derive(Deserialize)]
struct RawTimestamp {
    #[serde(rename = "Timestamp")]
    timestamp: i64,
}

#[derive(Deserialize)]
struct RawExecutorAdded {
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "Executor ID")]
    executor_id: String,
    #[serde(rename = "Executor Info")]
    executor_info: RawExecutorInfo,
}

#[derive(Deserialize)]
struct RawExecutorInfo {
    #[serde(rename = "Host", default)]
    host: String,
    #[serde(rename = "Total Cores", default)]
    total_cores: u32,
    #[serde(rename = "Log Urls", default)]
    log_urls: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawExecutorMetricsUpdate {
    #[serde(rename = "Executor ID")]
    executor_id: String,
    #[serde(rename = "Executor Metrics Updated", default)]
    updates: Vec<RawStageMetrics>,
    /// The listener's addition: the heap the executor's JVM may grow to.
    #[serde(rename = "Max Heap Memory", default)]
    max_heap: Option<u64>,
}

#[derive(Deserialize)]
struct RawStageMetrics {
    #[serde(rename = "Stage ID")]
    stage_id: i32,
    #[serde(rename = "Stage Attempt ID")]
    attempt_id: i32,
    #[serde(rename = "Executor Metrics")]
    metrics: RawMemoryMetrics,
}

#[derive(Deserialize)]
struct RawStageExecutorMetrics {
    #[serde(rename = "Executor ID")]
    executor_id: String,
    #[serde(rename = "Stage ID")]
    stage_id: i32,
    #[serde(rename = "Stage Attempt ID")]
    attempt_id: i32,
    #[serde(rename = "Executor Metrics")]
    metrics: RawMemoryMetrics,
}

/// The memory metrics of Spark's `ExecutorMetrics` the agent keeps (the rest are skipped).
/// Spark writes -1 for a metric it could not read: taken as 0.
#[derive(Deserialize)]
struct RawMemoryMetrics {
    #[serde(rename = "JVMHeapMemory", default)]
    jvm_heap: i64,
    #[serde(rename = "JVMOffHeapMemory", default)]
    jvm_off_heap: i64,
    #[serde(rename = "OnHeapStorageMemory", default)]
    on_heap_storage: i64,
    #[serde(rename = "OffHeapStorageMemory", default)]
    off_heap_storage: i64,
    #[serde(rename = "TotalGCTime", default)]
    gc_time: i64,
}

impl RawMemoryMetrics {
    fn peaks(&self) -> MemoryPeaks {
        let v = |x: i64| u64::try_from(x).unwrap_or(0);
        MemoryPeaks {
            jvm_heap: v(self.jvm_heap),
            jvm_off_heap: v(self.jvm_off_heap),
            on_heap_storage: v(self.on_heap_storage),
            off_heap_storage: v(self.off_heap_storage),
            gc_time_ms: v(self.gc_time),
        }
    }
}

#[derive(Deserialize)]
struct RawExecutorRemoved {
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "Executor ID")]
    executor_id: String,
}

#[derive(Deserialize)]
struct RawJobStart {
    #[serde(rename = "Job ID")]
    job_id: i32,
    #[serde(rename = "Submission Time")]
    submission_time: Option<i64>,
    #[serde(rename = "Stage Infos", default)]
    stage_infos: Vec<RawStageInfo>,
    #[serde(rename = "Stage IDs", default)]
    stage_ids: Vec<i32>,
    #[serde(rename = "Properties", default)]
    properties: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawJobEnd {
    #[serde(rename = "Job ID")]
    job_id: i32,
    #[serde(rename = "Completion Time")]
    completion_time: Option<i64>,
    #[serde(rename = "Job Result")]
    job_result: RawJobResult,
}

#[derive(Deserialize)]
struct RawJobResult {
    #[serde(rename = "Result")]
    result: String,
    #[serde(rename = "Exception")]
    exception: Option<RawException>,
}

#[derive(Deserialize)]
struct RawException {
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct RawStageEvent {
    #[serde(rename = "Stage Info")]
    stage_info: RawStageInfo,
}

#[derive(Deserialize)]
struct RawStageInfo {
    #[serde(rename = "Stage ID")]
    stage_id: i32,
    #[serde(rename = "Stage Attempt ID", default)]
    attempt_id: i32,
    #[serde(rename = "Stage Name", default)]
    name: String,
    #[serde(rename = "Number of Tasks", default)]
    num_tasks: i32,
    #[serde(rename = "Submission Time")]
    submission_time: Option<i64>,
    #[serde(rename = "Completion Time")]
    completion_time: Option<i64>,
    #[serde(rename = "Failure Reason")]
    failure_reason: Option<String>,
}

impl From<RawStageInfo> for StageInfo {
    fn from(r: RawStageInfo) -> Self {
        StageInfo {
            stage_id: r.stage_id,
            attempt_id: r.attempt_id,
            name: r.name,
            num_tasks: r.num_tasks,
            submission_time: r.submission_time,
            completion_time: r.completion_time,
            failure_reason: r.failure_reason,
        }
    }
}

#[derive(Deserialize)]
struct RawTaskStart {
    #[serde(rename = "Stage ID")]
    stage_id: i32,
    #[serde(rename = "Stage Attempt ID", default)]
    stage_attempt_id: i32,
}

#[derive(Deserialize)]
struct RawTaskEnd {
    #[serde(rename = "Stage ID")]
    stage_id: i32,
    #[serde(rename = "Stage Attempt ID", default)]
    stage_attempt_id: i32,
    #[serde(rename = "Task End Reason")]
    reason: RawReason,
    #[serde(rename = "Task Info")]
    info: Option<RawTaskInfo>,
    #[serde(rename = "Task Metrics")]
    metrics: Option<RawTaskMetrics>,
}

#[derive(Deserialize)]
struct RawReason {
    #[serde(rename = "Reason")]
    reason: String,
    #[serde(rename = "Class Name")]
    class_name: Option<String>,
    #[serde(rename = "Description")]
    description: Option<String>,
    #[serde(rename = "Full Stack Trace")]
    full_stack_trace: Option<String>,
    #[serde(rename = "Stack Trace", default)]
    stack_trace: Vec<RawStackFrame>,
    /// FetchFailed and others
    #[serde(rename = "Message")]
    message: Option<String>,
    /// ExecutorLostFailure
    #[serde(rename = "Loss Reason")]
    loss_reason: Option<String>,
    #[serde(rename = "Executor ID")]
    executor_id: Option<String>,
}

/// One frame of Spark's `"Stack Trace"`; generated code has no file name (null).
#[derive(Deserialize)]
struct RawStackFrame {
    #[serde(rename = "Declaring Class", default)]
    class: Option<String>,
    #[serde(rename = "Method Name", default)]
    method: Option<String>,
    #[serde(rename = "File Name", default)]
    file: Option<String>,
    #[serde(rename = "Line Number", default)]
    line: Option<i64>,
}

#[derive(Deserialize, Default)]
struct RawTaskInfo {
    #[serde(rename = "Task ID", default)]
    task_id: i64,
    #[serde(rename = "Index", default)]
    index: i32,
    #[serde(rename = "Attempt", default)]
    attempt: i32,
    #[serde(rename = "Executor ID", default)]
    executor_id: String,
    #[serde(rename = "Host", default)]
    host: String,
    #[serde(rename = "Finish Time", default)]
    finish_time: i64,
}

#[derive(Deserialize, Default)]
struct RawTaskMetrics {
    #[serde(rename = "Executor Run Time", default)]
    executor_run_time: i64,
    #[serde(rename = "Executor CPU Time", default)]
    executor_cpu_time: i64,
    #[serde(rename = "Input Metrics")]
    input: Option<RawInput>,
    #[serde(rename = "Output Metrics")]
    output: Option<RawOutput>,
    #[serde(rename = "Shuffle Read Metrics")]
    shuffle_read: Option<RawShuffleRead>,
    #[serde(rename = "Shuffle Write Metrics")]
    shuffle_write: Option<RawShuffleWrite>,
    #[serde(rename = "Memory Bytes Spilled", default)]
    memory_spilled: i64,
    #[serde(rename = "Disk Bytes Spilled", default)]
    disk_spilled: i64,
    #[serde(rename = "JVM GC Time", default)]
    gc_time: i64,
}

#[derive(Deserialize)]
struct RawInput {
    #[serde(rename = "Bytes Read", default)]
    bytes_read: i64,
}

#[derive(Deserialize)]
struct RawOutput {
    #[serde(rename = "Bytes Written", default)]
    bytes_written: i64,
}

#[derive(Deserialize)]
struct RawShuffleRead {
    #[serde(rename = "Remote Bytes Read", default)]
    remote: i64,
    #[serde(rename = "Local Bytes Read", default)]
    local: i64,
}

#[derive(Deserialize)]
struct RawShuffleWrite {
    #[serde(rename = "Shuffle Bytes Written", default)]
    bytes_written: i64,
}

/// The listener's first line on a connection (docs/wire-protocol.md).

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSqlStart {
    execution_id: i64,
    #[serde(default)]
    time: i64,
    #[serde(default)]
    job_tags: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    spark_plan_info: Option<RawPlanNode>,
    #[serde(default, rename = "sparkscopeNodesDropped")]
    nodes_dropped: u32,
}

/// An SQL start read without its plan.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSqlStartBare {
    execution_id: i64,
    #[serde(default)]
    time: i64,
    #[serde(default)]
    job_tags: Vec<String>,
    #[serde(default)]
    description: String,
}

impl From<RawSqlStartBare> for RawSqlStart {
    fn from(r: RawSqlStartBare) -> Self {
        RawSqlStart {
            execution_id: r.execution_id,
            time: r.time,
            job_tags: r.job_tags,
            description: r.description,
            spark_plan_info: None,
            nodes_dropped: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSqlPlanUpdate {
    execution_id: i64,
    spark_plan_info: RawPlanNode,
    #[serde(default, rename = "sparkscopeNodesDropped")]
    nodes_dropped: u32,
}

/// A node of Spark's `SparkPlanInfo` as its JSON writes it (metadata is not read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPlanNode {
    #[serde(default)]
    node_name: String,
    #[serde(default)]
    simple_string: String,
    #[serde(default)]
    children: Vec<RawPlanNode>,
    #[serde(default)]
    metrics: Vec<RawPlanMetric>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPlanMetric {
    #[serde(default)]
    name: String,
    accumulator_id: i64,
    #[serde(default)]
    metric_type: String,
}

/// The plan's nodes in pre-order, each with its parent's index; without recursion.
fn plan(root: RawPlanNode, nodes_dropped: u32) -> Plan {
    let mut nodes = Vec::new();
    let mut todo = vec![(root, -1i32)];
    while let Some((n, parent)) = todo.pop() {
        let index = i32::try_from(nodes.len()).unwrap_or(i32::MAX);
        nodes.push(PlanNode {
            parent,
            name: n.node_name,
            detail: n.simple_string,
            metrics: n
                .metrics
                .into_iter()
                .map(|m| PlanMetric {
                    name: m.name,
                    kind: m.metric_type,
                    accumulator_id: m.accumulator_id,
                })
                .collect(),
        });
        // Reversed, so the first child is taken next: pre-order.
        todo.extend(n.children.into_iter().rev().map(|c| (c, index)));
    }
    Plan {
        nodes,
        nodes_dropped,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSqlEnd {
    #[serde(default)]
    execution_id: i64,
    #[serde(default)]
    time: i64,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConnectService {
    #[serde(default)]
    host_address: String,
    binding_port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConnectSession {
    session_id: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    event_time: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOperationStarted {
    job_tag: String,
    operation_id: String,
    #[serde(default)]
    event_time: i64,
    session_id: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    statement_text: String,
    #[serde(default)]
    spark_session_tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOperationState {
    #[serde(default)]
    job_tag: String,
    operation_id: String,
    #[serde(default)]
    event_time: i64,
    produced_row_count: Option<i64>,
    error_message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const END: &str = r#"{"Event":"SparkListenerTaskEnd","Stage ID":3,"Stage Attempt ID":1,"Task Type":"ResultTask","Task End Reason":{"Reason":"TaskKilled","Kill Reason":"x"},"Task Info":{"Task ID":1,"Index":0,"Accumulables":[{"Name":"\"Task Metrics\":{"}]},"Task Metrics":{"Executor Run Time":7,"Executor CPU Time":9,"Input Metrics":{"Bytes Read":5},"Shuffle Read Metrics":{"Remote Bytes Read":1,"Local Bytes Read":2},"Shuffle Write Metrics":{"Shuffle Bytes Written":4},"Output Metrics":{"Bytes Written":6},"Updated Blocks":[]}}"#;

    fn sql(name: &str, rest: &str) -> Event {
        let line = format!(
            r#"{{"Event":"org.apache.spark.sql.execution.ui.{name}","executionId":4{rest}}}"#
        );
        parse_event(
            &format!("org.apache.spark.sql.execution.ui.{name}"),
            line.as_bytes(),
        )
        .expect("parsed")
    }

    #[test]
    fn sql_plans_are_read_in_pre_order_with_their_metrics() {
        let plan = r#""sparkPlanInfo":{"nodeName":"SortMergeJoin","simpleString":"smj","metadata":{"k":"v"},"metrics":[{"name":"number of output rows","accumulatorId":7,"metricType":"sum"}],"children":[{"nodeName":"Sort","children":[{"nodeName":"Exchange","metrics":[]}]},{"nodeName":"Scan","simpleString":"scan"}]}"#;
        let Event::SqlExecutionStart(s) = sql(
            "SparkListenerSQLExecutionStart",
            &format!(r#","time":5,"description":"count at x",{plan},"sparkscopeNodesDropped":3"#),
        ) else {
            panic!("not a start")
        };
        assert_eq!(s.description, "count at x");
        let p = s.plan.expect("a plan");
        let shape: Vec<(&str, i32)> = p
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.parent))
            .collect();
        assert_eq!(
            shape,
            [
                ("SortMergeJoin", -1),
                ("Sort", 0),
                ("Exchange", 1),
                ("Scan", 0)
            ]
        );
        assert_eq!(p.nodes[0].metrics[0].accumulator_id, 7);
        assert_eq!(p.nodes[0].metrics[0].kind, "sum");
        assert_eq!(p.nodes_dropped, 3);

        let Event::SqlPlanUpdate { execution_id, plan } = sql(
            "SparkListenerSQLAdaptiveExecutionUpdate",
            &format!(",{plan}"),
        ) else {
            panic!("not an update")
        };
        assert_eq!((execution_id, plan.nodes.len()), (4, 4));

        let Event::SqlExecutionEnd { error, .. } = sql(
            "SparkListenerSQLExecutionEnd",
            r#","time":9,"errorMessage":"boom""#,
        ) else {
            panic!("not an end")
        };
        assert_eq!(error.as_deref(), Some("boom"));
    }

    #[test]
    fn a_plan_too_deep_to_read_loses_the_plan_not_the_execution() {
        let depth = 300;
        let plan = format!(
            "{}{{\"nodeName\":\"Leaf\"}}{}",
            r#"{"nodeName":"Project","children":["#.repeat(depth),
            "]}".repeat(depth)
        );
        let Event::SqlExecutionStart(s) = sql(
            "SparkListenerSQLExecutionStart",
            &format!(r#","time":5,"jobTags":["t"],"sparkPlanInfo":{plan}"#),
        ) else {
            panic!("not a start")
        };
        assert_eq!((s.execution_id, s.job_tags.len()), (4, 1));
        assert!(s.plan.is_none());
    }

    #[test]
    fn fast_and_general_task_parsing_agree() {
        let fast = fast::task_end(END.as_bytes()).expect("fast path takes Spark's layout");
        let general = task_end(serde_json::from_str(END).expect("json"));
        assert_eq!(fast, general);
        let Event::TaskEnd(t) = fast else {
            panic!("not a task end")
        };
        assert_eq!(t.stage, (3, 1));
        assert_eq!(t.outcome, TaskOutcome::Killed);
        assert_eq!(t.metrics.shuffle_read_bytes, 3);
        assert_eq!(t.metrics.output_bytes, 6);
    }

    #[test]
    fn fast_path_declines_what_it_does_not_recognise() {
        // Cut inside the metrics, reordered fields, no metrics at all, a negative stage.
        let cut = &END[..END.len() - 30];
        assert!(fast::task_end(cut.as_bytes()).is_none());
        assert!(
            super::super::parse_line(cut.as_bytes()).is_err(),
            "the general path reports it"
        );
        let reordered = r#"{"Event":"SparkListenerTaskEnd","Stage Attempt ID":0,"Stage ID":2,"Task End Reason":{"Reason":"Success"}}"#;
        assert!(fast::task_end(reordered.as_bytes()).is_none());
        assert!(
            matches!(super::super::parse_line(reordered.as_bytes()), Ok(Event::TaskEnd(t)) if t.stage == (2, 0))
        );
        let no_metrics = r#"{"Event":"SparkListenerTaskEnd","Stage ID":2,"Stage Attempt ID":0,"Task Type":"ResultTask","Task End Reason":{"Reason":"TaskKilled"},"Task Info":{}}"#;
        let ev = fast::task_end(no_metrics.as_bytes()).expect("fast");
        assert!(
            matches!(ev, Event::TaskEnd(t) if t.outcome == TaskOutcome::Killed && t.metrics == TaskMetricSums::default())
        );
        // A failure takes the general path, for its reason and where it ran.
        let failed = no_metrics.replace("TaskKilled", "Resubmitted");
        assert!(fast::task_end(failed.as_bytes()).is_none());
        assert!(matches!(
            super::super::parse_line(failed.as_bytes()),
            Ok(Event::TaskEnd(t)) if t.outcome == TaskOutcome::Failed && t.failure.is_some()
        ));
        let start = r#"{"Event":"SparkListenerTaskStart","Stage ID":-1,"Stage Attempt ID":0,"Task Info":{"Index":1}}"#;
        assert_eq!(
            fast::task_start(start.as_bytes()),
            Some(Event::TaskStart { stage: (-1, 0) })
        );
        assert!(fast::task_start(&start.as_bytes()[..start.len() - 1]).is_none());
    }

    #[test]
    fn a_failed_task_says_why_and_where() {
        let line = r#"{"Event":"SparkListenerTaskEnd","Stage ID":4,"Stage Attempt ID":0,"Task Type":"ResultTask","Task End Reason":{"Reason":"ExceptionFailure","Class Name":"org.apache.spark.api.python.PythonException","Description":"ZeroDivisionError: division by zero","Stack Trace":[{"Declaring Class":"org.apache.spark.api.python.BasePythonRunner","Method Name":"read","File Name":"PythonRunner.scala","Line Number":572},{"Declaring Class":"GeneratedClass","Method Name":"processNext","File Name":null,"Line Number":-1}],"Full Stack Trace":"org.apache.spark.api.python.PythonException: ZeroDivisionError\n\tat x","Accumulator Updates":[]},"Task Info":{"Task ID":41,"Index":3,"Attempt":2,"Partition ID":3,"Launch Time":1795258404000,"Executor ID":"1","Host":"10.0.0.7","Locality":"PROCESS_LOCAL","Speculative":false,"Getting Result Time":0,"Finish Time":1795258405000,"Failed":true,"Killed":false,"Accumulables":[]},"Task Metrics":{"Executor Run Time":900,"JVM GC Time":12,"Memory Bytes Spilled":5,"Disk Bytes Spilled":6}}"#;
        let Ok(Event::TaskEnd(t)) = super::super::parse_line(line.as_bytes()) else {
            panic!("a task end");
        };
        assert_eq!(t.outcome, TaskOutcome::Failed);
        assert_eq!(
            (
                t.metrics.gc_time_ms,
                t.metrics.memory_spilled_bytes,
                t.metrics.disk_spilled_bytes
            ),
            (12, 5, 6)
        );
        let f = t.failure.expect("failure");
        assert_eq!(
            f.exception_class,
            "org.apache.spark.api.python.PythonException"
        );
        assert_eq!(f.message, "ZeroDivisionError: division by zero");
        assert!(f
            .stack_trace
            .starts_with("org.apache.spark.api.python.PythonException"));
        assert_eq!((f.task_id, f.index, f.attempt), (41, 3, 2));
        assert_eq!((f.executor_id.as_str(), f.host.as_str()), ("1", "10.0.0.7"));
        assert_eq!(f.time, 1_795_258_405_000);
        // executor lost: no exception, the loss reason instead
        let lost = r#"{"Event":"SparkListenerTaskEnd","Stage ID":4,"Stage Attempt ID":0,"Task End Reason":{"Reason":"ExecutorLostFailure","Executor ID":"2","Exit Caused By App":true,"Loss Reason":"Command exited with code 137"},"Task Info":{"Task ID":42,"Executor ID":"2","Host":"h"}}"#;
        let Ok(Event::TaskEnd(t)) = super::super::parse_line(lost.as_bytes()) else {
            panic!("a task end");
        };
        let f = t.failure.expect("failure");
        assert_eq!(f.reason, "ExecutorLostFailure");
        assert_eq!(f.message, "Command exited with code 137");
        assert!(f.exception_class.is_empty());
    }
}
