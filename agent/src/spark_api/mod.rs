//! Spark's monitoring REST API (`/api/v1`), the agent's third source after the listener's stream
//! and event logs: its types, read and written by one set of serde structs ([`types`]), its
//! dates ([`date`]), and one client that knows where each application's UI answers. Ingest asks
//! it for jobs after a gap (`ingest::spark_poll`); the stream asks it for a stage's tasks
//! (`publish::stream::tasks`).

pub mod date;
pub mod types;

pub use date::SparkDate;
pub use types::{JobData, JobStatus, TaskData, ThreadStackTrace};

use crate::flags::non_empty;

/// An `http` or `https` address, as a flag gives it.
pub fn http_url(value: &str) -> Result<String, String> {
    let v = non_empty(value)?;
    if is_http_url(&v) {
        Ok(v)
    } else {
        Err("not an http:// or https:// address".to_owned())
    }
}
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Whether `url` may be used as a link or an address of Spark's UI: `http` or `https`, a host,
/// nothing a browser would run or a terminal would interpret (a listener's hello and an
/// operator's template are both input).
pub fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && url
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '"' | '<' | '>' | '`'))
}

/// Where Spark's REST API is.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Spark's REST API")]
pub struct SparkApiConfig {
    /// Spark's UI address (e.g. http://driver:4040) for reconciliation with its REST API and for
    /// task lists, for every application; by default the address each listener announces.
    #[arg(long = "spark-ui", value_name = "URL", env = "SPARKSCOPE_SPARK_UI", value_parser = http_url)]
    pub spark_ui: Option<String>,
    /// For an https Spark UI: a PEM file of the certificate authorities to trust, instead of
    /// the system's (/etc/ssl/certs/ca-certificates.crt).
    #[arg(
        long = "spark-ui-ca-file",
        value_name = "PEM",
        env = "SPARKSCOPE_SPARK_UI_CA_FILE"
    )]
    pub ca_file: Option<std::path::PathBuf>,
    /// A file holding one `Name: value` header sent with every request to Spark's REST API,
    /// for a UI behind an authenticating proxy (e.g. `Authorization: Bearer …`). A file, so that
    /// the secret stays off command lines.
    #[arg(
        long = "spark-ui-header-file",
        value_name = "FILE",
        env = "SPARKSCOPE_SPARK_UI_HEADER_FILE"
    )]
    pub header_file: Option<std::path::PathBuf>,
    /// One request's time limit.
    #[arg(skip = Duration::from_secs(5))]
    pub timeout: Duration,
}

/// Where the system keeps its trusted certificate authorities (Debian's ca-certificates).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS settings for https Spark UIs: the CA file's roots (or the system's), ring's
/// cryptography, as the agent's own TLS.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let path = ca_file.unwrap_or(std::path::Path::new(SYSTEM_ROOTS));
    let mut roots = rustls::RootCertStore::empty();
    match CertificateDer::pem_file_iter(path) {
        Ok(certs) => {
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        // No system roots: https Spark UIs are refused; http ones work.
        Err(e) if ca_file.is_some() => return Err(format!("{}: {e}", path.display())),
        Err(_) => {}
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The header in `file`: one `Name: value` line.
fn header_of(file: &std::path::Path) -> Result<reqwest::header::HeaderMap, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let line = text.trim();
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("{}: expected one `Name: value` line", file.display()))?;
    let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut value = reqwest::header::HeaderValue::from_str(value.trim())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(name, value);
    Ok(headers)
}

/// Whether the client can be built as configured (its files read, its header valid).
pub fn check(cfg: &SparkApiConfig) -> Result<(), String> {
    client(cfg).map(|_| ())
}

/// The one client: https with `tls_config`, the operator's header, the time limit.
fn client(cfg: &SparkApiConfig) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .tls_backend_preconfigured(tls_config(cfg.ca_file.as_deref())?);
    if let Some(file) = &cfg.header_file {
        b = b.default_headers(header_of(file)?);
    }
    b.build().map_err(|e| e.to_string())
}

crate::flags::default_from_flags!(SparkApiConfig);

#[cfg(test)]
mod tests {
    use super::is_http_url;

    #[test]
    fn only_http_addresses_are_links() {
        for ok in [
            "http://127.0.0.1:4040",
            "HTTPS://driver.example:4040/proxy/app-1/",
            "https://hub.example/user/{user}/proxy/4040",
        ] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(document.domain)",
            "JavaScript://%0aalert(1)",
            "data:text/html,<script>",
            "http://",
            "http:///path",
            "http://host/\"onmouseover=alert(1)",
            "http://host/a b",
            "http://host/\u{1b}[31m",
            "file:///etc/passwd",
            "",
        ] {
            assert!(!is_http_url(bad), "{bad:?}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no HTTP client: {0}")]
    NoClient(String),
    #[error("Spark's REST API address {0} is no URL")]
    BadUrl(String),
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
        let client = client(&cfg);
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

    /// `GET <ui>/api/v1/applications/<app>/threads?taskId=<task>&executorId=<executor>`: the
    /// thread running a task, as its executor sees it now (Spark 4).
    pub async fn task_thread(
        &self,
        ui: &str,
        app_id: &str,
        task_id: i64,
        executor_id: &str,
    ) -> Result<ThreadStackTrace, FetchError> {
        let mut url = reqwest::Url::parse(&format!(
            "{}/api/v1/applications/{app_id}/threads",
            ui.trim_end_matches('/')
        ))
        .map_err(|_| FetchError::BadUrl(ui.to_owned()))?;
        url.query_pairs_mut()
            .append_pair("taskId", &task_id.to_string())
            .append_pair("executorId", executor_id);
        self.get(url.to_string(), "a thread dump").await
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
