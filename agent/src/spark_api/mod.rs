//! Spark's monitoring REST API (`/api/v1`), the agent's third source after the listener's stream
//! and event logs: its types, read and written by one set of serde structs ([`types`]), its
//! dates ([`date`]), and one client that knows where each application's UI answers. Ingest asks
//! it for jobs after a gap (`ingest::spark_poll`); the stream asks it for a stage's tasks
//! (`publish::stream::tasks`).

pub mod date;
pub mod types;

pub use date::SparkDate;
pub use types::{JobData, JobStatus, TaskData};

use crate::flags::non_empty;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Where Spark's REST API is.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Spark's REST API")]
pub struct SparkApiConfig {
    /// Spark's UI address (e.g. http://driver:4040) for reconciliation with its REST API and for
    /// task lists, for every application; by default the address each listener announces.
    #[arg(long = "spark-ui", value_name = "URL", env = "SPARKSCOPE_SPARK_UI", value_parser = non_empty)]
    pub spark_ui: Option<String>,
    /// One request's time limit.
    #[arg(skip = Duration::from_secs(5))]
    pub timeout: Duration,
}

crate::flags::default_from_flags!(SparkApiConfig);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no HTTP client: {0}")]
    NoClient(String),
    #[error("Spark's REST API at {url} did not answer: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("Spark's REST API at {url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("Spark's REST API at {url} sent what is not {what}: {source}")]
    Body {
        url: String,
        what: &'static str,
        source: reqwest::Error,
    },
}

/// The agent's one client of Spark's REST API.
pub struct SparkApi {
    cfg: SparkApiConfig,
    client: Result<reqwest::Client, String>,
}

impl SparkApi {
    pub fn new(cfg: SparkApiConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| e.to_string());
        if let Err(e) = &client {
            tracing::error!(error = %e, "no HTTP client: Spark's REST API cannot be asked");
        }
        SparkApi { cfg, client }
    }

    /// Where an application's REST API answers: the operator's `--spark-ui`, else the address
    /// its listener announced; `None` when neither is known (`spark.ui.enabled=false`).
    pub fn ui_of(&self, announced: &str) -> Option<String> {
        self.cfg
            .spark_ui
            .clone()
            .or_else(|| Some(announced.to_owned()))
            .filter(|u| !u.is_empty())
    }

    /// `GET <ui>/api/v1/applications/<app>/jobs`.
    pub async fn jobs(&self, ui: &str, app_id: &str) -> Result<Vec<JobData>, FetchError> {
        let url = format!(
            "{}/api/v1/applications/{app_id}/jobs",
            ui.trim_end_matches('/')
        );
        self.get(url, "a list of jobs").await
    }

    /// `GET <ui>/api/v1/applications/<app>/stages/<stage>/<attempt>/taskList?<query>`.
    pub async fn task_list(
        &self,
        ui: &str,
        app_id: &str,
        (stage, attempt): (i32, i32),
        query: &str,
    ) -> Result<Vec<TaskData>, FetchError> {
        let url = format!(
            "{}/api/v1/applications/{app_id}/stages/{stage}/{attempt}/taskList?{query}",
            ui.trim_end_matches('/')
        );
        self.get(url, "a task list").await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: String,
        what: &'static str,
    ) -> Result<T, FetchError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| FetchError::NoClient(e.clone()))?;
        let resp = match client.get(&url).send().await {
            Ok(r) => r,
            Err(source) => return Err(FetchError::Request { url, source }),
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Status { url, status });
        }
        resp.json()
            .await
            .map_err(|source| FetchError::Body { url, what, source })
    }
}
