//! The JSON API's views: Spark's monitoring REST API shape (`spark_api::JobData`, the same
//! structs reconciliation reads from Spark), so that what sparkscope reports can be compared with
//! Spark's own numbers field by field, plus each job's Connect attribution.

use crate::model::{self, AppState};
use crate::spark_api::{JobData, SparkDate};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Applications {
    pub applications: Vec<Application>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: String,
    pub name: String,
    pub spark_version: String,
    pub spark_user: String,
    pub live: bool,
    pub ingest: Ingest,
    pub jobs: Vec<Job>,
}

/// How complete the agent's view is: lines read, lines it could not use, and what the listener
/// reported dropping before they reached the agent.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ingest {
    pub lines: u64,
    pub malformed_lines: u64,
    pub unknown_events: u64,
    pub listener_sent: u64,
    pub listener_dropped: u64,
    pub listener_reconnects: u64,
    /// Listener connections that broke off inside the agent: events may be missing.
    pub failed_connections: u64,
    /// Events Spark's own listener bus dropped, as the listener reports.
    pub spark_bus_dropped: u64,
    /// What the listener evicted at its own bounds (live state, untracked task events).
    pub listener_evicted: u64,
    /// Snapshots of live state taken over from the listener (reconnects, agent restarts).
    pub resyncs: u64,
    /// Reconciliations with Spark's REST API: done, failed, and what they changed.
    pub reconciliations: u64,
    pub reconcile_failures: u64,
    pub jobs_filled: u64,
    pub jobs_ended: u64,
    pub jobs_corrected: u64,
}

/// A job: Spark's `JobData`, field for field, and the Connect session, operation and tags that
/// ran it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Job {
    #[serde(flatten)]
    pub spark: JobData,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Connect>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Connect {
    pub user_id: String,
    pub session_id: String,
    pub operation_id: String,
    pub tags: Vec<String>,
}

/// An application with its jobs, newest first (as Spark lists them).
pub fn application(app: &AppState) -> Application {
    let (info, stats) = (app.info(), app.stats());
    Application {
        id: info.id.clone(),
        name: info.name.clone(),
        spark_version: info.spark_version.clone(),
        spark_user: info.spark_user.clone(),
        live: app.is_live(),
        ingest: Ingest {
            lines: stats.lines,
            malformed_lines: stats.parse_errors,
            unknown_events: stats.unknown_events,
            listener_sent: stats.listener_sent,
            listener_dropped: stats.listener_dropped,
            listener_reconnects: stats.listener_reconnects,
            failed_connections: stats.failed_connections,
            spark_bus_dropped: stats.bus_dropped,
            listener_evicted: stats.listener_evicted,
            resyncs: stats.resyncs,
            reconciliations: stats.reconciliations,
            reconcile_failures: stats.reconcile_failures,
            jobs_filled: stats.jobs_filled,
            jobs_ended: stats.jobs_ended,
            jobs_corrected: stats.jobs_corrected,
        },
        jobs: app.jobs().rev().map(job).collect(),
    }
}

pub fn job(j: &model::jobs::Job) -> Job {
    Job {
        spark: JobData {
            job_id: j.job_id,
            name: j.name.clone(),
            description: j.description.clone(),
            submission_time: j.submission_time.map(SparkDate),
            completion_time: j.completion_time.map(SparkDate),
            stage_ids: j.stage_ids.clone(),
            job_group: j.job_group.clone(),
            job_tags: j.job_tags.clone(),
            status: j.status,
            num_tasks: j.num_tasks,
            num_active_tasks: j.active_tasks,
            num_completed_tasks: j.completed_tasks,
            num_skipped_tasks: j.skipped_tasks,
            num_failed_tasks: j.failed_tasks,
            num_killed_tasks: j.killed_tasks,
            num_active_stages: j.active_stages,
            num_completed_stages: j.num_completed_stages(),
            num_skipped_stages: j.num_skipped_stages(),
            num_failed_stages: j.failed_stages,
        },
        connect: j.connect.as_ref().map(|c| Connect {
            user_id: c.user_id.clone(),
            session_id: c.session_id.clone(),
            operation_id: c.operation_id.clone(),
            tags: c.tags.clone(),
        }),
    }
}

/// The operators' view of an application's kept driver log lines (`GET
/// /api/v1/applications/{id}/logs`), oldest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLines {
    pub lines: Vec<LogLine>,
    /// Kept lines newer than `since` beyond `limit`: ask again with the last `seq`.
    pub more: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub seq: u64,
    pub time_ms: i64,
    pub level: &'static str,
    pub logger: String,
    pub thread: String,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub thrown: String,
    /// Whose it is; absent when nothing ties it to a session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<LogOwner>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOwner {
    pub user_id: String,
    pub session_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operation_id: String,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_attempt_id: Option<i32>,
}

/// The kept lines after `since` (a `seq`), at most `limit` of them.
pub fn log_lines(app: &AppState, since: u64, limit: usize) -> LogLines {
    let newer: Vec<_> = app.log_lines().filter(|e| e.seq > since).collect();
    let more = newer.len().saturating_sub(limit);
    let lines = newer
        .into_iter()
        .take(limit)
        .map(|e| {
            let l = &e.line;
            LogLine {
                seq: e.seq,
                time_ms: l.time,
                level: l.level.as_str(),
                logger: l.logger.clone(),
                thread: l.thread.clone(),
                message: l.message.clone(),
                thrown: l.thrown.clone(),
                owner: e.owner.as_ref().map(|o| LogOwner {
                    user_id: o.user_id.clone(),
                    session_id: o.session_id.clone(),
                    operation_id: o.operation_id.clone(),
                    tags: o.tags.clone(),
                    job_id: o.job_id,
                    stage_id: o.stage.map(|s| s.0),
                    stage_attempt_id: o.stage.map(|s| s.1),
                }),
            }
        })
        .collect();
    LogLines { lines, more }
}
