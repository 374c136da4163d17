//! Busy task slots of every live application, sampled at the stream's cadence for the
//! notebook's Tasks view. A sample is kept only when the value changed, so an idle application
//! costs one comparison per tick.

use crate::clock::now_ms;
use crate::model::{lock, Store};
use crate::shutdown::Shutdown;
use crate::telemetry::{self, Limit};
use std::sync::Arc;
use std::time::Duration;

/// Runs until shutdown.
pub async fn run(store: Arc<Store>, every: Duration, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tick.tick() => {}
        }
        if sample_all(&store, now_ms()) {
            store.notify();
        }
    }
}

/// Samples every application once; whether any took a sample.
pub fn sample_all(store: &Store, now_ms: i64) -> bool {
    let mut taken = false;
    for app in store.apps() {
        let (new, evicted) = lock(&app).sample(now_ms);
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
