//! Jobs, stages and tasks, counted step for step as Spark's own `AppStatusListener` does (live
//! stages stay live until their last task ends; stages still pending when a job ends are skipped;
//! killed and failed tasks are told apart the same way), so the counts equal those of Spark's
//! REST API and History Server.

use super::connect::ConnectRef;
use super::event::{
    JobEnd, JobStart, StageInfo, StageKey, StageProgress, TaskEnd, TaskMetricSums, TaskOutcome,
};
use super::retention::Retention;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
        self.task_delta(g, te.stage, 0, s, f, k, &te.metrics);
    }

    fn get_or_create_stage(&mut self, g: u64, info: &StageInfo) -> &mut Stage {
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
            .map(|s| s.num_tasks)
            .sum();
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
            connect,
            updated: g,
        };
        self.jobs.insert(js.job_id, job);
        self.counters.jobs_started += 1;
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
                job.active_stages += 1;
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
    pub(super) fn stage_progress(&mut self, g: u64, p: StageProgress) {
        let key = p.key();
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
            g,
            key,
            d(p.started, base.started),
            d(p.succeeded, base.succeeded),
            d(p.failed, base.failed),
            d(p.killed, base.killed),
            &p.metrics.sub(&base.metrics),
        );
    }

    /// Drops finished jobs and stage attempts that ended before `cutoff` (epoch ms).
    pub(super) fn prune_ended_before(&mut self, cutoff: i64) {
        let old = |t: Option<i64>| t.is_some_and(|t| t < cutoff);
        self.jobs
            .retain(|_, j| j.status == JobStatus::Running || !old(j.completion_time));
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
        }
    }

    fn prune_stages(&mut self) {
        while self.done_stages.len() > self.retention.stages {
            self.done_stages.pop_first();
        }
    }
}
