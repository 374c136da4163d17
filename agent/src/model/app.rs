//! The state of one Spark application, changed only through `AppState`'s methods: `apply` for
//! each event, and the few calls ingest makes about the connection itself.
//!
//! The bookkeeping is split by concern: `jobs` (jobs, stages and tasks, as Spark's own
//! `AppStatusListener` counts them), `connect` (Connect sessions and operations, and the
//! attribution of jobs to them), `retention` (what finished work is kept); `views` is what
//! readers may see. This file routes each event to them.

use super::connect::{ClosedOperation, Connect, ConnectRef};
use super::event::{
    Event, ExecutorMetrics, ListenerInfo, ListenerStats, MemoryPeaks, TaskEnd, KINDS,
};
use super::jobs::Jobs;
use super::logs::Logs;
use super::retention::{Evictions, LiveBound, Retention};
use super::sql::{SqlCuts, SqlExecutions};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    /// Where Spark's UI and REST API answer, as the listener announced it; empty if unknown.
    pub ui_url: String,
    /// The address the listener connected from: the driver's host, where interrupts go (an
    /// announced address could point anywhere).
    pub listener_ip: Option<std::net::IpAddr>,
    /// `spark.master`, as the listener announced it.
    pub master: String,
    /// A notebook's own SparkContext (the kernel extension's `spark.sparkscope.classicSession`):
    /// no Connect sessions, so the application is one session, (application id, Spark user),
    /// and a job belongs to it with its job tags (`SparkContext.addJobTag`) as client tags.
    pub classic_session: bool,
}

/// Busy task slots at one moment: the value holds until the next sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSample {
    /// The agent's clock, epoch ms.
    pub at_ms: i64,
    pub active_tasks: u32,
    pub total_cores: u32,
    pub executors: u32,
    /// Sessions with a stage under way (work of no known session counts as one).
    pub busy_sessions: u32,
}

#[derive(Debug, Clone)]
pub struct Executor {
    pub id: String,
    pub host: String,
    pub cores: u32,
    pub add_time: i64,
    /// Where its logs are, by kind ("stdout", "stderr").
    pub log_urls: Vec<(String, String)>,
}

/// An executor's memory (the driver's too): its peaks since it started, from heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutorMemory {
    pub peaks: MemoryPeaks,
    /// The heap its JVM may grow to, when the listener said.
    pub max_heap: Option<u64>,
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
    /// Events Spark's own listener bus dropped, as the listener last reported.
    pub bus_dropped: u64,
    /// What the listener evicted at its own bounds, as it last reported.
    pub listener_evicted: u64,
    /// Listener connections that broke off inside the agent.
    pub failed_connections: u64,
    /// Snapshots that replaced the live state (listener reconnects, agent restarts).
    pub resyncs: u64,
    /// Times Spark's REST API was asked, and times it could not be.
    pub reconciliations: u64,
    pub reconcile_failures: u64,
    /// What reconciliation changed, in total.
    pub jobs_filled: u64,
    pub jobs_ended: u64,
    pub jobs_corrected: u64,
}

