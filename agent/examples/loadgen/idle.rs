//! Subscribers each following an idle session while other sessions, followed by nobody, are
//! busy: what idle subscribers cost the agent.

use crate::agent::AgentProcess;
use crate::listener::{drive, drive_on_thread, listener, session_id, Drive};
use crate::subscribers::connect_subscribers;
use crate::Figures;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn idle(
    agent: &AgentProcess,
    subscribers: usize,
    busy_sessions: usize,
    busy_rate: u64,
    seconds: u64,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let stream = listener(agent).await?;
    // Every session first (`drive` with no jobs to run): the busy ones, then one idle session
    // per subscriber.
    let stop = Arc::new(AtomicU64::new(0));
    let (stream, _) = drive(
        stream,
        Drive {
            sessions: busy_sessions + subscribers,
            announce: true,
            tasks_per_job: 1,
            tasks_per_second: None,
            total_jobs: Some(0),
            first_job: 1,
            sent: None,
            stop: stop.clone(),
            tasks_done: Arc::default(),
        },
    )
    .await?;
    // The busy sessions work on their own thread, followed by nobody.
    let busy_cfg = Drive {
        sessions: busy_sessions,
        announce: false,
        tasks_per_job: 100,
        tasks_per_second: Some(busy_rate),
        total_jobs: None,
        first_job: 1,
        sent: None,
        stop: stop.clone(),
        tasks_done: Arc::default(),
    };
    let busy = drive_on_thread(stream, busy_cfg)?;
    let measuring = Arc::new(AtomicU64::new(1));
    let handles = connect_subscribers(
        agent,
        subscribers,
        |i| session_id(busy_sessions + i),
        None,
        &measuring,
        &stop,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, pub0, t0) = (
        agent.cpu_seconds(),
        agent.publish_cpu_seconds(),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, pub1) = (agent.cpu_seconds(), agent.publish_cpu_seconds());
    let elapsed = t0.elapsed().as_secs_f64();
    let publish = (pub1 - pub0) / elapsed * 100.0;
    let rss = agent.rss_mb();
    stop.store(1, Ordering::Relaxed);
    let _ = busy.join();
    let mut snapshots = 0u64;
    let mut frames = 0u64;
    for h in handles {
        if let Ok(r) = h.await {
            snapshots += u64::from(r.snapshot_ok);
            frames += r.frames;
        }
    }
    let cpu = (cpu1 - cpu0) / elapsed * 100.0;
    println!(
        "idle: {subscribers} subscribers, each following its own idle session, while \
         {busy_sessions} other sessions run {busy_rate} tasks/s: agent CPU {cpu:.2}% of a core \
         ({publish:.2}% outside ingest), RSS {rss:.1} MB, {snapshots} snapshots, {} frames after \
         them",
        frames.saturating_sub(snapshots)
    );
    let mut f = Figures::new();
    f.insert("mode".into(), "idle".into());
    f.insert("subscribers".into(), subscribers.into());
    f.insert("busy_tasks_per_second".into(), busy_rate.into());
    f.insert("publish_cpu_percent".into(), publish.into());
    f.insert("cpu_percent".into(), cpu.into());
    f.insert("rss_mb".into(), rss.into());
    f.insert(
        "frames_after_snapshot".into(),
        frames.saturating_sub(snapshots).into(),
    );
    if snapshots < subscribers as u64 {
        return Err(
            format!("only {snapshots} of {subscribers} subscribers got their snapshot").into(),
        );
    }
    Ok(f)
}
