//! The events the model applies: Spark's listener events (as its event log records them) and the
//! listener's own `Sparkscope*` lines, as plain values. Reading them from bytes is ingest's job
//! (`ingest::spark_json`, `ingest::protocol`); this module only says what they mean.

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    LogStart {
        spark_version: String,
    },
    ApplicationStart(ApplicationStart),
    ApplicationEnd {
        time: i64,
    },
    ExecutorAdded {
        id: String,
        time: i64,
        host: String,
        cores: u32,
        /// Where its logs are (`ExecutorInfo.logUrlMap`: "stdout", "stderr", …), http or https
        /// addresses only, as Spark's `/executors` lists them in `executorLogs`.
        log_urls: Vec<(String, String)>,
    },
    ExecutorRemoved {
        id: String,
        time: i64,
    },
    /// An executor's memory peaks: from a heartbeat (`SparkListenerExecutorMetricsUpdate`, the
    /// listener's with the executor's peaks since it started as the whole executor's) or an
    /// event log's `SparkListenerStageExecutorMetrics`.
    ExecutorMetrics(ExecutorMetrics),
    JobStart(JobStart),
    JobEnd(JobEnd),
    StageSubmitted(StageInfo),
    StageCompleted(StageInfo),
    TaskStart {
        stage: StageKey,
    },
    TaskEnd(TaskEnd),
    SqlExecutionStart(SqlExecutionStart),
    SqlExecutionEnd {
        execution_id: i64,
        time: i64,
        /// Why it failed; `None` when it did not.
        error: Option<String>,
    },
    /// An adaptive (AQE) re-plan of a running SQL execution: its new physical plan.
    SqlPlanUpdate {
        execution_id: i64,
        plan: Plan,
    },
    /// The totals of a running SQL execution's operator metrics that changed
    /// (`SparkscopeSqlMetrics`): (accumulator id, value).
    SqlMetrics {
        execution_id: i64,
        values: Vec<(i64, i64)>,
    },
    /// The Spark Connect server's gRPC endpoint, as it announced itself.
    ConnectServiceStarted {
        host: String,
        port: u16,
    },
    SessionStarted {
        session_id: String,
        user_id: String,
        time: i64,
    },
    SessionClosed {
        session_id: String,
        user_id: String,
        time: i64,
    },
    OperationStarted(OperationStarted),
    OperationState {
        operation_id: String,
        job_tag: String,
        time: i64,
        state: OpTransition,
    },
    /// What a listener says of its application when it connects.
    Hello(ListenerInfo),
    /// The listener's resend of everything live begins: until `SnapshotEnd`, lines describe
    /// state, and the agent replaces what it holds as live with it.
    SnapshotStart {
        time: i64,
    },
    SnapshotEnd {
        time: i64,
    },
    StageProgress(StageProgress),
    ListenerStats(ListenerStats),
    /// Jobs the listener found no longer active in Spark although their end never came (Spark's
    /// listener bus dropped it): they are over, how is unknown.
    JobsGone {
        time: i64,
        job_ids: Vec<i32>,
    },
    /// Spark's UI address, known only after the hello was sent (empty there): an http or https
    /// address, checked where the line is read.
    UiUrl {
        time: i64,
        url: String,
    },
    /// A WARN or ERROR line of the driver's log, with what the logging thread knew of whose it
    /// is (`spark.sparkscope.logs.maxPerSecond`).
    LogLine(LogLine),
    /// A well-formed event this agent has no use for (block updates, environment, …).
    Ignored,
    /// A well-formed line whose `Event` name this agent does not know.
    Unknown,
}

/// Every kind of line, for per-kind counts: a bounded set (metrics labels, logs).
pub const KINDS: [&str; 31] = [
    "log_start",
    "application_start",
    "application_end",
    "executor_added",
    "executor_removed",
    "job_start",
    "job_end",
    "stage_submitted",
    "stage_completed",
    "task_start",
    "task_end",
    "sql_execution_start",
    "sql_execution_end",
    "connect_service_started",
    "session_started",
    "session_closed",
    "operation_started",
    "operation_state",
    "hello",
    "stage_progress",
    "listener_stats",
    "snapshot_start",
    "snapshot_end",
    "jobs_gone",
    "ui_url",
    "log_line",
    "ignored",
    "unknown",
    "sql_plan_update",
    "sql_metrics",
    "executor_metrics",
];