pub struct AppState {
    pub(super) info: AppInfo,
    /// Listener connections open now for this application.
    pub(super) connections: u32,
    /// The number of the newest listener connection (they are numbered from 1).
    pub(super) last_connection: u64,
    /// The connection whose snapshot is being built.
    pub(super) snapshot_connection: u64,
    /// When the last listener connection ended, while none is open (epoch ms).
    pub(super) gone_since: Option<i64>,
    /// Whether the next listener stats line only sets the baseline: the first on a connection
    /// reports the listener's whole history, which the agent (restarted, or reconnected) may
    /// have seen already.
    pub(super) stats_baseline: bool,
    /// The generation of the last change to who the application is or whether it is live
    /// (connects, disconnects, its end).
    pub(super) info_updated: u64,
    /// When a listener last sent something (wall clock, epoch ms); 0 for replayed logs.
    pub(super) last_seen_ms: i64,
    /// Task counts come from `SparkscopeStageProgress` lines, not task events.
    pub(super) coalesced_tasks: bool,
    pub(super) stats: IngestStats,
    pub(super) retention: Retention,
    /// Increases with every event; entities remember the generation of their last change.
    pub(super) generation: u64,
    pub(super) executors: BTreeMap<String, Executor>,
    /// Memory peaks per executor id, the driver's included (it heartbeats without being an
    /// executor outside local mode); at most one more than the live executors' bound. Kept
    /// apart from `executors`: a snapshot replaces those, and the listener resends the peaks
    /// after it.
    pub(super) memory: BTreeMap<String, ExecutorMemory>,
    /// The generation of the last change to `memory`.
    pub(super) memory_updated: u64,
    /// What the application-level bounds (executors, log lines) evicted since last taken.
    pub(super) evictions: Evictions,
    /// The driver's forwarded WARN and ERROR lines, newest last.
    pub(super) logs: Logs,
    /// SQL executions with their plans and operator metrics.
    pub(super) sql: SqlExecutions,
    pub(super) jobs: Jobs,
    pub(super) connect: Connect,
    /// While the listener resends its live state: the state it describes, built apart and
    /// merged at its end (`resync`).
    pub(super) snapshot: Option<Box<AppState>>,
    /// Recent gaps in what the agent saw, and what was done about them, newest last.
    pub(super) notices: VecDeque<Notice>,
    /// The generation of the newest notice.
    pub(super) notices_updated: u64,
    /// Spark's REST API should be asked for the truth (after a gap), since this time (epoch ms).
    pub(super) reconcile_wanted: Option<i64>,
    /// Jobs that were running through a gap: their counts may be off until Spark's REST API has
    /// confirmed how they ended, so reconciliation is repeated while any is left.
    pub(super) suspects: BTreeSet<i32>,
    /// When Spark's REST API was last asked (epoch ms).
    pub(super) last_reconcile_ms: i64,
    /// Spark's REST API failing: tries so far and when the next is due.
    pub(super) outage: Option<Outage>,
    /// Busy task slots over time, oldest first, as many as the upkeep keeps.
    pub(super) samples: VecDeque<TaskSample>,
    /// The generation of the newest sample.
    pub(super) samples_updated: u64,
}

/// Spark's REST API failing for an application: tries so far, and when the next is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub(super) tries: u32,
    pub(super) next_ms: i64,
}

/// At most this many notices are kept per application.
const MAX_NOTICES: usize = 8;

/// A gap in what the agent saw of an application, or what was done about one: what notebooks
/// are told so that they never show wrong numbers silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    /// When the agent noticed (its clock, epoch ms).
    pub at_ms: i64,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// The listener (re)connected with work under way: live state restored from its snapshot.
    Resync,
    /// Events were dropped before they reached the agent (listener queue, agent away, Spark's
    /// own listener bus).
    Dropped,
    /// Counts were corrected from Spark's REST API.
    Reconciled,
    /// Spark's REST API could not be asked; counts may be off.
    Unreconciled,
    /// The driver's listener went away without an application end and did not come back.
    ListenerGone,
}

impl AppState {
    pub fn new(id: impl Into<String>, retention: Retention) -> Self {
        AppState {
            info: AppInfo {
                id: id.into(),
                ..AppInfo::default()
            },
            connections: 0,
            last_connection: 0,
            snapshot_connection: 0,
            gone_since: None,
            stats_baseline: false,
            info_updated: 0,
            last_seen_ms: 0,
            coalesced_tasks: false,
            stats: IngestStats::default(),
            jobs: Jobs::new(retention.clone()),
            connect: Connect::new(retention.clone()),
            retention,
            generation: 0,
            executors: BTreeMap::new(),
            memory: BTreeMap::new(),
            memory_updated: 0,
            evictions: Evictions::default(),
            logs: Logs::default(),
            sql: SqlExecutions::default(),
            snapshot: None,
            notices: VecDeque::new(),
            notices_updated: 0,
            reconcile_wanted: None,
            suspects: BTreeSet::new(),
            last_reconcile_ms: 0,
            outage: None,
            samples: VecDeque::new(),
            samples_updated: 0,
        }
    }

