//! The synthetic listener: a real listener's handshake (the agent library's own client), then
//! jobs, stages, raw task events and Connect operations over many sessions, at a steady rate, on
//! a thread of its own as Spark's listener sends from its own thread.

use crate::agent::AgentProcess;
use crate::{APP, USER};
use sparkscope::auth::Secret;
use sparkscope::ingest::protocol::{connect_listener, AgentCheck, Hello};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Session `i`'s id: a version-4 UUID as Spark Connect clients make them (random, so ids do
/// not share long prefixes), the same for the same `i`.
pub(crate) fn session_id(i: usize) -> String {
    // splitmix64: a fixed, well-spread number per index.
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(i as u64), mix(!(i as u64)));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

pub(crate) async fn listener(
    agent: &AgentProcess,
) -> Result<TcpStream, Box<dyn std::error::Error>> {
    let hello = Hello {
        app_id: APP.to_owned(),
        run_id: "loadgen-run".to_owned(),
        app_name: "loadgen".to_owned(),
        spark_version: "4.3.0".to_owned(),
        start_time: now_ms(),
        spark_user: "spark".to_owned(),
        task_events: "raw".to_owned(),
        ..Hello::default()
    };
    let token = Secret::new(Some(&agent.tokens.listener)).ok_or("no listener token")?;
    let addr = tokio::net::lookup_host(agent.ingest.as_str())
        .await?
        .next()
        .ok_or("the agent's ingest address resolves to nothing")?;
    let s = connect_listener(
        addr,
        hello,
        &token,
        AgentCheck::Verify,
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| format!("the agent refused the listener: {e}"))?;
    let mut stream = s.into_inner();
    let executor = format!(
        "{{\"Event\":\"SparkListenerExecutorAdded\",\"Timestamp\":{},\"Executor ID\":\"1\",\"Executor Info\":{{\"Host\":\"127.0.0.1\",\"Total Cores\":64}}}}\n",
        now_ms()
    );
    stream.write_all(executor.as_bytes()).await?;
    Ok(stream)
}

/// When each event of a job was written, for the subscribers' latencies.
#[derive(Default)]
pub(crate) struct JobTimes {
    pub(crate) started: Option<Instant>,
    /// `task_ends[c - 1]`: when the job's stage reached `c` completed tasks.
    pub(crate) task_ends: Vec<Instant>,
    pub(crate) ended: Option<Instant>,
}

pub(crate) type Sent = Arc<Mutex<HashMap<i32, JobTimes>>>;

/// One session's work: one job at a time, one stage per job (stage id = job id), the Connect
/// operation around it.
pub(crate) struct SessionWork {
    pub(crate) index: usize,
    pub(crate) job: i32,
    pub(crate) op: String,
    pub(crate) started: u64,
    pub(crate) ended: u64,
    pub(crate) tasks_per_job: u64,
}

impl SessionWork {
    pub(crate) fn op_tag(&self) -> String {
        format!(
            "SparkConnect_OperationTag_User_{USER}_Session_{}_Operation_{}",
            session_id(self.index),
            self.op
        )
    }

    /// Starts the next job: its operation, the job and its stage.
    pub(crate) fn begin(&mut self, job: i32, out: &mut String, t: i64) {
        self.job = job;
        self.op = format!("00000000-0000-4000-9000-{job:012}");
        self.started = 0;
        self.ended = 0;
        let sid = session_id(self.index);
        let tag = self.op_tag();
        let n = self.tasks_per_job;
        out.push_str(&format!(
            "{{\"Event\":\"org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted\",\"jobTag\":\"{tag}\",\"operationId\":\"{}\",\"eventTime\":{t},\"sessionId\":\"{sid}\",\"userId\":\"{USER}\",\"userName\":\"\",\"statementText\":\"range\",\"sparkSessionTags\":[\"cell-{job}\"],\"extraTags\":{{}}}}\n",
            self.op
        ));
        out.push_str(&format!(
            "{{\"Event\":\"SparkListenerJobStart\",\"Job ID\":{job},\"Submission Time\":{t},\"Stage Infos\":[{{\"Stage ID\":{job},\"Stage Attempt ID\":0,\"Stage Name\":\"load\",\"Number of Tasks\":{n}}}],\"Stage IDs\":[{job}],\"Properties\":{{\"spark.job.tags\":\"{tag}\"}}}}\n"
        ));
        out.push_str(&format!(
            "{{\"Event\":\"SparkListenerStageSubmitted\",\"Stage Info\":{{\"Stage ID\":{job},\"Stage Attempt ID\":0,\"Stage Name\":\"load\",\"Number of Tasks\":{n},\"Submission Time\":{t}}},\"Properties\":{{}}}}\n"
        ));
    }