impl Event {
    /// This event's index in [`KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            Event::LogStart { .. } => 0,
            Event::ApplicationStart(_) => 1,
            Event::ApplicationEnd { .. } => 2,
            Event::ExecutorAdded { .. } => 3,
            Event::ExecutorRemoved { .. } => 4,
            Event::JobStart(_) => 5,
            Event::JobEnd(_) => 6,
            Event::StageSubmitted(_) => 7,
            Event::StageCompleted(_) => 8,
            Event::TaskStart { .. } => 9,
            Event::TaskEnd(_) => 10,
            Event::SqlExecutionStart(_) => 11,
            Event::SqlExecutionEnd { .. } => 12,
            Event::ConnectServiceStarted { .. } => 13,
            Event::SessionStarted { .. } => 14,
            Event::SessionClosed { .. } => 15,
            Event::OperationStarted(_) => 16,
            Event::OperationState { .. } => 17,
            Event::Hello(_) => 18,
            Event::StageProgress(_) => 19,
            Event::ListenerStats(_) => 20,
            Event::SnapshotStart { .. } => 21,
            Event::SnapshotEnd { .. } => 22,
            Event::JobsGone { .. } => 23,
            Event::UiUrl { .. } => 24,
            Event::LogLine(_) => 25,
            Event::Ignored => 26,
            Event::Unknown => 27,
            Event::SqlPlanUpdate { .. } => 28,
            Event::SqlMetrics { .. } => 29,
            Event::ExecutorMetrics(_) => 30,
        }
    }

    pub fn kind(&self) -> &'static str {
        KINDS[self.kind_index()]
    }

    /// When Spark says the event happened (its clock, epoch ms), for events that carry a time.
    /// Task events have none here: they are the volume, and progress lines stand for them.
    pub fn time_ms(&self) -> Option<i64> {
        match self {
            Event::ApplicationStart(a) => Some(a.time),
            Event::ApplicationEnd { time }
            | Event::ExecutorAdded { time, .. }
            | Event::ExecutorRemoved { time, .. }
            | Event::SessionStarted { time, .. }
            | Event::SessionClosed { time, .. }
            | Event::OperationState { time, .. }
            | Event::SqlExecutionEnd { time, .. }
            | Event::SnapshotStart { time }
            | Event::SnapshotEnd { time }
            | Event::JobsGone { time, .. }
            | Event::UiUrl { time, .. } => Some(*time),
            Event::OperationStarted(o) => Some(o.time),
            Event::SqlExecutionStart(s) => Some(s.time),
            Event::JobStart(j) => j.time,
            Event::JobEnd(j) => j.time,
            Event::StageSubmitted(s) => s.submission_time,
            Event::StageCompleted(s) => s.completion_time,
            Event::StageProgress(p) => Some(p.time),
            Event::ListenerStats(s) => Some(s.time),
            Event::LogLine(l) => Some(l.time),
            _ => None,
        }
        .filter(|t| *t > 0)
    }
}

/// Peaks of an executor's memory metrics (Spark's `ExecutorMetrics`), in bytes, and its JVM's
/// garbage collection time so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryPeaks {
    /// `JVMHeapMemory`: heap in use, garbage included.
    pub jvm_heap: u64,
    /// `JVMOffHeapMemory`: the JVM's non-heap memory (metaspace, code cache, …).
    pub jvm_off_heap: u64,
    /// `OnHeapStorageMemory` and `OffHeapStorageMemory`: cached blocks and broadcasts.
    pub on_heap_storage: u64,
    pub off_heap_storage: u64,
    /// `TotalGCTime`, ms.
    pub gc_time_ms: u64,
}

impl MemoryPeaks {
    /// Takes the larger of each value; whether any grew.
    pub fn raise(&mut self, o: &MemoryPeaks) -> bool {
        let before = *self;
        self.jvm_heap = self.jvm_heap.max(o.jvm_heap);
        self.jvm_off_heap = self.jvm_off_heap.max(o.jvm_off_heap);
        self.on_heap_storage = self.on_heap_storage.max(o.on_heap_storage);
        self.off_heap_storage = self.off_heap_storage.max(o.off_heap_storage);
        self.gc_time_ms = self.gc_time_ms.max(o.gc_time_ms);
        before != *self
    }

