//! Spark's REST API as a third source of events, read when the other two may have had a gap:
//! after a listener's snapshot, when the listener or Spark's own listener bus reports dropped
//! events, after a broken connection, and (optionally) every so often while work runs. The
//! model decides what to correct (`model::reconcile`); this task only asks and parses.

use crate::clock::now_ms;
use crate::model::jobs::JobStatus;
use crate::model::reconcile::SparkJob;
use crate::model::{lock, Store};
use crate::shutdown::Shutdown;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// Spark's UI address for every application, instead of the one its listener announced
    /// (when the agent reaches the driver by another name).
    pub spark_ui: Option<String>,
    /// While jobs run, ask this often even without a gap; `None`: only after gaps.
    pub interval: Option<Duration>,
    /// After a gap, wait this long first: Spark's own status store follows its bus a little
    /// behind the listener.
    pub delay: Duration,
    /// Then ask again this often while jobs that ran through the gap have not been seen ended
    /// in Spark (their end may be what was lost).
    pub retry: Duration,
    /// One request's time limit.
    pub timeout: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            spark_ui: None,
            interval: Some(Duration::from_secs(30)),
            delay: Duration::from_millis(500),
            retry: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        }
    }
}

/// How often the task looks for applications that are owed a reconciliation.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("Spark's REST API at {url} did not answer: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("Spark's REST API at {url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("Spark's REST API at {url} sent what is not a list of jobs: {source}")]
    Body { url: String, source: reqwest::Error },
}

/// Runs until shutdown.
pub async fn run(store: Arc<Store>, cfg: ReconcileConfig, mut shutdown: Shutdown) {
    let client = match reqwest::Client::builder().timeout(cfg.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: reconciliation with Spark's REST API is off");
            return;
        }
    };
    let mut last: HashMap<String, Instant> = HashMap::new();
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tick.tick() => {}
        }
        for shared in store.apps() {
            let (id, announced, gap, running) = {
                let a = lock(&shared);
                let busy = a.is_live() && a.running_jobs() > 0;
                let due = a.reconcile_due(now_ms(), ms(cfg.delay), ms(cfg.retry));
                (a.id().to_owned(), a.info().ui_url.clone(), due, busy)
            };
            let now = Instant::now();
            let periodic = running
                && cfg.interval.is_some_and(|every| {
                    last.get(&id)
                        .is_none_or(|t| now.duration_since(*t) >= every)
                });
            if !gap && !periodic {
                continue;
            }
            last.insert(id.clone(), now);
            let url = cfg.spark_ui.clone().unwrap_or(announced);
            if url.is_empty() {
                if gap {
                    let why = "Spark's UI address is unknown (spark.ui.enabled=false?); start \
                               the agent with --spark-ui";
                    lock(&shared).reconcile_failed(now_ms(), why);
                    store.notify();
                }
                continue;
            }
            match fetch_jobs(&client, &url, &id).await {
                Ok(jobs) => {
                    let done = lock(&shared).reconcile(now_ms(), jobs);
                    if done.total() > 0 {
                        tracing::info!(app = %id, filled = done.filled, ended = done.ended,
                            corrected = done.corrected, "reconciled with Spark's REST API");
                    }
                }
                Err(e) => {
                    tracing::warn!(app = %id, error = %e, "cannot reconcile");
                    if gap {
                        lock(&shared).reconcile_failed(now_ms(), &e.to_string());
                    }
                }
            }
            store.notify();
        }
        last.retain(|id, _| store.get(id).is_some());
    }
}

/// `GET <ui>/api/v1/applications/<app>/jobs`.
pub async fn fetch_jobs(
    client: &reqwest::Client,
    ui: &str,
    app_id: &str,
) -> Result<Vec<SparkJob>, FetchError> {
    let url = format!(
        "{}/api/v1/applications/{app_id}/jobs",
        ui.trim_end_matches('/')
    );
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|source| FetchError::Request {
            url: url.clone(),
            source,
        })?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url,
            status: resp.status(),
        });
    }
    let raw: Vec<RawJob> = resp.json().await.map_err(|source| FetchError::Body {
        url: url.clone(),
        source,
    })?;
    Ok(raw.into_iter().filter_map(RawJob::into_job).collect())
}

