//! Jobs, stages and tasks, counted step for step as Spark's own `AppStatusListener` does (live
//! stages stay live until their last task ends; stages still pending when a job ends are skipped;
//! killed and failed tasks are told apart the same way), so the counts equal those of Spark's
//! REST API and History Server.

use super::connect::ConnectRef;
use super::durations::Histogram;
use super::event::{
    DurationSummary, JobEnd, JobStart, MemoryPeaks, StageInfo, StageKey, StageProgress, TaskEnd,
    TaskFailure, TaskMetricSums, TaskOutcome,
};
use super::retention::{Evictions, LiveBound, Retention};
use super::retired::RetiredJobs;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A job's status is Spark's `JobExecutionStatus`, as its REST API writes it.
pub use crate::spark_api::JobStatus;

/// Progress lines for stages not yet submitted are held back, up to this many.
const MAX_PENDING_PROGRESS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    Pending,
    Active,
    Complete,
    Failed,
    Skipped,
    /// Over, but how it ended is unknown (its job ended unseen and Spark's REST API could not
    /// say, or its driver vanished).
    Unknown,
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
    /// Spark's own counts of completed and skipped stages, once reconciled with its REST API
    /// (which reports counts, not the stage ids behind them).
    pub spark_stage_counts: Option<(i32, i32)>,
    pub connect: Option<ConnectRef>,
    /// The model generation of the last change.
    pub updated: u64,
}

impl Job {
    /// Stages completed, as Spark counts them (`numCompletedStages`).
    pub fn num_completed_stages(&self) -> i32 {
        self.spark_stage_counts
            .map_or_else(|| len(self.completed_stages.len()), |c| c.0)
    }

    /// Stages skipped, as Spark counts them (`numSkippedStages`).
    pub fn num_skipped_stages(&self) -> i32 {
        self.spark_stage_counts
            .map_or_else(|| len(self.skipped_stages.len()), |c| c.1)
    }
}

fn len(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
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
    /// Run time of its successful tasks: shortest, median, longest.
    pub durations: Option<DurationSummary>,
    /// The run times themselves, when task ends come one by one (event logs).
    pub histogram: Option<Box<Histogram>>,
    /// The first task that failed: the root cause shown for the stage and its jobs.
    pub failure: Option<Box<TaskFailure>>,
    /// The highest memory of the executors while it ran (their heartbeats), if any came.
    pub memory: Option<MemoryPeaks>,
    pub updated: u64,
}

/// Totals since the agent first saw the application, kept as plain integers where the state
/// changes; the Prometheus exporter reads them at scrape time, so ingest pays nothing for them.
#[derive(Debug, Clone, Default)]
pub struct JobCounters {
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
    /// Executor run time of ended tasks (the time each held a core), in ms, per user of the
    /// job that ran them (its Connect or classic session's); `UNATTRIBUTED` for jobs of no
    /// known session. At most `MAX_RUN_TIME_USERS` users; later ones add up under `other`.
    pub run_time_ms_by_user: BTreeMap<String, u64>,
}

/// The user of task time whose job belongs to no known session.
pub const UNATTRIBUTED: &str = "unattributed";
/// Users with their own task time total; later ones share `other`.
pub const MAX_RUN_TIME_USERS: usize = 1_000;

impl JobCounters {
    fn add_run_time(&mut self, user: &str, ms: i64) {
        let Ok(ms) = u64::try_from(ms) else { return };
        if ms == 0 {
            return;
        }
        let key = if self.run_time_ms_by_user.contains_key(user)
            || self.run_time_ms_by_user.len() < MAX_RUN_TIME_USERS
        {
            user
        } else {
            "other"
        };
        let total = self.run_time_ms_by_user.entry(key.to_owned()).or_default();
        *total = total.saturating_add(ms);
    }
}

/// The user of a stage's task time: that of the first of its jobs with a session.
fn stage_user<'a>(job_ids: &[i32], jobs: &[&'a BTreeMap<i32, Job>]) -> &'a str {
    job_ids
        .iter()
        .find_map(|id| {
            jobs.iter()
                .find_map(|m| m.get(id))
                .and_then(|j| j.connect.as_ref())
                .map(|c| c.user_id.as_str())
        })
        .filter(|u| !u.is_empty())
        .unwrap_or(UNATTRIBUTED)
}

