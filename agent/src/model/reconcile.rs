//! Reconciliation: Spark's REST API is the truth the agent falls back on after a gap (a resync,
//! dropped events, a broken connection). Jobs Spark knows and the agent missed are filled in,
//! with their Connect attribution from their job tags; jobs the agent holds as running that
//! Spark reports ended take Spark's end and counts; ended jobs whose counts differ take Spark's.
//! A job both sides see running is left to the listener's stream, which is fresher than Spark's
//! own status store.

use super::app::{AppState, NoticeKind, Outage};
use super::jobs::{Job, JobStatus, Stage, StageStatus};
use crate::spark_api::JobData;
use std::collections::BTreeSet;

/// What one reconciliation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Corrections {
    /// Jobs Spark knows that the agent had missed entirely.
    pub filled: u64,
    /// Jobs the agent held as running (or UNKNOWN) that Spark reports ended.
    pub ended: u64,
    /// Ended jobs whose status or counts differed from Spark's.
    pub corrected: u64,
}

impl Corrections {
    pub fn total(&self) -> u64 {
        self.filled + self.ended + self.corrected
    }
}

/// A job's counts in the order of [`JobData::counts`].
fn counts_of(j: &Job) -> [i32; 10] {
    [
        j.num_tasks,
        j.active_tasks,
        j.completed_tasks,
        j.skipped_tasks,
        j.failed_tasks,
        j.killed_tasks,
        j.active_stages,
        j.num_completed_stages(),
        j.num_skipped_stages(),
        j.failed_stages,
    ]
}

impl AppState {
    /// Whether a gap asks for Spark's REST API.
    pub fn reconcile_wanted(&self) -> bool {
        self.reconcile_wanted.is_some()
    }

    /// Whether Spark's REST API should be asked now: `delay_ms` after a gap (Spark's own status
    /// store follows its bus a little behind the listener), then every `retry_ms` while jobs that
    /// ran through a gap have not been seen ended in Spark; never before the backoff of a
    /// failed try has passed.
    pub fn reconcile_due(&self, now_ms: i64, delay_ms: i64, retry_ms: i64) -> bool {
        if self.reconcile_backing_off(now_ms) {
            return false;
        }
        match self.reconcile_wanted {
            Some(since) => now_ms.saturating_sub(since) >= delay_ms,
            None => {
                !self.suspects.is_empty()
                    && now_ms.saturating_sub(self.last_reconcile_ms) >= retry_ms
            }
        }
    }

    /// Whether Spark's REST API failed lately and the next try is not due yet.
    pub fn reconcile_backing_off(&self, now_ms: i64) -> bool {
        self.outage.as_ref().is_some_and(|o| now_ms < o.next_ms)
    }

    /// Corrects the model from Spark's jobs.
    ///
    /// `fetched_at` is the model generation when the request went out: a job the listener
    /// changed since then is fresher here than in what Spark answered, and is left alone. Jobs
    /// the agent retired (pruned past its retention) are not taken back.
    pub fn reconcile(&mut self, now_ms: i64, spark: Vec<JobData>, fetched_at: u64) -> Corrections {
        self.reconcile_wanted = None;
        self.last_reconcile_ms = now_ms;
        self.outage = None;
        let known: BTreeSet<i32> = spark.iter().map(|j| j.job_id).collect();
        // A suspect is cleared once Spark reports it ended (its numbers are then taken below),
        // or when Spark no longer knows it.
        self.suspects.retain(|id| known.contains(id));
        for sj in spark.iter().filter(|j| j.status != JobStatus::Running) {
            self.suspects.remove(&sj.job_id);
        }
        self.generation += 1;
        let g = self.generation;
        let mut done = Corrections::default();
        for sj in spark {
            let ended_in_spark = sj.status != JobStatus::Running;
            match self.jobs.jobs.get(&sj.job_id) {
                None if self.jobs.retired.contains(sj.job_id) => {}
                Some(ours) if ours.updated > fetched_at => {}
                None => {
                    let connect = self.attribute_job(g, sj.job_id, &sj.job_tags);
                    let job = new_job(g, &sj, connect);
                    self.jobs.count_missed(&job);
                    self.jobs.jobs.insert(sj.job_id, job);
                    done.filled += 1;
                }
                Some(ours) if ours.status == JobStatus::Running && !ended_in_spark => {}
                Some(ours) if ours.status != JobStatus::Running && !ended_in_spark => {
                    // Spark's status store lags the listener: a job ended here and still running
                    // there is Spark's next update, not a gap. An UNKNOWN one was evicted here.
                    if ours.status == JobStatus::Unknown {
                        self.take_spark(g, &sj);
                        done.corrected += 1;
                    }
                }
                Some(ours) => {
                    let was_running =
                        matches!(ours.status, JobStatus::Running | JobStatus::Unknown);
                    if was_running {
                        self.take_spark(g, &sj);
                        self.end_stages_of(g, &sj);
                        done.ended += 1;
                    } else if (counts_of(ours), ours.status) != (sj.counts(), sj.status) {
                        self.take_spark(g, &sj);
                        done.corrected += 1;
                    }
                }
            }
        }
        self.jobs.prune_after_reconcile();
        let st = &mut self.stats;
        st.reconciliations += 1;
        st.jobs_filled += done.filled;
        st.jobs_ended += done.ended;
        st.jobs_corrected += done.corrected;
        if done.total() > 0 {
            self.notice(
                now_ms,
                NoticeKind::Reconciled,
                format!(
                    "counts restored from Spark: {} job(s) filled in, {} ended, {} corrected",
                    done.filled, done.ended, done.corrected
                ),
            );
        }
        done
    }

