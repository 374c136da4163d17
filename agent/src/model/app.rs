//! The state of one Spark application, changed only through `AppState`'s methods: `apply` for
//! each event, and the few calls ingest makes about the connection itself.
//!
//! The bookkeeping is split by concern: `jobs` (jobs, stages and tasks, as Spark's own
//! `AppStatusListener` counts them), `connect` (Connect sessions and operations, and the
//! attribution of jobs to them), `retention` (what finished work is kept); `views` is what
//! readers may see. This file routes each event to them.

use super::connect::{ClosedOperation, Connect};
use super::event::{Event, ListenerInfo, KINDS};
use super::jobs::Jobs;
use super::retention::Retention;
use std::collections::BTreeMap;

/// Who the application is, as its events and its listener tell.
#[derive(Debug, Clone, Default)]
pub struct AppInfo {
    pub id: String,
    pub name: String,
    pub spark_version: String,
    pub spark_user: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    /// The Spark Connect server's gRPC endpoint (host, port), from its start event.
    pub connect_endpoint: Option<(String, u16)>,
}

#[derive(Debug, Clone)]
pub struct Executor {
    pub id: String,
    pub host: String,
    pub cores: u32,
    pub add_time: i64,
}

/// What the listener reported about itself, and what ingest saw on this application's lines.
#[derive(Debug, Clone, Default)]
pub struct IngestStats {
    pub lines: u64,
    /// Parsed lines by kind, indexed like [`KINDS`].
    pub by_kind: [u64; KINDS.len()],
    pub parse_errors: u64,
    pub unknown_events: u64,
    pub listener_dropped: u64,
    pub listener_sent: u64,
    pub listener_reconnects: u64,
}

pub struct AppState {
    pub(super) info: AppInfo,
    /// Listener connections open now for this application.
    pub(super) connections: u32,
    /// When a listener last sent something (wall clock, epoch ms); 0 for replayed logs.
    pub(super) last_seen_ms: i64,
    /// Task counts come from `SparkscopeStageProgress` lines, not task events.
    pub(super) coalesced_tasks: bool,
    pub(super) stats: IngestStats,
    pub(super) retention: Retention,
    /// Increases with every event; entities remember the generation of their last change.
    pub(super) generation: u64,
    pub(super) executors: BTreeMap<String, Executor>,
    pub(super) jobs: Jobs,
    pub(super) connect: Connect,
}

impl AppState {
    pub fn new(id: impl Into<String>, retention: Retention) -> Self {
        AppState {
            info: AppInfo {
                id: id.into(),
                ..AppInfo::default()
            },
            connections: 0,
            last_seen_ms: 0,
            coalesced_tasks: false,
            stats: IngestStats::default(),
            jobs: Jobs::new(retention.clone()),
            connect: Connect::new(retention.clone()),
            retention,
            generation: 0,
            executors: BTreeMap::new(),
        }
    }

    /// A listener connected for this application and said who it is.
    pub fn listener_connected(&mut self, now_ms: i64, hello: ListenerInfo) {
        self.connections += 1;
        self.last_seen_ms = now_ms;
        self.hello(hello);
    }

    /// A listener connection of this application ended.
    pub fn listener_disconnected(&mut self, now_ms: i64) {
        self.connections = self.connections.saturating_sub(1);
        self.last_seen_ms = now_ms;
    }

    /// A listener sent something.
    pub fn seen(&mut self, now_ms: i64) {
        self.last_seen_ms = now_ms;
    }

    /// A line that was not a valid event: counted and skipped. Returns the count so far, for
    /// the caller's logging.
    pub fn malformed_line(&mut self) -> u64 {
        self.stats.lines += 1;
        self.stats.parse_errors += 1;
        self.stats.parse_errors
    }

