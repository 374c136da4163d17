//! `sparkscope replay`: Spark event logs through the same parser and model as live ingest,
//! printed as the agent's JSON API would serve them.

use clap::{Args, ValueEnum};
use sparkscope::ingest::replay::ReadConfig;
use sparkscope::model::Retention;
use sparkscope::publish::rest;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct ReplayArgs {
    /// An event-log file (plain or zstd), a rolling `eventlog_v2_<appId>` directory, or a
    /// directory holding several logs.
    path: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: ReplayFormat,
    #[command(flatten)]
    read: ReadConfig,
    #[command(flatten)]
    retention: Retention,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReplayFormat {
    /// `{"applications":[…]}`, the JSON of `GET /api/v1/applications`.
    Json,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (apps, stats) =
        sparkscope::ingest::replay::replay_with(&args.path, &args.retention, args.read)?;
    let secs = started.elapsed().as_secs_f64();
    let out = match args.format {
        ReplayFormat::Json => {
            let applications = apps.iter().map(rest::application).collect();
            serde_json::to_string(&rest::Applications { applications })?
        }
    };
    println!("{out}");
    tracing::info!(
        lines = stats.lines,
        malformed = stats.parse_errors,
        unknown_events = stats.unknown_events,
        seconds = format!("{secs:.3}"),
        lines_per_second = format!("{:.0}", stats.lines as f64 / secs.max(1e-9)),
        "replayed"
    );
    Ok(())
}