/// The jobs and stage attempts of one application. Every change is stamped with the model
/// generation `g` it happened in.
#[derive(Debug, Default)]
pub struct Jobs {
    pub(super) jobs: BTreeMap<i32, Job>,
    pub(super) live_stages: HashMap<StageKey, Stage>,
    pub(super) done_stages: BTreeMap<StageKey, Stage>,
    /// The last cumulative progress line of each live stage attempt.
    progress: HashMap<StageKey, StageProgress>,
    /// Progress lines for stages not yet submitted, held back.
    pending_progress: HashMap<StageKey, StageProgress>,
    pub(super) counters: JobCounters,
    pub(super) evictions: Evictions,
    /// Jobs dropped past the retention: never taken back from Spark's REST API.
    pub(super) retired: RetiredJobs,
    retention: Retention,
}

impl Jobs {
    pub(super) fn new(retention: Retention) -> Self {
        Jobs {
            retention,
            ..Jobs::default()
        }
    }

    pub(super) fn task_started(&mut self, g: u64, stage: StageKey) {
        self.task_delta(g, stage, 1, 0, 0, 0, &TaskMetricSums::default());
    }

    pub(super) fn task_ended(&mut self, g: u64, te: TaskEnd) {
        let (s, f, k) = match te.outcome {
            TaskOutcome::Succeeded => (1, 0, 0),
            TaskOutcome::Failed => (0, 1, 0),
            TaskOutcome::Killed => (0, 0, 1),
        };
        if te.outcome == TaskOutcome::Succeeded {
            if let Some(stage) = self.live_stages.get_mut(&te.stage) {
                let h = stage.histogram.get_or_insert_with(Box::default);
                h.add(te.metrics.executor_run_time_ms);
                stage.durations = h.summary();
            }
        }
        if let Some(failure) = te.failure {
            self.task_failed(g, te.stage, failure);
        }
        self.task_delta(g, te.stage, 0, s, f, k, &te.metrics);
    }

