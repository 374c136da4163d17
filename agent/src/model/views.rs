//! What readers of the model may see: read-only accessors, counts, and the slice of one Connect
//! session that the streams send.

use super::app::{AppInfo, AppState, Executor, ExecutorMemory, IngestStats, Notice};
use super::connect::{ConnectRef, Operation, OperationCounters, Session};
use super::event::StageKey;
use super::jobs::{Job, JobCounters, JobStatus, Stage, StageStatus};
use super::logs::LogEntry;
use super::sql::{SqlExecution, SqlExecutions};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Part of an application's state, borrowed: see [`AppState::session_slice`].
#[derive(Debug, Default)]
pub struct SessionSlice<'a> {
    pub session: Option<&'a Session>,
    pub operations: Vec<&'a Operation>,
    pub jobs: Vec<&'a Job>,
    pub stages: Vec<&'a Stage>,
    pub tag_groups: Vec<TagGroup<'a>>,
    /// The driver's log lines of the session, oldest first.
    pub log_lines: Vec<&'a LogEntry>,
    /// SQL executions of the session that changed, each with the operation that ran it (empty
    /// for a classic session's).
    pub sql_executions: Vec<(&'a str, &'a SqlExecution)>,
    /// The generation the slice is taken after (0: everything).
    pub since: u64,
    /// Whether the application knows the session at all: its record or any operation.
    pub known: bool,
}

/// A Connect session as the server knows it, (session id, user id): both must match.
pub type SessionKey = (String, String);

/// One session's slice while the operations are walked; tag groups are
/// `tag → (changed, operation ids, job ids)`.
#[derive(Default)]
struct SliceBuilder<'a> {
    slice: SessionSlice<'a>,
    groups: BTreeMap<&'a str, (bool, Vec<&'a str>, Vec<i32>)>,
    /// Tags of operations (or classic jobs) that changed: their groups are sent whole.
    changed_tags: BTreeSet<&'a str>,
}

impl<'a> SliceBuilder<'a> {
    fn finish(self) -> SessionSlice<'a> {
        let mut slice = self.slice;
        // A stage shared by two jobs of the session is listed once.
        slice.stages.sort_by_key(|s| (s.stage_id, s.attempt_id));
        slice.stages.dedup_by_key(|s| (s.stage_id, s.attempt_id));
        slice.sql_executions.sort_by_key(|(_, e)| e.execution_id);
        slice.sql_executions.dedup_by_key(|(_, e)| e.execution_id);
        slice.tag_groups = self
            .groups
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
}

impl SessionSlice<'_> {
    pub fn is_empty(&self) -> bool {
        self.session.is_none()
            && self.operations.is_empty()
            && self.jobs.is_empty()
            && self.stages.is_empty()
            && self.tag_groups.is_empty()
            && self.log_lines.is_empty()
            && self.sql_executions.is_empty()
    }
}

/// The operations and jobs of one client tag within one session.
#[derive(Debug)]
pub struct TagGroup<'a> {
    pub tag: &'a str,
    pub operation_ids: Vec<&'a str>,
    pub job_ids: Vec<i32>,
}

impl AppState {
    pub fn info(&self) -> &AppInfo {
        &self.info
    }

    pub fn id(&self) -> &str {
        &self.info.id
    }

    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// Jobs, stages and tasks started and ended since the agent first saw the application.
    pub fn job_counters(&self) -> &JobCounters {
        &self.jobs.counters
    }

    /// Operations closed since the agent first saw the application, by final state.
    pub fn operation_counters(&self) -> &OperationCounters {
        &self.connect.counters
    }

    /// Recent gaps and what was done about them, oldest first.
    pub fn notices(&self) -> impl Iterator<Item = &Notice> {
        self.notices.iter()
    }

    /// The generation of the newest notice.
    pub fn notices_updated(&self) -> u64 {
        self.notices_updated
    }

    /// The generation of the last change to what every session of the application is sent
    /// whole: its record (who it is, whether a listener is connected, its end), its notices,
    /// its busy-slots samples, its executors' memory.
    pub fn record_updated(&self) -> u64 {
        self.info_updated
            .max(self.notices_updated)
            .max(self.samples_updated)
            .max(self.memory_updated)
    }

    /// The generation of the newest busy-slots sample.
    pub fn samples_updated(&self) -> u64 {
        self.samples_updated
    }