    /// A heartbeat's peaks: the executor's, and the stage attempts' that ran on it.
    fn executor_metrics(&mut self, g: u64, m: ExecutorMetrics) {
        for (key, peaks) in &m.stages {
            self.jobs.stage_memory(g, *key, peaks);
        }
        let Some(peaks) = m.executor else {
            return;
        };
        let bound = self.retention.live.executors.saturating_add(1);
        if !self.memory.contains_key(&m.executor_id) && self.memory.len() >= bound {
            // Heartbeats of an executor whose removal was lost; the newest are kept out.
            self.evictions.add(LiveBound::Executors);
            return;
        }
        let e = self.memory.entry(m.executor_id).or_default();
        let grew = e.peaks.raise(&peaks);
        if m.max_heap.is_some() && e.max_heap != m.max_heap {
            e.max_heap = m.max_heap;
            self.memory_updated = g;
        } else if grew {
            self.memory_updated = g;
        }
    }

    /// Records busy task slots now if they changed since the last sample (only while a
    /// listener is connected), keeping the newest `keep`. Returns whether a sample was taken,
    /// and how many old samples left the window to make room.
    pub fn sample(&mut self, now_ms: i64, keep: usize) -> (bool, usize) {
        if !self.is_live() || keep == 0 {
            return (false, 0);
        }
        let sample = TaskSample {
            at_ms: now_ms,
            active_tasks: u32::try_from(self.active_tasks()).unwrap_or(u32::MAX),
            total_cores: self
                .executors
                .values()
                .fold(0u32, |n, e| n.saturating_add(e.cores)),
            executors: u32::try_from(self.executors.len()).unwrap_or(u32::MAX),
            busy_sessions: self.busy_sessions(),
        };
        let same = |s: &TaskSample| {
            (s.active_tasks, s.total_cores, s.executors, s.busy_sessions)
                == (
                    sample.active_tasks,
                    sample.total_cores,
                    sample.executors,
                    sample.busy_sessions,
                )
        };
        if self.samples.back().is_some_and(same) {
            return (false, 0);
        }
        self.samples.push_back(sample);
        let mut evicted = 0;
        while self.samples.len() > keep {
            self.samples.pop_front();
            evicted += 1;
        }
        self.generation += 1;
        self.samples_updated = self.generation;
        (true, evicted)
    }

    /// A listener connected from `ip` for this application and said who it is. Returns the
    /// connection's number, which its disconnect names.
    pub fn listener_connected(
        &mut self,
        now_ms: i64,
        hello: ListenerInfo,
        ip: std::net::IpAddr,
    ) -> u64 {
        self.connections = self.connections.saturating_add(1);
        self.last_connection += 1;
        self.last_seen_ms = now_ms;
        self.gone_since = None;
        self.stats_baseline = true;
        self.info.listener_ip = Some(ip);
        self.hello(hello);
        self.info_changed();
        self.last_connection
    }

    /// Listener connection number `connection` of this application ended; `failed` when it
    /// broke off in the middle of its work (the agent's fault, not the listener's), so events
    /// may be missing.
    pub fn listener_disconnected(&mut self, now_ms: i64, failed: bool, connection: u64) {
        self.connections = self.connections.saturating_sub(1);
        self.last_seen_ms = now_ms;
        if self.connections == 0 {
            self.gone_since = Some(now_ms);
        }
        // A snapshot cut off is no snapshot: what it had built is dropped, the live state stays.
        // An older connection that only now turns out dead leaves a newer one's snapshot alone.
        if self.snapshot_connection == connection {
            self.snapshot = None;
        }
        if failed {
            self.stats.failed_connections += 1;
            self.notice(
                now_ms,
                NoticeKind::Dropped,
                "the agent lost part of the listener's events".to_owned(),
            );
        }
        self.info_changed();
    }

    /// A driver whose listener has been gone `grace_ms` without an application end is taken
    /// for dead (a crash, a kill, a partition): its running work is ended as unknown and
    /// notebooks are told. Returns whether anything changed.
    pub fn end_if_gone(&mut self, now_ms: i64, grace_ms: i64) -> bool {
        let Some(since) = self.gone_since else {
            return false;
        };
        if self.connections > 0 || now_ms.saturating_sub(since) < grace_ms {
            return false;
        }
        self.gone_since = None;
        if self.info.end_time.is_some() {
            return false;
        }
        self.generation += 1;
        let g = self.generation;
        let jobs = self.jobs.end_running_as_unknown(g, now_ms);
        let operations = self.connect.end_running_as_unknown(g, now_ms);
        self.suspects.clear();
        self.reconcile_wanted = None;
        if jobs + operations > 0 {
            self.notice(
                now_ms,
                NoticeKind::ListenerGone,
                format!(
                    "the driver stopped answering {}s ago: {jobs} running job(s) and \
                     {operations} operation(s) ended as unknown",
                    now_ms.saturating_sub(since) / 1000
                ),
            );
        } else {
            self.notice(
                now_ms,
                NoticeKind::ListenerGone,
                format!(
                    "the driver stopped answering {}s ago",
                    now_ms.saturating_sub(since) / 1000
                ),
            );
        }
        self.info_changed();
        true
    }

