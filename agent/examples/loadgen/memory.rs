//! Many jobs as fast as the agent takes them, then a steady soak: memory must stay bounded by
//! retention, not grow with history.

use crate::agent::AgentProcess;
use crate::listener::{drive, listener, Drive};
use crate::Figures;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn memory(
    agent: &AgentProcess,
    tasks: u64,
    jobs: u64,
    sessions: usize,
    soak_seconds: u64,
    soak_rate: u64,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let tasks_per_job = (tasks / jobs.max(1)).max(1);
    let stream = listener(agent).await?;
    let rss_start = agent.rss_mb();
    let stop = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let (stream, next_job) = drive(
        stream,
        Drive {
            sessions,
            announce: true,
            tasks_per_job,
            tasks_per_second: None,
            total_jobs: Some(jobs),
            first_job: 1,
            sent: None,
            stop: stop.clone(),
            tasks_done: done.clone(),
        },
    )
    .await?;
    // Wait until the agent has taken everything: its job count stops moving.
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = agent.metrics().await;
        let now = m
            .lines()
            .filter(|l| {
                l.starts_with("sparkscope_jobs_finished_total")
                    || l.starts_with("sparkscope_tasks_finished_total")
            })
            .collect::<Vec<_>>()
            .join("\n");
        if now == last && !now.is_empty() {
            break;
        }
        last = now;
    }
    let burst_s = t0.elapsed().as_secs_f64();
    let after_burst = agent.rss_mb();
    println!(
        "memory: {} tasks in {jobs} jobs over {sessions} sessions taken in {burst_s:.1} s; \
         agent RSS {after_burst:.1} MB (before them: {rss_start:.1} MB)",
        done.load(Ordering::Relaxed)
    );
    let soak_stop = Arc::new(AtomicU64::new(0));
    let soak_done = Arc::new(AtomicU64::new(0));
    let soak = tokio::spawn(drive(
        stream,
        Drive {
            sessions,
            announce: false,
            tasks_per_job,
            tasks_per_second: Some(soak_rate),
            total_jobs: None,
            first_job: next_job,
            sent: None,
            stop: soak_stop.clone(),
            tasks_done: soak_done.clone(),
        },
    ));
    let t1 = Instant::now();
    let mut samples = Vec::new();
    while t1.elapsed() < Duration::from_secs(soak_seconds) {
        tokio::time::sleep(Duration::from_secs(5).min(Duration::from_secs(soak_seconds))).await;
        samples.push((t1.elapsed().as_secs_f64(), agent.rss_mb()));
    }
    soak_stop.store(1, Ordering::Relaxed);
    let _ = soak.await;
    let max = samples.iter().map(|s| s.1).fold(after_burst, f64::max);
    let end = samples.last().map_or(after_burst, |s| s.1);
    let first_half: Vec<f64> = samples[..samples.len() / 2].iter().map(|s| s.1).collect();
    let first_max = first_half.iter().copied().fold(after_burst, f64::max);
    // Flat means: after a warm-up (5 minutes, or a sixth of a shorter soak) RSS grows by no
    // more than a small constant, however long the soak goes on. Nothing scrapes meanwhile.
    let warmup = (soak_seconds as f64 / 6.0).min(300.0);
    let at_warmup = samples
        .iter()
        .find(|s| s.0 >= warmup)
        .map_or(after_burst, |s| s.1);
    let after_warmup = samples
        .iter()
        .filter(|s| s.0 >= warmup)
        .map(|s| s.1)
        .fold(at_warmup, f64::max);
    let growth = after_warmup - at_warmup;
    println!(
        "  soak: {} more tasks in {soak_seconds} s at {soak_rate} tasks/s; RSS max {max:.1} MB, \
         at the end {end:.1} MB (max of the first half {first_max:.1} MB); after {warmup:.0} s \
         of warm-up ({at_warmup:.1} MB) it grew {growth:.1} MB",
        soak_done.load(Ordering::Relaxed)
    );
    let curve: Vec<String> = samples
        .iter()
        .map(|(t, mb)| format!("{t:.0}s {mb:.1}"))
        .collect();
    println!("  RSS curve (MB): {}", curve.join(", "));
    let mut f = Figures::new();
    f.insert("mode".into(), "memory".into());
    f.insert("tasks".into(), done.load(Ordering::Relaxed).into());
    f.insert("jobs".into(), jobs.into());
    f.insert("soak_tasks_per_second".into(), soak_rate.into());
    f.insert("rss_start_mb".into(), rss_start.into());
    f.insert("rss_after_burst_mb".into(), after_burst.into());
    f.insert("rss_max_mb".into(), max.into());
    f.insert("rss_end_mb".into(), end.into());
    f.insert("soak_seconds".into(), soak_seconds.into());
    f.insert("warmup_seconds".into(), warmup.into());
    f.insert("rss_at_warmup_mb".into(), at_warmup.into());
    f.insert("rss_growth_after_warmup_mb".into(), growth.into());
    f.insert(
        "rss_curve".into(),
        samples
            .iter()
            .map(|(t, mb)| serde_json::json!([t, mb]))
            .collect::<Vec<_>>()
            .into(),
    );
    f.insert("burst_seconds".into(), burst_s.into());
    Ok(f)
}
