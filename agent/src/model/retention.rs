//! What finished work is kept: by count, as Spark's own UI retention does, and by age. Running
//! work is always kept. Each part of the model applies these limits to what it holds.

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
