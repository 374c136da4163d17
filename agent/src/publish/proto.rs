//! The model seen through the `sparkscope.v1` protobuf messages that clients receive.

use crate::model::app::{AppInfo, Notice, NoticeKind};
use crate::model::connect::{ConnectRef, OpState, Operation, Session};
use crate::model::event::MemoryPeaks;
use crate::model::jobs::{Job, JobStatus, Stage, StageStatus};
use crate::model::logs::LogEntry;
use crate::model::sql::SqlExecution;
use crate::model::views::TagGroup;
use crate::model::AppState;
use sparkscope_proto::sparkscope::v1 as pb;

/// An application as subscribers see it, with the busy-slots samples taken after
/// `samples_after` (epoch ms; `i64::MIN` for all) and Spark UI links made from `ui_template`.
pub fn application(
    app: &AppState,
    samples_after: i64,
    ui_template: Option<&str>,
) -> pb::Application {
    let info = app.info();
    let mut samples = pb::TaskSamples::default();
    for s in app.samples().filter(|s| s.at_ms > samples_after) {
        if samples.offset_ms.is_empty() {
            samples.start_ms = s.at_ms;
        }
        let offset = u32::try_from(s.at_ms.saturating_sub(samples.start_ms)).unwrap_or(u32::MAX);
        samples.offset_ms.push(offset);
        samples.active_tasks.push(s.active_tasks);
        samples.total_cores.push(s.total_cores);
        samples.executors.push(s.executors);
        samples.busy_sessions.push(s.busy_sessions);
    }
    pb::Application {
        id: info.id.clone(),
        name: info.name.clone(),
        spark_version: info.spark_version.clone(),
        spark_user: info.spark_user.clone(),
        start_time_ms: info.start_time,
        end_time_ms: info.end_time,
        live: app.is_live(),
        cluster: Some(pb::Cluster {
            executors: u32::try_from(app.executors().count()).unwrap_or(u32::MAX),
            total_cores: app.total_cores(),
            active_tasks: u32::try_from(app.active_tasks()).unwrap_or(u32::MAX),
        }),
        notices: app.notices().map(notice).collect(),
        master: info.master.clone(),
        ui_link: ui_link(info, ui_template),
        connect_address: info
            .connect_endpoint
            .as_ref()
            .map(|(h, p)| format!("{h}:{p}"))
            .unwrap_or_default(),
        task_samples: (!samples.offset_ms.is_empty()).then_some(samples),
        executor_logs: app
            .executors()
            .flat_map(|e| {
                e.log_urls.iter().map(|(kind, url)| pb::ExecutorLog {
                    executor_id: e.id.clone(),
                    kind: kind.clone(),
                    url: url.clone(),
                })
            })
            .collect(),
        executor_memory: {
            let (memory, _) = app.executor_memory();
            memory
                .iter()
                .map(|(id, m)| pb::ExecutorMemory {
                    executor_id: id.clone(),
                    peaks: Some(peaks(&m.peaks)),
                    max_heap_bytes: m.max_heap.unwrap_or(0),
                })
                .collect()
        },
    }
}

fn peaks(p: &MemoryPeaks) -> pb::MemoryPeaks {
    pb::MemoryPeaks {
        jvm_heap_bytes: p.jvm_heap,
        jvm_off_heap_bytes: p.jvm_off_heap,
        on_heap_storage_bytes: p.on_heap_storage,
        off_heap_storage_bytes: p.off_heap_storage,
        gc_time_ms: p.gc_time_ms,
    }
}

/// Where people open the application's Spark UI: the announced address, or the operator's
/// template with `{host}`, `{port}` and `{app}` filled in from it (`{user}` is left for the
/// client). Empty when the UI address is unknown.
pub fn ui_link(info: &AppInfo, template: Option<&str>) -> String {
    let link = fill_ui_link(info, template);
    // Every link a browser will follow is http or https, whatever a listener announced.
    if crate::spark_api::is_http_url(&link) {
        link
    } else {
        String::new()
    }
}

fn fill_ui_link(info: &AppInfo, template: Option<&str>) -> String {
    let url = info.ui_url.trim_end_matches('/');
    let Some(template) = template else {
        return url.to_owned();
    };
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p),
        _ => (authority, ""),
    };
    if (template.contains("{host}") && host.is_empty())
        || (template.contains("{port}") && port.is_empty())
    {
        return String::new();
    }
    template
        .replace("{host}", host)
        .replace("{port}", port)
        .replace("{app}", &info.id)
        .trim_end_matches('/')
        .to_owned()
}

