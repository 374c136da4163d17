//! The state of one Spark application, changed only by `AppState::apply`.
//!
//! Job, stage and task bookkeeping follows Spark's own `AppStatusListener` step for step (live
//! stages stay live until their last task ends; stages still pending when a job ends are skipped;
//! killed and failed tasks are told apart the same way), so the counts equal those of Spark's
//! REST API and History Server. On top of that every job is attributed to the Connect operation,
//! session, user and client tags that ran it, by identity: the job tags Spark stamps on it.

use super::tags::{is_operation_tag, parse_operation_tag, parse_session_tag};
use crate::ingest::event::{
    Event, JobEnd, JobStart, OpTransition, OperationStarted, StageInfo, StageKey, StageProgress,
    TaskMetricSums, TaskOutcome,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How much finished work is kept. Running work is always kept.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Jobs, counted like `spark.ui.retainedJobs` (running ones included).
    pub jobs: usize,
    /// Finished stage attempts.
    pub stages: usize,
    /// Closed Connect operations.
    pub operations: usize,
    /// Closed Connect sessions.
    pub sessions: usize,
    /// Finished things older than this (milliseconds) go, whatever their count.
    pub max_age_ms: Option<i64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            jobs: 1000,
            stages: 1000,
            operations: 1000,
            sessions: 1000,
            max_age_ms: None,
        }
    }
}

/// Statement texts are cut to this many bytes: enough to recognise a query, bounded in memory.
const MAX_STATEMENT_BYTES: usize = 4096;
/// Progress lines for stages not yet submitted are held back, up to this many.
const MAX_PENDING_PROGRESS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    Pending,
    Active,
    Complete,
    Failed,
    Skipped,
}

/// Which Connect operation ran a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRef {
    pub user_id: String,
    pub session_id: String,
    pub operation_id: String,
    /// Raw client tags (`SparkSession.addTag`), sorted.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: i32,
    pub name: String,
    pub description: Option<String>,
    pub job_group: Option<String>,
    pub submission_time: Option<i64>,
    pub completion_time: Option<i64>,
    pub stage_ids: Vec<i32>,
    pub job_tags: Vec<String>,
    pub sql_execution_id: Option<i64>,
    pub status: JobStatus,
    pub error: Option<String>,
    pub num_tasks: i32,
    pub active_tasks: i32,
    pub completed_tasks: i32,
    pub failed_tasks: i32,
    pub killed_tasks: i32,
    pub skipped_tasks: i32,
    pub active_stages: i32,
    pub completed_stages: BTreeSet<i32>,
    pub skipped_stages: BTreeSet<i32>,
    pub failed_stages: i32,
    pub connect: Option<ConnectRef>,
    /// The model generation of the last change.
    pub updated: u64,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub stage_id: i32,
    pub attempt_id: i32,
    pub name: String,
    pub num_tasks: i32,
    pub status: StageStatus,
    pub job_ids: Vec<i32>,
    pub submission_time: Option<i64>,
    pub completion_time: Option<i64>,
    pub failure_reason: Option<String>,
    pub active_tasks: i32,
    pub completed_tasks: i32,
    pub failed_tasks: i32,
    pub killed_tasks: i32,
    pub metrics: TaskMetricSums,
    pub updated: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    Started,
    Analyzed,
    Ready,
    Finished,
    Failed,
    Canceled,
    Closed,
}

impl OpState {
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Started => "STARTED",
            OpState::Analyzed => "ANALYZED",
            OpState::Ready => "READY",
            OpState::Finished => "FINISHED",
            OpState::Failed => "FAILED",
            OpState::Canceled => "CANCELED",
            OpState::Closed => "CLOSED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OpState::Finished | OpState::Failed | OpState::Canceled | OpState::Closed
        )
    }
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub operation_id: String,
    pub job_tag: String,
    pub session_id: String,
    pub user_id: String,
    pub tags: Vec<String>,
    pub state: OpState,
    /// Finished, Failed or Canceled, once reached; Closed does not overwrite it.
    pub final_state: Option<OpState>,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub close_time: Option<i64>,
    pub statement: String,
    pub error: Option<String>,
    pub produced_rows: Option<i64>,
    pub job_ids: Vec<i32>,
    pub sql_execution_ids: Vec<i64>,
    pub updated: u64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: String,
    pub user_id: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub updated: u64,
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
    /// Parsed lines by kind, indexed like [`crate::ingest::event::KINDS`].
    pub by_kind: [u64; crate::ingest::event::KINDS.len()],
    pub parse_errors: u64,
    pub unknown_events: u64,
    pub listener_dropped: u64,
    pub listener_sent: u64,
    pub listener_reconnects: u64,
}

