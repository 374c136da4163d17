//! The agent under load, as a process of its own: started here or attached to, its CPU and
//! memory read from /proc, its figures from its own /metrics.

use crate::Tokens;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub(crate) struct AgentProcess {
    /// Started here (stopped at the end), or attached to.
    pub(crate) child: Option<tokio::process::Child>,
    pub(crate) pid: Option<u32>,
    pub(crate) ingest: String,
    pub(crate) http: String,
    pub(crate) tokens: Tokens,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

impl AgentProcess {
    pub(crate) fn attach(ingest: &str, http: &str, pid: Option<u32>) -> Self {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        AgentProcess {
            child: None,
            pid,
            ingest: ingest.to_owned(),
            http: http.to_owned(),
            tokens: Tokens {
                listener: env("SPARKSCOPE_LISTENER_TOKEN"),
                subscriber: env("SPARKSCOPE_SUBSCRIBER_TOKEN"),
                metrics: env("SPARKSCOPE_METRICS_TOKEN"),
            },
            _dir: None,
        }
    }

    pub(crate) async fn start(bin: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let tokens = Tokens {
            listener: sparkscope::auth::new_nonce(),
            subscriber: sparkscope::auth::new_nonce(),
            metrics: sparkscope::auth::new_nonce(),
        };
        let dir = tempfile::tempdir()?;
        let addresses = dir.path().join("addresses.json");
        let mut child = tokio::process::Command::new(bin)
            .args([
                "serve",
                "--ingest",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "127.0.0.1:0",
                "--addresses-file",
            ])
            .arg(&addresses)
            .env("SPARKSCOPE_LISTENER_TOKEN", &tokens.listener)
            .env("SPARKSCOPE_SUBSCRIBER_TOKEN", &tokens.subscriber)
            .env("SPARKSCOPE_METRICS_TOKEN", &tokens.metrics)
            .env("SPARKSCOPE_ALLOW_ANONYMOUS_API", "true")
            .env("SPARKSCOPE_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("the agent exited at once")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&addresses) {
                break t;
            }
            if let Some(status) = child.try_wait()? {
                return Err(
                    format!("the agent exited ({status}) before writing its addresses").into(),
                );
            }
            if Instant::now() > deadline {
                return Err("the agent did not write its addresses within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(AgentProcess {
            child: Some(child),
            pid: Some(pid),
            tokens,
            ingest: v["ingest"].as_str().unwrap_or_default().to_owned(),
            http: v["http"].as_str().unwrap_or_default().to_owned(),
            _dir: Some(dir),
        })
    }

    /// CPU seconds (user + system) the agent has used.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.pid
            .map_or(f64::NAN, |pid| cpu_seconds(&format!("/proc/{pid}/stat")))
    }

    /// CPU seconds of the agent's threads other than ingest's (`sparkscope-ingest`): what
    /// publishing costs, without the noise of the load's own ingestion.
    pub(crate) fn publish_cpu_seconds(&self) -> f64 {
        let Some(pid) = self.pid else {
            return f64::NAN;
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return f64::NAN;
        };
        tasks
            .filter_map(Result::ok)
            .filter(|t| {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                !comm.trim().starts_with("sparkscope-inge")
            })
            .map(|t| cpu_seconds(&t.path().join("stat").to_string_lossy()))
            .sum()
    }

    /// Resident memory in MB.
    pub(crate) fn rss_mb(&self) -> f64 {
        let Some(pid) = self.pid else {
            return f64::NAN;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    pub(crate) async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.http);
        match reqwest::Client::new()
            .get(url)
            .bearer_auth(&self.tokens.metrics)
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub(crate) async fn stop(self) {
        let Some(mut child) = self.child else { return };
        if let Some(pid) = child.id() {
            let _ = tokio::process::Command::new("kill")
                .arg(pid.to_string())
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
}

/// CPU seconds (user + system) of the process whose `/proc/…/stat` this is.
pub(crate) fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/pid/stat: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The sum of a counter or histogram series over its labels, from the Prometheus text.
pub(crate) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// The cumulative count of a histogram's bucket `le`.
pub(crate) fn bucket(text: &str, name: &str, le: &str) -> f64 {
    let prefix = format!("{name}_bucket{{le=\"{le}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The ingest lag over a window: the upper bound of the bucket holding the 99th percentile.
pub(crate) fn ingest_lag_p99(before: &str, after: &str) -> (f64, f64) {
    const NAME: &str = "sparkscope_ingest_lag_seconds";
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let count =
        metric_sum(after, &format!("{NAME}_count")) - metric_sum(before, &format!("{NAME}_count"));
    for b in bounds {
        let n = bucket(after, NAME, b) - bucket(before, NAME, b);
        if count > 0.0 && n >= 0.99 * count {
            return (b.parse().unwrap_or(f64::INFINITY) * 1000.0, count);
        }
    }
    (f64::NAN, count)
}
