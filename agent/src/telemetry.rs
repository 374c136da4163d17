//! The agent's Prometheus metrics: every name, type, label set and meaning in one catalog, the
//! process-wide recorder, and the few metrics recorded as things happen. Every layer names its
//! metrics from here; `publish::metrics` exports the model's state at scrape time.
//!
//! Labels come from bounded sets only: application, a capped user set with an `other` bucket,
//! and fixed state/result/kind/transport/outcome values. Never session ids, statement text or
//! tags.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric of the catalog.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! catalog {
    ($($id:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(pub const $id: &str = $name;)*
        /// Every metric the agent exports.
        pub const CATALOG: &[Def] = &[
            $(Def { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help },)*
        ];
    };
}

catalog! {
    BUILD_INFO = "sparkscope_build_info", Gauge, ["version"],
        "Always 1; the agent's version.";
    APPLICATIONS = "sparkscope_applications", Gauge, ["state"],
        "Spark applications the agent knows: state=live (a listener is connected) or ended.";
    EXECUTORS = "sparkscope_executors", Gauge, ["application"],
        "Executors alive (the driver counts as one in local mode).";
    EXECUTOR_CORES = "sparkscope_executor_cores", Gauge, ["application"],
        "Cores of the alive executors: the task slots.";
    BUSY_TASK_SLOTS = "sparkscope_busy_task_slots", Gauge, ["application"],
        "Tasks running now.";
    TASK_CORE_TIME = "sparkscope_task_core_seconds_total", Counter, ["application", "user"],
        "Executor run time of ended tasks (the time each held a core), per user of the job that ran them (capped, then 'other'; 'unattributed': no known session): chargeback, and each user's share of the cores.";
    EXECUTOR_MEMORY_PEAK = "sparkscope_executor_memory_peak_bytes", Gauge, ["application", "executor", "kind"],
        "Peak memory of each live executor (the driver as 'driver') since it started, from its heartbeats, as Spark's /executors peakMemoryMetrics: kind=jvm_heap (heap in use, garbage included), jvm_off_heap, on_heap_storage or off_heap_storage (cached blocks and broadcasts).";
    EXECUTOR_MAX_HEAP = "sparkscope_executor_max_heap_bytes", Gauge, ["application", "executor"],
        "The heap each executor's JVM may grow to: the driver's maximum heap, spark.executor.memory for other executors.";
    EXECUTOR_GC_TIME = "sparkscope_executor_gc_seconds_total", Counter, ["application", "executor"],
        "Garbage collection time of each live executor's JVM since it started (its TotalGCTime).";
    JOBS_RUNNING = "sparkscope_jobs_running", Gauge, ["application"],
        "Spark jobs running now.";
    STAGES_ACTIVE = "sparkscope_stages_active", Gauge, ["application"],
        "Stage attempts running now.";
    JOBS_STARTED = "sparkscope_jobs_started_total", Counter, ["application"],
        "Spark jobs started.";
    JOBS_FINISHED = "sparkscope_jobs_finished_total", Counter, ["application", "result"],
        "Spark jobs ended, by result: succeeded or failed (cancelled jobs fail).";
    STAGES_SUBMITTED = "sparkscope_stages_submitted_total", Counter, ["application"],
        "Stage attempts submitted.";
    STAGES_FINISHED = "sparkscope_stages_finished_total", Counter, ["application", "result"],
        "Stage attempts ended, by result: complete, failed or skipped.";
    TASKS_STARTED = "sparkscope_tasks_started_total", Counter, ["application"],
        "Tasks started; rate() of it is the task throughput.";
    TASKS_FINISHED = "sparkscope_tasks_finished_total", Counter, ["application", "result"],
        "Tasks ended, by result: succeeded, failed or killed (Spark's classification).";
    SESSIONS_ACTIVE = "sparkscope_connect_sessions_active", Gauge, ["application", "user"],
        "Spark Connect sessions open, per user (capped, then 'other').";
    OPERATIONS_RUNNING = "sparkscope_connect_operations_running", Gauge, ["application", "user"],
        "Spark Connect operations (ExecutePlan requests) not yet ended, per user (capped, then 'other').";
    OPERATIONS_CLOSED = "sparkscope_connect_operations_total", Counter, ["application", "state"],
        "Spark Connect operations closed, by the state they ended in: finished, failed or canceled.";
    OPERATION_DURATION = "sparkscope_connect_operation_duration_seconds", Histogram, ["application", "user"],
        "Execution time of closed Spark Connect operations, per user (capped, then 'other').";
    INGEST_LINES = "sparkscope_ingest_lines_total", Counter, ["application", "kind"],
        "Lines parsed from listeners, by event kind.";
    INGEST_ERRORS = "sparkscope_ingest_malformed_lines_total", Counter, ["application"],
        "Lines that were not valid events: counted and skipped.";
    INGEST_UNKNOWN = "sparkscope_ingest_unknown_events_total", Counter, ["application"],
        "Well-formed events of a kind the agent does not know: counted and skipped.";
    LISTENER_DROPPED = "sparkscope_listener_dropped_lines_total", Counter, ["application"],
        "Lines the listener reports it dropped (queue full or agent away) before they reached the agent.";
    SPARK_BUS_DROPPED = "sparkscope_spark_bus_dropped_events_total", Counter, ["application"],
        "Events Spark's own listener bus dropped (all queues), as the listener reports: Spark's UI and this agent may both have missed them.";
    LISTENER_EVICTED = "sparkscope_listener_evictions_total", Counter, ["application"],
        "What the listener evicted at its own bounds (spark.sparkscope.maxLiveEntities): live-state entries and task events of untracked stages.";
    RESYNCS_APP = "sparkscope_listener_resyncs_total", Counter, ["application"],
        "Snapshots of live state taken over from the listener (a listener reconnect or an agent restart).";
    FAILED_CONNECTIONS = "sparkscope_listener_connection_failures_total", Counter, ["application"],
        "Listener connections that broke off inside the agent; their application asks for reconciliation.";
    RECONCILIATIONS = "sparkscope_reconciliations_total", Counter, ["application", "result"],
        "Reconciliations with Spark's REST API, by result: ok or failed (unreachable, UI off).";
    RECONCILE_CORRECTIONS = "sparkscope_reconcile_corrections_total", Counter, ["application", "kind"],
        "Jobs reconciliation changed, by kind: filled (missed entirely), ended (running here, ended in Spark), corrected (counts differed).";
    INGEST_LAG = "sparkscope_ingest_lag_seconds", Histogram, [],
        "Time from Spark's event timestamp to the agent applying it (job, stage, operation and progress lines).";
    LISTENERS = "sparkscope_listeners_connected", Gauge, [],
        "Listener connections open.";
    SUBSCRIBERS = "sparkscope_subscribers", Gauge, ["transport"],
        "Stream subscribers connected: transport=websocket or grpc.";
    RESYNCS = "sparkscope_subscriber_resyncs_total", Counter, ["transport"],
        "Snapshots sent after a stream's first (a subscription changed, or a client resubscribed).";
    SLOW_SUBSCRIBERS = "sparkscope_subscribers_dropped_total", Counter, ["transport"],
        "Subscribers disconnected because they did not take updates in time.";
    CANCELS = "sparkscope_cancel_requests_total", Counter, ["target", "outcome"],
        "Cancel requests, by target (tag, operation, job) and outcome (ok, not_found, finished, forbidden, unavailable, refused, bad_request).";
    LISTENER_REFUSALS = "sparkscope_listener_refusals_total", Counter, ["reason"],
        "Listener connections refused before they were accepted, by reason: token (no proof of it), protocol, hello (no or a bad hello line), timeout (no hello in time), taken (another driver holds the application), tls (a failed TLS handshake).";
    HUB_REQUESTS = "sparkscope_jupyterhub_requests_total", Counter, ["result"],
        "Requests to JupyterHub about a subscriber's token, by result: ok (a user), refused, unavailable.";
    REVOKED = "sparkscope_subscribers_revoked_total", Counter, ["transport"],
        "Open streams ended because their credential was revoked (removed from the token file, or no longer vouched for by JupyterHub).";
    SESSION_CONFLICTS = "sparkscope_connect_session_conflicts_total", Counter, [],
        "Connect sessions an application reported while another application had reported them first: ignored for streams and cancels (a listener token in the wrong hands, or a misconfiguration).";
    RUN_HISTORY_ERRORS = "sparkscope_run_history_errors_total", Counter, ["kind"],
        "Trouble with the run history file (--run-history-file), by kind: malformed_line (a line that is not a fingerprint: skipped), read (the file could not be read: started empty), write (not written: tried again later).";
    LIMIT_HITS = "sparkscope_limit_hits_total", Counter, ["limit", "action"],
        "Things a bound refused or evicted, by the bound (each has a flag of the same name) and action (refused or evicted).";
}