    /// Keeps the first failure of a stage attempt (a live listener sends failed task ends whole
    /// for this, and counts them in its progress lines).
    pub(super) fn task_failed(&mut self, g: u64, key: StageKey, failure: Box<TaskFailure>) {
        let stage = match self.live_stages.get_mut(&key) {
            Some(s) => s,
            None => match self.done_stages.get_mut(&key) {
                Some(s) => s,
                None => return,
            },
        };
        if stage.failure.is_none() {
            stage.failure = Some(failure);
            stage.updated = g;
            for id in stage.job_ids.clone() {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.updated = g;
                }
            }
        }
    }

    /// Memory peaks of an executor while the stage attempt runs. As in Spark's status store,
    /// only a stage attempt not yet completed takes them (an executor's heartbeat may still
    /// name one that ended), so the peaks equal its `peakExecutorMetrics`.
    pub(super) fn stage_memory(&mut self, g: u64, key: StageKey, peaks: &MemoryPeaks) {
        let Some(stage) = self.live_stages.get_mut(&key) else {
            return;
        };
        if !matches!(stage.status, StageStatus::Pending | StageStatus::Active) {
            return;
        }
        if stage
            .memory
            .get_or_insert_with(Default::default)
            .raise(peaks)
        {
            stage.updated = g;
        }
    }

    fn get_or_create_stage(&mut self, g: u64, info: &StageInfo) -> &mut Stage {
        if !self.live_stages.contains_key(&info.key()) {
            self.bound_live_stages(info.key());
        }
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
            durations: None,
            histogram: None,
            failure: None,
            memory: None,
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

    pub(super) fn job_start(&mut self, g: u64, js: JobStart, connect: Option<ConnectRef>) {
        // A listener resends running jobs after a reconnect; job ids are unique per application.
        if self.jobs.contains_key(&js.job_id) {
            return;
        }
        // Spark's (over-)estimate: tasks of every stage not already completed.
        let num_tasks = js
            .stages
            .iter()
            .filter(|s| s.completion_time.is_none())
            .fold(0i32, |n, s| n.saturating_add(s.num_tasks));
        let name = js
            .stages
            .iter()
            .max_by_key(|s| s.stage_id)
            .map(|s| s.name.clone());
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
            spark_stage_counts: None,
            connect,
            updated: g,
        };
        self.jobs.insert(js.job_id, job);
        self.counters.jobs_started += 1;
        self.bound_running_jobs(g);
        for info in &js.stages {
            let stage = self.get_or_create_stage(g, info);
            stage.job_ids.push(js.job_id);
        }
        self.prune_jobs();
    }

    pub(super) fn job_end(&mut self, g: u64, je: JobEnd) {
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
                job.skipped_tasks = job.skipped_tasks.saturating_add(stage.num_tasks);
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

    pub(super) fn stage_submitted(&mut self, g: u64, info: StageInfo) {
        let key = info.key();
        if self
            .live_stages
            .get(&key)
            .is_some_and(|s| s.status == StageStatus::Active)
        {
            // Resent after a reconnect: already counted as active in its jobs.
            self.get_or_create_stage(g, &info);
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
                job.active_stages = job.active_stages.saturating_add(1);
                job.updated = g;
            }
        }
        self.counters.stages_submitted += 1;
        let stage = self.get_or_create_stage(g, &info);
        stage.status = StageStatus::Active;
        stage.job_ids = live_jobs;
        if let Some(p) = self.pending_progress.remove(&key) {
            self.stage_progress(g, p);
        }
    }

    pub(super) fn stage_completed(&mut self, g: u64, info: StageInfo) {
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
                        job.skipped_tasks = job.skipped_tasks.saturating_add(info.num_tasks);
                    }
                    _ => job.failed_stages = job.failed_stages.saturating_add(1),
                }
                job.active_stages = (job.active_stages - 1).max(0);
                job.updated = g;
            }
        }
        if remove {
            self.retire_stage(key);
        }
    }

    fn retire_stage(&mut self, key: StageKey) {
        if let Some(mut stage) = self.live_stages.remove(&key) {
            stage.histogram = None; // its summary is kept
            self.progress.remove(&key);
            self.done_stages.insert(key, stage);
            self.prune_stages();
        }
    }

    /// Applies task counts to a live stage attempt and to every job it belongs to.
    #[allow(clippy::too_many_arguments)]
    fn task_delta(
        &mut self,
        g: u64,
        key: StageKey,
        started: i32,
        succeeded: i32,
        failed: i32,
        killed: i32,
        metrics: &TaskMetricSums,
    ) {
        let Some(stage) = self.live_stages.get_mut(&key) else {
            return;
        };
        let active =
            i64::from(started) - i64::from(succeeded) - i64::from(failed) - i64::from(killed);
        let c = &mut self.counters;
        for (total, n) in [
            (&mut c.tasks_started, started),
            (&mut c.tasks_succeeded, succeeded),
            (&mut c.tasks_failed, failed),
            (&mut c.tasks_killed, killed),
        ] {
            *total = total.saturating_add(u64::try_from(n).unwrap_or(0));
        }
        stage.active_tasks = add(stage.active_tasks, active);
        stage.completed_tasks = add(stage.completed_tasks, succeeded.into());
        stage.failed_tasks = add(stage.failed_tasks, failed.into());
        stage.killed_tasks = add(stage.killed_tasks, killed.into());
        stage.metrics.add(metrics);
        stage.updated = g;
        c.add_run_time(
            stage_user(&stage.job_ids, &[&self.jobs]),
            metrics.executor_run_time_ms,
        );
        // Spark keeps a finished stage live until its last task ends (SPARK-24415).
        let remove = stage.active_tasks == 0
            && matches!(stage.status, StageStatus::Complete | StageStatus::Failed);
        for id in &stage.job_ids {
            if let Some(job) = self.jobs.get_mut(id) {
                job.active_tasks = add(job.active_tasks, active);
                job.completed_tasks = add(job.completed_tasks, succeeded.into());
                job.failed_tasks = add(job.failed_tasks, failed.into());
                job.killed_tasks = add(job.killed_tasks, killed.into());
                job.updated = g;
            }
        }
        if remove {
            self.retire_stage(key);
        }
    }

    /// Cumulative counters from the listener, turned into deltas against the last line seen.
    pub(super) fn stage_progress(&mut self, g: u64, p: StageProgress) {
        let key = p.key();
        if !self.live_stages.contains_key(&key) {
            // The stage's submit line may still be on its way; keep the newest counters for it.
            if self.pending_progress.len() >= MAX_PENDING_PROGRESS {
                self.pending_progress.clear();
                self.evictions.add(LiveBound::PendingProgress);
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
        if let (Some(d), Some(stage)) = (p.durations, self.live_stages.get_mut(&key)) {
            stage.durations = Some(d);
        }
        let d = |a: i64, b: i64| i32::try_from(a - b).unwrap_or(i32::MAX);
        self.task_delta(
            g,
            key,
            d(p.started, base.started),
            d(p.succeeded, base.succeeded),
            d(p.failed, base.failed),
            d(p.killed, base.killed),
            &p.metrics.sub(&base.metrics),
        );
    }

    /// Past the bound, the oldest running job is ended as UNKNOWN: its end was lost.
    fn bound_running_jobs(&mut self, g: u64) {
        let running = || {
            self.jobs
                .values()
                .filter(|j| j.status == JobStatus::Running)
        };
        if running().count() <= self.retention.live.running_jobs {
            return;
        }
        if let Some(id) = running().map(|j| j.job_id).next() {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.status = JobStatus::Unknown;
                job.updated = g;
            }
            self.evictions.add(LiveBound::RunningJobs);
        }
    }

    /// Makes room for one more live stage attempt: past the bound, the oldest goes to the
    /// finished ones as it stands.
    fn bound_live_stages(&mut self, incoming: StageKey) {
        if self.live_stages.len() < self.retention.live.live_stages {
            return;
        }
        if let Some(oldest) = self
            .live_stages
            .keys()
            .filter(|k| **k != incoming)
            .min()
            .copied()
        {
            self.retire_stage(oldest);
            self.evictions.add(LiveBound::LiveStages);
        }
    }

    /// Replaces what this part holds as live with what a snapshot (`other`, built from the
    /// listener's resent live state) holds: its running jobs and their stage attempts, live or
    /// completed, and the progress baselines that later progress lines count from. A job running
    /// here but absent there ended while the listener was away: it becomes UNKNOWN until Spark's
    /// REST API tells how it ended. Returns those jobs. Totals grow by what the snapshot adds.
    pub(super) fn merge_snapshot(&mut self, g: u64, other: Jobs, time: i64) -> Vec<i32> {
        let Jobs {
            jobs,
            live_stages,
            done_stages,
            progress,
            pending_progress,
            ..
        } = other;
        let c = &mut self.counters;
        for (key, stage) in live_stages.iter().chain(done_stages.iter()) {
            let old = self
                .live_stages
                .get(key)
                .or_else(|| self.done_stages.get(key));
            let counts = |s: &Stage| {
                [
                    s.active_tasks,
                    s.completed_tasks,
                    s.failed_tasks,
                    s.killed_tasks,
                ]
                .map(i64::from)
            };
            let now = counts(stage);
            let then = old.map_or([0; 4], counts);
            let grew = |a: i64, b: i64| u64::try_from(a - b).unwrap_or(0);
            c.tasks_started += grew(now.iter().sum(), then.iter().sum());
            c.tasks_succeeded += grew(now[1], then[1]);
            c.tasks_failed += grew(now[2], then[2]);
            c.tasks_killed += grew(now[3], then[3]);
            let ran = |s: &Stage| s.metrics.executor_run_time_ms;
            let user = stage_user(&stage.job_ids, &[&jobs, &self.jobs]);
            c.add_run_time(user, ran(stage) - old.map_or(0, ran));
            let old_status = old.map(|s| s.status);
            if stage.status != StageStatus::Pending
                && matches!(old_status, None | Some(StageStatus::Pending))
            {
                c.stages_submitted += 1;
            }
            if old_status != Some(stage.status) {
                match stage.status {
                    StageStatus::Complete => c.stages_complete += 1,
                    StageStatus::Failed => c.stages_failed += 1,
                    StageStatus::Skipped => c.stages_skipped += 1,
                    StageStatus::Pending | StageStatus::Active | StageStatus::Unknown => {}
                }
            }
        }
        let ended: Vec<i32> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running && !jobs.contains_key(&j.job_id))
            .map(|j| j.job_id)
            .collect();
        for (id, mut job) in jobs {
            match self.jobs.get(&id) {
                // Ended here (a JobEnd the agent saw, or Spark's REST API): a snapshot that
                // still holds it running resends what the listener's live state kept of a job
                // whose end Spark's bus dropped. The end stands.
                Some(ours) if matches!(ours.status, JobStatus::Succeeded | JobStatus::Failed) => {
                    continue
                }
                Some(ours) => {
                    // The snapshot's attribution may be poorer (an operation closed meanwhile).
                    if job.connect.is_none() {
                        job.connect = ours.connect.clone();
                    }
                }
                None if self.retired.contains(id) => continue,
                None => self.counters.jobs_started += 1,
            }
            job.updated = g;
            self.jobs.insert(id, job);
        }
        self.end_as_unknown(g, &ended, time);
        // Live attempts the snapshot lacks are over: kept among the finished ones as they are.
        let gone: Vec<StageKey> = self
            .live_stages
            .keys()
            .filter(|k| !live_stages.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            self.retire_stage(key);
        }
        for (key, mut stage) in live_stages {
            stage.updated = g;
            let old = self
                .live_stages
                .remove(&key)
                .or_else(|| self.done_stages.remove(&key));
            keep_what_the_snapshot_lacks(&mut stage, old.as_ref());
            self.live_stages.insert(key, stage);
        }
        for (key, mut stage) in done_stages {
            stage.updated = g;
            keep_what_the_snapshot_lacks(&mut stage, self.done_stages.get(&key));
            self.done_stages.insert(key, stage);
        }
        self.progress = progress;
        for (key, p) in pending_progress {
            if self.pending_progress.len() >= MAX_PENDING_PROGRESS {
                self.pending_progress.clear();
                self.evictions.add(LiveBound::PendingProgress);
            }
            self.pending_progress.insert(key, p);
        }
        self.prune_stages();
        self.prune_jobs();
        ended
    }

    /// Totals for a job that was never seen running: counted as if it had been.
    pub(super) fn count_missed(&mut self, job: &Job) {
        let zero = [0; 11];
        let mut now = zero;
        now[1..6].copy_from_slice(&[
            job.active_tasks,
            job.completed_tasks,
            job.skipped_tasks,
            job.failed_tasks,
            job.killed_tasks,
        ]);
        self.counters.jobs_started += 1;
        let ended = (job.status != JobStatus::Running).then_some(job.status);
        self.count_correction(&zero, &now, ended);
    }

    /// Totals after a job's counts were corrected from `before` to `after` (task counts at
    /// 1..=5: active, completed, skipped, failed, killed), and its end if it just ended.
    pub(super) fn count_correction(
        &mut self,
        before: &[i32],
        after: &[i32],
        ended: Option<JobStatus>,
    ) {
        let grew =
            |i: usize| u64::try_from(i64::from(after[i]) - i64::from(before[i])).unwrap_or(0);
        let started = |c: &[i32]| [1, 2, 4, 5].iter().map(|i| i64::from(c[*i])).sum::<i64>();
        let c = &mut self.counters;
        c.tasks_started += u64::try_from(started(after) - started(before)).unwrap_or(0);
        c.tasks_succeeded += grew(2);
        c.tasks_failed += grew(4);
        c.tasks_killed += grew(5);
        match ended {
            Some(JobStatus::Succeeded) => c.jobs_succeeded += 1,
            Some(JobStatus::Failed) => c.jobs_failed += 1,
            _ => {}
        }
    }

    /// Ends jobs whose end the agent never saw and Spark cannot tell yet (or ever: UI off):
    /// UNKNOWN, over at `time`, nothing active; their stage attempts still pending or running
    /// are over too. Reconciliation replaces this with Spark's end when it can.
    pub(super) fn end_as_unknown(&mut self, g: u64, ids: &[i32], time: i64) {
        let mut stages: BTreeSet<i32> = BTreeSet::new();
        for id in ids {
            let Some(job) = self.jobs.get_mut(id) else {
                continue;
            };
            job.status = JobStatus::Unknown;
            job.completion_time = job.completion_time.or(Some(time));
            job.active_tasks = 0;
            job.active_stages = 0;
            job.updated = g;
            stages.extend(job.stage_ids.iter().copied());
        }
        // A stage shared with a job still running stays as it is.
        for job in self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
        {
            for s in &job.stage_ids {
                stages.remove(s);
            }
        }
        let live: Vec<StageKey> = self
            .live_stages
            .keys()
            .filter(|k| stages.contains(&k.0))
            .copied()
            .collect();
        for key in live {
            self.retire_stage(key);
        }
        for (key, stage) in self.done_stages.iter_mut() {
            if stages.contains(&key.0) {
                end_stage_as_unknown(stage, g, time);
            }
        }
    }

    /// Ends every running job as unknown (its driver is gone); how many.
    pub(super) fn end_running_as_unknown(&mut self, g: u64, time: i64) -> usize {
        let ids = self.running_ids();
        self.end_as_unknown(g, &ids, time);
        ids.len()
    }

    /// Jobs running now.
    pub(super) fn running_ids(&self) -> Vec<i32> {
        self.jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
            .map(|j| j.job_id)
            .collect()
    }

    pub(super) fn retire(&mut self, key: StageKey) {
        self.retire_stage(key);
    }

    pub(super) fn prune_after_reconcile(&mut self) {
        self.prune_jobs();
    }

    /// Drops finished jobs and stage attempts that ended before `cutoff` (epoch ms).
    pub(super) fn prune_ended_before(&mut self, cutoff: i64) {
        let old = |t: Option<i64>| t.is_some_and(|t| t < cutoff);
        let retired = &mut self.retired;
        self.jobs.retain(|_, j| {
            let keep = j.status == JobStatus::Running || !old(j.completion_time);
            if !keep {
                retired.insert(j.job_id);
            }
            keep
        });
        self.done_stages
            .retain(|_, s| !old(s.completion_time.or(s.submission_time)));
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
            self.retired.insert(id);
        }
    }

    fn prune_stages(&mut self) {
        while self.done_stages.len() > self.retention.stages {
            self.done_stages.pop_first();
        }
    }
}