    fn info_changed(&mut self) {
        self.generation += 1;
        self.info_updated = self.generation;
    }

    /// Records a gap, or what was done about one; a gap also asks for reconciliation.
    pub fn notice(&mut self, at_ms: i64, kind: NoticeKind, message: String) {
        self.generation += 1;
        if matches!(kind, NoticeKind::Resync | NoticeKind::Dropped) {
            self.want_reconcile(at_ms);
        }
        if self.notices.len() >= MAX_NOTICES {
            self.notices.pop_front();
        }
        self.notices.push_back(Notice {
            kind,
            at_ms,
            message,
        });
        self.notices_updated = self.generation;
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
        if let Event::JobStart(js) = &event {
            // The application's SQL execution learns its jobs, also from a snapshot's resend.
            if let Some(x) = js.sql_execution_id.filter(|x| self.sql.get(*x).is_some()) {
                self.generation += 1;
                self.sql.job_started(self.generation, x, js.job_id);
            }
        }
        match event {
            Event::SnapshotStart { .. } => self.begin_snapshot(),
            Event::SnapshotEnd { time } => self.end_snapshot(time),
            Event::ListenerStats(s) => self.listener_stats(s),
            Event::JobsGone { time, job_ids } => self.jobs_gone(time, &job_ids),
            // The application's, not the snapshot's: taken at once, as a hello's would be.
            Event::UiUrl { url, .. } => self.ui_url_known(url),
            // Also while a snapshot is built: lines are kept as they come, owned by what the
            // application knows now.
            Event::LogLine(line) => self.log_line(line),
            // SQL executions are the application's, also while a snapshot is built: a resent
            // start keeps what is held, and the snapshot's end ends those it did not resend.
            Event::SqlExecutionStart(mut s) => {
                let plan = s.plan.take();
                let attribution = s.clone();
                s.plan = plan;
                self.sql_event(Event::SqlExecutionStart(s));
                match &mut self.snapshot {
                    Some(shadow) => shadow.apply_event(Event::SqlExecutionStart(attribution)),
                    None => self.apply_event(Event::SqlExecutionStart(attribution)),
                }
            }
            ev @ (Event::SqlExecutionEnd { .. }
            | Event::SqlPlanUpdate { .. }
            | Event::SqlMetrics { .. }) => self.sql_event(ev),
            ev => match &mut self.snapshot {
                Some(shadow) => shadow.apply_event(ev),
                None => self.apply_event(ev),
            },
        }
    }

