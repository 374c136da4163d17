//! What is kept: finished work by count, as Spark's own UI retention does, and by age; live
//! work up to bounds that only a lost end event (or hostile input) can reach. Each part of the
//! model applies these limits to what it holds.

/// How much is kept.
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
    /// Live things, per application: past these, the oldest is ended (evicted) and counted.
    pub live: LiveLimits,
    /// Samples of busy task slots kept per application (the notebook's Tasks view): a sample
    /// is taken only when the value changed, at most once per stream interval.
    pub task_samples: usize,
}

/// Bounds of live state per application. Spark ends what it starts, so these are reached only
/// when end events were lost or the input is hostile; each eviction is counted.
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    pub running_jobs: usize,
    pub live_stages: usize,
    pub open_sessions: usize,
    pub unclosed_operations: usize,
    pub executors: usize,
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits {
            running_jobs: 10_000,
            live_stages: 10_000,
            open_sessions: 10_000,
            unclosed_operations: 10_000,
            executors: 10_000,
        }
    }
}

/// Which live bound evicted something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveBound {
    RunningJobs,
    LiveStages,
    OpenSessions,
    UnclosedOperations,
    Executors,
}

impl LiveBound {
    pub const ALL: [LiveBound; 5] = [
        LiveBound::RunningJobs,
        LiveBound::LiveStages,
        LiveBound::OpenSessions,
        LiveBound::UnclosedOperations,
        LiveBound::Executors,
    ];
}

/// Evictions per bound since they were last taken, indexed like [`LiveBound::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions(pub [u64; 5]);

impl Evictions {
    pub fn add(&mut self, bound: LiveBound) {
        let i = LiveBound::ALL.iter().position(|b| *b == bound).unwrap_or(0);
        self.0[i] = self.0[i].saturating_add(1);
    }

    pub fn of(&self, bound: LiveBound) -> u64 {
        let i = LiveBound::ALL.iter().position(|b| *b == bound).unwrap_or(0);
        self.0[i]
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            jobs: 1000,
            stages: 1000,
            operations: 1000,
            sessions: 1000,
            max_age_ms: None,
            live: LiveLimits::default(),
            task_samples: 6000,
        }
    }
}
