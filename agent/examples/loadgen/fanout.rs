//! Tasks at a steady rate over many sessions, each followed by several subscribers.

use crate::agent::{cpu_seconds, ingest_lag_p99, metric_sum, AgentProcess};
use crate::listener::{drive_on_thread, listener, session_id, Drive, Sent};
use crate::subscribers::{connect_subscribers, percentile};
use crate::Figures;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn fanout(
    agent: &AgentProcess,
    sessions: usize,
    per_session: usize,
    tasks_per_second: u64,
    tasks_per_job: u64,
    seconds: u64,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let stream = listener(agent).await?;
    let sent: Sent = Arc::default();
    let (measuring, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop_driver = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let subscribers = sessions * per_session;
    // The sessions exist before anyone subscribes: the driver announces them first.
    let drive_cfg = Drive {
        sessions,
        announce: true,
        tasks_per_job,
        tasks_per_second: Some(tasks_per_second),
        total_jobs: None,
        first_job: 1,
        sent: Some(sent.clone()),
        stop: stop_driver.clone(),
        tasks_done: done.clone(),
    };
    let driver = drive_on_thread(stream, drive_cfg)?;
    let handles = connect_subscribers(
        agent,
        subscribers,
        |i| session_id(i % sessions),
        Some(sent.clone()),
        &measuring,
        &stop,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // warm-up
    let metrics_before = agent.metrics().await;
    let (cpu0, t0, done0) = (
        agent.cpu_seconds(),
        Instant::now(),
        done.load(Ordering::Relaxed),
    );
    let own0 = cpu_seconds("/proc/self/stat");
    measuring.store(1, Ordering::Relaxed);
    let mut rss_max: f64 = 0.0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(agent.rss_mb());
    }
    measuring.store(0, Ordering::Relaxed);
    let (cpu1, elapsed) = (agent.cpu_seconds(), t0.elapsed().as_secs_f64());
    let own = (cpu_seconds("/proc/self/stat") - own0) / elapsed * 100.0;
    let tasks = done.load(Ordering::Relaxed) - done0;
    let metrics_after = agent.metrics().await;
    stop_driver.store(1, Ordering::Relaxed);
    let _ = driver.join();
    stop.store(1, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let (mut frames, mut bytes, mut dropped, mut snapshots) = (0u64, 0u64, 0u64, 0u64);
    for h in handles {
        if let Ok(r) = h.await {
            frames += r.frames;
            bytes += r.bytes;
            dropped += u64::from(r.dropped);
            snapshots += u64::from(r.snapshot_ok);
            latencies.extend(r.latencies);
        }
    }
    latencies.sort_unstable();
    let (lag_p99, lag_count) = ingest_lag_p99(&metrics_before, &metrics_after);
    let agent_dropped = metric_sum(&metrics_after, "sparkscope_subscribers_dropped_total");
    let cpu = (cpu1 - cpu0) / elapsed * 100.0;
    println!(
        "fan-out: {sessions} sessions x {per_session} subscribers, {tasks} tasks in {elapsed:.1} s \
         ({:.0} tasks/s, {:.0} task events/s)",
        tasks as f64 / elapsed,
        2.0 * tasks as f64 / elapsed
    );
    println!(
        "  agent CPU {cpu:.1}% of a core, RSS max {rss_max:.1} MB; {:.1} frames/s per subscriber, \
         {:.1} MB/s to subscribers",
        frames as f64 / elapsed / subscribers as f64,
        bytes as f64 / elapsed / 1e6
    );
    println!(
        "  event -> frame: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        latencies.len()
    );
    println!(
        "  ingest lag p99 <= {lag_p99} ms ({lag_count} events); subscribers dropped: {dropped} \
         (agent counted {agent_dropped}); snapshots {snapshots}/{subscribers}; this load \
         generator used {own:.0}% of a core"
    );
    let mut f = Figures::new();
    f.insert("mode".into(), "fanout".into());
    f.insert("subscribers".into(), subscribers.into());
    f.insert("tasks_per_second".into(), (tasks as f64 / elapsed).into());
    f.insert("cpu_percent".into(), cpu.into());
    f.insert("rss_mb".into(), rss_max.into());
    f.insert("frame_p50_ms".into(), percentile(&latencies, 0.5).into());
    f.insert("frame_p95_ms".into(), percentile(&latencies, 0.95).into());
    f.insert("frame_p99_ms".into(), percentile(&latencies, 0.99).into());
    f.insert("latency_samples".into(), latencies.len().into());
    f.insert("ingest_lag_p99_ms".into(), lag_p99.into());
    f.insert("dropped".into(), (dropped as f64).max(agent_dropped).into());
    f.insert("snapshots".into(), snapshots.into());
    f.insert(
        "frames_per_subscriber_per_s".into(),
        (frames as f64 / elapsed / subscribers as f64).into(),
    );
    if (subscribers > 0 && latencies.is_empty()) || snapshots < subscribers as u64 {
        return Err(format!(
            "fan-out did not work: {} latency samples, {snapshots} of {subscribers} snapshots",
            latencies.len()
        )
        .into());
    }
    Ok(f)
}