/// A bound of the agent. Each has a `--max-…` flag named after it, a label of
/// `sparkscope_limit_hits_total`, and at most one log line per burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Authenticated listener connections.
    ListenerConnections,
    /// Connections that have not yet sent a hello; the oldest goes when a new one comes.
    PendingListeners,
    Subscribers,
    SessionsPerSubscriber,
    CancelsInFlight,
    /// Per application: running jobs, live stage attempts, open sessions, unclosed operations,
    /// executors. The oldest goes.
    RunningJobs,
    LiveStages,
    OpenSessions,
    UnclosedOperations,
    Executors,
    /// Per application: progress lines waiting for their stage's submission (the whole set is
    /// dropped when full), and ranges of retired job ids (the oldest go).
    PendingProgress,
    RetiredJobs,
    /// Listener connections closed because nothing arrived within the idle timeout.
    SilentListeners,
    /// Busy-slots samples per application (the Tasks view's window); the oldest goes.
    TaskSamples,
    /// Task-list requests to Spark's REST API at once; more are answered `unavailable`.
    TaskListsInFlight,
    /// Unknown tokens one address may have JupyterHub asked about per minute; more are refused.
    HubLookups,
    /// Users JupyterHub vouched for, remembered; the least recently used goes.
    HubUsers,
    /// Tokens JupyterHub refused, remembered; the least recently used goes.
    HubRefusals,
    /// Notebook cells' labels of client tags kept for the sidebar; the oldest goes.
    CellLabels,
    /// Per application: the driver's forwarded log lines; the oldest goes.
    LogLines,
    /// Per application: SQL executions with their plans; the oldest ended one goes.
    SqlExecutions,
    /// Per SQL execution: its plan's nodes; the rest are left out.
    PlanNodes,
    /// Cells' last runs kept for run-to-run diffs; the oldest goes.
    RunFingerprints,
}

