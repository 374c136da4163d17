//! The tasks of one stage attempt, on request, from Spark's REST API
//! (`/applications/<app>/stages/<id>/<attempt>/taskList`): the notebook's timeline shows them in
//! per-executor lanes when a user opens a stage. Tasks are never streamed one by one; a request
//! gets the longest ones and every failed one, bounded.

use super::InFlight;
use crate::ingest::reconcile::parse_spark_date;
use crate::model::truncate_utf8;
use crate::model::{lock, Store};
use crate::telemetry::{self, Limit};
use serde::Deserialize;
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TaskListConfig {
    /// Spark's UI address for every application, instead of the one its listener announced.
    pub spark_ui: Option<String>,
    /// The longest tasks listed, and at most as many failed ones besides.
    pub max_tasks: usize,
    /// Requests to Spark's REST API at once; more are answered `unavailable`.
    pub max_in_flight: usize,
    /// One request's time limit.
    pub timeout: Duration,
}

impl Default for TaskListConfig {
    fn default() -> Self {
        TaskListConfig {
            spark_ui: None,
            max_tasks: 200,
            max_in_flight: 8,
            timeout: Duration::from_secs(5),
        }
    }
}

pub struct TaskLister {
    store: Arc<Store>,
    cfg: TaskListConfig,
    client: Option<reqwest::Client>,
    in_flight: AtomicUsize,
}

impl TaskLister {
    pub fn new(store: Arc<Store>, cfg: TaskListConfig) -> Self {
        let client = match reqwest::Client::builder().timeout(cfg.timeout).build() {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client: task lists are off");
                None
            }
        };
        TaskLister {
            store,
            cfg,
            client,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Answers a request whose session the requester may see (the caller checks that): the
    /// stage must have run for a job of that session.
    pub async fn list(&self, req: &pb::TaskListRequest) -> pb::TaskList {
        let refuse = |code: &str, message: String| pb::TaskList {
            request_id: req.request_id.clone(),
            app_id: req.app_id.clone(),
            stage_id: req.stage_id,
            attempt_id: req.attempt_id,
            ok: false,
            code: code.to_owned(),
            message,
            ..Default::default()
        };
        let key = (req.stage_id, req.attempt_id);
        let (ui, total) = {
            let Some(app) = self.store.get(&req.app_id) else {
                return refuse("not_found", format!("no application {}", req.app_id));
            };
            let app = lock(&app);
            if !app.stage_in_session(key, &req.session_id, &req.user_id) {
                return refuse(
                    "not_found",
                    format!(
                        "no stage {}.{} of session {} of user '{}' in {}",
                        req.stage_id, req.attempt_id, req.session_id, req.user_id, req.app_id
                    ),
                );
            }
            let ui = self
                .cfg
                .spark_ui
                .clone()
                .unwrap_or_else(|| app.info().ui_url.clone());
            (ui, app.stage(key).map_or(0, |s| s.num_tasks))
        };
        if ui.is_empty() {
            return refuse(
                "unavailable",
                "Spark's UI is off for this application (spark.ui.enabled=false), so its \
                 tasks cannot be listed"
                    .to_owned(),
            );
        }
        let Some(client) = &self.client else {
            return refuse("unavailable", "no HTTP client".to_owned());
        };
        let _slot = match InFlight::enter(&self.in_flight, self.cfg.max_in_flight) {
            Some(s) => s,
            None => {
                telemetry::limit_hit(Limit::TaskListsInFlight, 1);
                return refuse(
                    "unavailable",
                    "too many task lists asked for at once; try again".to_owned(),
                );
            }
        };
        let base = format!(
            "{}/api/v1/applications/{}/stages/{}/{}/taskList",
            ui.trim_end_matches('/'),
            req.app_id,
            req.stage_id,
            req.attempt_id
        );
        let n = self.cfg.max_tasks;
        let (longest_url, failed_url) = (
            format!("{base}?length={n}&sortBy=-runtime"),
            format!("{base}?length={n}&status=failed"),
        );
        let (longest, failed) =
            tokio::join!(fetch(client, &longest_url), fetch(client, &failed_url));
        let mut tasks: BTreeMap<i64, pb::TaskDetail> = BTreeMap::new();
        let now = crate::clock::now_ms();
        for list in [longest, failed] {
            match list {
                Ok(list) => {
                    for t in list {
                        let d = t.detail(now);
                        tasks.insert(d.task_id, d);
                    }
                }
                Err(e) => return refuse("unavailable", e),
            }
        }
        let mut tasks: Vec<pb::TaskDetail> = tasks.into_values().collect();
        tasks.sort_by_key(|t| (t.launch_time_ms, t.task_id));
        pb::TaskList {
            request_id: req.request_id.clone(),
            app_id: req.app_id.clone(),
            stage_id: req.stage_id,
            attempt_id: req.attempt_id,
            ok: true,
            tasks,
            total,
            ..Default::default()
        }
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<RawTask>, String> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("Spark's REST API at {url} did not answer: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "Spark's REST API at {url} answered {}",
            resp.status()
        ));
    }
    resp.json::<Vec<RawTask>>()
        .await
        .map_err(|e| format!("Spark's REST API at {url} sent what is not a task list: {e}"))
}