/// A stage attempt of a job that ended unseen: over, with nothing running, its end unknown
/// (pending ones never ran: skipped).
fn end_stage_as_unknown(stage: &mut Stage, g: u64, time: i64) {
    stage.status = match stage.status {
        StageStatus::Pending => StageStatus::Skipped,
        StageStatus::Active => StageStatus::Unknown,
        other => other,
    };
    if stage.status == StageStatus::Unknown {
        stage.completion_time = stage.completion_time.or(Some(time));
    }
    stage.active_tasks = 0;
    stage.updated = g;
}

/// What the agent knew of a stage attempt that the snapshot's copy lacks: the first failed task
/// (the root cause) and the run-time summary, when the listener's line did not carry them.
fn keep_what_the_snapshot_lacks(stage: &mut Stage, old: Option<&Stage>) {
    let Some(old) = old else {
        return;
    };
    if stage.failure.is_none() {
        stage.failure = old.failure.clone();
    }
    if stage.failure_reason.is_none() {
        stage.failure_reason = old.failure_reason.clone();
    }
    if stage.durations.is_none() {
        stage.durations = old.durations;
    }
}

/// A count plus a change, kept within 0..=i32::MAX: hostile or inconsistent input may push a
/// count out of range, never wrap it.
fn add(count: i32, delta: i64) -> i32 {
    i32::try_from((i64::from(count) + delta).clamp(0, i64::from(i32::MAX))).unwrap_or(i32::MAX)
}
