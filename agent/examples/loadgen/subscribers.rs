//! WebSocket subscribers that follow sessions and time every task end from when the listener
//! wrote it to the first frame that shows it.

use crate::agent::AgentProcess;
use crate::listener::Sent;
use crate::USER;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Deserialize)]
pub(crate) struct Frame {
    pub(crate) update: Option<UpdateIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateIn {
    #[serde(default)]
    pub(crate) snapshot: bool,
    #[serde(default)]
    pub(crate) jobs: Vec<JobIn>,
    #[serde(default)]
    pub(crate) stages: Vec<StageIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobIn {
    pub(crate) job_id: i32,
    #[serde(default)]
    pub(crate) status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StageIn {
    pub(crate) stage_id: i32,
    #[serde(default)]
    pub(crate) completed_tasks: i32,
}

#[derive(Default)]
pub(crate) struct SubscriberReport {
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
    /// Event → frame, microseconds.
    pub(crate) latencies: Vec<u32>,
    pub(crate) snapshot_ok: bool,
    pub(crate) dropped: bool,
}

pub(crate) async fn subscriber(
    http: String,
    token: String,
    session: String,
    sent: Option<Sent>,
    measuring: Arc<AtomicU64>,
    stop: Arc<AtomicU64>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> SubscriberReport {
    let mut report = SubscriberReport::default();
    let Ok(mut req) = format!("ws://{http}/api/v1/stream").into_client_request() else {
        return report;
    };
    let bearer = format!("Bearer {token}");
    if let Ok(v) = bearer.parse() {
        req.headers_mut().insert("authorization", v);
    }
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await else {
        report.dropped = true;
        let _ = ready.send(()).await;
        return report;
    };
    let sub = format!(
        r#"{{"subscribe":{{"sessions":[{{"sessionId":"{session}","userId":"{USER}"}}]}}}}"#
    );
    if ws.send(Message::Text(sub.into())).await.is_err() {
        report.dropped = true;
        let _ = ready.send(()).await;
        return report;
    }
    let mut seen_tasks: HashMap<i32, i32> = HashMap::new();
    let mut seen_status: HashMap<i32, bool> = HashMap::new(); // job → ended seen
    let mut announced = false;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
        if stop.load(Ordering::Relaxed) != 0 {
            break;
        }
        let msg = match next {
            Err(_) => continue,
            Ok(Some(Ok(m))) => m,
            Ok(_) => {
                report.dropped = true;
                break;
            }
        };
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                report.dropped = true;
                break;
            }
            continue;
        };
        let at = Instant::now();
        let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
            continue;
        };
        let Some(u) = frame.update else { continue };
        if u.snapshot && !announced {
            announced = true;
            report.snapshot_ok = true;
            let _ = ready.send(()).await;
        }
        // What was seen before the measurement counts as seen: only news is timed.
        let measure = measuring.load(Ordering::Relaxed) != 0;
        if measure {
            report.frames += 1;
            report.bytes += text.len() as u64;
        }
        let Some(sent) = &sent else { continue };
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
        let mut record = |from: Option<Instant>| {
            if let (true, Some(from)) = (measure, from) {
                let us = at.saturating_duration_since(from).as_micros();
                report.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        };
        // Every task end this frame is the first to show, each timed from when it was sent.
        for s in &u.stages {
            let last = seen_tasks.entry(s.stage_id).or_insert(0);
            if s.completed_tasks > *last {
                let times = sent.get(&s.stage_id);
                for k in *last..s.completed_tasks {
                    let idx = usize::try_from(k).unwrap_or(0);
                    record(times.and_then(|t| t.task_ends.get(idx).copied()));
                }
                *last = s.completed_tasks;
            }
        }
        for j in &u.jobs {
            let times = sent.get(&j.job_id);
            match seen_status.get(&j.job_id) {
                None => {
                    seen_status.insert(j.job_id, false);
                    record(times.and_then(|t| t.started));
                }
                Some(false) if j.status == "JOB_STATUS_SUCCEEDED" => {
                    seen_status.insert(j.job_id, true);
                    record(times.and_then(|t| t.ended));
                }
                _ => {}
            }
        }
    }
    if !announced {
        let _ = ready.send(()).await;
    }
    report
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// Connects `n` subscribers, subscriber `i` following session `session_of(i)`, and waits for
/// each one's snapshot.
pub(crate) async fn connect_subscribers(
    agent: &AgentProcess,
    n: usize,
    session_of: impl Fn(usize) -> String,
    sent: Option<Sent>,
    measuring: &Arc<AtomicU64>,
    stop: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<SubscriberReport>> {
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(n.max(1));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        handles.push(tokio::spawn(subscriber(
            agent.http.clone(),
            agent.tokens.subscriber.clone(),
            session_of(i),
            sent.clone(),
            measuring.clone(),
            stop.clone(),
            ready_tx.clone(),
        )));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for _ in 0..n {
        if tokio::time::timeout(Duration::from_secs(30), ready.recv())
            .await
            .is_err()
        {
            break;
        }
    }
    handles
}
