//! JSON views with the field names and meaning of Spark's monitoring REST API (`JobData`), so
//! that what sparkscope reports can be compared with Spark's own numbers field by field.

use crate::model::jobs::Job;
use crate::model::AppState;
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
    pub jobs: Vec<JobData>,
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

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobData {
    pub job_id: i32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submission_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    pub stage_ids: Vec<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_group: Option<String>,
    pub job_tags: Vec<String>,
    pub status: &'static str,
    pub num_tasks: i32,
    pub num_active_tasks: i32,
    pub num_completed_tasks: i32,
    pub num_skipped_tasks: i32,
    pub num_failed_tasks: i32,
    pub num_killed_tasks: i32,
    pub num_active_stages: i32,
    pub num_completed_stages: i32,
    pub num_skipped_stages: i32,
    pub num_failed_stages: i32,
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

pub fn job(j: &Job) -> JobData {
    JobData {
        job_id: j.job_id,
        name: j.name.clone(),
        description: j.description.clone(),
        submission_time: j.submission_time.map(spark_date),
        completion_time: j.completion_time.map(spark_date),
        stage_ids: j.stage_ids.clone(),
        job_group: j.job_group.clone(),
        job_tags: j.job_tags.clone(),
        status: j.status.as_str(),
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
        connect: j.connect.as_ref().map(|c| Connect {
            user_id: c.user_id.clone(),
            session_id: c.session_id.clone(),
            operation_id: c.operation_id.clone(),
            tags: c.tags.clone(),
        }),
    }
}

/// Formats epoch milliseconds the way Spark's REST API does: `2026-11-21T10:53:24.123GMT`.
pub fn spark_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}GMT",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::spark_date;

    #[test]
    fn dates_match_spark_rest_format() {
        assert_eq!(spark_date(0), "1970-01-01T00:00:00.000GMT");
        // 2026-11-21T10:53:24.123Z
        assert_eq!(spark_date(1_795_258_404_123), "2026-11-21T10:53:24.123GMT");
        assert_eq!(spark_date(951_782_400_000), "2000-02-29T00:00:00.000GMT");
        assert_eq!(spark_date(-1), "1969-12-31T23:59:59.999GMT");
    }
}