    pub fn values(&self) -> [(&'static str, u64); 5] {
        [
            ("JVMHeapMemory", self.jvm_heap),
            ("JVMOffHeapMemory", self.jvm_off_heap),
            ("OnHeapStorageMemory", self.on_heap_storage),
            ("OffHeapStorageMemory", self.off_heap_storage),
            ("TotalGCTime", self.gc_time_ms),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorMetrics {
    pub executor_id: String,
    /// The heap its JVM may grow to, when the listener said (Spark's event logs do not).
    pub max_heap: Option<u64>,
    /// The whole executor's peaks (Spark's stage -1), if the line had them.
    pub executor: Option<MemoryPeaks>,
    /// Peaks while a stage attempt ran on it.
    pub stages: Vec<(StageKey, MemoryPeaks)>,
}

/// (stage id, stage attempt id)
pub type StageKey = (i32, i32);

/// How severe a forwarded log line is: the listener forwards WARN and above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
pub enum LogLevel {
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "ERROR")]
    Error,
    #[serde(rename = "FATAL")]
    Fatal,
}

impl LogLevel {
    pub const ALL: [LogLevel; 3] = [LogLevel::Warn, LogLevel::Error, LogLevel::Fatal];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }
}

/// One line of the driver's log (`SparkscopeLogLine`, docs/wire-protocol.md).
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub time: i64,
    pub level: LogLevel,
    pub logger: String,
    pub thread: String,
    pub message: String,
    /// The exception's class, message and first frames; empty without one.
    pub thrown: String,
    /// The job tags of the logging thread (a task's, or a Connect operation's thread).
    pub job_tags: Vec<String>,
    /// What Spark's structured-logging context names: only the keys that say whose the line
    /// is (session, user, operation, job, stage, task) are kept.
    pub context: LogContext,
}