impl Limit {
    pub const ALL: [Limit; 23] = [
        Limit::ListenerConnections,
        Limit::PendingListeners,
        Limit::Subscribers,
        Limit::SessionsPerSubscriber,
        Limit::CancelsInFlight,
        Limit::RunningJobs,
        Limit::LiveStages,
        Limit::OpenSessions,
        Limit::UnclosedOperations,
        Limit::Executors,
        Limit::PendingProgress,
        Limit::RetiredJobs,
        Limit::SilentListeners,
        Limit::TaskSamples,
        Limit::TaskListsInFlight,
        Limit::HubLookups,
        Limit::HubUsers,
        Limit::HubRefusals,
        Limit::CellLabels,
        Limit::LogLines,
        Limit::SqlExecutions,
        Limit::PlanNodes,
        Limit::RunFingerprints,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::ListenerConnections => "listener_connections",
            Limit::PendingListeners => "pending_listeners",
            Limit::Subscribers => "subscribers",
            Limit::SessionsPerSubscriber => "sessions_per_subscriber",
            Limit::CancelsInFlight => "cancels_in_flight",
            Limit::RunningJobs => "running_jobs",
            Limit::LiveStages => "live_stages",
            Limit::OpenSessions => "open_sessions",
            Limit::UnclosedOperations => "unclosed_operations",
            Limit::Executors => "executors",
            Limit::PendingProgress => "pending_progress",
            Limit::RetiredJobs => "retired_jobs",
            Limit::SilentListeners => "silent_listeners",
            Limit::TaskSamples => "task_samples",
            Limit::TaskListsInFlight => "task_lists_in_flight",
            Limit::HubLookups => "jupyterhub_lookups",
            Limit::HubUsers => "jupyterhub_cached_users",
            Limit::HubRefusals => "jupyterhub_refusals",
            Limit::CellLabels => "cell_labels",
            Limit::LogLines => "log_lines",
            Limit::SqlExecutions => "sql_executions",
            Limit::PlanNodes => "plan_nodes",
            Limit::RunFingerprints => "run_fingerprints",
        }
    }

    /// What a hit does: new things are refused, or the oldest live one is evicted.
    pub fn action(self) -> &'static str {
        match self {
            Limit::ListenerConnections
            | Limit::Subscribers
            | Limit::SessionsPerSubscriber
            | Limit::CancelsInFlight
            | Limit::TaskListsInFlight
            | Limit::HubLookups => "refused",
            _ => "evicted",
        }
    }
}

/// Seconds between two log lines about the same bound.
const BURST_SECONDS: i64 = 10;

static LAST_LOGGED: [AtomicI64; Limit::ALL.len()] =
    [const { AtomicI64::new(i64::MIN) }; Limit::ALL.len()];
static UNLOGGED: [AtomicU64; Limit::ALL.len()] = [const { AtomicU64::new(0) }; Limit::ALL.len()];

/// A bound was hit `n` times: counted, and logged once per burst with how many hits it covers.
pub fn limit_hit(limit: Limit, n: u64) {
    if n == 0 {
        return;
    }
    counter!(LIMIT_HITS, "limit" => limit.label(), "action" => limit.action()).increment(n);
    let i = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
    let now = crate::clock::now_ms() / 1000;
    let last = LAST_LOGGED[i].load(Ordering::Relaxed);
    let unlogged = UNLOGGED[i].fetch_add(n, Ordering::Relaxed) + n;
    if now.saturating_sub(last) >= BURST_SECONDS
        && LAST_LOGGED[i]
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        UNLOGGED[i].fetch_sub(unlogged, Ordering::Relaxed);
        tracing::warn!(
            limit = limit.label(),
            action = limit.action(),
            hits = unlogged,
            "a bound was hit (--max-{}); logged at most every {BURST_SECONDS} s",
            limit.label().replace('_', "-")
        );
    }
}

