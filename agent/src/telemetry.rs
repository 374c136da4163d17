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
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                // Series of applications the store has dropped stop being updated; they leave
                // the exposition after this long. Histograms stay (bounded by the user cap).
                .idle_timeout(
                    MetricKindMask::COUNTER | MetricKindMask::GAUGE,
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
                        "version"
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
