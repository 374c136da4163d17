//! The Prometheus exposition: the model's state copied into the recorder at scrape time, then
//! rendered. Most metrics are a view of state the model keeps anyway (counts, gauges), so ingest
//! pays nothing for them; the catalog of names lives in `crate::telemetry`.

use super::stream::TRANSPORTS;
use crate::control::{CancelOutcome, CANCEL_TARGETS};
use crate::model::app::{ExecutorMemory, IngestStats};
use crate::model::connect::{ClosedOperation, OperationCounters};
use crate::model::event::KINDS;
use crate::model::jobs::{JobCounters, UNATTRIBUTED};
use crate::model::{lock, AppState, Store};
use crate::telemetry::{
    Limit, Refusal, APPLICATIONS, BUSY_TASK_SLOTS, CANCELS, EXECUTORS, EXECUTOR_CORES,
    EXECUTOR_GC_TIME, EXECUTOR_MAX_HEAP, EXECUTOR_MEMORY_PEAK, FAILED_CONNECTIONS, HUB_REQUESTS,
    INGEST_ERRORS, INGEST_LINES, INGEST_UNKNOWN, JOBS_FINISHED, JOBS_RUNNING, JOBS_STARTED,
    LIMIT_HITS, LISTENERS, LISTENER_DROPPED, LISTENER_EVICTED, LISTENER_REFUSALS,
    OPERATIONS_CLOSED, OPERATIONS_RUNNING, OPERATION_DURATION, RECONCILE_CORRECTIONS,
    RECONCILIATIONS, RESYNCS, RESYNCS_APP, REVOKED, SESSIONS_ACTIVE, SESSION_CONFLICTS,
    SLOW_SUBSCRIBERS, SPARK_BUS_DROPPED, STAGES_ACTIVE, STAGES_FINISHED, STAGES_SUBMITTED,
    SUBSCRIBERS, TASKS_FINISHED, TASKS_STARTED, TASK_CORE_TIME,
};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// How `/metrics` labels users.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsConfig {
    /// Users that get their own label value in /metrics; later users share `other`.
    #[arg(
        long = "metrics-max-users",
        value_name = "N",
        default_value_t = 50,
        env = "SPARKSCOPE_METRICS_MAX_USERS"
    )]
    pub max_users: usize,
}

crate::flags::default_from_flags!(MetricsConfig);

/// `GET /metrics`: the recorder's handle and the user label cap.
pub struct MetricsExport {
    pub handle: PrometheusHandle,
    pub users: UserLabels,
}

