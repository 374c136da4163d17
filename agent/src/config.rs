//! `sparkscope serve`'s configuration. Each part of the agent declares its own flags (clap
//! `Args`: the flag, its environment variable, its default and its help, side by side) and
//! [`Config`] gathers them. A default is written once, on its flag: the `Default` of every part
//! is that part's flags parsed from nothing (`flags::defaults`), so the agent a test builds is
//! the agent `sparkscope serve` starts.

use crate::control::ControlConfig;
use crate::flags::{parse_without_env, seconds};
use crate::ingest::listener::IngestConfig;
use crate::ingest::spark_poll::SparkPollConfig;
use crate::model::Retention;
use crate::publish::http::AccessConfig;
use crate::publish::metrics::MetricsConfig;
use crate::publish::stream::tasks::TaskListConfig;
use crate::publish::stream::StreamConfig;
use crate::spark_api::SparkApiConfig;
use crate::tls::TlsConfig;
use crate::upkeep::UpkeepConfig;
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything `sparkscope serve` can be told.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address listeners connect to (the listener's `spark.sparkscope.agent`).
    #[arg(
        long = "ingest",
        value_name = "ADDR",
        default_value = "127.0.0.1:4741",
        env = "SPARKSCOPE_INGEST"
    )]
    pub ingest_addr: SocketAddr,
    /// Address of the HTTP API, the WebSocket stream and `/metrics`.
    #[arg(
        long = "http",
        value_name = "ADDR",
        default_value = "127.0.0.1:4740",
        env = "SPARKSCOPE_HTTP"
    )]
    pub http_addr: SocketAddr,
    /// Address of the gRPC stream (sparkscope.v1.Monitor).
    #[arg(
        long = "grpc",
        value_name = "ADDR",
        default_value = "127.0.0.1:4742",
        env = "SPARKSCOPE_GRPC"
    )]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub ingest: IngestConfig,
    #[command(flatten)]
    pub stream: StreamConfig,
    #[command(flatten)]
    pub access: AccessConfig,
    #[command(flatten)]
    pub control: ControlConfig,
    #[command(flatten)]
    pub spark_api: SparkApiConfig,
    #[command(flatten)]
    pub spark_poll: SparkPollConfig,
    #[command(flatten)]
    pub tasks: TaskListConfig,
    #[command(flatten)]
    pub retention: Retention,
    #[command(flatten)]
    pub upkeep: UpkeepConfig,
    #[command(flatten)]
    pub metrics: MetricsConfig,
    #[command(flatten)]
    pub tls: TlsConfig,
    /// On SIGINT/SIGTERM, how long open connections get to finish, in seconds.
    #[arg(
        long = "shutdown-grace-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "5",
        env = "SPARKSCOPE_SHUTDOWN_GRACE_SECONDS"
    )]
    pub shutdown_grace: Duration,
}

crate::flags::default_from_flags!(Config);

impl Config {
    /// The configuration these flags give (`sparkscope serve`'s, without the program name),
    /// with the environment ignored: for tests and embedders that start an agent in-process.
    pub fn from_flags<I, T>(flags: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        parse_without_env(flags)
    }
}

/// Every flag of `sparkscope serve` as the Markdown table kept in docs/configuration.md: the
/// flag, its environment variable, its default and its help, read from the flags themselves.
pub fn flags_markdown() -> String {
    let cmd = Config::augment_args(clap::Command::new("serve"));
    let mut out = String::from("| flag | env | default | meaning |\n|---|---|---|---|\n");
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(long) = a.get_long() else {
            continue;
        };
        let value = match a.get_value_names() {
            Some(names) if a.get_action().takes_values() => {
                format!(" <{}>", names.join(" "))
            }
            _ => String::new(),
        };
        let env = a
            .get_env()
            .map_or("—".to_owned(), |e| format!("`{}`", e.to_string_lossy()));
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            "—".to_owned()
        } else {
            format!("`{}`", defaults.join(" "))
        };
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!(
            "| `--{long}{value}` | {env} | {default} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    out
}

/// The user's sparkscope directory: `SPARKSCOPE_HOME`, else `~/.sparkscope`. `sparkscope
/// server` keeps its logs and credentials there, the agent its run history, and the kernel
/// extension finds the stream's token there when nothing else names one.
pub fn user_dir() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("SPARKSCOPE_HOME").filter(|p| !p.is_empty()) {
        return std::path::PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map_or_else(|| std::path::PathBuf::from("."), std::path::PathBuf::from);
    home.join(".sparkscope")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_flags_defaults() {
        let cfg = Config::default();
        assert_eq!(cfg.http_addr.to_string(), "127.0.0.1:4740");
        assert_eq!(cfg.ingest_addr.to_string(), "127.0.0.1:4741");
        assert_eq!(cfg.grpc_addr.to_string(), "127.0.0.1:4742");
        assert_eq!(cfg.shutdown_grace, Duration::from_secs(5));
        // The values that once differed between a flag and a Default impl.
        assert_eq!(cfg.upkeep.retain, Duration::from_secs(6 * 3600));
        assert_eq!(cfg.stream.auth.jupyterhub_cache, Duration::from_secs(60));
        // Each part's own Default is the same as its place in the whole.
        assert_eq!(
            format!("{:?}", cfg.ingest),
            format!("{:?}", IngestConfig::default())
        );
        assert_eq!(
            format!("{:?}", cfg.stream),
            format!("{:?}", StreamConfig::default())
        );
        assert_eq!(
            format!("{:?}", cfg.retention),
            format!("{:?}", Retention::default())
        );
        assert_eq!(
            format!("{:?}", cfg.upkeep),
            format!("{:?}", UpkeepConfig::default())
        );
    }

    /// docs/configuration.md holds the table; regenerate it with the one this test prints.
    #[test]
    fn the_configuration_doc_is_the_flags() {
        let doc = include_str!("../../docs/configuration.md");
        let table = flags_markdown();
        assert!(
            doc.contains(&table),
            "docs/configuration.md is out of date; its table should be:\n{table}"
        );
    }

    /// The listener and the kernel extension default to this agent's default addresses.
    #[test]
    fn the_other_parts_default_to_the_agents_addresses() {
        let cfg = Config::default();
        let listener = include_str!(
            "../../listener-jar/src/main/java/io/sparkscope/listener/ListenerConfig.java"
        );
        assert!(
            listener.contains(&format!("\"{}\"", cfg.ingest_addr)),
            "the listener's default agent address is not {}",
            cfg.ingest_addr
        );
        let kernel = include_str!("../../kernel-comm/src/sparkscope/agent.py");
        let url = format!("\"ws://{}/api/v1/stream\"", cfg.http_addr);
        assert!(
            kernel.contains(&url),
            "the kernel's default stream is not {url}"
        );
    }

    #[test]
    fn flags_override_defaults_and_bad_values_are_refused() {
        let cfg = Config::from_flags([
            "--http",
            "127.0.0.1:0",
            "--stream-interval-ms",
            "20",
            "--retain-jobs",
            "5",
        ])
        .expect("flags parse");
        assert_eq!(cfg.http_addr.port(), 0);
        assert_eq!(cfg.stream.interval, Duration::from_millis(20));
        assert_eq!(cfg.retention.jobs, 5);
        let err = Config::from_flags(["--stream-interval-ms", "soon"]).expect_err("refused");
        assert!(err.to_string().contains("milliseconds"), "{err}");
        let err = Config::from_flags(["--api-token", " "]).expect_err("refused");
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
