//! What a well-formed line may carry: ids, counts and times in the ranges Spark produces. A value
//! outside them (a negative task count, a count that wrapped, a core count no machine has) makes
//! the line malformed, so the model never adds up nonsense. Jobs read from Spark's REST API pass
//! the same kind of check. Free text is cut to documented bounds (docs/wire-protocol.md).

use crate::model::event::{Event, OpTransition, Plan, StageInfo, StageKey, TaskMetricSums};
use crate::model::truncate_utf8;
use crate::spark_api::JobData;

/// Latest time accepted (epoch ms): the year 9999. Spark writes -1 for "not yet".
const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Cores of one executor.
const MAX_CORES: u32 = 1 << 16;
/// A metric sum (bytes, ms, ns); f64-exact, so exports never round.
const MAX_METRIC: i64 = 1 << 53;
/// A `SparkscopeJobsGone` line names at most this many jobs (the listener splits longer lists).
const MAX_JOBS_GONE: usize = 1000;
/// A `SparkscopeSqlMetrics` line carries at most this many values (a plan's metrics).
const MAX_METRIC_VALUES: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} = {value} is out of range")]
pub struct OutOfRange {
    pub field: &'static str,
    pub value: i64,
}

/// A job from Spark's REST API as the model takes it: `None` when an id or a count is negative,
/// the same rule as for the listener's lines; its tags in order, once each.
pub fn spark_job(mut job: JobData) -> Option<JobData> {
    if job.job_id < 0 || job.counts().iter().any(|c| *c < 0) {
        return None;
    }
    job.job_tags.sort();
    job.job_tags.dedup();
    bound_tags(&mut job.job_tags);
    truncate_utf8(&mut job.name, MAX_NAME_BYTES);
    for text in [&mut job.description, &mut job.job_group]
        .into_iter()
        .flatten()
    {
        truncate_utf8(text, MAX_TEXT_BYTES);
    }
    Some(job)
}

/// Names and ids (applications, stages, executors, sessions, users) are kept up to this many
/// bytes, and so is each job tag.
pub const MAX_NAME_BYTES: usize = 1024;
/// Descriptions, errors and failure reasons, up to this many bytes (statements and stack traces
/// have their own bounds).
pub const MAX_TEXT_BYTES: usize = 4096;
/// An executor keeps at most this many log addresses (Spark's are stdout and stderr).
pub const MAX_LOG_URLS: usize = 8;
/// A job keeps at most this many tags.
pub const MAX_TAGS: usize = 64;

/// A plan node's description is kept up to this many bytes (the listener cuts it to 300
/// characters; an event log's is Spark's whole).
pub const MAX_NODE_DETAIL_BYTES: usize = 1024;
/// A plan node keeps at most this many metrics.
pub const MAX_NODE_METRICS: usize = 64;

fn bound_plan(p: &mut Plan) {
    for n in &mut p.nodes {
        truncate_utf8(&mut n.name, MAX_NAME_BYTES);
        truncate_utf8(&mut n.detail, MAX_NODE_DETAIL_BYTES);
        n.metrics.truncate(MAX_NODE_METRICS);
        for m in &mut n.metrics {
            truncate_utf8(&mut m.name, MAX_NAME_BYTES);
            truncate_utf8(&mut m.kind, MAX_NAME_BYTES);
        }
    }
}

fn bound_tags(tags: &mut Vec<String>) {
    tags.truncate(MAX_TAGS);
    for t in tags {
        truncate_utf8(t, MAX_NAME_BYTES);
    }
}

