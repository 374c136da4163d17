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
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use sparkscope::auth::{hmac_hex, Secret};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The agent's tokens: made up for an agent started here; an attached agent's come from the
/// environment, under the names the agent itself reads.
struct Tokens {
    listener: String,
    subscriber: String,
    metrics: String,
}
const APP: &str = "app-loadgen";
const USER: &str = "load";

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
            fanout(
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
            idle(
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
            memory(
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

type Figures = serde_json::Map<String, serde_json::Value>;

// ---------------------------------------------------------------------------------------------
// The agent, as a process of its own.

struct AgentProcess {
    /// Started here (stopped at the end), or attached to.
    child: Option<tokio::process::Child>,
    pid: Option<u32>,
    ingest: String,
    http: String,
    tokens: Tokens,
    _dir: Option<tempfile::TempDir>,
}

impl AgentProcess {
    fn attach(ingest: &str, http: &str, pid: Option<u32>) -> Self {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        AgentProcess {
            child: None,
            pid,
            ingest: ingest.to_owned(),
            http: http.to_owned(),
            tokens: Tokens {
                listener: env("SPARKSCOPE_LISTENER_TOKEN"),
                subscriber: env("SPARKSCOPE_SUBSCRIBER_TOKEN"),
                metrics: env("SPARKSCOPE_METRICS_TOKEN"),
            },
            _dir: None,
        }
    }

    async fn start(bin: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let tokens = Tokens {
            listener: "loadgen-listener".to_owned(),
            subscriber: "loadgen-subscriber".to_owned(),
            metrics: "loadgen-metrics".to_owned(),
        };
        let dir = tempfile::tempdir()?;
        let addresses = dir.path().join("addresses.json");
        let child = tokio::process::Command::new(bin)
            .args([
                "serve",
                "--ingest",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--grpc",
                "127.0.0.1:0",
                "--addresses-file",
            ])
            .arg(&addresses)
            .env("SPARKSCOPE_LISTENER_TOKEN", &tokens.listener)
            .env("SPARKSCOPE_SUBSCRIBER_TOKEN", &tokens.subscriber)
            .env("SPARKSCOPE_METRICS_TOKEN", &tokens.metrics)
            .env("SPARKSCOPE_ALLOW_ANONYMOUS_API", "true")
            .env("SPARKSCOPE_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("the agent exited at once")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&addresses) {
                break t;
            }
            if Instant::now() > deadline {
                return Err("the agent did not write its addresses within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(AgentProcess {
            child: Some(child),
            pid: Some(pid),
            tokens,
            ingest: v["ingest"].as_str().unwrap_or_default().to_owned(),
            http: v["http"].as_str().unwrap_or_default().to_owned(),
            _dir: Some(dir),
        })
    }

    /// CPU seconds (user + system) the agent has used.
    fn cpu_seconds(&self) -> f64 {
        self.pid
            .map_or(f64::NAN, |pid| cpu_seconds(&format!("/proc/{pid}/stat")))
    }

    /// CPU seconds of the agent's threads other than ingest's (`sparkscope-ingest`): what
    /// publishing costs, without the noise of the load's own ingestion.
    fn publish_cpu_seconds(&self) -> f64 {
        let Some(pid) = self.pid else {
            return f64::NAN;
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return f64::NAN;
        };
        tasks
            .filter_map(Result::ok)
            .filter(|t| {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                !comm.trim().starts_with("sparkscope-inge")
            })
            .map(|t| cpu_seconds(&t.path().join("stat").to_string_lossy()))
            .sum()
    }

    /// Resident memory in MB.
    fn rss_mb(&self) -> f64 {
        let Some(pid) = self.pid else {
            return f64::NAN;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.http);
        match reqwest::Client::new()
            .get(url)
            .bearer_auth(&self.tokens.metrics)
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn stop(self) {
        let Some(mut child) = self.child else { return };
        if let Some(pid) = child.id() {
            let _ = tokio::process::Command::new("kill")
                .arg(pid.to_string())
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
}

/// CPU seconds (user + system) of the process whose `/proc/…/stat` this is.
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/pid/stat: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The sum of a counter or histogram series over its labels, from the Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// The cumulative count of a histogram's bucket `le`.
fn bucket(text: &str, name: &str, le: &str) -> f64 {
    let prefix = format!("{name}_bucket{{le=\"{le}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The ingest lag over a window: the upper bound of the bucket holding the 99th percentile.
fn ingest_lag_p99(before: &str, after: &str) -> (f64, f64) {
    const NAME: &str = "sparkscope_ingest_lag_seconds";
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let count =
        metric_sum(after, &format!("{NAME}_count")) - metric_sum(before, &format!("{NAME}_count"));
    for b in bounds {
        let n = bucket(after, NAME, b) - bucket(before, NAME, b);
        if count > 0.0 && n >= 0.99 * count {
            return (b.parse().unwrap_or(f64::INFINITY) * 1000.0, count);
        }
    }
    (f64::NAN, count)
}

// ---------------------------------------------------------------------------------------------
// The synthetic listener.

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Session `i`'s id: a version-4 UUID as Spark Connect clients make them (random, so ids do
/// not share long prefixes), the same for the same `i`.
fn session_id(i: usize) -> String {
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

async fn listener(agent: &AgentProcess) -> Result<TcpStream, Box<dyn std::error::Error>> {
    let ingest = agent.ingest.as_str();
    let nonce = "0123456789abcdef0123456789abcdef";
    let run_id = "loadgen-run";
    let stream = TcpStream::connect(ingest).await?;
    // As Spark's listener does: a round's last events must not wait for an acknowledgement.
    stream.set_nodelay(true)?;
    let mut s = BufReader::new(stream);
    let hello = format!(
        "{{\"Event\":\"SparkscopeHello\",\"protocol\":2,\"appId\":\"{APP}\",\"runId\":\"{run_id}\",\
         \"nonce\":\"{nonce}\",\"appName\":\"loadgen\",\"sparkVersion\":\"4.3.0\",\
         \"startTime\":{},\"sparkUser\":\"spark\",\"taskEvents\":\"raw\"}}\n",
        now_ms()
    );
    s.get_mut().write_all(hello.as_bytes()).await?;
    let mut line = String::new();
    s.read_line(&mut line).await?;
    let challenge: serde_json::Value = serde_json::from_str(&line)?;
    let secret = Secret::new(Some(&agent.tokens.listener)).ok_or("no listener token")?;
    let agent_nonce = challenge["nonce"].as_str().unwrap_or_default();
    let proof = hmac_hex(
        &secret,
        &["sparkscope-listener", APP, run_id, agent_nonce, nonce],
    );
    let proof_line = format!("{{\"Event\":\"SparkscopeProof\",\"proof\":\"{proof}\"}}\n");
    s.get_mut().write_all(proof_line.as_bytes()).await?;
    line.clear();
    s.read_line(&mut line).await?;
    if !line.contains("\"welcome\":true") {
        return Err(format!("the agent refused the listener: {line}").into());
    }
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
struct JobTimes {
    started: Option<Instant>,
    /// `task_ends[c - 1]`: when the job's stage reached `c` completed tasks.
    task_ends: Vec<Instant>,
    ended: Option<Instant>,
}

type Sent = Arc<Mutex<HashMap<i32, JobTimes>>>;

/// One session's work: one job at a time, one stage per job (stage id = job id), the Connect
/// operation around it.
struct SessionWork {
    index: usize,
    job: i32,
    op: String,
    started: u64,
    ended: u64,
    tasks_per_job: u64,
}

impl SessionWork {
    fn op_tag(&self) -> String {
        format!(
            "SparkConnect_OperationTag_User_{USER}_Session_{}_Operation_{}",
            session_id(self.index),
            self.op
        )
    }

    /// Starts the next job: its operation, the job and its stage.
    fn begin(&mut self, job: i32, out: &mut String, t: i64) {
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
    fn finish(&self, out: &mut String, t: i64) {
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

    fn task_start(&self, out: &mut String, t: i64) {
        let (job, i) = (self.job, self.started);
        out.push_str(&format!(
            "{{\"Event\":\"SparkListenerTaskStart\",\"Stage ID\":{job},\"Stage Attempt ID\":0,\"Task Info\":{{\"Task ID\":{},\"Index\":{i},\"Attempt\":0,\"Launch Time\":{t},\"Executor ID\":\"1\",\"Host\":\"127.0.0.1\"}}}}\n",
            i64::from(job) * 1_000_000 + i as i64
        ));
    }

    fn task_end(&self, out: &mut String, t: i64) {
        let (job, i) = (self.job, self.ended);
        out.push_str(&format!(
            "{{\"Event\":\"SparkListenerTaskEnd\",\"Stage ID\":{job},\"Stage Attempt ID\":0,\"Task Type\":\"ResultTask\",\"Task End Reason\":{{\"Reason\":\"Success\"}},\"Task Info\":{{\"Task ID\":{},\"Index\":{i},\"Attempt\":0,\"Launch Time\":{t},\"Executor ID\":\"1\",\"Host\":\"127.0.0.1\",\"Finish Time\":{t},\"Failed\":false,\"Killed\":false}},\"Task Metrics\":{{\"Executor Run Time\":5,\"Executor CPU Time\":4000000,\"JVM GC Time\":0}}}}\n",
            i64::from(job) * 1_000_000 + i as i64
        ));
    }
}

/// What the synthetic listener does.
struct Drive {
    sessions: usize,
    /// Announce the sessions first (not when going on with ones announced before).
    announce: bool,
    tasks_per_job: u64,
    /// Tasks per second over all sessions; `None`: as fast as the agent takes them.
    tasks_per_second: Option<u64>,
    /// Stop once this many jobs have ended (otherwise at `stop`).
    total_jobs: Option<u64>,
    first_job: i32,
    /// When events were written, for the subscribers' latencies.
    sent: Option<Sent>,
    stop: Arc<AtomicU64>,
    /// Tasks of ended jobs.
    tasks_done: Arc<AtomicU64>,
}

/// Runs jobs through the sessions, each session one job at a time; in every round of 10 ms a
/// session ends the tasks it started in its last turn and starts its share of the round's.
/// Returns the connection and the next job id.
async fn drive(mut stream: TcpStream, d: Drive) -> Result<(TcpStream, i32), std::io::Error> {
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
fn drive_on_thread(
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

// ---------------------------------------------------------------------------------------------
// Subscribers.

#[derive(Deserialize)]
struct Frame {
    update: Option<UpdateIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateIn {
    #[serde(default)]
    snapshot: bool,
    #[serde(default)]
    jobs: Vec<JobIn>,
    #[serde(default)]
    stages: Vec<StageIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobIn {
    job_id: i32,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StageIn {
    stage_id: i32,
    #[serde(default)]
    completed_tasks: i32,
}

#[derive(Default)]
struct SubscriberReport {
    frames: u64,
    bytes: u64,
    /// Event → frame, microseconds.
    latencies: Vec<u32>,
    snapshot_ok: bool,
    dropped: bool,
}

async fn subscriber(
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

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// Connects `n` subscribers, subscriber `i` following session `session_of(i)`, and waits for
/// each one's snapshot.
async fn connect_subscribers(
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

// ---------------------------------------------------------------------------------------------
// The three measurements.

async fn fanout(
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

async fn idle(
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

async fn memory(
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
    println!(
        "  soak: {} more tasks in {soak_seconds} s at {soak_rate} tasks/s; RSS max {max:.1} MB, \
         at the end {end:.1} MB (max of the first half {first_max:.1} MB)",
        soak_done.load(Ordering::Relaxed)
    );
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
    f.insert("burst_seconds".into(), burst_s.into());
    Ok(f)
}