impl MetricsExport {
    /// Copies the model's state into the recorder, then renders the exposition.
    pub fn render(&self, store: &Store) -> String {
        let (core_time, memory) = export(store, &self.users);
        let mut text = self.handle.render();
        render_core_time(&mut text, &core_time);
        render_memory(&mut text, &memory);
        text
    }
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

/// Series with fixed label values exist from the first scrape on, at 0: a counter that first
/// appears already at 1 would never show in `increase()`.
fn touch_fixed_series() {
    for t in TRANSPORTS {
        gauge!(SUBSCRIBERS, "transport" => t).increment(0.0);
        counter!(RESYNCS, "transport" => t).increment(0);
        counter!(SLOW_SUBSCRIBERS, "transport" => t).increment(0);
        counter!(REVOKED, "transport" => t).increment(0);
    }
    for result in ["ok", "refused", "unavailable"] {
        counter!(HUB_REQUESTS, "result" => result).increment(0);
    }
    for limit in Limit::ALL {
        counter!(LIMIT_HITS, "limit" => limit.label(), "action" => limit.action()).increment(0);
    }
    for why in Refusal::ALL {
        counter!(LISTENER_REFUSALS, "reason" => why.label()).increment(0);
    }
    counter!(SESSION_CONFLICTS).increment(0);
    for target in CANCEL_TARGETS {
        for outcome in CancelOutcome::ALL {
            counter!(CANCELS, "target" => target, "outcome" => outcome.label()).increment(0);
        }
    }
}

/// What one application's series need, copied under its lock; the recorder is fed after the
/// lock is given back, so a scrape never holds up ingest.
struct AppFigures {
    id: String,
    live: bool,
    connections: u32,
    executors: usize,
    cores: u32,
    active_tasks: i64,
    running_jobs: usize,
    active_stages: usize,
    /// Users in the order they first appeared: (user, open sessions, running operations).
    users: Vec<(String, f64, f64)>,
    jobs: JobCounters,
    ops: OperationCounters,
    stats: IngestStats,
    closed: Vec<ClosedOperation>,
    memory: Vec<(String, ExecutorMemory)>,
}

impl AppFigures {
    fn of(app: &mut AppState) -> Self {
        let mut users: HashMap<&str, (i64, f64, f64)> = HashMap::new();
        for s in app.sessions() {
            let e = users.entry(&s.user_id).or_insert((s.start_time, 0.0, 0.0));
            e.0 = e.0.min(s.start_time);
            e.1 += if s.end_time.is_none() { 1.0 } else { 0.0 };
        }
        for o in app.operations() {
            let e = users.entry(&o.user_id).or_insert((o.start_time, 0.0, 0.0));
            e.0 = e.0.min(o.start_time);
            e.2 += if o.state.is_terminal() { 0.0 } else { 1.0 };
        }
        let mut users: Vec<(i64, &str, f64, f64)> = users
            .into_iter()
            .map(|(u, (first, s, o))| (first, u, s, o))
            .collect();
        users.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let users = users
            .into_iter()
            .map(|(_, u, s, o)| (u.to_owned(), s, o))
            .collect();
        AppFigures {
            id: app.id().to_owned(),
            live: app.is_live(),
            connections: app.connections(),
            executors: app.executors().count(),
            cores: app.total_cores(),
            active_tasks: app.active_tasks(),
            running_jobs: app.running_jobs(),
            active_stages: app.active_stages(),
            users,
            jobs: app.job_counters().clone(),
            ops: app.operation_counters().clone(),
            stats: app.stats().clone(),
            closed: app.take_closed_operations(),
            memory: app
                .executor_memory()
                .0
                .iter()
                .map(|(id, m)| (id.clone(), m.clone()))
                .collect(),
        }
    }
}

/// Task core time per (application, user label), in ms.
type CoreTime = Vec<(String, String, u64)>;

/// The task core time counters, written here rather than through the recorder: they are
/// seconds with millisecond precision, and the recorder's counters are whole numbers.
fn render_core_time(text: &mut String, rows: &CoreTime) {
    use std::fmt::Write as _;
    let def = crate::telemetry::CATALOG
        .iter()
        .find(|d| d.name == TASK_CORE_TIME)
        .map_or("", |d| d.help);
    let _ = writeln!(text, "# HELP {TASK_CORE_TIME} {def}");
    let _ = writeln!(text, "# TYPE {TASK_CORE_TIME} counter");
    for (app, user, ms) in rows {
        let _ = writeln!(
            text,
            "{TASK_CORE_TIME}{{application=\"{}\",user=\"{}\"}} {}.{:03}",
            escape_label(app),
            escape_label(user),
            ms / 1000,
            ms % 1000
        );
    }
    text.push('\n');
}

/// Memory per (application, executor id).
type MemoryRows = Vec<(String, String, ExecutorMemory)>;

fn help(name: &str) -> &'static str {
    crate::telemetry::CATALOG
        .iter()
        .find(|d| d.name == name)
        .map_or("", |d| d.help)
}

