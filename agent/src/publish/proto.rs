//! The model seen through the `sparkscope.v1` protobuf messages that clients receive.

use crate::model::app::{Notice, NoticeKind};
use crate::model::connect::{ConnectRef, OpState, Operation, Session};
use crate::model::jobs::{Job, JobStatus, Stage, StageStatus};
use crate::model::AppState;
use sparkscope_proto::sparkscope::v1 as pb;

pub fn application(app: &AppState) -> pb::Application {
    let info = app.info();
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
            total_cores: app.executors().map(|e| e.cores).sum(),
            active_tasks: u32::try_from(app.active_tasks()).unwrap_or(u32::MAX),
        }),
        notices: app.notices().map(notice).collect(),
    }
}

fn notice(n: &Notice) -> pb::Notice {
    pb::Notice {
        kind: match n.kind {
            NoticeKind::Resync => pb::NoticeKind::Resync,
            NoticeKind::Dropped => pb::NoticeKind::Dropped,
            NoticeKind::Reconciled => pb::NoticeKind::Reconciled,
            NoticeKind::Unreconciled => pb::NoticeKind::Unreconciled,
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
