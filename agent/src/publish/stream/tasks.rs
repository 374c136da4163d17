//! The tasks of one stage attempt, on request, from Spark's REST API
//! (`/applications/<app>/stages/<id>/<attempt>/taskList`): the notebook's timeline shows them in
//! per-executor lanes when a user opens a stage. Tasks are never streamed one by one; a request
//! gets the longest ones and every failed one, bounded.

use crate::control::InFlight;
use crate::model::truncate_utf8;
use crate::model::{lock, Store};
use crate::spark_api::{SparkApi, TaskData};
use crate::telemetry::{self, Limit};
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Notebooks (stream subscribers)")]
pub struct TaskListConfig {
    /// When a notebook opens a stage, at most this many of its longest tasks (and as many
    /// failed ones) are listed from Spark's REST API.
    #[arg(
        long = "task-list-max",
        value_name = "N",
        default_value_t = 200,
        env = "SPARKSCOPE_TASK_LIST_MAX"
    )]
    pub max_tasks: usize,
    /// Task-list requests to Spark's REST API at once; more are answered `unavailable`.
    #[arg(
        id = "max_task_lists_in_flight",
        long = "max-task-lists-in-flight",
        value_name = "N",
        default_value_t = 8,
        env = "SPARKSCOPE_MAX_TASK_LISTS_IN_FLIGHT"
    )]
    pub max_in_flight: usize,
    /// "Is it stuck?" thread dumps of a stage's longest-running task keep at most this many of
    /// its innermost frames.
    #[arg(
        long = "thread-dump-frames",
        value_name = "N",
        default_value_t = 40,
        env = "SPARKSCOPE_THREAD_DUMP_FRAMES"
    )]
    pub thread_dump_frames: usize,
}

crate::flags::default_from_flags!(TaskListConfig);

pub struct TaskLister {
    store: Arc<Store>,
    spark: Arc<SparkApi>,
    cfg: TaskListConfig,
    in_flight: AtomicUsize,
}