/// The executors' memory series, written here rather than through the recorder: an executor
/// that went leaves no series behind (the recorder keeps every series it was given).
fn render_memory(text: &mut String, rows: &MemoryRows) {
    use std::fmt::Write as _;
    if rows.is_empty() {
        return;
    }
    let labels = |app: &str, exec: &str| {
        format!(
            "application=\"{}\",executor=\"{}\"",
            escape_label(app),
            escape_label(exec)
        )
    };
    let _ = writeln!(
        text,
        "# HELP {EXECUTOR_MEMORY_PEAK} {}",
        help(EXECUTOR_MEMORY_PEAK)
    );
    let _ = writeln!(text, "# TYPE {EXECUTOR_MEMORY_PEAK} gauge");
    for (app, exec, m) in rows {
        let p = &m.peaks;
        for (kind, v) in [
            ("jvm_heap", p.jvm_heap),
            ("jvm_off_heap", p.jvm_off_heap),
            ("on_heap_storage", p.on_heap_storage),
            ("off_heap_storage", p.off_heap_storage),
        ] {
            let l = labels(app, exec);
            let _ = writeln!(text, "{EXECUTOR_MEMORY_PEAK}{{{l},kind=\"{kind}\"}} {v}");
        }
    }
    text.push('\n');
    let _ = writeln!(
        text,
        "# HELP {EXECUTOR_MAX_HEAP} {}",
        help(EXECUTOR_MAX_HEAP)
    );
    let _ = writeln!(text, "# TYPE {EXECUTOR_MAX_HEAP} gauge");
    for (app, exec, m) in rows {
        if let Some(max) = m.max_heap {
            let _ = writeln!(text, "{EXECUTOR_MAX_HEAP}{{{}}} {max}", labels(app, exec));
        }
    }
    text.push('\n');
    let _ = writeln!(text, "# HELP {EXECUTOR_GC_TIME} {}", help(EXECUTOR_GC_TIME));
    let _ = writeln!(text, "# TYPE {EXECUTOR_GC_TIME} counter");
    for (app, exec, m) in rows {
        let ms = m.peaks.gc_time_ms;
        let l = labels(app, exec);
        let _ = writeln!(
            text,
            "{EXECUTOR_GC_TIME}{{{l}}} {}.{:03}",
            ms / 1000,
            ms % 1000
        );
    }
    text.push('\n');
}

