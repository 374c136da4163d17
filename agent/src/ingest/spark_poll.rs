//! Spark's REST API polled as a third source of events, when the other two may have had a gap:
//! after a listener's snapshot, when the listener or Spark's own listener bus reports dropped
//! events, after a broken connection, and (optionally) every so often while work runs. The
//! model decides what to correct (`model::reconcile`); this task only asks, and checks what it
//! is told before the model sees it.

use super::validate;
use crate::clock::now_ms;
use crate::flags::seconds;
use crate::model::{lock, Store};
use crate::shutdown::Shutdown;
use crate::spark_api::SparkApi;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// When Spark's REST API is asked.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Spark's REST API")]
pub struct SparkPollConfig {
    /// While jobs run, also reconcile with Spark's REST API this often (seconds); 0: only after
    /// a gap (a listener reconnect, dropped events).
    #[arg(
        id = "reconcile_interval",
        long = "reconcile-interval-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "30",
        env = "SPARKSCOPE_RECONCILE_INTERVAL_SECONDS"
    )]
    pub interval: Duration,
    /// After a gap, wait this long first: Spark's own status store follows its bus a little
    /// behind the listener.
    #[arg(skip = Duration::from_millis(500))]
    pub delay: Duration,
    /// Then ask again this often while jobs that ran through the gap have not been seen ended
    /// in Spark (their end may be what was lost).
    #[arg(skip = Duration::from_secs(2))]
    pub retry: Duration,
    /// When Spark's REST API fails, the next try waits `retry`, then twice as long each time,
    /// up to this many seconds; one notice and one warning per outage.
    #[arg(
        id = "reconcile_backoff_max",
        long = "reconcile-backoff-max-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "300",
        env = "SPARKSCOPE_RECONCILE_BACKOFF_MAX_SECONDS"
    )]
    pub backoff_max: Duration,
}

crate::flags::default_from_flags!(SparkPollConfig);

/// How often the task looks for applications that are owed a reconciliation.
const POLL: Duration = Duration::from_millis(100);

/// Runs until shutdown.
pub async fn run(
    store: Arc<Store>,
    spark: Arc<SparkApi>,
    cfg: SparkPollConfig,
    mut shutdown: Shutdown,
) {
    let mut last: HashMap<String, Instant> = HashMap::new();
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tick.tick() => {}
        }
        for shared in store.apps() {
            let (id, announced, gap, running, fetched_at) = {
                let a = lock(&shared);
                let now = now_ms();
                let busy = a.is_live() && a.running_jobs() > 0 && !a.reconcile_backing_off(now);
                let due = a.reconcile_due(now, ms(cfg.delay), ms(cfg.retry));
                let info = a.info();
                (
                    a.id().to_owned(),
                    info.ui_url.clone(),
                    due,
                    busy,
                    a.generation(),
                )
            };
            let now = Instant::now();
            let every = cfg.interval;
            let periodic = running
                && !every.is_zero()
                && last
                    .get(&id)
                    .is_none_or(|t| now.duration_since(*t) >= every);
            if !gap && !periodic {
                continue;
            }
            last.insert(id.clone(), now);
            let failed = |why: &str| {
                let began = lock(&shared).reconcile_failed(
                    now_ms(),
                    why,
                    ms(cfg.retry),
                    ms(cfg.backoff_max),
                );
                if began {
                    tracing::warn!(app = %id, error = %why, "cannot reconcile with Spark's REST API; \
                        trying again with backoff, up to every {}s", cfg.backoff_max.as_secs());
                }
            };
            let Some(url) = spark.ui_of(&announced) else {
                // No UI known and no --spark-ui: nothing to ask. After a gap the notebooks are
                // told once; a periodic check has nothing to say.
                if gap {
                    failed(
                        "Spark's UI address is unknown (spark.ui.enabled=false?); start the \
                         agent with --spark-ui",
                    );
                    store.notify();
                }
                continue;
            };
            match spark.jobs(&url, &id).await {
                Ok(jobs) => {
                    let jobs = jobs.into_iter().filter_map(validate::spark_job).collect();
                    let done = lock(&shared).reconcile(now_ms(), jobs, fetched_at);
                    if done.total() > 0 {
                        tracing::info!(app = %id, filled = done.filled, ended = done.ended,
                            corrected = done.corrected, "reconciled with Spark's REST API");
                    }
                }
                Err(e) => failed(&e.to_string()),
            }
            store.notify();
        }
        last.retain(|id, _| store.get(id).is_some());
    }
}