impl TaskLister {
    pub fn new(store: Arc<Store>, spark: Arc<SparkApi>, cfg: TaskListConfig) -> Self {
        TaskLister {
            store,
            spark,
            cfg,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Answers a request whose session the requester may see (the caller checks that): the
    /// stage must have run for a job of that session.
    /// `pinned`: the application the subscriber named for the session, which then owns it.
    pub async fn list(&self, req: &pb::TaskListRequest, pinned: Option<&str>) -> pb::TaskList {
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
        // Only the session's own application answers for its stages.
        let owner = pinned
            .map(str::to_owned)
            .or_else(|| self.store.owner_of(&req.session_id));
        if owner.as_deref().is_some_and(|o| o != req.app_id) {
            return refuse(
                "not_found",
                format!(
                    "session {} belongs to another application than {}",
                    req.session_id, req.app_id
                ),
            );
        }
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
            let ui = self.spark.ui_of(&app.info().ui_url);
            (ui, app.stage(key).map_or(0, |s| s.num_tasks))
        };
        let Some(ui) = ui else {
            return refuse(
                "unavailable",
                "Spark's UI is off for this application (spark.ui.enabled=false), so its \
                 tasks cannot be listed"
                    .to_owned(),
            );
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
        let n = self.cfg.max_tasks;
        let (longest, failed, running) = (
            format!("length={n}&sortBy=-runtime"),
            format!("length={n}&status=failed"),
            format!("length={n}&status=running"),
        );
        let (longest, failed, running) = tokio::join!(
            self.spark.task_list(&ui, &req.app_id, key, &longest),
            self.spark.task_list(&ui, &req.app_id, key, &failed),
            async {
                if req.thread_dump {
                    self.spark.task_list(&ui, &req.app_id, key, &running).await
                } else {
                    Ok(Vec::new())
                }
            }
        );
        let mut tasks: BTreeMap<i64, pb::TaskDetail> = BTreeMap::new();
        let now = crate::clock::now_ms();
        let thread_dump = match (req.thread_dump, &running) {
            (false, _) => None,
            (true, Ok(running)) => Some(self.thread_dump(&ui, &req.app_id, running, now).await),
            (true, Err(e)) => Some(pb::ThreadDump {
                error: e.to_string(),
                taken_at_ms: now,
                ..Default::default()
            }),
        };
        for list in [longest, failed, running] {
            match list {
                Ok(list) => {
                    for t in list {
                        let d = detail(t, now);
                        tasks.insert(d.task_id, d);
                    }
                }
                Err(e) => return refuse("unavailable", e.to_string()),
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
            thread_dump,
            ..Default::default()
        }
    }

    /// The thread dump of the longest-running of `running` (the earliest launched), or why
    /// there is none.
    async fn thread_dump(
        &self,
        ui: &str,
        app_id: &str,
        running: &[TaskData],
        now: i64,
    ) -> pb::ThreadDump {
        let oldest = running
            .iter()
            .filter(|t| t.status.eq_ignore_ascii_case("RUNNING"))
            .min_by_key(|t| (t.launch_time.map_or(i64::MAX, |d| d.0), t.task_id));
        let Some(task) = oldest else {
            return pb::ThreadDump {
                error: "no task of this stage attempt is running now".to_owned(),
                taken_at_ms: now,
                ..Default::default()
            };
        };
        let mut dump = pb::ThreadDump {
            task_id: task.task_id,
            executor_id: task.executor_id.clone(),
            running_ms: task.launch_time.map_or(0, |d| (now - d.0).max(0)),
            taken_at_ms: now,
            ..Default::default()
        };
        match self
            .spark
            .task_thread(ui, app_id, task.task_id, &task.executor_id)
            .await
        {
            Ok(t) => {
                let frames = t.frames();
                let keep = self.cfg.thread_dump_frames;
                dump.more_frames = i32::try_from(frames.len().saturating_sub(keep)).unwrap_or(0);
                dump.frames = frames
                    .into_iter()
                    .take(keep)
                    .map(|mut f| {
                        truncate_utf8(&mut f, MAX_FRAME);
                        f
                    })
                    .collect();
                dump.thread_name = t.thread_name;
                truncate_utf8(&mut dump.thread_name, MAX_FRAME);
                dump.thread_state = t.thread_state;
                truncate_utf8(&mut dump.thread_state, 32);
                if let Some(id) = t.blocked_by_thread_id {
                    dump.blocked_by = format!("{} (thread {id})", t.blocked_by_lock);
                    truncate_utf8(&mut dump.blocked_by, MAX_FRAME);
                }
            }
            Err(e) => dump.error = e.to_string(),
        }
        dump
    }
}

/// A frame (and a thread name) is kept up to this many bytes.
const MAX_FRAME: usize = 512;

/// An error message is kept up to this many bytes (its stack trace is in the stage's failure).
const MAX_ERROR: usize = 4096;

/// The task with its phases as Spark's UI draws them (`StagePage` event timeline): the computing
/// time is what the other phases leave of the duration.
fn detail(t: TaskData, now_ms: i64) -> pb::TaskDetail {
    let launch = t.launch_time.map_or(0, |d| d.0);
    let duration = t
        .duration
        .unwrap_or_else(|| if launch > 0 { now_ms - launch } else { 0 })
        .max(0);
    let m = t.task_metrics.unwrap_or_default();
    let shuffle_read = m
        .shuffle_read_metrics
        .map_or(0, |s| s.fetch_wait_time)
        .max(0);
    let shuffle_write = m
        .shuffle_write_metrics
        .map_or(0, |s| s.write_time / 1_000_000)
        .max(0);
    let (delay, deserialize, serialize, getting) = (
        t.scheduler_delay.max(0),
        m.executor_deserialize_time.max(0),
        m.result_serialization_time.max(0),
        t.getting_result_time.max(0),
    );
    let others = delay + deserialize + shuffle_read + shuffle_write + serialize + getting;
    let error = t.error_message.map(|mut e| {
        truncate_utf8(&mut e, MAX_ERROR);
        e
    });
    pb::TaskDetail {
        task_id: t.task_id,
        index: t.index,
        attempt: t.attempt,
        executor_id: t.executor_id,
        host: t.host,
        status: t.status,
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
        speculative: t.speculative,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spark_task_becomes_a_detail_with_its_phases() {
        let raw: TaskData = serde_json::from_str(
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
        let d = detail(raw, 0);
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
        let raw: TaskData = serde_json::from_str(
            r#"{"taskId":1,"launchTime":"2026-11-21T10:53:24.123GMT","status":"RUNNING"}"#,
        )
        .expect("TaskData");
        let d = detail(raw, 1_795_258_405_123);
        assert_eq!(d.duration_ms, 1000);
        assert_eq!(d.compute_ms, 1000);
    }
}