/// Spark's `JobData`, as its REST API writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJob {
    job_id: i32,
    #[serde(default)]
    name: String,
    description: Option<String>,
    submission_time: Option<String>,
    completion_time: Option<String>,
    #[serde(default)]
    stage_ids: Vec<i32>,
    job_group: Option<String>,
    #[serde(default)]
    job_tags: Vec<String>,
    status: String,
    #[serde(default)]
    num_tasks: i32,
    #[serde(default)]
    num_active_tasks: i32,
    #[serde(default)]
    num_completed_tasks: i32,
    #[serde(default)]
    num_skipped_tasks: i32,
    #[serde(default)]
    num_failed_tasks: i32,
    #[serde(default)]
    num_killed_tasks: i32,
    #[serde(default)]
    num_active_stages: i32,
    #[serde(default)]
    num_completed_stages: i32,
    #[serde(default)]
    num_skipped_stages: i32,
    #[serde(default)]
    num_failed_stages: i32,
}

impl RawJob {
    fn into_job(self) -> Option<SparkJob> {
        let status = match self.status.as_str() {
            "RUNNING" => JobStatus::Running,
            "SUCCEEDED" => JobStatus::Succeeded,
            "FAILED" => JobStatus::Failed,
            _ => JobStatus::Unknown,
        };
        let mut job_tags = self.job_tags;
        job_tags.sort();
        job_tags.dedup();
        let counts = [
            self.num_tasks,
            self.num_active_tasks,
            self.num_completed_tasks,
            self.num_skipped_tasks,
            self.num_failed_tasks,
            self.num_killed_tasks,
            self.num_active_stages,
            self.num_completed_stages,
            self.num_skipped_stages,
            self.num_failed_stages,
        ];
        // The same rule as for the listener's lines: nothing negative gets into the model.
        if self.job_id < 0 || counts.iter().any(|c| *c < 0) {
            return None;
        }
        Some(SparkJob {
            job_id: self.job_id,
            name: self.name,
            description: self.description,
            submission_time: self.submission_time.as_deref().and_then(parse_spark_date),
            completion_time: self.completion_time.as_deref().and_then(parse_spark_date),
            stage_ids: self.stage_ids,
            job_group: self.job_group,
            job_tags,
            status,
            num_tasks: self.num_tasks,
            num_active_tasks: self.num_active_tasks,
            num_completed_tasks: self.num_completed_tasks,
            num_skipped_tasks: self.num_skipped_tasks,
            num_failed_tasks: self.num_failed_tasks,
            num_killed_tasks: self.num_killed_tasks,
            num_active_stages: self.num_active_stages,
            num_completed_stages: self.num_completed_stages,
            num_skipped_stages: self.num_skipped_stages,
            num_failed_stages: self.num_failed_stages,
        })
    }
}

/// Spark's REST date, `2026-11-21T10:53:24.123GMT`, as epoch milliseconds.
pub fn parse_spark_date(s: &str) -> Option<i64> {
    let s = s.strip_suffix("GMT")?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, millis) = time.split_once('.')?;
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let millis: i64 = millis.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, m, day);
    Some(((days * 24 + h) * 60 + min) * 60_000 + sec * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_spark_date;

    #[test]
    fn spark_dates_read_back() {
        assert_eq!(parse_spark_date("1970-01-01T00:00:00.000GMT"), Some(0));
        assert_eq!(
            parse_spark_date("2026-11-21T10:53:24.123GMT"),
            Some(1_795_258_404_123)
        );
        assert_eq!(
            parse_spark_date("2000-02-29T00:00:00.000GMT"),
            Some(951_782_400_000)
        );
        assert_eq!(parse_spark_date("2026-13-01T00:00:00.000GMT"), None);
        assert_eq!(parse_spark_date("yesterday"), None);
        assert_eq!(parse_spark_date("2026-11-21T10:53:24GMT"), None);
    }
}