fn notice(n: &Notice) -> pb::Notice {
    pb::Notice {
        kind: match n.kind {
            NoticeKind::Resync => pb::NoticeKind::Resync,
            NoticeKind::Dropped => pb::NoticeKind::Dropped,
            NoticeKind::Reconciled => pb::NoticeKind::Reconciled,
            NoticeKind::Unreconciled => pb::NoticeKind::Unreconciled,
            NoticeKind::ListenerGone => pb::NoticeKind::ListenerGone,
        } as i32,
        at_ms: n.at_ms,
        message: n.message.clone(),
    }
}

pub fn job(app_id: &str, j: &Job) -> pb::Job {
    pb::Job {
        app_id: app_id.to_owned(),
        job_id: j.job_id,
        name: j.name.clone(),
        description: j.description.clone().unwrap_or_default(),
        status: match j.status {
            JobStatus::Running => pb::JobStatus::Running,
            JobStatus::Succeeded => pb::JobStatus::Succeeded,
            JobStatus::Failed => pb::JobStatus::Failed,
            JobStatus::Unknown => pb::JobStatus::Unknown,
        } as i32,
        stage_ids: j.stage_ids.clone(),
        tasks: Some(pb::TaskCounts {
            total: j.num_tasks,
            active: j.active_tasks,
            completed: j.completed_tasks,
            skipped: j.skipped_tasks,
            failed: j.failed_tasks,
            killed: j.killed_tasks,
        }),
        stages: Some(pb::StageCounts {
            active: j.active_stages,
            completed: j.num_completed_stages(),
            skipped: j.num_skipped_stages(),
            failed: j.failed_stages,
        }),
        job_tags: j.job_tags.clone(),
        submission_time_ms: j.submission_time.unwrap_or_default(),
        completion_time_ms: j.completion_time,
        sql_execution_id: j.sql_execution_id,
        connect: j.connect.as_ref().map(connect_ref),
        error: j.error.clone(),
    }
}

fn connect_ref(c: &ConnectRef) -> pb::ConnectRef {
    pb::ConnectRef {
        user_id: c.user_id.clone(),
        session_id: c.session_id.clone(),
        operation_id: c.operation_id.clone(),
        tags: c.tags.clone(),
    }
}

pub fn stage(app_id: &str, s: &Stage) -> pb::Stage {
    pb::Stage {
        app_id: app_id.to_owned(),
        stage_id: s.stage_id,
        attempt_id: s.attempt_id,
        name: s.name.clone(),
        status: match s.status {
            StageStatus::Pending => pb::StageStatus::Pending,
            StageStatus::Active => pb::StageStatus::Active,
            StageStatus::Complete => pb::StageStatus::Complete,
            StageStatus::Failed => pb::StageStatus::Failed,
            StageStatus::Skipped => pb::StageStatus::Skipped,
            StageStatus::Unknown => pb::StageStatus::Unknown,
        } as i32,
        num_tasks: s.num_tasks,
        active_tasks: s.active_tasks,
        completed_tasks: s.completed_tasks,
        failed_tasks: s.failed_tasks,
        killed_tasks: s.killed_tasks,
        job_ids: s.job_ids.clone(),
        submission_time_ms: s.submission_time,
        completion_time_ms: s.completion_time,
        failure_reason: s.failure_reason.clone(),
        executor_run_time_ms: s.metrics.executor_run_time_ms,
        input_bytes: s.metrics.input_bytes,
        output_bytes: s.metrics.output_bytes,
        shuffle_read_bytes: s.metrics.shuffle_read_bytes,
        shuffle_write_bytes: s.metrics.shuffle_write_bytes,
        memory_spilled_bytes: s.metrics.memory_spilled_bytes,
        disk_spilled_bytes: s.metrics.disk_spilled_bytes,
        gc_time_ms: s.metrics.gc_time_ms,
        task_durations: s.durations.map(|d| pb::DurationSummary {
            min_ms: d.min_ms,
            median_ms: d.median_ms,
            max_ms: d.max_ms,
        }),
        first_failure: s.failure.as_deref().map(|f| pb::TaskFailure {
            task_id: f.task_id,
            index: f.index,
            attempt: f.attempt,
            executor_id: f.executor_id.clone(),
            host: f.host.clone(),
            reason: f.reason.clone(),
            exception_class: f.exception_class.clone(),
            message: f.message.clone(),
            stack_trace: f.stack_trace.clone(),
            time_ms: f.time,
        }),
        peak_memory: s.memory.as_ref().map(peaks),
    }
}

