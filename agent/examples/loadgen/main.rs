//! Load for the agent, measured from outside: a synthetic listener feeds a real `sparkscope serve`
//! process Spark events (raw task starts and ends, jobs, stages and Connect operations spread over
//! many Connect sessions) while WebSocket subscribers follow those sessions. It prints the
//! agent's own CPU and memory (from /proc), how long an event took to show in a subscriber's
//! frame, the agent's ingest lag (its `sparkscope_ingest_lag_seconds` histogram) and dropped
//! subscribers, then one JSON line with every figure for `scripts/bench_table.py`.
//!
//! ```text
//! cargo run --release --example loadgen -- --agent target/release/sparkscope fanout
//! cargo run --release --example loadgen -- --agent target/release/sparkscope idle
//! cargo run --release --example loadgen -- --agent target/release/sparkscope memory
//! ```

use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod agent;
mod fanout;
mod idle;
mod listener;
mod memory;
mod subscribers;

use agent::AgentProcess;

/// The agent's tokens: made up for an agent started here; an attached agent's come from the
/// environment, under the names the agent itself reads.
pub(crate) struct Tokens {
    pub(crate) listener: String,
    pub(crate) subscriber: String,
    pub(crate) metrics: String,
}
pub(crate) const APP: &str = "app-loadgen";
pub(crate) const USER: &str = "load";

#[derive(Parser)]
struct Args {
    /// The agent binary to start (`sparkscope`).
    #[arg(long, required_unless_present = "attach_ingest")]
    agent: Option<PathBuf>,
    /// Load an agent that runs already (its listener address; `--attach-http` is its HTTP
    /// address, tokens from SPARKSCOPE_LISTENER_TOKEN, SPARKSCOPE_SUBSCRIBER_TOKEN and
    /// SPARKSCOPE_METRICS_TOKEN). Its own CPU and memory are measured only with `--attach-pid`.
    #[arg(long, requires = "attach_http")]
    attach_ingest: Option<String>,
    #[arg(long)]
    attach_http: Option<String>,
    #[arg(long)]
    attach_pid: Option<u32>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Tasks at a steady rate over many sessions, each followed by several subscribers.
    Fanout {
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        #[arg(long, default_value_t = 10)]
        subscribers_per_session: usize,
        /// Tasks started and ended per second, over all sessions (two task events each).
        #[arg(long, default_value_t = 10_000)]
        tasks_per_second: u64,
        #[arg(long, default_value_t = 100)]
        tasks_per_job: u64,
        /// Measured seconds, after a warm-up of 3 s.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Subscribers each following its own session, where nothing happens, while other
    /// sessions, followed by nobody, are busy.
    Idle {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 10)]
        busy_sessions: usize,
        #[arg(long, default_value_t = 10_000)]
        busy_tasks_per_second: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Many jobs as fast as the agent takes them, then a steady soak: memory must stay bounded
    /// by retention (its defaults), not grow with history.
    Memory {
        #[arg(long, default_value_t = 1_000_000)]
        tasks: u64,
        #[arg(long, default_value_t = 10_000)]
        jobs: u64,
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        /// The soak after the burst: tasks per second for this long, RSS sampled every 5 s.
        #[arg(long, default_value_t = 120)]
        soak_seconds: u64,
        #[arg(long, default_value_t = 10_000)]
        soak_tasks_per_second: u64,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    sparkscope::tls::install_crypto_provider();
    let agent = match (&args.agent, &args.attach_ingest, &args.attach_http) {
        (_, Some(ingest), Some(http)) => AgentProcess::attach(ingest, http, args.attach_pid),
        (Some(bin), _, _) => AgentProcess::start(bin).await?,
        _ => return Err("give --agent, or --attach-ingest and --attach-http".into()),
    };
    let result = match args.mode {
        Mode::Fanout {
            sessions,
            subscribers_per_session,
            tasks_per_second,
            tasks_per_job,
            seconds,
        } => {
            fanout::fanout(
                &agent,
                sessions,
                subscribers_per_session,
                tasks_per_second,
                tasks_per_job,
                seconds,
            )
            .await
        }
        Mode::Idle {
            subscribers,
            busy_sessions,
            busy_tasks_per_second,
            seconds,
        } => {
            idle::idle(
                &agent,
                subscribers,
                busy_sessions,
                busy_tasks_per_second,
                seconds,
            )
            .await
        }
        Mode::Memory {
            tasks,
            jobs,
            sessions,
            soak_seconds,
            soak_tasks_per_second,
        } => {
            memory::memory(
                &agent,
                tasks,
                jobs,
                sessions,
                soak_seconds,
                soak_tasks_per_second,
            )
            .await
        }
    };
    agent.stop().await;
    let figures = result?;
    println!("{}", serde_json::Value::Object(figures));
    Ok(())
}

pub(crate) type Figures = serde_json::Map<String, serde_json::Value>;