    /// Ends the job once all its tasks have: stage, job, operation.
    pub(crate) fn finish(&self, out: &mut String, t: i64) {
        let (job, n) = (self.job, self.tasks_per_job);
        let tag = self.op_tag();
        out.push_str(&format!(
            "{{\"Event\":\"SparkListenerStageCompleted\",\"Stage Info\":{{\"Stage ID\":{job},\"Stage Attempt ID\":0,\"Stage Name\":\"load\",\"Number of Tasks\":{n},\"Submission Time\":{t},\"Completion Time\":{t}}}}}\n"
        ));
        out.push_str(&format!(
            "{{\"Event\":\"SparkListenerJobEnd\",\"Job ID\":{job},\"Completion Time\":{t},\"Job Result\":{{\"Result\":\"JobSucceeded\"}}}}\n"
        ));
        for state in ["Finished", "Closed"] {
            out.push_str(&format!(
                "{{\"Event\":\"org.apache.spark.sql.connect.service.SparkListenerConnectOperation{state}\",\"jobTag\":\"{tag}\",\"operationId\":\"{}\",\"eventTime\":{t}}}\n",
                self.op
            ));
        }
    }

    pub(crate) fn task_start(&self, out: &mut String, t: i64) {
        let (job, i) = (self.job, self.started);
        out.push_str(&format!(
            "{{\"Event\":\"SparkListenerTaskStart\",\"Stage ID\":{job},\"Stage Attempt ID\":0,\"Task Info\":{{\"Task ID\":{},\"Index\":{i},\"Attempt\":0,\"Launch Time\":{t},\"Executor ID\":\"1\",\"Host\":\"127.0.0.1\"}}}}\n",
            i64::from(job) * 1_000_000 + i as i64
        ));
    }

    pub(crate) fn task_end(&self, out: &mut String, t: i64) {
        let (job, i) = (self.job, self.ended);
        out.push_str(&format!(
            "{{\"Event\":\"SparkListenerTaskEnd\",\"Stage ID\":{job},\"Stage Attempt ID\":0,\"Task Type\":\"ResultTask\",\"Task End Reason\":{{\"Reason\":\"Success\"}},\"Task Info\":{{\"Task ID\":{},\"Index\":{i},\"Attempt\":0,\"Launch Time\":{t},\"Executor ID\":\"1\",\"Host\":\"127.0.0.1\",\"Finish Time\":{t},\"Failed\":false,\"Killed\":false}},\"Task Metrics\":{{\"Executor Run Time\":5,\"Executor CPU Time\":4000000,\"JVM GC Time\":0}}}}\n",
            i64::from(job) * 1_000_000 + i as i64
        ));
    }
}

/// What the synthetic listener does.
pub(crate) struct Drive {
    pub(crate) sessions: usize,
    /// Announce the sessions first (not when going on with ones announced before).
    pub(crate) announce: bool,
    pub(crate) tasks_per_job: u64,
    /// Tasks per second over all sessions; `None`: as fast as the agent takes them.
    pub(crate) tasks_per_second: Option<u64>,
    /// Stop once this many jobs have ended (otherwise at `stop`).
    pub(crate) total_jobs: Option<u64>,
    pub(crate) first_job: i32,
    /// When events were written, for the subscribers' latencies.
    pub(crate) sent: Option<Sent>,
    pub(crate) stop: Arc<AtomicU64>,
    /// Tasks of ended jobs.
    pub(crate) tasks_done: Arc<AtomicU64>,
}