/// Cuts every free text an event carries to its bound: what the agent keeps of a line is
/// bounded, whatever the line's length (up to `--max-line-bytes`).
pub fn bound_text(ev: &mut Event) {
    let name = |s: &mut String| truncate_utf8(s, MAX_NAME_BYTES);
    let text = |s: &mut String| truncate_utf8(s, MAX_TEXT_BYTES);
    match ev {
        Event::ApplicationStart(a) => {
            name(&mut a.name);
            name(&mut a.user);
            a.id.as_mut().map(name);
        }
        Event::ExecutorAdded {
            id, host, log_urls, ..
        } => {
            name(id);
            name(host);
            log_urls.truncate(MAX_LOG_URLS);
            for (kind, url) in log_urls {
                name(kind);
                name(url);
            }
        }
        Event::JobStart(j) => {
            bound_tags(&mut j.tags);
            j.description.as_mut().map(text);
            j.job_group.as_mut().map(name);
            for s in &mut j.stages {
                name(&mut s.name);
            }
        }
        Event::JobEnd(j) => {
            j.error.as_mut().map(text);
        }
        Event::StageSubmitted(s) | Event::StageCompleted(s) => {
            name(&mut s.name);
            s.failure_reason.as_mut().map(text);
        }
        Event::SqlExecutionStart(s) => {
            bound_tags(&mut s.job_tags);
            text(&mut s.description);
            if let Some(p) = &mut s.plan {
                bound_plan(p);
            }
        }
        Event::SqlPlanUpdate { plan, .. } => bound_plan(plan),
        Event::SqlExecutionEnd { error, .. } => {
            error.as_mut().map(text);
        }
        Event::SessionStarted {
            session_id,
            user_id,
            ..
        }
        | Event::SessionClosed {
            session_id,
            user_id,
            ..
        } => {
            name(session_id);
            name(user_id);
        }
        Event::OperationStarted(o) => {
            name(&mut o.operation_id);
            name(&mut o.job_tag);
            name(&mut o.session_id);
            name(&mut o.user_id);
            bound_tags(&mut o.tags);
        }
        Event::OperationState {
            operation_id,
            job_tag,
            state,
            ..
        } => {
            name(operation_id);
            name(job_tag);
            if let OpTransition::Failed { error } = state {
                text(error);
            }
        }
        Event::LogLine(l) => {
            name(&mut l.logger);
            name(&mut l.thread);
            text(&mut l.message);
            text(&mut l.thrown);
            bound_tags(&mut l.job_tags);
            let c = &mut l.context;
            for v in [
                &mut c.session_id,
                &mut c.user_id,
                &mut c.operation_id,
                &mut c.job_id,
                &mut c.stage_id,
                &mut c.stage_attempt_id,
                &mut c.task_name,
            ]
            .into_iter()
            .flatten()
            {
                name(v);
            }
        }
        _ => {}
    }
}

/// A plan's accumulator ids are ids; its node count is bounded where it is kept.
fn plan(p: &Plan) -> Result<(), OutOfRange> {
    for n in &p.nodes {
        for m in &n.metrics {
            id("accumulator id", m.accumulator_id)?;
        }
    }
    Ok(())
}

fn range(field: &'static str, value: i64, min: i64, max: i64) -> Result<(), OutOfRange> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(OutOfRange { field, value })
    }
}

fn time(field: &'static str, t: i64) -> Result<(), OutOfRange> {
    range(field, t, -1, MAX_TIME_MS)
}

fn id(field: &'static str, v: i64) -> Result<(), OutOfRange> {
    range(field, v, 0, i64::MAX)
}

fn count(field: &'static str, v: i64) -> Result<(), OutOfRange> {
    range(field, v, 0, i64::from(i32::MAX))
}

fn stage_key(k: StageKey) -> Result<(), OutOfRange> {
    id("stage id", k.0.into())?;
    id("stage attempt id", k.1.into())
}

fn stage(s: &StageInfo) -> Result<(), OutOfRange> {
    stage_key(s.key())?;
    count("number of tasks", s.num_tasks.into())?;
    time("submission time", s.submission_time.unwrap_or(0))?;
    time("completion time", s.completion_time.unwrap_or(0))
}

fn metrics(m: &TaskMetricSums) -> Result<(), OutOfRange> {
    for (field, v) in [
        ("executor run time", m.executor_run_time_ms),
        ("executor CPU time", m.executor_cpu_time_ns),
        ("input bytes", m.input_bytes),
        ("output bytes", m.output_bytes),
        ("shuffle read bytes", m.shuffle_read_bytes),
        ("shuffle write bytes", m.shuffle_write_bytes),
        ("memory bytes spilled", m.memory_spilled_bytes),
        ("disk bytes spilled", m.disk_spilled_bytes),
        ("JVM GC time", m.gc_time_ms),
    ] {
        range(field, v, 0, MAX_METRIC)?;
    }
    Ok(())
}

