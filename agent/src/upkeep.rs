//! The timers over the store, in one task: busy task slots sampled at the stream's cadence (the
//! notebook's Tasks view), finished work past its age dropped, drivers gone past their grace
//! ended, and the Prometheus recorder's own upkeep (its histograms drained between scrapes).

use crate::clock::now_ms;
use crate::flags::seconds;
use crate::model::{lock, Store};
use crate::shutdown::Shutdown;
use crate::telemetry::{self, Limit};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// What the upkeep keeps, and how often it runs.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Retention")]
pub struct UpkeepConfig {
    /// Finished jobs, stages, operations and sessions older than this many seconds are dropped,
    /// and applications whose listener has been gone as long.
    #[arg(
        long = "retain-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "21600",
        env = "SPARKSCOPE_RETAIN_SECONDS"
    )]
    pub retain: Duration,
    /// Busy-slots samples kept per application for the notebook's Tasks view (one per stream
    /// interval at most, only when the value changed); past it the oldest goes.
    #[arg(
        long = "task-samples",
        value_name = "N",
        default_value_t = 6000,
        env = "SPARKSCOPE_TASK_SAMPLES"
    )]
    pub task_samples: usize,
    /// A driver whose listener left without an application end and has not come back within
    /// this many seconds is taken for dead: its running jobs and operations are ended as
    /// unknown and notebooks are told. 0: never.
    #[arg(
        long = "listener-gone-grace-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "60",
        env = "SPARKSCOPE_LISTENER_GONE_GRACE_SECONDS"
    )]
    pub gone_grace: Duration,
    /// How often the age limit is applied.
    #[arg(skip = Duration::from_secs(10))]
    pub prune_every: Duration,
    /// How often the Prometheus recorder does its own upkeep.
    #[arg(skip = Duration::from_secs(5))]
    pub metrics_every: Duration,
}

crate::flags::default_from_flags!(UpkeepConfig);

/// Runs until shutdown; samples every `sample_every`.
pub async fn run(
    store: Arc<Store>,
    cfg: UpkeepConfig,
    sample_every: Duration,
    metrics: Option<PrometheusHandle>,
    mut shutdown: Shutdown,
) {
    let timer = |every: Duration| {
        let mut t = tokio::time::interval(every.max(Duration::from_millis(1)));
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
        t
    };
    let (mut sample, mut prune, mut recorder, mut gone) = (
        timer(sample_every),
        timer(cfg.prune_every),
        timer(cfg.metrics_every),
        timer(Duration::from_secs(1)),
    );
    let max_age = i64::try_from(cfg.retain.as_millis()).unwrap_or(i64::MAX);
    let grace = i64::try_from(cfg.gone_grace.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = sample.tick() => {
                if sample_all(&store, now_ms(), cfg.task_samples) {
                    store.notify();
                }
            }
            _ = prune.tick() => store.prune(now_ms(), max_age),
            _ = gone.tick(), if grace > 0 => {
                if end_gone_drivers(&store, now_ms(), grace) {
                    store.notify();
                }
            }
            _ = recorder.tick() => {
                if let Some(handle) = &metrics {
                    handle.run_upkeep();
                }
            }
        }
    }
}

/// Ends the running work of every application whose driver has been gone `grace_ms`; whether
/// any changed.
pub fn end_gone_drivers(store: &Store, now_ms: i64, grace_ms: i64) -> bool {
    let mut changed = false;
    for app in store.apps() {
        let mut a = lock(&app);
        if a.end_if_gone(now_ms, grace_ms) {
            tracing::warn!(app = %a.id(), "the driver's listener left without an application end \
                and did not come back: its running work is ended as unknown");
            changed = true;
        }
    }
    changed
}

/// Samples every application's busy task slots once, keeping `keep` samples each; whether any
/// took a sample.
pub fn sample_all(store: &Store, now_ms: i64, keep: usize) -> bool {
    let mut taken = false;
    for app in store.apps() {
        let (new, evicted) = lock(&app).sample(now_ms, keep);
        taken |= new;
        if evicted > 0 {
            telemetry::limit_hit(
                Limit::TaskSamples,
                u64::try_from(evicted).unwrap_or(u64::MAX),
            );
        }
    }
    taken
}
