//! The parts of Spark's REST API the agent reads and writes, as Spark's `status/api/v1/api.scala`
//! defines them. One set of structs for both directions: what the agent reads from Spark in
//! reconciliation is what its own JSON API writes, so the two compare field by field.

use super::date::{lenient, SparkDate};
use serde::{Deserialize, Serialize};

/// Spark's `JobExecutionStatus`; the agent also uses `UNKNOWN` for a job whose end it never saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    /// Its end was never seen (evicted past the live bound), or Spark wrote a status this
    /// version does not know.
    #[serde(other)]
    Unknown,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::Unknown => "UNKNOWN",
        }
    }
}

/// Spark's `JobData` (`GET /api/v1/applications/<app>/jobs`), the fields the agent keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobData {
    pub job_id: i32,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub submission_time: Option<SparkDate>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub completion_time: Option<SparkDate>,
    #[serde(default)]
    pub stage_ids: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_group: Option<String>,
    #[serde(default)]
    pub job_tags: Vec<String>,
    pub status: JobStatus,
    #[serde(default)]
    pub num_tasks: i32,
    #[serde(default)]
    pub num_active_tasks: i32,
    #[serde(default)]
    pub num_completed_tasks: i32,
    #[serde(default)]
    pub num_skipped_tasks: i32,
    #[serde(default)]
    pub num_failed_tasks: i32,
    #[serde(default)]
    pub num_killed_tasks: i32,
    #[serde(default)]
    pub num_active_stages: i32,
    #[serde(default)]
    pub num_completed_stages: i32,
    #[serde(default)]
    pub num_skipped_stages: i32,
    #[serde(default)]
    pub num_failed_stages: i32,
}

impl JobData {
    /// The counts, in the order Spark lists them.
    pub fn counts(&self) -> [i32; 10] {
        [
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
        ]
    }
}

/// Spark's `TaskData` (`…/stages/<id>/<attempt>/taskList`): the fields the notebook's timeline
/// draws.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskData {
    pub task_id: i64,
    pub index: i32,
    pub attempt: i32,
    #[serde(deserialize_with = "lenient")]
    pub launch_time: Option<SparkDate>,
    pub duration: Option<i64>,
    pub executor_id: String,
    pub host: String,
    pub status: String,
    pub speculative: bool,
    pub error_message: Option<String>,
    pub task_metrics: Option<TaskMetrics>,
    pub scheduler_delay: i64,
    pub getting_result_time: i64,
}

/// Spark's `TaskMetrics`, the phases of a task.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskMetrics {
    pub executor_deserialize_time: i64,
    pub result_serialization_time: i64,
    pub jvm_gc_time: i64,
    pub shuffle_read_metrics: Option<ShuffleReadMetrics>,
    pub shuffle_write_metrics: Option<ShuffleWriteMetrics>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ShuffleReadMetrics {
    pub fetch_wait_time: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ShuffleWriteMetrics {
    /// Nanoseconds.
    pub write_time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job as Spark 4.3's REST API wrote it (fields the agent does not keep included).
    const SPARK_JOB: &str = r#"{"jobId":3,"name":"collect at <stdin>:1","description":"x",
        "submissionTime":"2026-11-21T10:53:24.123GMT","completionTime":"2026-11-21T10:53:25.000GMT",
        "stageIds":[4,5],"jobTags":["a","b"],"status":"SUCCEEDED","numTasks":8,
        "numActiveTasks":0,"numCompletedTasks":6,"numSkippedTasks":2,"numFailedTasks":1,
        "numKilledTasks":0,"numCompletedIndices":6,"numActiveStages":0,"numCompletedStages":1,
        "numSkippedStages":1,"numFailedStages":0,"killedTasksSummary":{}}"#;

    #[test]
    fn a_job_reads_from_spark_and_writes_back_in_its_shape() {
        let job: JobData = serde_json::from_str(SPARK_JOB).expect("JobData");
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.submission_time, Some(SparkDate(1_795_258_404_123)));
        assert_eq!(job.counts(), [8, 0, 6, 2, 1, 0, 0, 1, 1, 0]);
        let back: serde_json::Value = serde_json::to_value(&job).expect("json");
        let spark: serde_json::Value = serde_json::from_str(SPARK_JOB).expect("json");
        for (k, v) in back.as_object().expect("object") {
            assert_eq!(&spark[k], v, "{k}");
        }
        // Every field but the job group, which Spark left out too.
        assert_eq!(back.as_object().map(|o| o.len()), Some(18));
    }

    #[test]
    fn unknown_statuses_and_odd_dates_do_not_fail_the_answer() {
        let odd = SPARK_JOB
            .replace("SUCCEEDED", "ZOMBIE")
            .replace("2026-11-21T10:53:24.123GMT", "yesterday");
        let job: JobData = serde_json::from_str(&odd).expect("JobData");
        assert_eq!(job.status, JobStatus::Unknown);
        assert_eq!(job.submission_time, None);
        let sparse: JobData =
            serde_json::from_str(r#"{"jobId":1,"status":"RUNNING"}"#).expect("JobData");
        assert_eq!(sparse.counts(), [0; 10]);
        let written = serde_json::to_string(&sparse).expect("json");
        assert!(!written.contains("submissionTime"), "{written}");
    }
}

/// Spark's `ThreadStackTrace` (`/threads`), the parts a thread dump shows. Its `stackTrace` is
/// a `StackTrace(elems)`, written as `{"elems": [...]}` (or a plain list).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ThreadStackTrace {
    pub thread_id: i64,
    pub thread_name: String,
    pub thread_state: String,
    pub stack_trace: serde_json::Value,
    pub blocked_by_thread_id: Option<i64>,
    pub blocked_by_lock: String,
}

impl ThreadStackTrace {
    /// The frames, innermost first, as Spark writes them ("java.base@17/java.lang.Thread.sleep
    /// (Native Method)").
    pub fn frames(&self) -> Vec<String> {
        let list = match &self.stack_trace {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(o) => match o.get("elems") {
                Some(serde_json::Value::Array(a)) => a,
                _ => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        // Spark ends each with a line break.
        list.iter()
            .filter_map(|f| f.as_str().map(str::trim))
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
