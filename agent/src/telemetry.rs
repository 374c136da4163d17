//! The agent's Prometheus metrics: every name, type, label set and meaning in one catalog, the
//! recorder, and the export of the model's state at scrape time.
//!
//! Most metrics are a view of state the model keeps anyway (counts, gauges), copied into the
//! recorder when Prometheus scrapes, so ingest pays nothing for them. Only the two histograms
//! are recorded as things happen. Labels come from bounded sets only: application, a capped
//! user set with an `other` bucket, and fixed state/result/kind/transport/outcome values. Never
//! session ids, statement text or tags.

use crate::ingest::event::KINDS;
use crate::model::{lock, Store};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

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

pub fn cancel_request(target: &'static str, outcome: &str) {
    let outcome = CANCEL_OUTCOMES
        .iter()
        .find(|o| **o == outcome)
        .copied()
        .unwrap_or("other");
    counter!(CANCELS, "target" => target, "outcome" => outcome).increment(1);
}

/// User label values: the first `max` users seen keep their name, later ones are `other`.
pub struct UserLabels {
    max: usize,
    known: Mutex<HashSet<String>>,
}

impl UserLabels {
    pub fn new(max: usize) -> Self {
        UserLabels {
            max,
            known: Mutex::default(),
        }
    }

    pub fn label(&self, user: &str) -> String {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.contains(user) {
            return user.to_owned();
        }
        if known.len() < self.max {
            known.insert(user.to_owned());
            return user.to_owned();
        }
        "other".to_owned()
    }
}

/// Copies the model's state into the recorder, then renders the exposition.
pub fn render(store: &Store, users: &UserLabels, handle: &PrometheusHandle) -> String {
    export(store, users);
    handle.render()
}

const TRANSPORTS: [&str; 2] = ["websocket", "grpc"];
const CANCEL_TARGETS: [&str; 3] = ["tag", "operation", "job"];
const CANCEL_OUTCOMES: [&str; 7] = [
    "ok",
    "not_found",
    "finished",
    "forbidden",
    "unavailable",
    "refused",
    "bad_request",
];

/// Series with fixed label values exist from the first scrape on, at 0: a counter that first
/// appears already at 1 would never show in `increase()`.
fn touch_fixed_series() {
    for t in TRANSPORTS {
        gauge!(SUBSCRIBERS, "transport" => t).increment(0.0);
        counter!(RESYNCS, "transport" => t).increment(0);
        counter!(SLOW_SUBSCRIBERS, "transport" => t).increment(0);
    }
    for target in CANCEL_TARGETS {
        for outcome in CANCEL_OUTCOMES {
            counter!(CANCELS, "target" => target, "outcome" => outcome).increment(0);
        }
    }
}

fn export(store: &Store, users: &UserLabels) {
    touch_fixed_series();
    let (mut live, mut ended, mut listeners) = (0.0, 0.0, 0.0);
    for shared in store.apps() {
        let mut app = lock(&shared);
        let a = app.id.clone();
        if app.is_live() {
            live += 1.0;
        } else {
            ended += 1.0;
        }
        listeners += f64::from(app.connections);
        gauge!(EXECUTORS, "application" => a.clone()).set(app.executors().count() as f64);
        let cores: u32 = app.executors().map(|e| e.cores).sum();
        gauge!(EXECUTOR_CORES, "application" => a.clone()).set(f64::from(cores));
        gauge!(BUSY_TASK_SLOTS, "application" => a.clone()).set(app.active_tasks() as f64);
        gauge!(JOBS_RUNNING, "application" => a.clone()).set(app.running_jobs() as f64);
        gauge!(STAGES_ACTIVE, "application" => a.clone()).set(app.active_stages() as f64);
        // Per user: every user the application still remembers gets a value, 0 included, so a
        // gauge falls back to 0 rather than keeping its last count.
        // Users get their names in the order they first appeared, not in hash-map order, so
        // which users end up as `other` under the cap does not depend on the scrape.
        let mut seen: Vec<(i64, &str)> = app
            .sessions()
            .map(|s| (s.start_time, s.user_id.as_str()))
            .chain(app.operations().map(|o| (o.start_time, o.user_id.as_str())))
            .collect();
        seen.sort_unstable();
        for (_, user) in &seen {
            users.label(user);
        }
        let mut per_user: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        for s in app.sessions() {
            let e = per_user.entry(users.label(&s.user_id)).or_default();
            e.0 += if s.end_time.is_none() { 1.0 } else { 0.0 };
        }
        for o in app.operations() {
            let e = per_user.entry(users.label(&o.user_id)).or_default();
            e.1 += if o.state.is_terminal() { 0.0 } else { 1.0 };
        }
        for (user, (sessions, ops)) in per_user {
            gauge!(SESSIONS_ACTIVE, "application" => a.clone(), "user" => user.clone())
                .set(sessions);
            gauge!(OPERATIONS_RUNNING, "application" => a.clone(), "user" => user).set(ops);
        }
        let c = app.counters.clone();
        counter!(JOBS_STARTED, "application" => a.clone()).absolute(c.jobs_started);
        for (result, v) in [("succeeded", c.jobs_succeeded), ("failed", c.jobs_failed)] {
            counter!(JOBS_FINISHED, "application" => a.clone(), "result" => result).absolute(v);
        }
        counter!(STAGES_SUBMITTED, "application" => a.clone()).absolute(c.stages_submitted);
        for (result, v) in [
            ("complete", c.stages_complete),
            ("failed", c.stages_failed),
            ("skipped", c.stages_skipped),
        ] {
            counter!(STAGES_FINISHED, "application" => a.clone(), "result" => result).absolute(v);
        }
        counter!(TASKS_STARTED, "application" => a.clone()).absolute(c.tasks_started);
        for (result, v) in [
            ("succeeded", c.tasks_succeeded),
            ("failed", c.tasks_failed),
            ("killed", c.tasks_killed),
        ] {
            counter!(TASKS_FINISHED, "application" => a.clone(), "result" => result).absolute(v);
        }
        for (state, v) in [
            ("finished", c.operations_finished),
            ("failed", c.operations_failed),
            ("canceled", c.operations_canceled),
        ] {
            counter!(OPERATIONS_CLOSED, "application" => a.clone(), "state" => state).absolute(v);
        }
        for (i, kind) in KINDS.iter().enumerate() {
            let n = app.stats.by_kind[i];
            counter!(INGEST_LINES, "application" => a.clone(), "kind" => *kind).absolute(n);
        }
        counter!(INGEST_ERRORS, "application" => a.clone()).absolute(app.stats.parse_errors);
        counter!(INGEST_UNKNOWN, "application" => a.clone()).absolute(app.stats.unknown_events);
        counter!(LISTENER_DROPPED, "application" => a.clone()).absolute(app.stats.listener_dropped);
        for op in app.take_closed_operations() {
            let user = users.label(&op.user_id);
            histogram!(OPERATION_DURATION, "application" => a.clone(), "user" => user)
                .record(op.seconds);
        }
    }
    gauge!(APPLICATIONS, "state" => "live").set(live);
    gauge!(APPLICATIONS, "state" => "ended").set(ended);
    gauge!(LISTENERS).set(listeners);
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

    #[test]
    fn users_beyond_the_cap_share_one_label() {
        let u = UserLabels::new(2);
        assert_eq!(u.label("alice"), "alice");
        assert_eq!(u.label("bob"), "bob");
        assert_eq!(u.label("carol"), "other");
        assert_eq!(u.label("alice"), "alice");
    }
}