/// The keys of Spark's structured-logging context (`LogKeys`, lower-cased) that say whose a line
/// is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogContext {
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub operation_id: Option<String>,
    pub job_id: Option<String>,
    pub stage_id: Option<String>,
    pub stage_attempt_id: Option<String>,
    pub task_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationStart {
    pub id: Option<String>,
    pub name: String,
    pub time: i64,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobStart {
    pub job_id: i32,
    pub time: Option<i64>,
    pub stages: Vec<StageInfo>,
    pub stage_ids: Vec<i32>,
    /// `spark.job.tags`, split on `,`; empty entries dropped.
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub job_group: Option<String>,
    pub sql_execution_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobEnd {
    pub job_id: i32,
    pub time: Option<i64>,
    pub succeeded: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageInfo {
    pub stage_id: i32,
    pub attempt_id: i32,
    pub name: String,
    pub num_tasks: i32,
    pub submission_time: Option<i64>,
    pub completion_time: Option<i64>,
    pub failure_reason: Option<String>,
}

impl StageInfo {
    pub fn key(&self) -> StageKey {
        (self.stage_id, self.attempt_id)
    }
}

/// How a task ended, with Spark's `AppStatusListener` classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    Succeeded,
    Killed,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskEnd {
    pub stage: StageKey,
    pub outcome: TaskOutcome,
    pub metrics: TaskMetricSums,
    /// Why a failed task failed, with where it ran; `None` for other outcomes.
    pub failure: Option<Box<TaskFailure>>,
}

/// A failed task: the root cause a notebook shows for its stage and job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFailure {
    pub task_id: i64,
    /// The task's partition index in its stage, and which attempt of it failed.
    pub index: i32,
    pub attempt: i32,
    pub executor_id: String,
    pub host: String,
    /// Spark's `TaskEndReason`: `ExceptionFailure`, `FetchFailed`, `ExecutorLostFailure`, …
    pub reason: String,
    /// For an exception: its class, and its message.
    pub exception_class: String,
    pub message: String,
    /// Spark's full stack trace text (bounded).
    pub stack_trace: String,
    /// When the task ended (Spark's clock).
    pub time: i64,
}

/// Sums of the task metrics the agent reports per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetricSums {
    pub executor_run_time_ms: i64,
    pub executor_cpu_time_ns: i64,
    pub input_bytes: i64,
    pub output_bytes: i64,
    pub shuffle_read_bytes: i64,
    pub shuffle_write_bytes: i64,
    pub memory_spilled_bytes: i64,
    pub disk_spilled_bytes: i64,
    pub gc_time_ms: i64,
}

impl TaskMetricSums {
    pub fn add(&mut self, o: &TaskMetricSums) {
        self.executor_run_time_ms = self
            .executor_run_time_ms
            .saturating_add(o.executor_run_time_ms);
        self.executor_cpu_time_ns = self
            .executor_cpu_time_ns
            .saturating_add(o.executor_cpu_time_ns);
        self.input_bytes = self.input_bytes.saturating_add(o.input_bytes);
        self.output_bytes = self.output_bytes.saturating_add(o.output_bytes);
        self.shuffle_read_bytes = self.shuffle_read_bytes.saturating_add(o.shuffle_read_bytes);
        self.shuffle_write_bytes = self
            .shuffle_write_bytes
            .saturating_add(o.shuffle_write_bytes);
        self.memory_spilled_bytes = self
            .memory_spilled_bytes
            .saturating_add(o.memory_spilled_bytes);
        self.disk_spilled_bytes = self.disk_spilled_bytes.saturating_add(o.disk_spilled_bytes);
        self.gc_time_ms = self.gc_time_ms.saturating_add(o.gc_time_ms);
    }

    /// What was added since `o`, an earlier value of the same cumulative sums: never negative.
    pub fn sub(&self, o: &TaskMetricSums) -> TaskMetricSums {
        TaskMetricSums {
            executor_run_time_ms: self
                .executor_run_time_ms
                .saturating_sub(o.executor_run_time_ms),
            executor_cpu_time_ns: self
                .executor_cpu_time_ns
                .saturating_sub(o.executor_cpu_time_ns),
            input_bytes: self.input_bytes.saturating_sub(o.input_bytes).max(0),
            output_bytes: self.output_bytes.saturating_sub(o.output_bytes).max(0),
            shuffle_read_bytes: self
                .shuffle_read_bytes
                .saturating_sub(o.shuffle_read_bytes)
                .max(0),
            shuffle_write_bytes: self
                .shuffle_write_bytes
                .saturating_sub(o.shuffle_write_bytes),
            memory_spilled_bytes: self
                .memory_spilled_bytes
                .saturating_sub(o.memory_spilled_bytes)
                .max(0),
            disk_spilled_bytes: self
                .disk_spilled_bytes
                .saturating_sub(o.disk_spilled_bytes)
                .max(0),
            gc_time_ms: self.gc_time_ms.saturating_sub(o.gc_time_ms).max(0),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SqlExecutionStart {
    pub execution_id: i64,
    pub time: i64,
    pub job_tags: Vec<String>,
    /// The statement or action, as Spark describes it.
    pub description: String,
    /// The physical plan, when the line carried one.
    pub plan: Option<Plan>,
}

/// A physical plan: its nodes in pre-order (a node's parent comes before it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub nodes: Vec<PlanNode>,
    /// Nodes left out over a bound (the listener's, or the agent's).
    pub nodes_dropped: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    /// The parent's index in the plan's nodes; -1 for the root.
    pub parent: i32,
    pub name: String,
    /// Spark's one-line description (`simpleString`).
    pub detail: String,
    pub metrics: Vec<PlanMetric>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanMetric {
    pub name: String,
    /// Spark's metric type: sum, size, timing, nsTiming, average.
    pub kind: String,
    pub accumulator_id: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperationStarted {
    pub operation_id: String,
    pub job_tag: String,
    pub session_id: String,
    pub user_id: String,
    pub time: i64,
    pub statement: String,
    pub tags: Vec<String>,
}

/// The lifecycle steps of a Connect operation after it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpTransition {
    Analyzed,
    ReadyForExecution,
    Finished { produced_rows: Option<i64> },
    Failed { error: String },
    Canceled,
    Closed,
}

/// The application a listener reports on, from its hello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerInfo {
    pub app_id: String,
    pub app_name: String,
    pub spark_version: String,
    pub spark_user: String,
    pub start_time: i64,
    /// Task counts come as `SparkscopeStageProgress` lines rather than task events.
    pub coalesced_tasks: bool,
    /// Where Spark's UI and REST API answer; empty when the UI is off.
    pub ui_url: String,
    /// `spark.master` of the application.
    pub master: String,
    /// A notebook's own (classic) SparkContext: the application is the one session its jobs
    /// belong to (see [`crate::model::ConnectRef`]).
    pub classic_session: bool,
}

/// Cumulative task counters of one stage attempt, as the listener coalesces them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageProgress {
    pub stage_id: i32,
    pub stage_attempt_id: i32,
    pub time: i64,
    pub started: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub killed: i64,
    pub metrics: TaskMetricSums,
    /// Run time of the successful tasks so far, as the listener summarizes it.
    pub durations: Option<DurationSummary>,
}

/// Shortest, median and longest run time (ms) of a stage attempt's successful tasks. The
/// median is approximate: the middle of its `durations` bucket (within an eighth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationSummary {
    pub min_ms: i64,
    pub median_ms: i64,
    pub max_ms: i64,
}

impl StageProgress {
    pub fn key(&self) -> StageKey {
        (self.stage_id, self.stage_attempt_id)
    }
}

/// What the listener counts of itself, all cumulative for the listener's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    pub time: i64,
    pub sent: u64,
    /// Lines the listener dropped (its queue full, the agent away).
    pub dropped: u64,
    pub reconnects: u64,
    /// Events Spark's own listener bus dropped, over all its queues.
    pub bus_dropped: u64,
    /// Live-state entries the listener evicted at its bound, and task events it could not
    /// count (stage table full).
    pub evicted: u64,
}
