//! sparkscope's own protocol between the listener and the agent (docs/wire-protocol.md): the
//! handshake, both sides of it (the agent's, and the listener's as Rust tests and the load
//! generator speak it; the listener jar's is its Java twin), the `Sparkscope*` lines a listener
//! sends besides Spark's own events, and its answers to the agent's commands.

use super::connections::CommandResult;
use super::{spark_json, ParseError};
use crate::auth::{self, Secret};
use crate::model::event::{
    DurationSummary, Event, ListenerInfo, ListenerStats, LogContext, LogLevel, LogLine,
    StageProgress, TaskMetricSums,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Version 3: the listener and the agent each prove they know the token with an HMAC that starts
/// with the agent's nonce and then the listener's, fixed-length both, so that nobody can have the
/// agent compute a MAC over bytes of their choosing; the token never crosses the wire. (Version 2
/// put the listener's chosen ids first.)
pub const PROTOCOL_VERSION: u32 = 3;

/// A nonce: 16 random bytes, as 32 lowercase hex digits.
pub const NONCE_HEX: usize = 32;

/// The longest application or run id a hello may carry.
pub const MAX_ID_BYTES: usize = 256;

/// The agent's last handshake line to a listener it accepted.
pub const WELCOME: &str = "{\"ok\":true,\"welcome\":true}\n";

/// A listener's answer to a command starts so; it goes back to whoever sent the command.
pub const COMMAND_RESULT: &[u8] = br#"{"Event":"SparkscopeCommandResult""#;

/// One of sparkscope's own lines, `Sparkscope<name>`; [`Event::Unknown`] for a name this agent
/// does not know.
pub fn parse_event(name: &str, line: &[u8]) -> Result<Event, ParseError> {
    Ok(match name {
        "StageProgress" => {
            Event::StageProgress(serde_json::from_slice::<RawStageProgress>(line)?.into())
        }
        "Hello" => Event::Hello(serde_json::from_slice::<Hello>(line)?.info()),
        "ListenerStats" => {
            let r: RawListenerStats = serde_json::from_slice(line)?;
            Event::ListenerStats(ListenerStats {
                time: r.time,
                sent: r.sent,
                dropped: r.dropped,
                reconnects: r.reconnects,
                bus_dropped: r
                    .bus_dropped
                    .values()
                    .fold(0u64, |n, d| n.saturating_add(*d)),
                evicted: r.live_evicted.saturating_add(r.untracked_task_events),
            })
        }
        "LogLine" => Event::LogLine(serde_json::from_slice::<RawLogLine>(line)?.into()),
        "SqlMetrics" => {
            let r: RawSqlMetrics = serde_json::from_slice(line)?;
            Event::SqlMetrics {
                execution_id: r.execution_id,
                values: r.values,
            }
        }
        "SnapshotStart" => Event::SnapshotStart {
            time: serde_json::from_slice::<RawTime>(line)?.time,
        },
        "SnapshotEnd" => Event::SnapshotEnd {
            time: serde_json::from_slice::<RawTime>(line)?.time,
        },
        "JobsGone" => {
            let r: RawJobsGone = serde_json::from_slice(line)?;
            Event::JobsGone {
                time: r.time,
                job_ids: r.job_ids,
            }
        }
        "UiUrl" => {
            let r: RawUiUrl = serde_json::from_slice(line)?;
            Event::UiUrl {
                time: r.time,
                // Spark's UI only at an http or https address, as in the hello.
                url: if crate::spark_api::is_http_url(&r.ui_url) {
                    r.ui_url
                } else {
                    String::new()
                },
            }
        }
        _ => Event::Unknown,
    })
}

// ---- The handshake (docs/wire-protocol.md § Handshake) ----

/// What the agent sends to prove it knows the token. Its role comes first, so that no proof of
/// one side serves as the other's.
pub fn agent_proof(token: &Secret, hello: &Hello, agent_nonce: &str) -> String {
    proof(token, "sparkscope-agent-3", hello, agent_nonce)
}

/// What the listener sends to prove it knows the token.
pub fn listener_proof(token: &Secret, hello: &Hello, agent_nonce: &str) -> String {
    proof(token, "sparkscope-listener-3", hello, agent_nonce)
}

fn proof(token: &Secret, role: &str, hello: &Hello, agent_nonce: &str) -> String {
    auth::hmac_hex(
        token,
        &[
            role,
            agent_nonce,
            &hello.nonce,
            &hello.app_id,
            &hello.run_id,
        ],
    )
}

/// Why a hello is not one this agent answers, if it is not.
pub fn hello_problem(hello: &Hello) -> Option<String> {
    if hello.protocol != PROTOCOL_VERSION {
        return Some(format!(
            "protocol {} is not supported (this agent speaks {PROTOCOL_VERSION}): use the \
             listener of this agent's release",
            hello.protocol
        ));
    }
    if hello.app_id.is_empty() || hello.run_id.is_empty() {
        return Some("the hello needs an appId and a runId".to_owned());
    }
    if hello.app_id.len() > MAX_ID_BYTES || hello.run_id.len() > MAX_ID_BYTES {
        return Some(format!(
            "appId and runId may have at most {MAX_ID_BYTES} bytes"
        ));
    }
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if hello.nonce.len() != NONCE_HEX || !hello.nonce.bytes().all(hex) {
        return Some(format!(
            "the hello's nonce must be {NONCE_HEX} lowercase hex digits"
        ));
    }
    None
}

/// The agent's answer to a hello: its nonce and, when it has a token, its proof.
pub fn challenge_line(agent_nonce: &str, proof: Option<String>) -> String {
    let mut challenge = serde_json::json!({
        "ok": true,
        "agent": format!("sparkscope {}", env!("CARGO_PKG_VERSION")),
        "nonce": agent_nonce,
    });
    if let Some(proof) = proof {
        challenge["proof"] = serde_json::Value::from(proof);
    }
    challenge.to_string() + "\n"
}

/// The agent's refusal, with the reason the listener logs.
pub fn refusal_line(why: &str) -> String {
    serde_json::json!({ "ok": false, "error": why }).to_string() + "\n"
}

/// Whether a listener's proof line proves it knows `token`.
pub fn proof_holds(token: &Secret, hello: &Hello, agent_nonce: &str, line: &[u8]) -> bool {
    let expected = listener_proof(token, hello, agent_nonce);
    let given = parse_proof(line).unwrap_or_default();
    auth::constant_time_eq(expected.as_bytes(), given.as_bytes())
}

/// 16 random bytes, hex: one side's half of a handshake.
pub fn new_nonce() -> String {
    auth::new_nonce()
}

/// The listener's first line on a connection: who it is, and its half of the handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    #[serde(default)]
    pub protocol: u32,
    pub app_id: String,
    #[serde(default)]
    pub app_name: String,
    #[serde(default)]
    pub spark_version: String,
    /// This run of the driver: a reconnect carries the same one, another driver not.
    #[serde(default)]
    pub run_id: String,
    /// The listener's half of the handshake.
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub spark_user: String,
    #[serde(default)]
    pub task_events: String,
    #[serde(default)]
    pub ui_url: String,
    #[serde(default)]
    pub master: String,
    #[serde(default)]
    pub classic_session: bool,
}