    /// Spark's REST API could not be asked; the gap stays visible and is tried again after a
    /// backoff that doubles from `first_ms` up to `max_ms`. An outage gives one notice, not one
    /// per try. Returns whether this failure began an outage (the caller logs it once).
    pub fn reconcile_failed(&mut self, now_ms: i64, why: &str, first_ms: i64, max_ms: i64) -> bool {
        self.last_reconcile_ms = now_ms;
        self.stats.reconcile_failures += 1;
        let began = self.outage.is_none();
        let tries = self
            .outage
            .as_ref()
            .map_or(0, |o| o.tries)
            .saturating_add(1);
        let shift = (tries - 1).min(30);
        let wait = first_ms
            .max(1)
            .saturating_mul(1 << shift)
            .min(max_ms.max(1));
        self.outage = Some(Outage {
            tries,
            next_ms: now_ms.saturating_add(wait),
        });
        if began {
            self.notice(
                now_ms,
                NoticeKind::Unreconciled,
                format!("counts may be incomplete: {why}"),
            );
        }
        began
    }

    /// Takes Spark's status and counts for a job the agent knows.
    fn take_spark(&mut self, g: u64, sj: &JobData) {
        let Some(job) = self.jobs.jobs.get_mut(&sj.job_id) else {
            return;
        };
        let before = counts_of(job);
        let was_running = matches!(job.status, JobStatus::Running | JobStatus::Unknown);
        job.status = sj.status;
        job.completion_time = sj.completion_time.map(|d| d.0).or(job.completion_time);
        job.num_tasks = sj.num_tasks;
        job.active_tasks = sj.num_active_tasks;
        job.completed_tasks = sj.num_completed_tasks;
        job.skipped_tasks = sj.num_skipped_tasks;
        job.failed_tasks = sj.num_failed_tasks;
        job.killed_tasks = sj.num_killed_tasks;
        job.active_stages = sj.num_active_stages;
        job.failed_stages = sj.num_failed_stages;
        job.spark_stage_counts = Some((sj.num_completed_stages, sj.num_skipped_stages));
        job.updated = g;
        let ended_now = was_running && sj.status != JobStatus::Running;
        let after = counts_of(job);
        let status = job.status;
        self.jobs
            .count_correction(&before, &after, ended_now.then_some(status));
    }

    /// The stage attempts of a job Spark reports ended are over too (live ones, and ones a
    /// snapshot retired unfinished): pending ones were skipped, running ones ended with the job.
    fn end_stages_of(&mut self, g: u64, sj: &JobData) {
        let still_needed: BTreeSet<i32> = self
            .jobs
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
            .flat_map(|j| j.stage_ids.iter().copied())
            .collect();
        let ours = |id: i32| sj.stage_ids.contains(&id) && !still_needed.contains(&id);
        let live: Vec<_> = self
            .jobs
            .live_stages
            .keys()
            .filter(|k| ours(k.0))
            .copied()
            .collect();
        for key in live {
            if let Some(stage) = self.jobs.live_stages.get_mut(&key) {
                end_stage(stage, sj.status, g);
            }
            self.jobs.retire(key);
        }
        for (key, stage) in self.jobs.done_stages.iter_mut() {
            if ours(key.0)
                && matches!(
                    stage.status,
                    StageStatus::Pending | StageStatus::Active | StageStatus::Unknown
                )
            {
                end_stage(stage, sj.status, g);
            }
        }
    }
}

fn end_stage(stage: &mut Stage, job: JobStatus, g: u64) {
    stage.status = match (stage.status, job) {
        (StageStatus::Pending, _) => StageStatus::Skipped,
        (StageStatus::Active | StageStatus::Unknown, JobStatus::Succeeded) => StageStatus::Complete,
        (StageStatus::Active | StageStatus::Unknown, _) => StageStatus::Failed,
        (other, _) => other,
    };
    stage.active_tasks = 0;
    stage.updated = g;
}

fn new_job(g: u64, sj: &JobData, connect: Option<super::connect::ConnectRef>) -> Job {
    Job {
        job_id: sj.job_id,
        name: sj.name.clone(),
        description: sj.description.clone(),
        job_group: sj.job_group.clone(),
        submission_time: sj.submission_time.map(|d| d.0),
        completion_time: sj.completion_time.map(|d| d.0),
        stage_ids: sj.stage_ids.clone(),
        job_tags: sj.job_tags.clone(),
        sql_execution_id: None,
        status: sj.status,
        error: None,
        num_tasks: sj.num_tasks,
        active_tasks: sj.num_active_tasks,
        completed_tasks: sj.num_completed_tasks,
        failed_tasks: sj.num_failed_tasks,
        killed_tasks: sj.num_killed_tasks,
        skipped_tasks: sj.num_skipped_tasks,
        active_stages: sj.num_active_stages,
        completed_stages: BTreeSet::new(),
        skipped_stages: BTreeSet::new(),
        failed_stages: sj.num_failed_stages,
        spark_stage_counts: Some((sj.num_completed_stages, sj.num_skipped_stages)),
        connect,
        updated: g,
    }
}