/// Part of an application's state, borrowed: see [`AppState::session_slice`].
#[derive(Debug, Default)]
pub struct SessionSlice<'a> {
    pub session: Option<&'a Session>,
    pub operations: Vec<&'a Operation>,
    pub jobs: Vec<&'a Job>,
    pub stages: Vec<&'a Stage>,
    pub tag_groups: Vec<TagGroup<'a>>,
}

impl SessionSlice<'_> {
    pub fn is_empty(&self) -> bool {
        self.session.is_none()
            && self.operations.is_empty()
            && self.jobs.is_empty()
            && self.stages.is_empty()
            && self.tag_groups.is_empty()
    }
}

/// The operations and jobs of one client tag within one session.
#[derive(Debug)]
pub struct TagGroup<'a> {
    pub tag: &'a str,
    pub operation_ids: Vec<&'a str>,
    pub job_ids: Vec<i32>,
}

/// Totals since the agent first saw the application, kept as plain integers where the state
/// changes; the Prometheus exporter reads them at scrape time, so ingest pays nothing for metrics.
#[derive(Debug, Clone, Default)]
pub struct WorkCounters {
    pub jobs_started: u64,
    pub jobs_succeeded: u64,
    pub jobs_failed: u64,
    pub stages_submitted: u64,
    pub stages_complete: u64,
    pub stages_failed: u64,
    pub stages_skipped: u64,
    pub tasks_started: u64,
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
    pub tasks_killed: u64,
    /// Closed operations by the state they ended in: finished, failed, canceled.
    pub operations_finished: u64,
    pub operations_failed: u64,
    pub operations_canceled: u64,
}

/// A Connect operation that closed: for the per-user duration histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedOperation {
    pub user_id: String,
    pub state: OpState,
    pub seconds: f64,
}

/// Closed operations waiting for the exporter, at most this many (the oldest go first).
const MAX_CLOSED_BACKLOG: usize = 10_000;

pub struct AppState {
    pub id: String,
    pub name: String,
    pub spark_version: String,
    pub spark_user: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    /// Listener connections open now for this application.
    pub connections: u32,
    /// When a listener last sent something (wall clock, epoch ms); 0 for replayed logs.
    pub last_seen_ms: i64,
    /// Task counts come from `SparkscopeStageProgress` lines, not task events.
    pub coalesced_tasks: bool,
    /// The Spark Connect server's gRPC endpoint (host, port), from its start event.
    pub connect_endpoint: Option<(String, u16)>,
    pub stats: IngestStats,
    pub counters: WorkCounters,
    closed_operations: std::collections::VecDeque<ClosedOperation>,
    retention: Retention,
    generation: u64,
    executors: BTreeMap<String, Executor>,
    jobs: BTreeMap<i32, Job>,
    live_stages: HashMap<StageKey, Stage>,
    done_stages: BTreeMap<StageKey, Stage>,
    sessions: HashMap<String, Session>,
    operations: HashMap<String, Operation>,
    op_by_job_tag: HashMap<String, String>,
    progress: HashMap<StageKey, StageProgress>,
    pending_progress: HashMap<StageKey, StageProgress>,
    running_sql: HashMap<i64, String>,
}

impl AppState {
    pub fn new(id: impl Into<String>, retention: Retention) -> Self {
        AppState {
            id: id.into(),
            name: String::new(),
            spark_version: String::new(),
            spark_user: String::new(),
            start_time: 0,
            end_time: None,
            connections: 0,
            last_seen_ms: 0,
            coalesced_tasks: false,
            connect_endpoint: None,
            stats: IngestStats::default(),
            counters: WorkCounters::default(),
            closed_operations: std::collections::VecDeque::new(),
            retention,
            generation: 0,
            executors: BTreeMap::new(),
            jobs: BTreeMap::new(),
            live_stages: HashMap::new(),
            done_stages: BTreeMap::new(),
            sessions: HashMap::new(),
            operations: HashMap::new(),
            op_by_job_tag: HashMap::new(),
            progress: HashMap::new(),
            pending_progress: HashMap::new(),
            running_sql: HashMap::new(),
        }
    }