fn op_state(s: OpState) -> pb::OperationState {
    match s {
        OpState::Started => pb::OperationState::Started,
        OpState::Analyzed => pb::OperationState::Analyzed,
        OpState::Ready => pb::OperationState::Ready,
        OpState::Finished => pb::OperationState::Finished,
        OpState::Failed => pb::OperationState::Failed,
        OpState::Canceled => pb::OperationState::Canceled,
        OpState::Closed => pb::OperationState::Closed,
    }
}

pub fn operation(app_id: &str, o: &Operation) -> pb::Operation {
    pb::Operation {
        app_id: app_id.to_owned(),
        operation_id: o.operation_id.clone(),
        session_id: o.session_id.clone(),
        user_id: o.user_id.clone(),
        tags: o.tags.clone(),
        state: op_state(o.state) as i32,
        final_state: o
            .final_state
            .map_or(pb::OperationState::Unspecified, op_state) as i32,
        start_time_ms: o.start_time,
        end_time_ms: o.end_time,
        close_time_ms: o.close_time,
        statement: o.statement.clone(),
        error: o.error.clone(),
        job_ids: o.job_ids.clone(),
        produced_row_count: o.produced_rows,
    }
}

pub fn session(app_id: &str, s: &Session) -> pb::Session {
    pb::Session {
        app_id: app_id.to_owned(),
        session_id: s.session_id.clone(),
        user_id: s.user_id.clone(),
        start_time_ms: s.start_time,
        end_time_ms: s.end_time,
    }
}

pub fn tag_group(app_id: &str, session_id: &str, g: &TagGroup<'_>) -> pb::TagGroup {
    pb::TagGroup {
        tag: g.tag.to_owned(),
        operation_ids: g.operation_ids.iter().map(|s| (*s).to_owned()).collect(),
        job_ids: g.job_ids.clone(),
        app_id: app_id.to_owned(),
        session_id: session_id.to_owned(),
    }
}

/// A kept log line of a followed session (the caller checked the owner).
pub fn log_line(app_id: &str, e: &LogEntry) -> pb::LogLine {
    let l = &e.line;
    let mut out = pb::LogLine {
        app_id: app_id.to_owned(),
        seq: e.seq,
        time_ms: l.time,
        level: l.level.as_str().to_owned(),
        logger: l.logger.clone(),
        thread: l.thread.clone(),
        message: l.message.clone(),
        thrown: l.thrown.clone(),
        ..pb::LogLine::default()
    };
    if let Some(o) = &e.owner {
        out.session_id.clone_from(&o.session_id);
        out.user_id.clone_from(&o.user_id);
        out.operation_id.clone_from(&o.operation_id);
        out.tags.clone_from(&o.tags);
        out.job_id = o.job_id;
        out.stage_id = o.stage.map(|s| s.0);
        out.stage_attempt_id = o.stage.map_or(0, |s| s.1);
    }
    out
}

/// An SQL execution of a followed session, as far as it changed after `since`: its plan only
/// when the plan changed (or in a snapshot, `since` 0), its metric values only those that changed.
pub fn sql_execution(
    app_id: &str,
    operation_id: &str,
    e: &SqlExecution,
    since: u64,
) -> pb::SqlExecution {
    let nodes = if e.plan_updated > since || since == 0 {
        e.plan
            .nodes
            .iter()
            .map(|n| pb::PlanNode {
                parent: n.parent,
                name: n.name.clone(),
                detail: n.detail.clone(),
                metrics: n
                    .metrics
                    .iter()
                    .map(|m| pb::PlanMetric {
                        name: m.name.clone(),
                        r#type: m.kind.clone(),
                        accumulator_id: m.accumulator_id,
                    })
                    .collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    pb::SqlExecution {
        app_id: app_id.to_owned(),
        execution_id: e.execution_id,
        operation_id: operation_id.to_owned(),
        description: e.description.clone(),
        start_ms: e.start_ms,
        end_ms: e.end_ms,
        error: e.error.clone().unwrap_or_default(),
        nodes,
        plan_version: e.plan_version,
        metric_values: e
            .values
            .iter()
            .filter(|(_, (_, g))| *g > since)
            .map(|(id, (v, _))| pb::MetricValue {
                accumulator_id: *id,
                value: *v,
            })
            .collect(),
        nodes_dropped: e.plan.nodes_dropped,
        job_ids: e.job_ids.clone(),
    }
}