impl Hello {
    /// What the model keeps of it: the application, never the token.
    pub fn info(&self) -> ListenerInfo {
        ListenerInfo {
            app_id: self.app_id.clone(),
            app_name: self.app_name.clone(),
            spark_version: self.spark_version.clone(),
            spark_user: self.spark_user.clone(),
            start_time: self.start_time,
            coalesced_tasks: self.task_events == "coalesced",
            // Spark's UI only at an http or https address: it becomes a link in notebooks.
            ui_url: if crate::spark_api::is_http_url(&self.ui_url) {
                self.ui_url.clone()
            } else {
                String::new()
            },
            master: self.master.clone(),
            classic_session: self.classic_session,
        }
    }
}

impl Hello {
    /// The hello as a listener writes it: `{"Event":"SparkscopeHello",…}` and a newline.
    pub fn line(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["Event"] = serde_json::Value::from("SparkscopeHello");
        v.to_string() + "\n"
    }
}

/// Parses a listener's answer to a command: the command's id and how it went.
pub fn parse_command_result(line: &[u8]) -> Result<(String, CommandResult), ParseError> {
    #[derive(Deserialize)]
    struct Raw {
        id: String,
        ok: bool,
        #[serde(default)]
        error: String,
    }
    let r: Raw = serde_json::from_slice(line)?;
    Ok((
        r.id,
        CommandResult {
            ok: r.ok,
            error: r.error,
        },
    ))
}