/// Runs jobs through the sessions, each session one job at a time; in every round of 10 ms a
/// session ends the tasks it started in its last turn and starts its share of the round's.
/// Returns the connection and the next job id.
pub(crate) async fn drive(
    mut stream: TcpStream,
    d: Drive,
) -> Result<(TcpStream, i32), std::io::Error> {
    let mut out = String::with_capacity(1 << 20);
    let t = now_ms();
    if d.announce {
        for i in 0..d.sessions {
            out.push_str(&format!(
                "{{\"Event\":\"org.apache.spark.sql.connect.service.SparkListenerConnectSessionStarted\",\"sessionId\":\"{}\",\"userId\":\"{USER}\",\"eventTime\":{t}}}\n",
                session_id(i)
            ));
        }
        stream.write_all(out.as_bytes()).await?;
        out.clear();
    }
    let mut next_job = d.first_job;
    if d.sessions == 0 || d.total_jobs == Some(0) {
        return Ok((stream, next_job));
    }
    let mut work: Vec<SessionWork> = (0..d.sessions)
        .map(|index| SessionWork {
            index,
            job: 0,
            op: String::new(),
            started: 0,
            ended: 0,
            // At a steady rate the sessions' first jobs differ in size, so that their jobs do not
            // all end in the same round: a hundred notebooks are not in step.
            tasks_per_job: match d.tasks_per_second {
                Some(_) => (d.tasks_per_job * (index as u64 + 1) / d.sessions as u64).max(1),
                None => d.tasks_per_job,
            },
        })
        .collect();
    let mut jobs_begun = 0u64;
    let per_round = d
        .tasks_per_second
        .map_or(d.sessions as u64 * 10, |r| (r / 100).max(1));
    // Sessions visited per round, and each one's share of the round's tasks.
    let visits = usize::try_from(per_round)
        .unwrap_or(usize::MAX)
        .min(d.sessions);
    let share = (per_round / visits as u64).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0usize;
    let mut finished_sessions = 0usize;
    while d.stop.load(Ordering::Relaxed) == 0 && finished_sessions < d.sessions {
        if d.tasks_per_second.is_some() {
            tick.tick().await;
        }
        let t = now_ms();
        let mut job_events: Vec<(i32, u8, u64)> = Vec::new(); // (job, 0 start | 1 tasks | 2 end, count)
        for _ in 0..visits {
            let w = &mut work[turn % d.sessions];
            turn += 1;
            while w.ended < w.started {
                w.task_end(&mut out, t);
                w.ended += 1;
            }
            if w.job != 0 {
                job_events.push((w.job, 1, w.ended));
            }
            if w.job != 0 && w.ended == w.tasks_per_job {
                w.finish(&mut out, t);
                job_events.push((w.job, 2, 0));
                d.tasks_done.fetch_add(w.tasks_per_job, Ordering::Relaxed);
                w.job = -1;
            }
            if w.job <= 0 {
                if d.total_jobs.is_some_and(|n| jobs_begun >= n) {
                    if w.job == -1 {
                        w.job = -2;
                        finished_sessions += 1;
                    }
                    continue;
                }
                if w.job == -1 {
                    w.tasks_per_job = d.tasks_per_job;
                }
                w.begin(next_job, &mut out, t);
                job_events.push((next_job, 0, 0));
                next_job += 1;
                jobs_begun += 1;
            }
            for _ in 0..share.min(w.tasks_per_job - w.started) {
                w.task_start(&mut out, t);
                w.started += 1;
            }
        }
        stream.write_all(out.as_bytes()).await?;
        out.clear();
        if let Some(sent) = &d.sent {
            let at = Instant::now();
            let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
            for (job, kind, count) in job_events {
                let e = sent.entry(job).or_default();
                match kind {
                    0 => e.started = Some(at),
                    1 => {
                        while (e.task_ends.len() as u64) < count {
                            e.task_ends.push(at);
                        }
                    }
                    _ => e.ended = Some(at),
                }
            }
        }
    }
    Ok((stream, next_job))
}

/// [`drive`] on a thread of its own, as Spark's listener sends from its own thread: the
/// subscribers' work in this process must not delay its events.
pub(crate) fn drive_on_thread(
    stream: TcpStream,
    d: Drive,
) -> std::io::Result<std::thread::JoinHandle<std::io::Result<()>>> {
    let stream = stream.into_std()?;
    Ok(std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move { drive(TcpStream::from_std(stream)?, d).await })
            .map(|_| ())
    }))
}