    /// Busy task slots over time, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = &super::app::TaskSample> {
        self.samples.iter()
    }

    /// Whether a stage attempt ran for a job of this Connect session (both ids must match).
    pub fn stage_in_session(&self, key: StageKey, session_id: &str, user_id: &str) -> bool {
        let stage = self
            .jobs
            .live_stages
            .get(&key)
            .or_else(|| self.jobs.done_stages.get(&key));
        stage.is_some_and(|s| {
            s.job_ids.iter().any(|id| {
                self.jobs
                    .jobs
                    .get(id)
                    .and_then(|j| j.connect.as_ref())
                    .is_some_and(|c| c.session_id == session_id && c.user_id == user_id)
            })
        })
    }

    /// Listener connections open now.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    /// When a listener last sent something (wall clock, epoch ms); 0 for replayed logs.
    pub fn last_seen_ms(&self) -> i64 {
        self.last_seen_ms
    }

    pub fn is_live(&self) -> bool {
        self.connections > 0
    }

    /// Increases with every change; entities remember the generation of their last change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.jobs.values()
    }

    pub fn job(&self, id: i32) -> Option<&Job> {
        self.jobs.jobs.get(&id)
    }

    /// Live stage attempts first, then retained finished ones.
    pub fn stages(&self) -> impl Iterator<Item = &Stage> {
        self.jobs
            .live_stages
            .values()
            .chain(self.jobs.done_stages.values())
    }

    pub fn stage(&self, key: StageKey) -> Option<&Stage> {
        self.jobs
            .live_stages
            .get(&key)
            .or_else(|| self.jobs.done_stages.get(&key))
    }

    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.connect.operations.values()
    }

    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.connect.operations.get(id)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.connect.sessions.values()
    }

    /// Cores of the live executors, saturating.
    pub fn total_cores(&self) -> u32 {
        self.executors
            .values()
            .fold(0u32, |n, e| n.saturating_add(e.cores))
    }

    pub fn executors(&self) -> impl Iterator<Item = &Executor> {
        self.executors.values()
    }

    /// Memory peaks per executor id (the driver's included), and the generation of their last
    /// change.
    pub fn executor_memory(&self) -> (&BTreeMap<String, ExecutorMemory>, u64) {
        (&self.memory, self.memory_updated)
    }

    /// Connect sessions not closed.
    pub fn active_sessions(&self) -> usize {
        self.connect
            .sessions
            .values()
            .filter(|s| s.end_time.is_none())
            .count()
    }

    /// Connect operations not yet ended.
    pub fn running_operations(&self) -> usize {
        self.connect
            .operations
            .values()
            .filter(|o| !o.state.is_terminal())
            .count()
    }

    pub fn running_jobs(&self) -> usize {
        self.jobs
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
            .count()
    }

    pub fn active_stages(&self) -> usize {
        self.jobs
            .live_stages
            .values()
            .filter(|s| s.status == StageStatus::Active)
            .count()
    }

    /// The session with this id, if its user id matches too.
    pub fn session_of(&self, session_id: &str, user_id: &str) -> Option<&Session> {
        self.connect
            .sessions
            .get(session_id)
            .filter(|s| s.user_id == user_id)
    }

    /// Whether this application holds a record of the session, whatever its user.
    pub fn knows_session_id(&self, session_id: &str) -> bool {
        self.connect.sessions.contains_key(session_id)
    }

    /// Whether anything of this (session, user) pair is known: a session record or operations.
    pub fn knows_session(&self, session_id: &str, user_id: &str) -> bool {
        self.session_of(session_id, user_id).is_some()
            || self
                .connect
                .operations
                .values()
                .any(|o| o.session_id == session_id && o.user_id == user_id)
    }

    /// Tasks running now, summed over live stage attempts.
    pub fn active_tasks(&self) -> i64 {
        self.jobs
            .live_stages
            .values()
            .map(|s| i64::from(s.active_tasks.max(0)))
            .sum()
    }

    /// Sessions competing for task slots now: those of the jobs of the stage attempts under
    /// way (tasks running, or waiting for a slot); a stage of no known session's job counts as
    /// one more.
    pub fn busy_sessions(&self) -> u32 {
        let mut sessions: HashSet<&str> = HashSet::new();
        let under_way = |s: &&Stage| s.active_tasks > 0 || s.status == StageStatus::Active;
        for stage in self.jobs.live_stages.values().filter(under_way) {
            let session = stage.job_ids.iter().find_map(|id| {
                let job = self.jobs.jobs.get(id)?;
                job.connect.as_ref().map(|c| c.session_id.as_str())
            });
            sessions.insert(session.unwrap_or(""));
        }
        u32::try_from(sessions.len()).unwrap_or(u32::MAX)
    }

    /// What one Connect session (matched on both session and user id) has that changed after
    /// generation `since` (0: everything): its record, operations, their jobs, those jobs'
    /// stage attempts, and the tag groups whose operations changed.
    pub fn session_slice(&self, session_id: &str, user_id: &str, since: u64) -> SessionSlice<'_> {
        let keys = [(session_id.to_owned(), user_id.to_owned())];
        self.session_slices(&keys, since).pop().unwrap_or_default()
    }

    /// [`AppState::session_slice`] for each of `keys` (sorted and without repeats, as a
    /// `BTreeSet` iterates), in one pass over the application's operations: what a stream tick
    /// costs grows with the application, not with the number of sessions followed.
    pub fn session_slices<'a>(&'a self, keys: &[SessionKey], since: u64) -> Vec<SessionSlice<'a>> {
        let find = |sid: &str, uid: &str| {
            keys.binary_search_by(|(s, u)| (s.as_str(), u.as_str()).cmp(&(sid, uid)))
                .ok()
        };
        let mut out: Vec<SliceBuilder<'a>> = keys.iter().map(|_| SliceBuilder::default()).collect();
        for b in &mut out {
            b.slice.since = since;
        }
        // Sessions of the application, changed or not (cheaper than looking up every key when
        // most followed sessions are idle).
        for s in self.connect.sessions.values() {
            if let Some(i) = find(&s.session_id, &s.user_id) {
                let b = &mut out[i];
                b.slice.known = true;
                if s.updated > since {
                    b.slice.session = Some(s);
                }
            }
        }
        // First what changed; then the tag groups, only those with a changed member (most
        // operations of a busy application are closed and unchanged).
        let mut matched: Vec<(usize, &'a Operation)> = Vec::new();
        for op in self.connect.operations.values() {
            let Some(i) = find(&op.session_id, &op.user_id) else {
                continue;
            };
            matched.push((i, op));
            let b = &mut out[i];
            b.slice.known = true;
            if op.updated > since {
                b.slice.operations.push(op);
                b.changed_tags.extend(op.tags.iter().map(String::as_str));
            }
            for job in op.job_ids.iter().filter_map(|id| self.jobs.jobs.get(id)) {
                self.slice_job(&mut b.slice, job, since);
            }
            let executions = op.sql_execution_ids.iter();
            let executions = executions.filter_map(|x| self.sql.get(*x));
            b.slice.sql_executions.extend(
                executions
                    .filter(|e| e.updated > since)
                    .map(|e| (op.operation_id.as_str(), e)),
            );
        }
        for (i, op) in matched {
            let b = &mut out[i];
            for tag in op
                .tags
                .iter()
                .filter(|t| b.changed_tags.contains(t.as_str()))
            {
                let g = b.groups.entry(tag).or_default();
                g.0 = true;
                g.1.push(&op.operation_id);
                g.2.extend(op.job_ids.iter().copied());
            }
        }
        // Jobs no known operation holds: a classic session's (it has no operations; its jobs
        // and their job tags are the session's), and a Connect session's jobs filled in from
        // Spark's REST API whose operation ran entirely while the agent was away. Each belongs
        // to its session through its own attribution, grouped by its client tags.
        let held = |job: &Job, c: &ConnectRef| {
            !c.operation_id.is_empty()
                && self
                    .connect
                    .operations
                    .get(&c.operation_id)
                    .is_some_and(|op| op.job_ids.contains(&job.job_id))
        };
        let mut orphans: Vec<(usize, &'a Job)> = Vec::new();
        for job in self.jobs.jobs.values() {
            let Some(c) = job.connect.as_ref() else {
                continue;
            };
            let Some(i) = find(&c.session_id, &c.user_id) else {
                continue;
            };
            if held(job, c) {
                continue;
            }
            let b = &mut out[i];
            b.slice.known = true;
            if job.updated > since {
                b.changed_tags.extend(c.tags.iter().map(String::as_str));
            }
            self.slice_job(&mut b.slice, job, since);
            if let Some(e) = job.sql_execution_id.and_then(|x| self.sql.get(x)) {
                if e.updated > since {
                    b.slice.sql_executions.push(("", e));
                }
            }
            orphans.push((i, job));
        }
        for (i, job) in orphans {
            let b = &mut out[i];
            let tags = job.connect.iter().flat_map(|c| c.tags.iter());
            for tag in tags.filter(|t| b.changed_tags.contains(t.as_str())) {
                let g = b.groups.entry(tag).or_default();
                g.0 = true;
                g.2.push(job.job_id);
            }
        }
        // Log lines: the newest first, as far back as `since`.
        for e in self.new_log_lines(since) {
            let Some(o) = &e.owner else { continue };
            if let Some(i) = find(&o.session_id, &o.user_id) {
                out[i].slice.log_lines.push(e);
            }
        }
        for b in &mut out {
            b.slice.log_lines.reverse();
        }
        out.into_iter().map(SliceBuilder::finish).collect()
    }

    /// The kept log lines that arrived after generation `since`, newest first.
    fn new_log_lines(&self, since: u64) -> impl Iterator<Item = &LogEntry> {
        self.logs
            .iter()
            .rev()
            .take_while(move |e| e.updated > since)
    }

    /// The application's SQL executions with their plans.
    pub fn sql_executions(&self) -> &SqlExecutions {
        &self.sql
    }

    /// Every kept log line, oldest first: the operators' view.
    pub fn log_lines(&self) -> impl DoubleEndedIterator<Item = &LogEntry> {
        self.logs.iter()
    }

    /// The ids of the Connect sessions with anything changed after generation `since`: their
    /// record, an operation, or a job or stage attempt of theirs. One pass comparing
    /// generations: what a stream tick looks at before it slices any session.
    pub fn sessions_changed_since(&self, since: u64) -> HashSet<&str> {
        let mut out = HashSet::new();
        let sessions = self.connect.sessions.values();
        out.extend(
            sessions
                .filter(|s| s.updated > since)
                .map(|s| s.session_id.as_str()),
        );
        let ops = self.connect.operations.values();
        out.extend(
            ops.filter(|o| o.updated > since)
                .map(|o| o.session_id.as_str()),
        );
        let session_of_job = |id: &i32| {
            self.jobs
                .jobs
                .get(id)
                .and_then(|j| j.connect.as_ref())
                .map(|c| c.session_id.as_str())
        };
        for j in self.jobs.jobs.values().filter(|j| j.updated > since) {
            out.extend(session_of_job(&j.job_id));
        }
        for st in self.stages().filter(|s| s.updated > since) {
            out.extend(st.job_ids.iter().filter_map(session_of_job));
        }
        let changed_sql = |x: &i64| self.sql.get(*x).is_some_and(|e| e.updated > since);
        for op in self.connect.operations.values() {
            if op.sql_execution_ids.iter().any(changed_sql) {
                out.insert(op.session_id.as_str());
            }
        }
        for j in self.jobs.jobs.values() {
            if j.sql_execution_id.as_ref().is_some_and(changed_sql) {
                out.extend(session_of_job(&j.job_id));
            }
        }
        let owners = self.new_log_lines(since).filter_map(|e| e.owner.as_ref());
        out.extend(owners.map(|o| o.session_id.as_str()));
        out
    }

    /// A job of a followed session and its stage attempts, as far as they changed after `since`.
    fn slice_job<'a>(&'a self, slice: &mut SessionSlice<'a>, job: &'a Job, since: u64) {
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

    /// What can never be right, whatever the input: negative counts, or changes stamped with a
    /// generation the model has not reached. Empty when the model is consistent; the property
    /// tests check it after every input.
    pub fn broken_invariants(&self) -> Vec<String> {
        let mut broken = Vec::new();
        let g = self.generation;
        for j in self.jobs.jobs.values() {
            let counts = [
                j.num_tasks,
                j.active_tasks,
                j.completed_tasks,
                j.failed_tasks,
                j.killed_tasks,
                j.skipped_tasks,
                j.active_stages,
                j.failed_stages,
            ];
            if counts.iter().any(|c| *c < 0) {
                broken.push(format!("job {}: a negative count {counts:?}", j.job_id));
            }
            if j.updated > g {
                broken.push(format!("job {}: updated in the future", j.job_id));
            }
        }
        for s in self.stages() {
            let counts = [
                s.num_tasks,
                s.active_tasks,
                s.completed_tasks,
                s.failed_tasks,
                s.killed_tasks,
            ];
            if counts.iter().any(|c| *c < 0) {
                broken.push(format!(
                    "stage {}.{}: a negative count {counts:?}",
                    s.stage_id, s.attempt_id
                ));
            }
            let m = &s.metrics;
            let sums = [
                m.executor_run_time_ms,
                m.executor_cpu_time_ns,
                m.input_bytes,
                m.output_bytes,
                m.shuffle_read_bytes,
                m.shuffle_write_bytes,
            ];
            if sums.iter().any(|v| *v < 0) {
                broken.push(format!(
                    "stage {}.{}: a negative metric {sums:?}",
                    s.stage_id, s.attempt_id
                ));
            }
        }
        if self.connections > 1_000_000 {
            broken.push(format!("{} connections: a count wrapped", self.connections));
        }
        broken
    }
}