/// Reads the listener's proof line (`{"Event":"SparkscopeProof","proof":"<hex>"}`).
fn parse_proof(line: &[u8]) -> Result<String, ParseError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "Event")]
        event: String,
        #[serde(default)]
        proof: String,
    }
    let r: Raw = serde_json::from_slice(line)?;
    if r.event != "SparkscopeProof" {
        return Err(ParseError::NotHello);
    }
    Ok(r.proof)
}

/// Parses a hello line.
pub fn parse_hello(line: &[u8]) -> Result<Hello, ParseError> {
    if spark_json::event_name(line)? != "SparkscopeHello" {
        return Err(ParseError::NotHello);
    }
    Ok(serde_json::from_slice(line)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStageProgress {
    stage_id: i32,
    stage_attempt_id: i32,
    #[serde(default)]
    time: i64,
    #[serde(default)]
    started: i64,
    #[serde(default)]
    succeeded: i64,
    #[serde(default)]
    failed: i64,
    #[serde(default)]
    killed: i64,
    #[serde(default)]
    executor_run_time: i64,
    #[serde(default)]
    executor_cpu_time: i64,
    #[serde(default)]
    input_bytes: i64,
    #[serde(default)]
    output_bytes: i64,
    #[serde(default)]
    shuffle_read_bytes: i64,
    #[serde(default)]
    shuffle_write_bytes: i64,
    #[serde(default)]
    memory_bytes_spilled: i64,
    #[serde(default)]
    disk_bytes_spilled: i64,
    #[serde(default)]
    jvm_gc_time: i64,
    duration_min_ms: Option<i64>,
    duration_median_ms: Option<i64>,
    duration_max_ms: Option<i64>,
}

impl From<RawStageProgress> for StageProgress {
    fn from(r: RawStageProgress) -> Self {
        StageProgress {
            stage_id: r.stage_id,
            stage_attempt_id: r.stage_attempt_id,
            time: r.time,
            started: r.started,
            succeeded: r.succeeded,
            failed: r.failed,
            killed: r.killed,
            metrics: TaskMetricSums {
                executor_run_time_ms: r.executor_run_time,
                executor_cpu_time_ns: r.executor_cpu_time,
                input_bytes: r.input_bytes,
                output_bytes: r.output_bytes,
                shuffle_read_bytes: r.shuffle_read_bytes,
                shuffle_write_bytes: r.shuffle_write_bytes,
                memory_spilled_bytes: r.memory_bytes_spilled,
                disk_spilled_bytes: r.disk_bytes_spilled,
                gc_time_ms: r.jvm_gc_time,
            },
            durations: match (r.duration_min_ms, r.duration_median_ms, r.duration_max_ms) {
                (Some(min_ms), Some(median_ms), Some(max_ms)) => Some(DurationSummary {
                    min_ms,
                    median_ms,
                    max_ms,
                }),
                _ => None,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawListenerStats {
    #[serde(default)]
    time: i64,
    #[serde(default)]
    sent: u64,
    #[serde(default)]
    dropped: u64,
    #[serde(default)]
    reconnects: u64,
    /// Spark's listener-bus drops, by queue.
    #[serde(default)]
    bus_dropped: HashMap<String, u64>,
    #[serde(default)]
    live_evicted: u64,
    #[serde(default)]
    untracked_task_events: u64,
}

#[derive(Deserialize)]
struct RawTime {
    #[serde(default)]
    time: i64,
}

#[derive(Deserialize)]
struct RawJobsGone {
    #[serde(default)]
    time: i64,
    #[serde(rename = "jobIds")]
    job_ids: Vec<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSqlMetrics {
    execution_id: i64,
    /// (accumulator id, total) pairs.
    values: Vec<(i64, i64)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogLine {
    #[serde(rename = "Timestamp")]
    time: i64,
    #[serde(rename = "Level")]
    level: LogLevel,
    #[serde(rename = "Logger", default)]
    logger: String,
    #[serde(rename = "Thread", default)]
    thread: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "Thrown", default)]
    thrown: String,
    #[serde(rename = "Job Tags", default)]
    job_tags: String,
    #[serde(rename = "Context", default)]
    context: HashMap<String, String>,
}

impl From<RawLogLine> for LogLine {
    fn from(r: RawLogLine) -> Self {
        let mut ctx = r.context;
        let mut job_tags: Vec<String> = r
            .job_tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        job_tags.sort();
        job_tags.dedup();
        LogLine {
            time: r.time,
            level: r.level,
            logger: r.logger,
            thread: r.thread,
            message: r.message,
            thrown: r.thrown,
            job_tags,
            context: LogContext {
                session_id: ctx.remove("session_id"),
                user_id: ctx.remove("user_id"),
                operation_id: ctx.remove("operation_id"),
                job_id: ctx.remove("job_id"),
                stage_id: ctx.remove("stage_id"),
                stage_attempt_id: ctx.remove("stage_attempt_id"),
                task_name: ctx.remove("task_name"),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUiUrl {
    #[serde(default)]
    time: i64,
    ui_url: String,
}

// ---- The listener's side, for Rust peers of the agent (tests, the load generator) ----

/// Why a listener's handshake did not end in a welcome.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent refused: {0}")]
    Refused(String),
    #[error("the agent did not prove it knows the token")]
    AgentUnproven,
    #[error("the agent's answer is not the protocol's: {0:?}")]
    Garbled(String),
}

/// How strictly a listener checks the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentCheck {
    /// As the listener jar does: say nothing more to an agent that did not prove itself.
    Verify,
    /// Send the proof whatever the agent proved: for tests of the agent's own checks.
    Skip,
}

/// Connects to the agent's ingest port as a listener: says `hello` (its protocol is set, and
/// its nonce when empty), checks the agent's proof, proves itself with `token`, and returns the
/// connection ready for event lines once the agent welcomes it. Each answer is waited for at
/// most `timeout`.
pub async fn connect_listener(
    addr: std::net::SocketAddr,
    mut hello: Hello,
    token: &Secret,
    check: AgentCheck,
    timeout: std::time::Duration,
) -> Result<tokio::io::BufReader<tokio::net::TcpStream>, HandshakeError> {
    use tokio::io::AsyncWriteExt;
    hello.protocol = PROTOCOL_VERSION;
    if hello.nonce.is_empty() {
        hello.nonce = new_nonce();
    }
    let stream = tokio::net::TcpStream::connect(addr).await?;
    // As Spark's listener does: a burst's last events must not wait for an acknowledgement.
    stream.set_nodelay(true)?;
    let mut s = tokio::io::BufReader::new(stream);
    s.get_mut().write_all(hello.line().as_bytes()).await?;
    let mut line = String::new();
    read_answer(&mut s, &mut line, timeout).await?;
    let challenge: serde_json::Value =
        serde_json::from_str(&line).map_err(|_| HandshakeError::Garbled(line.clone()))?;
    if challenge["ok"] != true {
        return Err(HandshakeError::Refused(line.trim().to_owned()));
    }
    let agent_nonce = challenge["nonce"].as_str().unwrap_or_default().to_owned();
    let expected = agent_proof(token, &hello, &agent_nonce);
    let given = challenge["proof"].as_str().unwrap_or_default();
    if check == AgentCheck::Verify && !auth::constant_time_eq(expected.as_bytes(), given.as_bytes())
    {
        return Err(HandshakeError::AgentUnproven);
    }
    let proof = listener_proof(token, &hello, &agent_nonce);
    let proof_line = serde_json::json!({"Event": "SparkscopeProof", "proof": proof}).to_string();
    s.get_mut()
        .write_all((proof_line + "\n").as_bytes())
        .await?;
    read_answer(&mut s, &mut line, timeout).await?;
    if line != WELCOME {
        return Err(HandshakeError::Refused(line.trim().to_owned()));
    }
    Ok(s)
}

/// One line of the agent's, within `timeout`.
async fn read_answer(
    s: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    line: &mut String,
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    line.clear();
    match tokio::time::timeout(timeout, s.read_line(line)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from the agent",
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sql_metrics_lines_are_read_and_checked() {
        let line = br#"{"Event":"SparkscopeSqlMetrics","time":5,"executionId":4,"values":[[7,100],[8,2048]]}"#;
        let ev = parse_event("SqlMetrics", line).expect("parsed");
        assert_eq!(
            ev,
            Event::SqlMetrics {
                execution_id: 4,
                values: vec![(7, 100), (8, 2048)]
            }
        );
        assert!(crate::ingest::validate::check(&ev).is_ok());
        let negative = Event::SqlMetrics {
            execution_id: 4,
            values: vec![(7, -5)],
        };
        assert!(crate::ingest::validate::check(&negative).is_err());
        let bad = br#"{"Event":"SparkscopeSqlMetrics","time":5,"executionId":4,"values":[[7]]}"#;
        assert!(parse_event("SqlMetrics", bad).is_err());
    }

    use super::*;

    #[test]
    fn a_forwarded_log_line_reads_back_with_whose_it_is() {
        let line = br#"{"Event":"SparkscopeLogLine","Timestamp":1700000000000,"Level":"ERROR","Logger":"org.apache.spark.executor.Executor","Thread":"Executor task launch worker for task 0.0 in stage 3.0 (TID 7)","Message":"Exception in task 0.0 in stage 3.0 (TID 7)","Thrown":"java.lang.ArithmeticException: boom","Job Tags":"b,a,,a","Context":{"task_name":"task 0.0 in stage 3.0 (TID 7)","other":"dropped"}}"#;
        let Event::LogLine(l) = parse_event("LogLine", line).expect("parsed") else {
            panic!("a log line")
        };
        assert_eq!(l.level, LogLevel::Error);
        assert_eq!(l.time, 1_700_000_000_000);
        assert_eq!(l.job_tags, ["a", "b"]);
        assert_eq!(
            l.context.task_name.as_deref(),
            Some("task 0.0 in stage 3.0 (TID 7)")
        );
        assert_eq!(l.context.session_id, None);
        assert_eq!(
            parse_event("NoSuchLine", line).expect("parsed"),
            Event::Unknown
        );
        // Levels below WARN are never forwarded: such a line is malformed, and so is one
        // without a message.
        let info = br#"{"Event":"SparkscopeLogLine","Timestamp":1,"Level":"INFO","Message":"x"}"#;
        assert!(parse_event("LogLine", info).is_err());
        let bare = br#"{"Event":"SparkscopeLogLine","Timestamp":1,"Level":"WARN"}"#;
        assert!(parse_event("LogLine", bare).is_err());
    }

    #[test]
    fn a_hello_reads_back_as_written() {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            app_id: "local-1".into(),
            run_id: "run".into(),
            nonce: new_nonce(),
            task_events: "coalesced".into(),
            classic_session: true,
            ..Hello::default()
        };
        let line = hello.line();
        assert!(line.starts_with("{\"Event\":\"SparkscopeHello\""), "{line}");
        assert_eq!(parse_hello(line.trim().as_bytes()).expect("hello"), hello);
        assert!(hello.info().coalesced_tasks && hello.info().classic_session);
    }

    #[test]
    fn each_side_proves_itself_and_no_proof_serves_the_other_side() {
        let token = Secret::new(Some("t0ken")).expect("token");
        let hello = Hello {
            app_id: "a".into(),
            run_id: "r".into(),
            nonce: "n1".into(),
            ..Hello::default()
        };
        let mine = listener_proof(&token, &hello, "n2");
        let line = serde_json::json!({"Event": "SparkscopeProof", "proof": mine}).to_string();
        assert!(proof_holds(&token, &hello, "n2", line.as_bytes()));
        assert!(!proof_holds(&token, &hello, "n3", line.as_bytes()));
        let theirs = agent_proof(&token, &hello, "n2");
        let replayed = serde_json::json!({"Event": "SparkscopeProof", "proof": theirs}).to_string();
        assert!(!proof_holds(&token, &hello, "n2", replayed.as_bytes()));
        let other = Secret::new(Some("other")).expect("token");
        assert!(!proof_holds(&other, &hello, "n2", line.as_bytes()));
    }
}