/// Checks every number of an event.
pub fn check(ev: &Event) -> Result<(), OutOfRange> {
    match ev {
        Event::ApplicationStart(a) => time("timestamp", a.time),
        Event::ApplicationEnd { time: t }
        | Event::ExecutorRemoved { time: t, .. }
        | Event::SessionStarted { time: t, .. }
        | Event::SessionClosed { time: t, .. } => time("time", *t),
        Event::ExecutorAdded { time: t, cores, .. } => {
            time("timestamp", *t)?;
            range("total cores", (*cores).into(), 0, MAX_CORES.into())
        }
        Event::JobStart(j) => {
            id("job id", j.job_id.into())?;
            time("submission time", j.time.unwrap_or(0))?;
            for s in &j.stages {
                stage(s)?;
            }
            for s in &j.stage_ids {
                id("stage id", (*s).into())?;
            }
            id("SQL execution id", j.sql_execution_id.unwrap_or(0))
        }
        Event::JobEnd(j) => {
            id("job id", j.job_id.into())?;
            time("completion time", j.time.unwrap_or(0))
        }
        Event::StageSubmitted(s) | Event::StageCompleted(s) => stage(s),
        Event::TaskStart { stage } => stage_key(*stage),
        Event::TaskEnd(t) => {
            stage_key(t.stage)?;
            if let Some(f) = &t.failure {
                id("task id", f.task_id)?;
                count("task index", f.index.into())?;
                count("task attempt", f.attempt.into())?;
                time("finish time", f.time)?;
            }
            metrics(&t.metrics)
        }
        Event::SqlExecutionStart(s) => {
            id("execution id", s.execution_id)?;
            time("time", s.time)?;
            s.plan.as_ref().map_or(Ok(()), plan)
        }
        Event::SqlExecutionEnd {
            execution_id,
            time: t,
            ..
        } => {
            id("execution id", *execution_id)?;
            time("time", *t)
        }
        Event::SqlPlanUpdate {
            execution_id,
            plan: p,
        } => {
            id("execution id", *execution_id)?;
            plan(p)
        }
        Event::SqlMetrics {
            execution_id,
            values,
        } => {
            id("execution id", *execution_id)?;
            if values.len() > MAX_METRIC_VALUES {
                return Err(OutOfRange {
                    field: "number of metric values",
                    value: i64::try_from(values.len()).unwrap_or(i64::MAX),
                });
            }
            for (acc, v) in values {
                id("accumulator id", *acc)?;
                range("metric value", *v, 0, MAX_METRIC)?;
            }
            Ok(())
        }
        Event::ExecutorMetrics(m) => {
            // A heartbeat lists the stage attempts running on the executor: its cores' worth.
            if m.stages.len() > MAX_METRIC_VALUES {
                return Err(OutOfRange {
                    field: "number of stage metrics",
                    value: i64::try_from(m.stages.len()).unwrap_or(i64::MAX),
                });
            }
            let peaks = m.executor.iter().chain(m.stages.iter().map(|(_, p)| p));
            for p in peaks {
                for (field, v) in p.values() {
                    range(field, i64::try_from(v).unwrap_or(i64::MAX), 0, MAX_METRIC)?;
                }
            }
            for ((stage, attempt), _) in &m.stages {
                id("stage id", (*stage).into())?;
                id("stage attempt id", (*attempt).into())?;
            }
            let heap = m.max_heap.unwrap_or(0);
            range(
                "max heap",
                i64::try_from(heap).unwrap_or(i64::MAX),
                0,
                MAX_METRIC,
            )
        }
        Event::OperationStarted(o) => time("event time", o.time),
        Event::OperationState { time: t, state, .. } => {
            time("event time", *t)?;
            match state {
                crate::model::event::OpTransition::Finished {
                    produced_rows: Some(n),
                } => id("produced row count", *n),
                _ => Ok(()),
            }
        }
        Event::Hello(h) => time("start time", h.start_time),
        Event::StageProgress(p) => {
            stage_key(p.key())?;
            time("time", p.time)?;
            for (field, v) in [
                ("started", p.started),
                ("succeeded", p.succeeded),
                ("failed", p.failed),
                ("killed", p.killed),
            ] {
                count(field, v)?;
            }
            if let Some(d) = p.durations {
                for (field, v) in [
                    ("shortest task", d.min_ms),
                    ("median task", d.median_ms),
                    ("longest task", d.max_ms),
                ] {
                    range(field, v, 0, MAX_METRIC)?;
                }
                if !(d.min_ms <= d.median_ms && d.median_ms <= d.max_ms) {
                    return Err(OutOfRange {
                        field: "median task",
                        value: d.median_ms,
                    });
                }
            }
            metrics(&p.metrics)
        }
        Event::ListenerStats(s) => time("time", s.time),
        Event::SnapshotStart { time: t } | Event::SnapshotEnd { time: t } => time("time", *t),
        Event::JobsGone { time: t, job_ids } => {
            if job_ids.len() > MAX_JOBS_GONE {
                return Err(OutOfRange {
                    field: "number of job ids",
                    value: i64::try_from(job_ids.len()).unwrap_or(i64::MAX),
                });
            }
            for id in job_ids {
                count("job id", i64::from(*id))?;
            }
            time("time", *t)
        }
        Event::UiUrl { time: t, url } => {
            if url.len() > MAX_NAME_BYTES {
                return Err(OutOfRange {
                    field: "UI address length",
                    value: i64::try_from(url.len()).unwrap_or(i64::MAX),
                });
            }
            time("time", *t)
        }
        Event::LogLine(l) => time("time", l.time),
        Event::LogStart { .. }
        | Event::ConnectServiceStarted { .. }
        | Event::Ignored
        | Event::Unknown => Ok(()),
    }
}