/// Spark's REST `TaskData`: only the fields used.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawTask {
    task_id: i64,
    index: i32,
    attempt: i32,
    launch_time: String,
    duration: Option<i64>,
    executor_id: String,
    host: String,
    status: String,
    speculative: bool,
    error_message: Option<String>,
    task_metrics: Option<RawMetrics>,
    scheduler_delay: i64,
    getting_result_time: i64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawMetrics {
    executor_deserialize_time: i64,
    result_serialization_time: i64,
    jvm_gc_time: i64,
    shuffle_read_metrics: Option<RawShuffleRead>,
    shuffle_write_metrics: Option<RawShuffleWrite>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawShuffleRead {
    fetch_wait_time: i64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawShuffleWrite {
    /// Nanoseconds.
    write_time: i64,
}

/// An error message is kept up to this many bytes (its stack trace is in the stage's failure).
const MAX_ERROR: usize = 4096;

impl RawTask {
    /// The task with its phases as Spark's UI draws them (`StagePage` event timeline): the
    /// computing time is what the other phases leave of the duration.
    fn detail(self, now_ms: i64) -> pb::TaskDetail {
        let launch = parse_spark_date(&self.launch_time).unwrap_or(0);
        let duration = self
            .duration
            .unwrap_or_else(|| if launch > 0 { now_ms - launch } else { 0 })
            .max(0);
        let m = self.task_metrics.unwrap_or_default();
        let shuffle_read = m
            .shuffle_read_metrics
            .map_or(0, |s| s.fetch_wait_time)
            .max(0);
        let shuffle_write = m
            .shuffle_write_metrics
            .map_or(0, |s| s.write_time / 1_000_000)
            .max(0);
        let (delay, deserialize, serialize, getting) = (
            self.scheduler_delay.max(0),
            m.executor_deserialize_time.max(0),
            m.result_serialization_time.max(0),
            self.getting_result_time.max(0),
        );
        let others = delay + deserialize + shuffle_read + shuffle_write + serialize + getting;
        let error = self.error_message.map(|mut e| {
            truncate_utf8(&mut e, MAX_ERROR);
            e
        });
        pb::TaskDetail {
            task_id: self.task_id,
            index: self.index,
            attempt: self.attempt,
            executor_id: self.executor_id,
            host: self.host,
            status: self.status,
            launch_time_ms: launch,
            duration_ms: duration,
            scheduler_delay_ms: delay,
            deserialize_ms: deserialize,
            shuffle_read_ms: shuffle_read,
            compute_ms: (duration - others).max(0),
            shuffle_write_ms: shuffle_write,
            serialize_ms: serialize,
            getting_result_ms: getting,
            gc_ms: m.jvm_gc_time.max(0),
            speculative: self.speculative,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spark_task_becomes_a_detail_with_its_phases() {
        let raw: RawTask = serde_json::from_str(
            r#"{"taskId":7,"index":3,"attempt":1,"partitionId":3,
                "launchTime":"2026-11-21T10:53:24.123GMT","duration":1000,"executorId":"1",
                "host":"10.0.0.2","status":"FAILED","taskLocality":"PROCESS_LOCAL",
                "speculative":false,"accumulatorUpdates":[],"errorMessage":"boom",
                "taskMetrics":{"executorDeserializeTime":20,"executorRunTime":900,
                  "resultSerializationTime":5,"jvmGcTime":40,
                  "shuffleReadMetrics":{"fetchWaitTime":30},
                  "shuffleWriteMetrics":{"writeTime":15000000}},
                "schedulerDelay":10,"gettingResultTime":0}"#,
        )
        .expect("TaskData");
        let d = raw.detail(0);
        assert_eq!((d.task_id, d.index, d.attempt), (7, 3, 1));
        assert_eq!(d.launch_time_ms, 1_795_258_404_123);
        assert_eq!(d.duration_ms, 1000);
        assert_eq!(
            (
                d.scheduler_delay_ms,
                d.deserialize_ms,
                d.shuffle_read_ms,
                d.shuffle_write_ms
            ),
            (10, 20, 30, 15)
        );
        assert_eq!(d.compute_ms, 1000 - 10 - 20 - 30 - 15 - 5);
        assert_eq!(d.error.as_deref(), Some("boom"));
        assert_eq!(d.gc_ms, 40);
    }

    #[test]
    fn a_running_task_lasts_until_now() {
        let raw: RawTask = serde_json::from_str(
            r#"{"taskId":1,"launchTime":"2026-11-21T10:53:24.123GMT","status":"RUNNING"}"#,
        )
        .expect("TaskData");
        let d = raw.detail(1_795_258_405_123);
        assert_eq!(d.duration_ms, 1000);
        assert_eq!(d.compute_ms, 1000);
    }
}
