//! What is kept: finished work by count, as Spark's own UI retention does; live work up to
//! bounds that only a lost end event (or hostile input) can reach. Each part of the model applies
//! these limits to what it holds. Limits by age are applied from outside, by the agent's upkeep
//! (`Store::prune`).

/// How much is kept, per application.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Retention")]
pub struct Retention {
    /// Jobs kept per application (like spark.ui.retainedJobs); running jobs always stay.
    #[arg(
        long = "retain-jobs",
        value_name = "N",
        default_value_t = 1000,
        env = "SPARKSCOPE_RETAIN_JOBS"
    )]
    pub jobs: usize,
    /// Finished stage attempts kept per application.
    #[arg(
        long = "retain-stages",
        value_name = "N",
        default_value_t = 1000,
        env = "SPARKSCOPE_RETAIN_STAGES"
    )]
    pub stages: usize,
    /// Closed Connect operations kept per application.
    #[arg(
        long = "retain-operations",
        value_name = "N",
        default_value_t = 1000,
        env = "SPARKSCOPE_RETAIN_OPERATIONS"
    )]
    pub operations: usize,
    /// Closed Connect sessions kept per application.
    #[arg(
        long = "retain-sessions",
        value_name = "N",
        default_value_t = 1000,
        env = "SPARKSCOPE_RETAIN_SESSIONS"
    )]
    pub sessions: usize,
    /// Live things, per application: past these, the oldest is ended (evicted) and counted.
    #[command(flatten)]
    pub live: LiveLimits,
}

crate::flags::default_from_flags!(Retention);

/// Bounds of live state per application. Spark ends what it starts, so these are reached only
/// when end events were lost or the input is hostile; each eviction is counted.
#[derive(Debug, Clone, Copy, clap::Args)]
#[command(next_help_heading = "Retention")]
pub struct LiveLimits {
    /// Running jobs kept per application; past it the oldest is ended as UNKNOWN (its end was
    /// lost).
    #[arg(
        long = "max-running-jobs",
        value_name = "N",
        default_value_t = 10_000,
        env = "SPARKSCOPE_MAX_RUNNING_JOBS"
    )]
    pub running_jobs: usize,
    /// Live stage attempts kept per application; past it the oldest is retired.
    #[arg(
        long = "max-live-stages",
        value_name = "N",
        default_value_t = 10_000,
        env = "SPARKSCOPE_MAX_LIVE_STAGES"
    )]
    pub live_stages: usize,
    /// Open Connect sessions kept per application; past it the oldest is closed.
    #[arg(
        long = "max-open-sessions",
        value_name = "N",
        default_value_t = 10_000,
        env = "SPARKSCOPE_MAX_OPEN_SESSIONS"
    )]
    pub open_sessions: usize,
    /// Unclosed Connect operations kept per application; past it the oldest is closed.
    #[arg(
        long = "max-unclosed-operations",
        value_name = "N",
        default_value_t = 10_000,
        env = "SPARKSCOPE_MAX_UNCLOSED_OPERATIONS"
    )]
    pub unclosed_operations: usize,
    /// Executors kept per application; past it the one added first goes.
    #[arg(
        long = "max-executors",
        value_name = "N",
        default_value_t = 10_000,
        env = "SPARKSCOPE_MAX_EXECUTORS"
    )]
    pub executors: usize,
    /// The driver's forwarded WARN and ERROR lines kept per application; past it the oldest
    /// goes.
    #[arg(
        long = "max-log-lines",
        value_name = "N",
        default_value_t = 2_000,
        env = "SPARKSCOPE_MAX_LOG_LINES"
    )]
    pub log_lines: usize,
    /// SQL executions (with their plans and operator metrics) kept per application; past it
    /// the oldest ended one goes.
    #[arg(
        long = "max-sql-executions",
        value_name = "N",
        default_value_t = 1_000,
        env = "SPARKSCOPE_MAX_SQL_EXECUTIONS"
    )]
    pub sql_executions: usize,
    /// Nodes kept of one SQL execution's physical plan (pre-order); the rest are counted and
    /// left out.
    #[arg(
        long = "max-plan-nodes",
        value_name = "N",
        default_value_t = 1_000,
        env = "SPARKSCOPE_MAX_PLAN_NODES"
    )]
    pub plan_nodes: usize,
}

crate::flags::default_from_flags!(LiveLimits);

/// Which live bound evicted something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveBound {
    RunningJobs,
    LiveStages,
    OpenSessions,
    UnclosedOperations,
    Executors,
    /// Progress lines of stage attempts whose submission has not arrived (yet).
    PendingProgress,
    /// Ids of jobs dropped past the retention, kept so that Spark's REST API does not bring
    /// them back; past it the oldest are forgotten.
    RetiredJobs,
    /// The driver's forwarded log lines.
    LogLines,
    /// SQL executions and their plans.
    SqlExecutions,
    /// Nodes of one execution's plan.
    PlanNodes,
}

impl LiveBound {
    pub const ALL: [LiveBound; 10] = [
        LiveBound::RunningJobs,
        LiveBound::LiveStages,
        LiveBound::OpenSessions,
        LiveBound::UnclosedOperations,
        LiveBound::Executors,
        LiveBound::PendingProgress,
        LiveBound::RetiredJobs,
        LiveBound::LogLines,
        LiveBound::SqlExecutions,
        LiveBound::PlanNodes,
    ];
}

/// Evictions per bound since they were last taken, indexed like [`LiveBound::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions(pub [u64; 10]);

impl Evictions {
    pub fn add_n(&mut self, bound: LiveBound, n: u64) {
        let i = LiveBound::ALL.iter().position(|b| *b == bound).unwrap_or(0);
        self.0[i] = self.0[i].saturating_add(n);
    }

    pub fn add(&mut self, bound: LiveBound) {
        let i = LiveBound::ALL.iter().position(|b| *b == bound).unwrap_or(0);
        self.0[i] = self.0[i].saturating_add(1);
    }

    pub fn of(&self, bound: LiveBound) -> u64 {
        let i = LiveBound::ALL.iter().position(|b| *b == bound).unwrap_or(0);
        self.0[i]
    }
}
