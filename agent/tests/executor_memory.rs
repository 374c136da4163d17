//! Executors' memory from their heartbeats: each executor's peaks since it started (the
//! listener's line, and Spark's own event-log lines), each stage attempt's peaks while it ran,
//! what a snapshot and an executor's removal do to them, and hostile numbers.

use serde_json::{json, Value};
use sparkscope::model::event::MemoryPeaks;

mod common;
use common::spark_lines::*;

fn metrics(heap: i64, off_heap: i64, storage: i64, gc: i64) -> Value {
    json!({"JVMHeapMemory": heap, "JVMOffHeapMemory": off_heap, "OnHeapStorageMemory": storage,
           "OffHeapStorageMemory": 0, "TotalGCTime": gc, "MinorGCCount": 3})
}

/// A heartbeat as the listener sends it: the executor's peaks since it started as stage -1.
fn heartbeat(exec: &str, whole: Value, stages: &[(i32, Value)], max_heap: Option<i64>) -> Value {
    let mut updates =
        vec![json!({"Stage ID": -1, "Stage Attempt ID": -1, "Executor Metrics": whole})];
    for (id, m) in stages {
        updates.push(json!({"Stage ID": id, "Stage Attempt ID": 0, "Executor Metrics": m}));
    }
    let mut line = json!({"Event": "SparkListenerExecutorMetricsUpdate", "Executor ID": exec,
                          "Metrics Updated": [], "Executor Metrics Updated": updates});
    if let Some(m) = max_heap {
        line["Max Heap Memory"] = json!(m);
    }
    line
}

fn peaks(heap: u64, off_heap: u64, storage: u64, gc: u64) -> MemoryPeaks {
    MemoryPeaks {
        jvm_heap: heap,
        jvm_off_heap: off_heap,
        on_heap_storage: storage,
        off_heap_storage: 0,
        gc_time_ms: gc,
    }
}

fn stage_memory(a: &sparkscope::model::AppState, id: i32) -> MemoryPeaks {
    a.stage((id, 0))
        .expect("the stage")
        .memory
        .expect("its memory")
}

#[test]
fn heartbeats_keep_each_executors_and_each_stages_peaks() {
    let mut a = app();
    feed(
        &mut a,
        &[
            hello(),
            job_start(0, &[stage_info(3, 0, 4, false, false)], ""),
            stage_submitted(stage_info(3, 0, 4, true, false)),
            heartbeat(
                "1",
                metrics(300, 40, 7, 11),
                &[(3, metrics(250, 30, 7, 11))],
                Some(4096),
            ),
            // a lower heartbeat: the stage's peak stays its highest too
            heartbeat(
                "1",
                metrics(300, 50, 7, 19),
                &[(3, metrics(100, 50, 2, 19))],
                Some(4096),
            ),
            heartbeat("driver", metrics(500, 60, 0, 2), &[], Some(1000)),
        ],
    );
    let (memory, changed) = a.executor_memory();
    assert!(changed > 0);
    assert_eq!(memory["1"].peaks, peaks(300, 50, 7, 19));
    assert_eq!(memory["1"].max_heap, Some(4096));
    assert_eq!(memory["driver"].peaks, peaks(500, 60, 0, 2));
    assert_eq!(
        a.stage((3, 0)).expect("stage 3").memory,
        Some(peaks(250, 50, 7, 19))
    );

    // A heartbeat after the stage completed does not count for it (nor in Spark's status
    // store); one of an unknown attempt for none.
    feed(
        &mut a,
        &[
            stage_completed(stage_info(3, 0, 4, true, true), None),
            heartbeat(
                "1",
                metrics(310, 0, 0, 0),
                &[(3, metrics(280, 0, 0, 0)), (9, metrics(1, 1, 1, 1))],
                None,
            ),
        ],
    );
    assert_eq!(stage_memory(&a, 3).jvm_heap, 250);
    assert!(a.stage((9, 0)).is_none());
    assert_eq!(
        a.executor_memory().0["1"].max_heap,
        Some(4096),
        "kept when a line has none"
    );

    // The executor goes: its memory with it.
    feed(
        &mut a,
        &[
            json!({"Event": "SparkListenerExecutorRemoved", "Timestamp": 5, "Executor ID": "1",
                 "Removed Reason": "lost"}),
        ],
    );
    assert!(!a.executor_memory().0.contains_key("1"));
    assert!(a.executor_memory().0.contains_key("driver"));
}

#[test]
fn a_snapshot_keeps_the_peaks_and_event_logs_give_stage_peaks() {
    let mut a = app();
    feed(
        &mut a,
        &[
            hello(),
            heartbeat("driver", metrics(500, 60, 0, 2), &[], Some(1000)),
        ],
    );
    // a listener's reconnect: the snapshot replaces the live state, the peaks follow it
    feed(&mut a, &snapshot(vec![]));
    assert_eq!(a.executor_memory().0["driver"].peaks.jvm_heap, 500);

    // Spark's own event log: peaks per stage attempt and executor, written at the stage's end.
    feed(
        &mut a,
        &[
            job_start(1, &[stage_info(4, 0, 1, false, false)], ""),
            stage_submitted(stage_info(4, 0, 1, true, false)),
            json!({"Event": "SparkListenerStageExecutorMetrics", "Executor ID": "driver",
                   "Stage ID": 4, "Stage Attempt ID": 0, "Executor Metrics": metrics(700, 1, 2, 3)}),
        ],
    );
    assert_eq!(stage_memory(&a, 4).jvm_heap, 700);
    assert_eq!(a.executor_memory().0["driver"].peaks.jvm_heap, 700);
    assert_eq!(a.executor_memory().0["driver"].max_heap, Some(1000));
}

#[test]
fn hostile_memory_lines_are_counted_and_skipped() {
    let mut a = app();
    let before = a.stats().parse_errors;
    feed(
        &mut a,
        &[
            hello(),
            heartbeat("1", metrics(1 << 60, 0, 0, 0), &[], None),
            heartbeat("2", metrics(1, 0, 0, 0), &[(-5, metrics(1, 1, 1, 1))], None),
            heartbeat("3", metrics(1, 0, 0, 0), &[], Some(-1)),
            json!({"Event": "SparkListenerExecutorMetricsUpdate", "Executor ID": 7}),
        ],
    );
    assert!(
        a.executor_memory().0.is_empty(),
        "{:?}",
        a.executor_memory().0
    );
    assert_eq!(a.stats().parse_errors - before, 4);
}