    pub fn is_live(&self) -> bool {
        self.connections > 0
    }

    /// Increases with every change; entities remember the generation of their last change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn job(&self, id: i32) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Live stage attempts first, then retained finished ones.
    pub fn stages(&self) -> impl Iterator<Item = &Stage> {
        self.live_stages.values().chain(self.done_stages.values())
    }

    pub fn stage(&self, key: StageKey) -> Option<&Stage> {
        self.live_stages
            .get(&key)
            .or_else(|| self.done_stages.get(&key))
    }

    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.values()
    }

    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.operations.get(id)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    pub fn executors(&self) -> impl Iterator<Item = &Executor> {
        self.executors.values()
    }

    /// Closed operations since the last call, oldest first.
    pub fn take_closed_operations(&mut self) -> Vec<ClosedOperation> {
        self.closed_operations.drain(..).collect()
    }

    /// Connect sessions not closed.
    pub fn active_sessions(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.end_time.is_none())
            .count()
    }

    /// Connect operations not yet ended.
    pub fn running_operations(&self) -> usize {
        self.operations
            .values()
            .filter(|o| !o.state.is_terminal())
            .count()
    }

    pub fn running_jobs(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
            .count()
    }

    pub fn active_stages(&self) -> usize {
        self.live_stages
            .values()
            .filter(|s| s.status == StageStatus::Active)
            .count()
    }

    /// The session with this id, if its user id matches too.
    pub fn session_of(&self, session_id: &str, user_id: &str) -> Option<&Session> {
        self.sessions
            .get(session_id)
            .filter(|s| s.user_id == user_id)
    }

    /// Whether anything of this (session, user) pair is known: a session record or operations.
    pub fn knows_session(&self, session_id: &str, user_id: &str) -> bool {
        self.session_of(session_id, user_id).is_some()
            || self
                .operations
                .values()
                .any(|o| o.session_id == session_id && o.user_id == user_id)
    }

    /// Tasks running now, summed over live stage attempts.
    pub fn active_tasks(&self) -> i64 {
        self.live_stages
            .values()
            .map(|s| i64::from(s.active_tasks.max(0)))
            .sum()
    }

    /// What one Connect session (matched on both session and user id) has that changed after
    /// generation `since` (0: everything): its record, operations, their jobs, those jobs'
    /// stage attempts, and the tag groups whose operations changed.
    pub fn session_slice(&self, session_id: &str, user_id: &str, since: u64) -> SessionSlice<'_> {
        let mut slice = SessionSlice::default();
        if let Some(s) = self.sessions.get(session_id) {
            if s.user_id == user_id && s.updated > since {
                slice.session = Some(s);
            }
        }
        let mut groups: BTreeMap<&str, (bool, Vec<&str>, Vec<i32>)> = BTreeMap::new();
        for op in self.operations.values() {
            if op.session_id != session_id || op.user_id != user_id {
                continue;
            }
            let op_changed = op.updated > since;
            if op_changed {
                slice.operations.push(op);
            }
            for tag in &op.tags {
                let g = groups.entry(tag).or_default();
                g.0 |= op_changed;
                g.1.push(&op.operation_id);
                g.2.extend(op.job_ids.iter().copied());
            }
            for job in op.job_ids.iter().filter_map(|id| self.jobs.get(id)) {
                if job.updated > since {
                    slice.jobs.push(job);
                }
                for &stage_id in &job.stage_ids {
                    for attempt in 0.. {
                        match self.stage((stage_id, attempt)) {
                            Some(st) if st.updated > since => slice.stages.push(st),
                            Some(_) => {}
                            None => break,
                        }
                    }
                }
            }
        }
        // A stage shared by two jobs of the session is listed once.
        slice.stages.sort_by_key(|s| (s.stage_id, s.attempt_id));
        slice.stages.dedup_by_key(|s| (s.stage_id, s.attempt_id));
        slice.tag_groups = groups
            .into_iter()
            .filter(|(_, g)| g.0)
            .map(|(tag, (_, ops, mut jobs))| {
                jobs.sort_unstable();
                jobs.dedup();
                TagGroup {
                    tag,
                    operation_ids: ops,
                    job_ids: jobs,
                }
            })
            .collect();
        slice
    }

    /// Applies one event. Events for unknown jobs or stages are ignored, as Spark does.
    pub fn apply(&mut self, event: Event) {
        self.generation += 1;
        match event {
            Event::LogStart { spark_version } => self.spark_version = spark_version,
            Event::ApplicationStart(a) => {
                if let Some(id) = a.id {
                    if self.id.is_empty() {
                        self.id = id;
                    }
                }
                self.name = a.name;
                self.start_time = a.time;
                self.spark_user = a.user;
            }
            Event::ApplicationEnd { time } => self.end_time = Some(time),
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
            Event::JobStart(js) => self.job_start(js),
            Event::JobEnd(je) => self.job_end(je),
            Event::StageSubmitted(info) => self.stage_submitted(info),
            Event::StageCompleted(info) => self.stage_completed(info),
            Event::TaskStart { stage } => {
                if !self.coalesced_tasks {
                    self.task_delta(stage, 1, 0, 0, 0, &TaskMetricSums::default());
                }
            }
            Event::TaskEnd(te) => {
                // With coalesced task events, failed task ends arrive for their error only.
                if !self.coalesced_tasks {
                    let (s, f, k) = match te.outcome {
                        TaskOutcome::Succeeded => (1, 0, 0),
                        TaskOutcome::Failed => (0, 1, 0),
                        TaskOutcome::Killed => (0, 0, 1),
                    };
                    self.task_delta(te.stage, 0, s, f, k, &te.metrics);
                }
            }
            Event::StageProgress(p) => self.stage_progress(p),
            Event::SqlExecutionStart(s) => {
                if let Some(op_tag) = s.job_tags.iter().find(|t| is_operation_tag(t)) {
                    if let Some(op) = self
                        .op_by_job_tag
                        .get(op_tag)
                        .and_then(|id| self.operations.get_mut(id))
                    {
                        op.sql_execution_ids.push(s.execution_id);
                        op.updated = self.generation;
                    }
                    self.running_sql.insert(s.execution_id, op_tag.clone());
                }
            }
            Event::SqlExecutionEnd { execution_id, .. } => {
                self.running_sql.remove(&execution_id);
            }
            Event::ConnectServiceStarted { host, port } => {
                self.connect_endpoint = Some((host, port));
            }
            Event::SessionStarted {
                session_id,
                user_id,
                time,
            } => {
                let g = self.generation;
                let s = self
                    .sessions
                    .entry(session_id.clone())
                    .or_insert_with(|| Session {
                        session_id,
                        user_id: user_id.clone(),
                        start_time: time,
                        end_time: None,
                        updated: g,
                    });
                s.user_id = user_id;
                s.start_time = time;
                s.end_time = None;
                s.updated = g;
            }
            Event::SessionClosed {
                session_id,
                user_id,
                time,
            } => {
                let g = self.generation;
                let s = self
                    .sessions
                    .entry(session_id.clone())
                    .or_insert_with(|| Session {
                        session_id,
                        user_id,
                        start_time: time,
                        end_time: None,
                        updated: g,
                    });
                s.end_time = Some(time);
                s.updated = g;
                self.prune_sessions();
            }
            Event::OperationStarted(op) => self.operation_started(op),
            Event::OperationState {
                operation_id,
                job_tag,
                time,
                state,
            } => self.operation_state(operation_id, job_tag, time, state),
            Event::Hello(h) => {
                if self.id.is_empty() {
                    self.id = h.app_id;
                }
                if !h.app_name.is_empty() {
                    self.name = h.app_name;
                }
                if !h.spark_version.is_empty() {
                    self.spark_version = h.spark_version;
                }
                if !h.spark_user.is_empty() {
                    self.spark_user = h.spark_user;
                }
                if h.start_time > 0 {
                    self.start_time = h.start_time;
                }
                self.coalesced_tasks = h.task_events == "coalesced";
            }
            Event::ListenerStats(s) => {
                self.stats.listener_dropped = s.dropped;
                self.stats.listener_sent = s.sent;
                self.stats.listener_reconnects = s.reconnects;
            }
            Event::Ignored => {}
            Event::Unknown => self.stats.unknown_events += 1,
        }
    }

    fn get_or_create_stage(&mut self, info: &StageInfo) -> &mut Stage {
        let g = self.generation;
        let stage = self.live_stages.entry(info.key()).or_insert_with(|| Stage {
            stage_id: info.stage_id,
            attempt_id: info.attempt_id,
            name: String::new(),
            num_tasks: 0,
            status: StageStatus::Pending,
            job_ids: Vec::new(),
            submission_time: None,
            completion_time: None,
            failure_reason: None,
            active_tasks: 0,
            completed_tasks: 0,
            failed_tasks: 0,
            killed_tasks: 0,
            metrics: TaskMetricSums::default(),
            updated: g,
        });
        stage.name.clone_from(&info.name);
        stage.num_tasks = info.num_tasks;
        stage.submission_time = info.submission_time;
        stage.completion_time = info.completion_time;
        stage.failure_reason.clone_from(&info.failure_reason);
        stage.updated = g;
        stage
    }

    fn job_start(&mut self, js: JobStart) {
        // A listener resends running jobs after a reconnect; job ids are unique per application.
        if self.jobs.contains_key(&js.job_id) {
            return;
        }
        let g = self.generation;
        // Spark's (over-)estimate: tasks of every stage not already completed.
        let num_tasks = js
            .stages
            .iter()
            .filter(|s| s.completion_time.is_none())
            .map(|s| s.num_tasks)
            .sum();
        let name = js
            .stages
            .iter()
            .max_by_key(|s| s.stage_id)
            .map(|s| s.name.clone());
        let connect = self.attribute(&js.tags);
        if let Some(op) = connect
            .as_ref()
            .and_then(|c| self.operations.get_mut(&c.operation_id))
        {
            if !op.job_ids.contains(&js.job_id) {
                op.job_ids.push(js.job_id);
            }
            op.updated = g;
        }
        let job = Job {
            job_id: js.job_id,
            name: name.unwrap_or_default(),
            description: js.description,
            job_group: js.job_group,
            submission_time: js.time,
            completion_time: None,
            stage_ids: js.stage_ids,
            job_tags: js.tags,
            sql_execution_id: js.sql_execution_id,
            status: JobStatus::Running,
            error: None,
            num_tasks,
            active_tasks: 0,
            completed_tasks: 0,
            failed_tasks: 0,
            killed_tasks: 0,
            skipped_tasks: 0,
            active_stages: 0,
            completed_stages: BTreeSet::new(),
            skipped_stages: BTreeSet::new(),
            failed_stages: 0,
            connect,
            updated: g,
        };
        self.jobs.insert(js.job_id, job);
        self.counters.jobs_started += 1;
        for info in &js.stages {
            let stage = self.get_or_create_stage(info);
            stage.job_ids.push(js.job_id);
        }
        self.prune_jobs();
    }

    /// The Connect operation behind a job, from its tags. The operation's own event is the
    /// authority; parsing the tags is the fallback when that event was not seen.
    fn attribute(&self, tags: &[String]) -> Option<ConnectRef> {
        let op_tag = tags.iter().find(|t| is_operation_tag(t))?;
        if let Some(op) = self
            .op_by_job_tag
            .get(op_tag)
            .and_then(|id| self.operations.get(id))
        {
            return Some(ConnectRef {
                user_id: op.user_id.clone(),
                session_id: op.session_id.clone(),
                operation_id: op.operation_id.clone(),
                tags: op.tags.clone(),
            });
        }
        let parsed = parse_operation_tag(op_tag)?;
        let mut client: Vec<String> = tags
            .iter()
            .filter_map(|t| parse_session_tag(t, Some((parsed.user_id, parsed.session_id))))
            .map(|s| s.tag.to_owned())
            .collect();
        client.sort();
        client.dedup();
        Some(ConnectRef {
            user_id: parsed.user_id.to_owned(),
            session_id: parsed.session_id.to_owned(),
            operation_id: parsed.operation_id.to_owned(),
            tags: client,
        })
    }

    fn job_end(&mut self, je: JobEnd) {
        let g = self.generation;
        let Some(job) = self.jobs.get_mut(&je.job_id) else {
            return;
        };
        if job.status != JobStatus::Running {
            return;
        }
        // Stages of this job that never ran were skipped (their output already existed).
        let skipped: Vec<StageKey> = self
            .live_stages
            .iter()
            .filter(|(k, s)| job.stage_ids.contains(&k.0) && s.status == StageStatus::Pending)
            .map(|(k, _)| *k)
            .collect();
        for key in skipped {
            if let Some(mut stage) = self.live_stages.remove(&key) {
                stage.status = StageStatus::Skipped;
                self.counters.stages_skipped += 1;
                stage.updated = g;
                job.skipped_stages.insert(stage.stage_id);
                job.skipped_tasks += stage.num_tasks;
                // A stage that never ran was never counted as active (Spark 4.3's History
                // Server and REST API report 0 active stages for such jobs; Spark 2.x-3.x
                // decremented here and went negative).
                self.progress.remove(&key);
                self.done_stages.insert(key, stage);
            }
        }
        job.status = if je.succeeded {
            self.counters.jobs_succeeded += 1;
            JobStatus::Succeeded
        } else {
            self.counters.jobs_failed += 1;
            JobStatus::Failed
        };
        job.error = je.error;
        job.completion_time = je.time;
        job.updated = g;
        self.prune_jobs();
        self.prune_stages();
    }

    fn stage_submitted(&mut self, info: StageInfo) {
        let g = self.generation;
        let key = info.key();
        if self
            .live_stages
            .get(&key)
            .is_some_and(|s| s.status == StageStatus::Active)
        {
            // Resent after a reconnect: already counted as active in its jobs.
            self.get_or_create_stage(&info);
            return;
        }
        // Every live job that mentions this stage.
        let live_jobs: Vec<i32> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running && j.stage_ids.contains(&info.stage_id))
            .map(|j| j.job_id)
            .collect();
        for id in &live_jobs {
            if let Some(job) = self.jobs.get_mut(id) {
                job.completed_stages.remove(&info.stage_id);
                job.active_stages += 1;
                job.updated = g;
            }
        }
        self.counters.stages_submitted += 1;
        let stage = self.get_or_create_stage(&info);
        stage.status = StageStatus::Active;
        stage.job_ids = live_jobs;
        if let Some(p) = self.pending_progress.remove(&key) {
            self.stage_progress(p);
        }
    }

    fn stage_completed(&mut self, info: StageInfo) {
        let g = self.generation;
        let key = info.key();
        let Some(stage) = self.live_stages.get_mut(&key) else {
            return;
        };
        stage.name.clone_from(&info.name);
        stage.num_tasks = info.num_tasks;
        stage.submission_time = info.submission_time;
        stage.completion_time = info.completion_time;
        stage.failure_reason.clone_from(&info.failure_reason);
        stage.status = if info.failure_reason.is_some() {
            StageStatus::Failed
        } else if info.submission_time.is_some() {
            StageStatus::Complete
        } else {
            StageStatus::Skipped
        };
        stage.updated = g;
        let (status, job_ids, remove) =
            (stage.status, stage.job_ids.clone(), stage.active_tasks == 0);
        match status {
            StageStatus::Complete => self.counters.stages_complete += 1,
            StageStatus::Skipped => self.counters.stages_skipped += 1,
            _ => self.counters.stages_failed += 1,
        }
        for id in job_ids {
            if let Some(job) = self.jobs.get_mut(&id) {
                match status {
                    StageStatus::Complete => {
                        job.completed_stages.insert(info.stage_id);
                    }
                    StageStatus::Skipped => {
                        job.skipped_stages.insert(info.stage_id);
                        job.skipped_tasks += info.num_tasks;
                    }
                    _ => job.failed_stages += 1,
                }
                job.active_stages -= 1;
                job.updated = g;
            }
        }
        if remove {
            self.retire_stage(key);
        }
    }

    fn retire_stage(&mut self, key: StageKey) {
        if let Some(stage) = self.live_stages.remove(&key) {
            self.progress.remove(&key);
            self.done_stages.insert(key, stage);
            self.prune_stages();
        }
    }

    /// Applies task counts to a live stage attempt and to every job it belongs to.
    fn task_delta(
        &mut self,
        key: StageKey,
        started: i32,
        succeeded: i32,
        failed: i32,
        killed: i32,
        metrics: &TaskMetricSums,
    ) {
        let g = self.generation;
        let Some(stage) = self.live_stages.get_mut(&key) else {
            return;
        };
        let active = started - succeeded - failed - killed;
        let c = &mut self.counters;
        c.tasks_started += u64::try_from(started).unwrap_or(0);
        c.tasks_succeeded += u64::try_from(succeeded).unwrap_or(0);
        c.tasks_failed += u64::try_from(failed).unwrap_or(0);
        c.tasks_killed += u64::try_from(killed).unwrap_or(0);
        stage.active_tasks += active;
        stage.completed_tasks += succeeded;
        stage.failed_tasks += failed;
        stage.killed_tasks += killed;
        stage.metrics.add(metrics);
        stage.updated = g;
        // Spark keeps a finished stage live until its last task ends (SPARK-24415).
        let remove = stage.active_tasks == 0
            && matches!(stage.status, StageStatus::Complete | StageStatus::Failed);
        for id in &stage.job_ids {
            if let Some(job) = self.jobs.get_mut(id) {
                job.active_tasks += active;
                job.completed_tasks += succeeded;
                job.failed_tasks += failed;
                job.killed_tasks += killed;
                job.updated = g;
            }
        }
        if remove {
            self.retire_stage(key);
        }
    }

    /// Cumulative counters from the listener, turned into deltas against the last line seen.
    fn stage_progress(&mut self, p: StageProgress) {
        let key = (p.stage_id, p.stage_attempt_id);
        if !self.live_stages.contains_key(&key) {
            // The stage's submit line may still be on its way; keep the newest counters for it.
            if self.pending_progress.len() >= MAX_PENDING_PROGRESS {
                self.pending_progress.clear();
            }
            self.pending_progress.insert(key, p);
            return;
        }
        let prev = self.progress.get(&key).copied().unwrap_or_default();
        // Counters only grow; a smaller value means the listener started counting afresh.
        let base = if p.started < prev.started
            || p.succeeded < prev.succeeded
            || p.failed < prev.failed
            || p.killed < prev.killed
        {
            StageProgress::default()
        } else {
            prev
        };
        self.progress.insert(key, p);
        let d = |a: i64, b: i64| i32::try_from(a - b).unwrap_or(i32::MAX);
        self.task_delta(
            key,
            d(p.started, base.started),
            d(p.succeeded, base.succeeded),
            d(p.failed, base.failed),
            d(p.killed, base.killed),
            &p.metrics().sub(&base.metrics()),
        );
    }

    fn operation_started(&mut self, o: OperationStarted) {
        if self.operations.contains_key(&o.operation_id) {
            return;
        }
        let g = self.generation;
        let mut statement = o.statement;
        truncate_utf8(&mut statement, MAX_STATEMENT_BYTES);
        self.sessions
            .entry(o.session_id.clone())
            .or_insert_with(|| Session {
                session_id: o.session_id.clone(),
                user_id: o.user_id.clone(),
                start_time: o.time,
                end_time: None,
                updated: g,
            });
        self.op_by_job_tag
            .insert(o.job_tag.clone(), o.operation_id.clone());
        self.operations.insert(
            o.operation_id.clone(),
            Operation {
                operation_id: o.operation_id,
                job_tag: o.job_tag,
                session_id: o.session_id,
                user_id: o.user_id,
                tags: o.tags,
                state: OpState::Started,
                final_state: None,
                start_time: o.time,
                end_time: None,
                close_time: None,
                statement,
                error: None,
                produced_rows: None,
                job_ids: Vec::new(),
                sql_execution_ids: Vec::new(),
                updated: g,
            },
        );
    }

    fn operation_state(&mut self, id: String, job_tag: String, time: i64, t: OpTransition) {
        let g = self.generation;
        let op = match self.operations.get_mut(&id) {
            Some(op) => op,
            None => {
                // Started before we were listening: rebuild what the tag tells.
                let Some(p) = parse_operation_tag(&job_tag) else {
                    return;
                };
                let op = Operation {
                    operation_id: id.clone(),
                    job_tag: job_tag.clone(),
                    session_id: p.session_id.to_owned(),
                    user_id: p.user_id.to_owned(),
                    tags: Vec::new(),
                    state: OpState::Started,
                    final_state: None,
                    start_time: time,
                    end_time: None,
                    close_time: None,
                    statement: String::new(),
                    error: None,
                    produced_rows: None,
                    job_ids: Vec::new(),
                    sql_execution_ids: Vec::new(),
                    updated: g,
                };
                self.op_by_job_tag.insert(job_tag, id.clone());
                self.operations.entry(id).or_insert(op)
            }
        };
        op.updated = g;
        match t {
            OpTransition::Analyzed => op.state = OpState::Analyzed,
            OpTransition::ReadyForExecution => op.state = OpState::Ready,
            OpTransition::Finished { produced_rows } => {
                op.state = OpState::Finished;
                op.final_state = Some(OpState::Finished);
                op.produced_rows = produced_rows;
                op.end_time = Some(time);
            }
            OpTransition::Failed { error } => {
                op.state = OpState::Failed;
                op.final_state = Some(OpState::Failed);
                op.error = Some(error);
                op.end_time = Some(time);
            }
            OpTransition::Canceled => {
                // Canceled may follow Finished or Failed; the cancel is what the user sees.
                op.state = OpState::Canceled;
                op.final_state = Some(OpState::Canceled);
                op.end_time.get_or_insert(time);
            }
            OpTransition::Closed => {
                if op.state == OpState::Closed {
                    return; // resent after a reconnect
                }
                op.state = OpState::Closed;
                op.close_time = Some(time);
                let end = *op.end_time.get_or_insert(time);
                let state = op.final_state.unwrap_or(OpState::Closed);
                let c = &mut self.counters;
                match state {
                    OpState::Failed => c.operations_failed += 1,
                    OpState::Canceled => c.operations_canceled += 1,
                    _ => c.operations_finished += 1,
                }
                if self.closed_operations.len() >= MAX_CLOSED_BACKLOG {
                    self.closed_operations.pop_front();
                }
                self.closed_operations.push_back(ClosedOperation {
                    user_id: op.user_id.clone(),
                    state,
                    seconds: (end - op.start_time).max(0) as f64 / 1000.0,
                });
                self.prune_operations();
            }
        }
    }

    /// Drops finished work older than the age limit, measured against `now_ms`.
    pub fn prune_older_than(&mut self, now_ms: i64) {
        let Some(age) = self.retention.max_age_ms else {
            return;
        };
        let cutoff = now_ms - age;
        let old = |t: Option<i64>| t.is_some_and(|t| t < cutoff);
        self.jobs
            .retain(|_, j| j.status == JobStatus::Running || !old(j.completion_time));
        self.done_stages
            .retain(|_, s| !old(s.completion_time.or(s.submission_time)));
        self.remove_operations(|o| o.state == OpState::Closed && old(o.close_time));
        self.sessions.retain(|_, s| !old(s.end_time));
    }

    /// Spark's rule (`AppStatusListener.cleanupJobs`): past the limit, drop the finished jobs
    /// that completed first, at least a tenth of the limit at a time.
    fn prune_jobs(&mut self) {
        let limit = self.retention.jobs;
        if self.jobs.len() <= limit {
            return;
        }
        let n = (limit / 10).max(self.jobs.len() - limit);
        let mut done: Vec<(i64, i32)> = self
            .jobs
            .values()
            .filter(|j| j.status != JobStatus::Running)
            .map(|j| (j.completion_time.unwrap_or(0), j.job_id))
            .collect();
        done.sort_unstable();
        for (_, id) in done.into_iter().take(n) {
            self.jobs.remove(&id);
        }
    }

    fn prune_stages(&mut self) {
        while self.done_stages.len() > self.retention.stages {
            self.done_stages.pop_first();
        }
    }

    fn prune_operations(&mut self) {
        let closed = self
            .operations
            .values()
            .filter(|o| o.state == OpState::Closed)
            .count();
        if closed <= self.retention.operations {
            return;
        }
        let mut by_close: Vec<(i64, String)> = self
            .operations
            .values()
            .filter(|o| o.state == OpState::Closed)
            .map(|o| (o.close_time.unwrap_or(0), o.operation_id.clone()))
            .collect();
        by_close.sort_unstable();
        let drop: std::collections::HashSet<String> = by_close
            .into_iter()
            .take(closed - self.retention.operations)
            .map(|(_, id)| id)
            .collect();
        self.remove_operations(|o| drop.contains(&o.operation_id));
    }

    fn remove_operations(&mut self, pred: impl Fn(&Operation) -> bool) {
        let gone: Vec<String> = self
            .operations
            .values()
            .filter(|o| pred(o))
            .map(|o| o.operation_id.clone())
            .collect();
        for id in gone {
            if let Some(op) = self.operations.remove(&id) {
                self.op_by_job_tag.remove(&op.job_tag);
            }
        }
    }

    fn prune_sessions(&mut self) {
        let closed = self
            .sessions
            .values()
            .filter(|s| s.end_time.is_some())
            .count();
        if closed <= self.retention.sessions {
            return;
        }
        let mut by_end: Vec<(i64, String)> = self
            .sessions
            .values()
            .filter_map(|s| s.end_time.map(|t| (t, s.session_id.clone())))
            .collect();
        by_end.sort_unstable();
        for (_, id) in by_end.into_iter().take(closed - self.retention.sessions) {
            self.sessions.remove(&id);
        }
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