/// A label value as the exposition format writes it.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn export(store: &Store, users: &UserLabels) -> (CoreTime, MemoryRows) {
    touch_fixed_series();
    let mut core_rows = CoreTime::new();
    let mut memory_rows = MemoryRows::new();
    let (mut live, mut ended, mut listeners) = (0.0, 0.0, 0.0);
    for shared in store.apps() {
        let f = AppFigures::of(&mut lock(&shared));
        let a = f.id;
        for (exec, m) in f.memory {
            memory_rows.push((a.clone(), exec, m));
        }
        if f.live {
            live += 1.0;
        } else {
            ended += 1.0;
        }
        listeners += f64::from(f.connections);
        gauge!(EXECUTORS, "application" => a.clone()).set(f.executors as f64);
        gauge!(EXECUTOR_CORES, "application" => a.clone()).set(f64::from(f.cores));
        gauge!(BUSY_TASK_SLOTS, "application" => a.clone()).set(f.active_tasks as f64);
        gauge!(JOBS_RUNNING, "application" => a.clone()).set(f.running_jobs as f64);
        gauge!(STAGES_ACTIVE, "application" => a.clone()).set(f.active_stages as f64);
        // Per user: every user the application still remembers gets a value, 0 included, so a
        // gauge falls back to 0 rather than keeping its last count. Users get their names in
        // the order they first appeared, not in hash-map order, so which users end up as
        // `other` under the cap does not depend on the scrape.
        let mut per_user: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        for (user, sessions, ops) in &f.users {
            let e = per_user.entry(users.label(user)).or_default();
            e.0 += sessions;
            e.1 += ops;
        }
        for (user, (sessions, ops)) in per_user {
            gauge!(SESSIONS_ACTIVE, "application" => a.clone(), "user" => user.clone())
                .set(sessions);
            gauge!(OPERATIONS_RUNNING, "application" => a.clone(), "user" => user).set(ops);
        }
        let (c, ops) = (&f.jobs, &f.ops);
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
        let mut core_time: std::collections::BTreeMap<String, u64> = Default::default();
        for (user, ms) in &c.run_time_ms_by_user {
            let label = match user.as_str() {
                UNATTRIBUTED | "other" => user.clone(),
                u => users.label(u),
            };
            let e = core_time.entry(label).or_default();
            *e = e.saturating_add(*ms);
        }
        for (user, ms) in core_time {
            core_rows.push((a.clone(), user, ms));
        }
        for (result, v) in [
            ("succeeded", c.tasks_succeeded),
            ("failed", c.tasks_failed),
            ("killed", c.tasks_killed),
        ] {
            counter!(TASKS_FINISHED, "application" => a.clone(), "result" => result).absolute(v);
        }
        for (state, v) in [
            ("finished", ops.finished),
            ("failed", ops.failed),
            ("canceled", ops.canceled),
        ] {
            counter!(OPERATIONS_CLOSED, "application" => a.clone(), "state" => state).absolute(v);
        }
        let st = &f.stats;
        for (i, kind) in KINDS.iter().enumerate() {
            let n = st.by_kind[i];
            counter!(INGEST_LINES, "application" => a.clone(), "kind" => *kind).absolute(n);
        }
        counter!(INGEST_ERRORS, "application" => a.clone()).absolute(st.parse_errors);
        counter!(INGEST_UNKNOWN, "application" => a.clone()).absolute(st.unknown_events);
        counter!(LISTENER_DROPPED, "application" => a.clone()).absolute(st.listener_dropped);
        counter!(SPARK_BUS_DROPPED, "application" => a.clone()).absolute(st.bus_dropped);
        counter!(RESYNCS_APP, "application" => a.clone()).absolute(st.resyncs);
        counter!(LISTENER_EVICTED, "application" => a.clone()).absolute(st.listener_evicted);
        counter!(FAILED_CONNECTIONS, "application" => a.clone()).absolute(st.failed_connections);
        for (result, v) in [
            ("ok", st.reconciliations),
            ("failed", st.reconcile_failures),
        ] {
            counter!(RECONCILIATIONS, "application" => a.clone(), "result" => result).absolute(v);
        }
        for (kind, v) in [
            ("filled", st.jobs_filled),
            ("ended", st.jobs_ended),
            ("corrected", st.jobs_corrected),
        ] {
            counter!(RECONCILE_CORRECTIONS, "application" => a.clone(), "kind" => kind).absolute(v);
        }
        for op in f.closed {
            let user = users.label(&op.user_id);
            histogram!(OPERATION_DURATION, "application" => a.clone(), "user" => user)
                .record(op.seconds);
        }
    }
    gauge!(APPLICATIONS, "state" => "live").set(live);
    gauge!(APPLICATIONS, "state" => "ended").set(ended);
    gauge!(LISTENERS).set(listeners);
    (core_rows, memory_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_time_is_seconds_with_escaped_labels() {
        let mut text = String::new();
        let rows = vec![("app-1".to_owned(), "a\"b\\c".to_owned(), 1_414)];
        render_core_time(&mut text, &rows);
        assert!(
            text.contains("# TYPE sparkscope_task_core_seconds_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "sparkscope_task_core_seconds_total{application=\"app-1\",user=\"a\\\"b\\\\c\"} 1.414\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn executor_memory_is_one_series_per_executor_and_kind() {
        let mut text = String::new();
        render_memory(&mut text, &Vec::new());
        assert!(text.is_empty(), "no executors, no families");
        let m = ExecutorMemory {
            peaks: crate::model::event::MemoryPeaks {
                jvm_heap: 300,
                jvm_off_heap: 40,
                on_heap_storage: 7,
                off_heap_storage: 0,
                gc_time_ms: 1_250,
            },
            max_heap: Some(4096),
        };
        let rows = vec![("app-1".to_owned(), "driver".to_owned(), m)];
        render_memory(&mut text, &rows);
        for line in [
            "# TYPE sparkscope_executor_memory_peak_bytes gauge\n",
            "sparkscope_executor_memory_peak_bytes{application=\"app-1\",executor=\"driver\",kind=\"jvm_heap\"} 300\n",
            "sparkscope_executor_memory_peak_bytes{application=\"app-1\",executor=\"driver\",kind=\"on_heap_storage\"} 7\n",
            "sparkscope_executor_max_heap_bytes{application=\"app-1\",executor=\"driver\"} 4096\n",
            "# TYPE sparkscope_executor_gc_seconds_total counter\n",
            "sparkscope_executor_gc_seconds_total{application=\"app-1\",executor=\"driver\"} 1.250\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
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