/// Why a listener connection was refused before it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Token,
    Protocol,
    Hello,
    Timeout,
    /// Another driver holds the application's connection.
    Taken,
    /// The TLS handshake failed.
    Tls,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Token,
        Refusal::Protocol,
        Refusal::Hello,
        Refusal::Timeout,
        Refusal::Taken,
        Refusal::Tls,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::Token => "token",
            Refusal::Protocol => "protocol",
            Refusal::Hello => "hello",
            Refusal::Timeout => "timeout",
            Refusal::Taken => "taken",
            Refusal::Tls => "tls",
        }
    }
}

pub fn hub_request(result: &'static str) {
    counter!(HUB_REQUESTS, "result" => result).increment(1);
}

pub fn subscriber_revoked(transport: &'static str) {
    counter!(REVOKED, "transport" => transport).increment(1);
}

pub fn session_conflicts(n: u64) {
    counter!(SESSION_CONFLICTS).increment(n);
}

pub fn run_history_error(kind: &'static str, n: u64) {
    if n > 0 {
        counter!(RUN_HISTORY_ERRORS, "kind" => kind).increment(n);
    }
}

pub fn listener_refused(why: Refusal) {
    counter!(LISTENER_REFUSALS, "reason" => why.label()).increment(1);
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                // Series of applications the store has dropped stop being updated; they leave
                // the exposition after this long, histograms too (a series per application
                // and user would otherwise stay for the life of the agent).
                .idle_timeout(
                    MetricKindMask::COUNTER | MetricKindMask::GAUGE | MetricKindMask::HISTOGRAM,
                    Some(std::time::Duration::from_secs(15 * 60)),
                )
                .set_buckets_for_metric(
                    Matcher::Full(OPERATION_DURATION.to_owned()),
                    &[
                        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(INGEST_LAG.to_owned()),
                        &[
                            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                        ],
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours stays local.
            let _ = metrics::set_global_recorder(recorder);
            for d in CATALOG {
                let help = d.help;
                match d.kind {
                    Kind::Counter => metrics::describe_counter!(d.name, help),
                    Kind::Gauge => metrics::describe_gauge!(d.name, help),
                    Kind::Histogram => metrics::describe_histogram!(d.name, help),
                }
            }
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

pub fn record_ingest_lag(seconds: f64) {
    histogram!(INGEST_LAG).record(seconds.max(0.0));
}

pub fn subscriber_connected(transport: &'static str, delta: f64) {
    gauge!(SUBSCRIBERS, "transport" => transport).increment(delta);
}

pub fn resync(transport: &'static str) {
    counter!(RESYNCS, "transport" => transport).increment(1);
}

pub fn slow_subscriber(transport: &'static str) {
    counter!(SLOW_SUBSCRIBERS, "transport" => transport).increment(1);
}

pub fn cancel_request(target: &'static str, outcome: &'static str) {
    counter!(CANCELS, "target" => target, "outcome" => outcome).increment(1);
}

/// The catalog as the Markdown table kept in docs/metrics.md.
pub fn catalog_markdown() -> String {
    let mut out = String::from("| name | type | labels | meaning |\n|---|---|---|---|\n");
    for d in CATALOG {
        let labels = if d.labels.is_empty() {
            "—".to_owned()
        } else {
            d.labels.join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.name,
            d.kind.as_str(),
            labels,
            d.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = HashSet::new();
        for d in CATALOG {
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(d.name.starts_with("sparkscope_"), "{}", d.name);
            match d.kind {
                Kind::Counter => assert!(d.name.ends_with("_total"), "{}", d.name),
                Kind::Histogram => assert!(d.name.ends_with("_seconds"), "{}", d.name),
                Kind::Gauge => assert!(!d.name.ends_with("_total"), "{}", d.name),
            }
            for l in d.labels {
                assert!(
                    [
                        "application",
                        "user",
                        "state",
                        "result",
                        "kind",
                        "transport",
                        "target",
                        "outcome",
                        "version",
                        "limit",
                        "action",
                        "reason",
                        // executor ids of the application's live executors, --max-executors
                        "executor"
                    ]
                    .contains(l),
                    "{}: label {l} is not from a bounded set",
                    d.name
                );
            }
        }
    }

    /// docs/metrics.md holds the catalog; regenerate it with the table this test prints.
    #[test]
    fn the_catalog_in_docs_is_current() {
        let doc = include_str!("../../docs/metrics.md");
        let table = catalog_markdown();
        assert!(
            doc.contains(&table),
            "docs/metrics.md is out of date; its table should be:\n{table}"
        );
    }
}
