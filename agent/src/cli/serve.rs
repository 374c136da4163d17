//! `sparkscope serve`: the agent, with every part's flags ([`Config`]), until SIGINT/SIGTERM or
//! until the process that started it is gone.

use anyhow::Context;
use clap::Args;
use sparkscope::agent::{Agent, Config, Drained};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: Config,
    /// Once listening, write the bound addresses to this file as JSON (`ingest`, `http`,
    /// `grpc`): with port 0 in an address the system picks a free port.
    #[arg(long, env = "SPARKSCOPE_ADDRESSES_FILE")]
    addresses_file: Option<PathBuf>,
    /// Stop when the process with this id is no longer this one's parent (a notebook kernel's
    /// private agent stops with its kernel, however the kernel ends).
    #[arg(long, env = "SPARKSCOPE_PARENT_PID")]
    parent_pid: Option<u32>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let agent = Agent::build(args.config).await?;
    if let Some(path) = args.addresses_file {
        let a = agent.addrs();
        let json = serde_json::json!({
            "ingest": a.ingest.to_string(),
            "http": a.http.to_string(),
            "grpc": a.grpc.to_string(),
        });
        // Whole or not at all: the reader polls for the file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let agent = agent.spawn();
    tokio::select! {
        () = shutdown_signal() => {}
        () = parent_gone(args.parent_pid) => tracing::info!("parent process gone"),
    }
    tracing::info!("shutting down");
    if agent.shutdown().await == Drained::TimedOut {
        tracing::warn!("grace period over; exiting with connections still open");
    }
    Ok(())
}

/// Resolves once `pid` is no longer this process's parent; never without a pid.
async fn parent_gone(pid: Option<u32>) {
    if let Some(pid) = pid {
        loop {
            if std::os::unix::process::parent_id() != pid {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    std::future::pending::<()>().await;
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