    /// Applies one event to this state (a live one, or a snapshot's shadow).
    fn apply_event(&mut self, event: Event) {
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
            Event::ApplicationEnd { time } => {
                self.info.end_time = Some(time);
                self.info_updated = g;
                if self.info.classic_session {
                    let (id, user) = (self.info.id.clone(), self.info.spark_user.clone());
                    self.connect.session_closed(g, id, user, time);
                }
            }
            Event::ExecutorAdded {
                id,
                time,
                host,
                cores,
                log_urls,
            } => {
                let executor = Executor {
                    id: id.clone(),
                    host,
                    cores,
                    add_time: time,
                    log_urls,
                };
                self.executors.insert(id, executor);
                self.info_updated = g; // the record lists executors' logs
                if self.executors.len() > self.retention.live.executors {
                    // Past the bound, the executor added first goes (its removal was lost).
                    let oldest = self
                        .executors
                        .values()
                        .min_by_key(|e| (e.add_time, e.id.clone()))
                        .map(|e| e.id.clone());
                    if let Some(k) = oldest {
                        self.executors.remove(&k);
                        self.evictions.add(LiveBound::Executors);
                    }
                }
            }
            Event::ExecutorRemoved { id, .. } => {
                self.executors.remove(&id);
                if self.memory.remove(&id).is_some() {
                    self.memory_updated = g;
                }
                self.info_updated = g;
            }
            Event::ExecutorMetrics(m) => self.executor_metrics(g, m),
            Event::JobStart(js) => {
                let connect = self.attribute_job(g, js.job_id, &js.tags);
                self.jobs.job_start(g, js, connect);
            }
            Event::JobEnd(je) => self.jobs.job_end(g, je),
            Event::StageSubmitted(info) => self.jobs.stage_submitted(g, info),
            Event::StageCompleted(info) => self.jobs.stage_completed(g, info),
            // With coalesced task events, task counts come from progress lines, and failed task
            // ends arrive for their error only.
            Event::TaskStart { stage } if !self.coalesced_tasks => self.jobs.task_started(g, stage),
            Event::TaskEnd(te) if !self.coalesced_tasks => self.jobs.task_ended(g, te),
            Event::TaskEnd(TaskEnd {
                stage,
                failure: Some(failure),
                ..
            }) => self.jobs.task_failed(g, stage, failure),
            Event::TaskStart { .. } | Event::TaskEnd(_) => {}
            Event::StageProgress(p) => self.jobs.stage_progress(g, p),
            Event::SqlExecutionStart(s) => self.connect.sql_execution_started(g, &s),
            Event::SqlExecutionEnd { .. }
            | Event::SqlPlanUpdate { .. }
            | Event::SqlMetrics { .. } => {}
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
            Event::ListenerStats(_)
            | Event::SnapshotStart { .. }
            | Event::SnapshotEnd { .. }
            | Event::JobsGone { .. }
            | Event::UiUrl { .. }
            | Event::LogLine(_) => {}
            Event::Ignored => {}
            Event::Unknown => self.stats.unknown_events += 1,
        }
    }

    /// An SQL execution's start, end, re-plan or metrics, applied to the application (never a
    /// snapshot's shadow); what the bounds cut is counted.
    fn sql_event(&mut self, event: Event) {
        self.generation += 1;
        let g = self.generation;
        let live = &self.retention.live;
        let (max_executions, max_nodes) = (live.sql_executions, live.plan_nodes);
        let mut cuts = SqlCuts::default();
        match event {
            Event::SqlExecutionStart(s) => {
                cuts = self.sql.started(g, s, max_executions, max_nodes);
            }
            Event::SqlPlanUpdate { execution_id, plan } => {
                cuts.plan_nodes = self.sql.plan_updated(g, execution_id, plan, max_nodes);
            }
            Event::SqlMetrics {
                execution_id,
                values,
            } => self.sql.metrics(g, execution_id, &values),
            Event::SqlExecutionEnd {
                execution_id,
                time,
                error,
            } => self.sql.ended(g, execution_id, time, error),
            _ => {}
        }
        self.evictions
            .add_n(LiveBound::SqlExecutions, cuts.executions);
        self.evictions.add_n(LiveBound::PlanNodes, cuts.plan_nodes);
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
        if !h.ui_url.is_empty() {
            self.info.ui_url = h.ui_url;
        }
        if !h.master.is_empty() {
            self.info.master = h.master;
        }
        if h.classic_session && !self.info.id.is_empty() {
            // Followable from the start, before its first job.
            self.info.classic_session = true;
            self.generation += 1;
            let (id, user) = (self.info.id.clone(), self.info.spark_user.clone());
            let start = self.info.start_time;
            self.connect
                .session_started(self.generation, id, user, start);
        }
    }

    /// Who ran a job: its Connect operation, or on a classic session the application's one
    /// session, the job's tags being the notebook's.
    pub(super) fn attribute_job(
        &mut self,
        g: u64,
        job_id: i32,
        tags: &[String],
    ) -> Option<ConnectRef> {
        if let Some(c) = self.connect.attribute_job(g, job_id, tags) {
            return Some(c);
        }
        self.info.classic_session.then(|| {
            let mut tags = tags.to_vec();
            tags.sort();
            tags.dedup();
            ConnectRef {
                user_id: self.info.spark_user.clone(),
                session_id: self.info.id.clone(),
                operation_id: String::new(),
                tags,
            }
        })
    }

    /// Asks for Spark's REST API: every job running now went through a gap.
    pub(super) fn want_reconcile(&mut self, at_ms: i64) {
        self.reconcile_wanted.get_or_insert(at_ms);
        let running = self.jobs.running_ids();
        self.suspects.extend(running);
        // Bounded while Spark's REST API stays out of reach: only jobs the model still holds,
        // at most as many as running jobs are kept (the newest).
        let jobs = &self.jobs.jobs;
        self.suspects.retain(|id| jobs.contains_key(id));
        while self.suspects.len() > self.retention.live.running_jobs {
            self.suspects.pop_first();
        }
    }

    /// Jobs Spark no longer runs although their end never came: over, how is unknown until
    /// Spark's REST API tells (asked for at once).
    /// Spark's UI answers at `url`, though the hello said nothing: reconciliation may use it
    /// from now on, and notebooks get the link.
    fn ui_url_known(&mut self, url: String) {
        if !url.is_empty() && url != self.info.ui_url {
            self.info.ui_url = url;
            self.info_changed();
        }
    }

    fn jobs_gone(&mut self, time: i64, ids: &[i32]) {
        self.generation += 1;
        let g = self.generation;
        let running: Vec<i32> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.jobs
                    .jobs
                    .get(id)
                    .is_some_and(|j| j.status == super::jobs::JobStatus::Running)
            })
            .collect();
        if running.is_empty() {
            return;
        }
        self.jobs.end_as_unknown(g, &running, time);
        self.notice(
            time,
            NoticeKind::Dropped,
            format!(
                "Spark's listener bus dropped the end of {} job(s); they are over",
                running.len()
            ),
        );
    }

    /// The listener's own counts. A drop since the last report means the agent's view has a gap.
    fn listener_stats(&mut self, s: ListenerStats) {
        self.generation += 1;
        let baseline = std::mem::take(&mut self.stats_baseline);
        let new_drops = s
            .dropped
            .saturating_sub(self.stats.listener_dropped)
            .saturating_add(s.bus_dropped.saturating_sub(self.stats.bus_dropped));
        // Counters start afresh when a new listener (a restarted driver) reports.
        let restarted =
            s.dropped < self.stats.listener_dropped || s.bus_dropped < self.stats.bus_dropped;
        self.stats.listener_dropped = s.dropped;
        self.stats.listener_sent = s.sent;
        self.stats.listener_reconnects = s.reconnects;
        self.stats.bus_dropped = s.bus_dropped;
        self.stats.listener_evicted = s.evicted;
        if new_drops > 0 && !restarted && !baseline {
            let what = if s.bus_dropped > 0 {
                "Spark's listener bus or the listener"
            } else {
                "the listener"
            };
            self.notice(
                s.time,
                NoticeKind::Dropped,
                format!("{what} dropped {new_drops} event(s)"),
            );
        }
    }

    /// Drops finished work that ended before `cutoff_ms`.
    pub fn prune_ended_before(&mut self, cutoff_ms: i64) {
        self.jobs.prune_ended_before(cutoff_ms);
        self.connect.prune_ended_before(cutoff_ms);
    }

    /// The Connect sessions this application reported first since the last call (all of them
    /// when more were new than are kept in between), for [`super::Store::claim_sessions`].
    pub fn take_fresh_sessions(&mut self) -> Vec<String> {
        match self.connect.take_fresh() {
            Some(fresh) => fresh,
            None => self.connect.sessions.keys().cloned().collect(),
        }
    }

    /// Closed operations since the last call, oldest first: the exporter's backlog.
    pub fn take_closed_operations(&mut self) -> Vec<ClosedOperation> {
        self.connect.take_closed_operations()
    }

    /// What the live bounds evicted since the last call.
    pub fn take_evictions(&mut self) -> Evictions {
        let mut all = std::mem::take(&mut self.evictions);
        for _ in 0..std::mem::take(&mut self.jobs.retired.forgotten) {
            all.add(super::retention::LiveBound::RetiredJobs);
        }
        let parts = [
            std::mem::take(&mut self.jobs.evictions),
            std::mem::take(&mut self.connect.evictions),
        ];
        for part in parts {
            for (total, n) in all.0.iter_mut().zip(part.0) {
                *total = total.saturating_add(n);
            }
        }
        all
    }
}