    /// Applies one event read from a line. Events for unknown jobs or stages are ignored, as
    /// Spark does.
    pub fn apply(&mut self, event: Event) {
        self.stats.lines += 1;
        self.stats.by_kind[event.kind_index()] += 1;
        self.generation += 1;
        let g = self.generation;
        match event {
            Event::LogStart { spark_version } => self.info.spark_version = spark_version,
            Event::ApplicationStart(a) => {
                if let Some(id) = a.id {
                    if self.info.id.is_empty() {
                        self.info.id = id;
                    }
                }
                self.info.name = a.name;
                self.info.start_time = a.time;
                self.info.spark_user = a.user;
            }
            Event::ApplicationEnd { time } => self.info.end_time = Some(time),
            Event::ExecutorAdded {
                id,
                time,
                host,
                cores,
            } => {
                self.executors.insert(
                    id.clone(),
                    Executor {
                        id,
                        host,
                        cores,
                        add_time: time,
                    },
                );
            }
            Event::ExecutorRemoved { id, .. } => {
                self.executors.remove(&id);
            }
            Event::JobStart(js) => {
                let connect = self.connect.attribute_job(g, js.job_id, &js.tags);
                self.jobs.job_start(g, js, connect);
            }
            Event::JobEnd(je) => self.jobs.job_end(g, je),
            Event::StageSubmitted(info) => self.jobs.stage_submitted(g, info),
            Event::StageCompleted(info) => self.jobs.stage_completed(g, info),
            // With coalesced task events, task counts come from progress lines, and failed task
            // ends arrive for their error only.
            Event::TaskStart { stage } if !self.coalesced_tasks => self.jobs.task_started(g, stage),
            Event::TaskEnd(te) if !self.coalesced_tasks => self.jobs.task_ended(g, te),
            Event::TaskStart { .. } | Event::TaskEnd(_) => {}
            Event::StageProgress(p) => self.jobs.stage_progress(g, p),
            Event::SqlExecutionStart(s) => self.connect.sql_execution_started(g, &s),
            Event::SqlExecutionEnd { .. } => {}
            Event::ConnectServiceStarted { host, port } => {
                self.info.connect_endpoint = Some((host, port));
            }
            Event::SessionStarted {
                session_id,
                user_id,
                time,
            } => self.connect.session_started(g, session_id, user_id, time),
            Event::SessionClosed {
                session_id,
                user_id,
                time,
            } => self.connect.session_closed(g, session_id, user_id, time),
            Event::OperationStarted(op) => self.connect.operation_started(g, op),
            Event::OperationState {
                operation_id,
                job_tag,
                time,
                state,
            } => self
                .connect
                .operation_state(g, operation_id, job_tag, time, state),
            Event::Hello(h) => self.hello(h),
            Event::ListenerStats(s) => {
                self.stats.listener_dropped = s.dropped;
                self.stats.listener_sent = s.sent;
                self.stats.listener_reconnects = s.reconnects;
            }
            Event::Ignored => {}
            Event::Unknown => self.stats.unknown_events += 1,
        }
    }

    fn hello(&mut self, h: ListenerInfo) {
        if self.info.id.is_empty() {
            self.info.id = h.app_id;
        }
        if !h.app_name.is_empty() {
            self.info.name = h.app_name;
        }
        if !h.spark_version.is_empty() {
            self.info.spark_version = h.spark_version;
        }
        if !h.spark_user.is_empty() {
            self.info.spark_user = h.spark_user;
        }
        if h.start_time > 0 {
            self.info.start_time = h.start_time;
        }
        self.coalesced_tasks = h.coalesced_tasks;
    }

    /// Drops finished work older than the age limit, measured against `now_ms`.
    pub fn prune_older_than(&mut self, now_ms: i64) {
        if let Some(age) = self.retention.max_age_ms {
            self.jobs.prune_ended_before(now_ms - age);
            self.connect.prune_ended_before(now_ms - age);
        }
    }

    /// Closed operations since the last call, oldest first: the exporter's backlog.
    pub fn take_closed_operations(&mut self) -> Vec<ClosedOperation> {
        self.connect.take_closed_operations()
    }
}
