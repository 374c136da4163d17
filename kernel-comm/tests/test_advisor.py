"""The advisor's rules (DataFlint's alerts) beyond too many small tasks: each fires above its
threshold with its evidence and a fix to insert, stays silent below it, and its threshold is
the user's to set (SPARKSCOPE_ADVISOR_<NAME>, `%sparkscope advisor`); and where the widget
draws each finding and its fix."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sparkscope import cellview
from sparkscope.cellview import CellView, Finding, plan_row
from sparkscope.state import StreamState, normalize_stage
from sparkscope.widget import traits
from test_plan import draw

APP = "local-1795258400000"
MiB = 1 << 20
GiB = 1 << 30
SRC = Path(cellview.__file__).parent.parent


@pytest.fixture(autouse=True)
def thresholds(monkeypatch):
    """Each test's threshold changes are undone after it."""
    for name in cellview.ADVISOR_THRESHOLDS:
        monkeypatch.setattr(cellview, name, getattr(cellview, name))
    for var in [v for v in os.environ if v.startswith(cellview.ADVISOR_ENV)]:
        monkeypatch.delenv(var)


def stage(stage_id: int = 3, **fields) -> dict:
    return cellview.stage_row(normalize_stage({"appId": APP, "stageId": stage_id, **fields}))


def job(job_id: int = 7, stage_ids=(3,), start: int = 1000, end: int | None = 3000) -> dict:
    return {
        "appId": APP,
        "jobId": job_id,
        "name": "",
        "label": "q",
        "status": "SUCCEEDED" if end else "RUNNING",
        "stageIds": list(stage_ids),
        "tasks": {"total": 4, "active": 0, "completed": 4, "skipped": 0, "failed": 0, "killed": 0},
        "stages": {"active": 0, "completed": 1, "skipped": 0, "failed": 0},
        "submissionTimeMs": start,
        "completionTimeMs": end,
        "error": None,
        "sqlExecutionId": 3,
    }


def plan(*nodes: tuple, ended: bool = True, eid: int = 3) -> dict:
    """A plan_row() from `(parent, name, detail, {metric: (type, value)})` nodes in pre-order, as
    the stream state keeps the execution."""
    raw, vals, acc = [], {}, 0
    for parent, name, detail, metrics in nodes:
        ms = []
        for mname, (kind, value) in metrics.items():
            acc += 1
            ms.append({"name": mname, "type": kind, "accumulatorId": str(acc)})
            if value is not None:
                vals[acc] = value
        raw.append({"parent": parent, "name": name, "detail": detail, "metrics": ms})
    s = StreamState()
    ex = {
        "appId": APP,
        "executionId": str(eid),
        "description": "q",
        "startMs": "1000",
        "jobIds": [7],
        "nodes": raw,
        "metricValues": [{"accumulatorId": str(a), "value": str(v)} for a, v in vals.items()],
    }
    if ended:
        ex["endMs"] = "2000"
    s.apply({"sqlExecutions": [ex]})
    return plan_row(s.sql_executions[(APP, eid)])


def found(kind: str, stages=(), plans=(), jobs=None, **view) -> list[Finding]:
    jobs = [job()] if jobs is None else jobs
    v = CellView("t", jobs, list(stages), 0, plans=list(plans), **view)
    return [f for f in v.findings if f.kind == kind]


def env(**values: str) -> dict:
    """Set thresholds as the kernel's environment would."""
    return cellview.read_advisor_env({f"SPARKSCOPE_ADVISOR_{k}": v for k, v in values.items()})


def comments_then(fix: str, *code: str) -> None:
    """The fix is comments but for the `code` lines, which end it."""
    lines = fix.splitlines()
    assert lines[len(lines) - len(code) :] == list(code), fix
    assert all(line.startswith("#") for line in lines[: len(lines) - len(code)]), fix


# ---- small files


def scan(files: int | None, size: int | None, name: str = "Scan parquet ") -> dict:
    metrics = {
        "number of output rows": ("sum", 10),
        "number of files read": ("sum", files),
        "size of files read": ("size", size),
    }
    return plan((-1, "WholeStageCodegen (1)", "", {}), (0, name, f"{name}[k#1L]", metrics))


def test_small_files_read() -> None:
    (f,) = found("small-files", plans=[scan(2000, 2000 * 12 * 1024)])
    assert (f.scope, f.execution_id, f.node_index, f.node_name) == ("plan", 3, 1, "Scan parquet")
    assert (f.stage_id, f.attempt_id, f.job_ids) == (-1, -1, (7,))
    assert f.evidence == {"filesRead": 2000, "bytesRead": 24_576_000, "avgBytes": 12288}
    assert f.label == "2,000 small files read"
    assert "2,000 files of 12.0 KiB on average" in f.title and "23.4 MiB in all" in f.title
    assert f.fix == (
        "# sparkscope advisor: Scan parquet (query 3) read 23.4 MiB in all.\n"
        "# 2,000 files of 12.0 KiB on average: compact them, e.g.\n"
        '# spark.read.parquet(path).repartition(1).write.mode("overwrite").parquet(new_path)'
    )
    comments_then(f.fix)
    assert f.to_json()["fix"] == f.fix and f.to_json()["nodeIndex"] == 1
    # partitions of about 128 MiB; the reader of the scan's format
    (big,) = found("small-files", plans=[scan(1000, 1000 * 2 * MiB, "Scan csv ")])
    assert big.fix.endswith(
        'spark.read.csv(path).repartition(16).write.mode("overwrite").csv(new_path)'
    )
    (other,) = found("small-files", plans=[scan(1000, 1000, "Scan delta ")])
    assert 'spark.read.format("delta").load(path)' in other.fix
    # over 100 files, under 3 MiB on average; a scan not read yet says nothing
    assert found("small-files", plans=[scan(100, 100 * 1024)]) == []
    assert found("small-files", plans=[scan(2000, 2000 * 3 * MiB)]) == []
    assert found("small-files", plans=[scan(None, None)]) == []


def test_small_files_read_thresholds_are_the_users() -> None:
    assert env(SMALL_FILES="5000") == {"SMALL_FILES": 5000}
    assert found("small-files", plans=[scan(2000, 2000 * 12 * 1024)]) == []
    assert env(SMALL_FILES="100", SMALL_FILE_BYTES="8192") == {
        "SMALL_FILES": 100,
        "SMALL_FILE_BYTES": 8192,
    }
    assert found("small-files", plans=[scan(2000, 2000 * 12 * 1024)]) == []


def writer(files: int, size: int, dynamic: int = 0) -> dict:
    metrics = {
        "number of written files": ("sum", files),
        "written output": ("size", size),
        "number of output rows": ("sum", 5),
        "number of dynamic part": ("sum", dynamic),
    }
    name = "Execute InsertIntoHadoopFsRelationCommand"
    return plan((-1, name, f"{name} file:/tmp/out, false, Parquet", metrics))


def test_small_files_written() -> None:
    (f,) = found("small-files", plans=[writer(500, 500 * MiB)])
    assert f.evidence == {"filesWritten": 500, "bytesWritten": 500 * MiB, "avgBytes": MiB}
    assert f.label == "500 small files written" and f.node_index == 0
    assert f.job_label == "query 3: 500 small files written"
    comments_then(f.fix, "df = df.coalesce(4)  # before the write: 500 files of 1.0 MiB each")
    # a partitioned write: a word on its partition columns
    (p,) = found("small-files", plans=[writer(500, 5 * MiB, dynamic=50)])
    assert "partitioned write (50 partitions)" in p.fix
    assert p.fix.endswith("df = df.coalesce(1)  # before the write: 500 files of 10.2 KiB each")
    assert found("small-files", plans=[writer(500, 500 * 4 * MiB)]) == []
    assert found("small-files", plans=[writer(100, 100)]) == []
    env(SMALL_FILE_BYTES=str(512 * 1024))
    assert found("small-files", plans=[writer(500, 500 * MiB)]) == []


# ---- joins


def smj(
    left: int | None,
    right: int | None,
    detail: str = "SortMergeJoin [k#1L], [k#5L], Inner",
    ended: bool = True,
) -> dict:
    exchange = {"data size": ("size", None), "shuffle bytes written": ("size", None)}
    return plan(
        (-1, "AdaptiveSparkPlan", "AdaptiveSparkPlan isFinalPlan=true", {}),
        (0, "SortMergeJoin", detail, {"number of output rows": ("sum", 10)}),
        (1, "Sort", "Sort [k#1L ASC NULLS FIRST]", {}),
        (
            2,
            "Exchange",
            "Exchange hashpartitioning(k#1L, 200)",
            {**exchange, "data size": ("size", left)},
        ),
        (3, "Scan parquet ", "Scan parquet [k#1L]", {}),
        (1, "Sort", "Sort [k#5L ASC NULLS FIRST]", {}),
        (5, "AQEShuffleRead", "AQEShuffleRead coalesced", {}),
        (6, "ShuffleQueryStage", "ShuffleQueryStage 1", {}),
        (
            7,
            "Exchange",
            "Exchange hashpartitioning(k#5L, 200)",
            {**exchange, "shuffle bytes written": ("size", right)},
        ),
        (8, "Scan parquet ", "Scan parquet [k#5L]", {}),
        ended=ended,
    )


def test_a_sort_merge_join_with_a_small_side_should_broadcast() -> None:
    (f,) = found("broadcast", plans=[smj(4 * GiB, 12 * MiB)])
    assert (f.node_index, f.node_name, f.execution_id) == (1, "SortMergeJoin", 3)
    assert f.evidence == {"leftBytes": 4 * GiB, "rightBytes": 12 * MiB, "smallBytes": 12 * MiB}
    assert "4.0 GiB (left) and 12.0 MiB (right)" in f.title
    assert f.fix == (
        "from pyspark.sql.functions import broadcast\n"
        "# sparkscope advisor: SortMergeJoin (query 3) shuffled 4.0 GiB (left) and 12.0 MiB "
        "(right).\n"
        "# the 12.0 MiB side of the SortMergeJoin is small enough to broadcast:\n"
        '# result = large_df.join(broadcast(small_df), ["k"])'
    )
    # the small side on the left, other key names, a join type of its own
    detail = "SortMergeJoin [a#1, b#2L], [x#5, y#6], RightOuter"
    (g,) = found("broadcast", plans=[smj(1 * MiB, 4 * GiB, detail)])
    assert g.fix.endswith(
        '# result = broadcast(small_df).join(large_df, (small_df["a"] == large_df["x"]) & '
        '(small_df["b"] == large_df["y"]), "right")'
    )
    # keys that are no plain columns are left to the reader
    detail = "SortMergeJoin [cast(k#1 as bigint)], [k#5L], Inner"
    (h,) = found("broadcast", plans=[smj(4 * GiB, 12 * MiB, detail)])
    assert h.fix.endswith("# result = large_df.join(broadcast(small_df), <keys>)")


def test_no_broadcast_finding_when_both_sides_are_large_or_it_could_not_broadcast() -> None:
    assert found("broadcast", plans=[smj(4 * GiB, 100 * MiB)]) == []
    # sizes not known yet, or still growing
    assert found("broadcast", plans=[smj(4 * GiB, None)]) == []
    assert found("broadcast", plans=[smj(4 * GiB, 12 * MiB, ended=False)]) == []
    # a full outer join broadcasts no side; a left outer join only its right side
    full = "SortMergeJoin [k#1L], [k#5L], FullOuter"
    assert found("broadcast", plans=[smj(4 * GiB, 12 * MiB, full)]) == []
    left = "SortMergeJoin [k#1L], [k#5L], LeftOuter"
    assert found("broadcast", plans=[smj(12 * MiB, 4 * GiB, left)]) == []
    assert len(found("broadcast", plans=[smj(4 * GiB, 12 * MiB, left)])) == 1
    env(BROADCAST_CANDIDATE_BYTES=str(10 * MiB))
    assert found("broadcast", plans=[smj(4 * GiB, 12 * MiB)]) == []


def broadcast_exchange(size: int) -> dict:
    return plan(
        (-1, "BroadcastHashJoin", "BroadcastHashJoin [k#1L], [k#5L], Inner, BuildRight", {}),
        (0, "Scan parquet ", "", {}),
        (
            0,
            "BroadcastExchange",
            "BroadcastExchange HashedRelationBroadcastMode",
            {"data size": ("size", size), "number of output rows": ("sum", 9)},
        ),
    )


def test_a_broadcast_too_large() -> None:
    (f,) = found("broadcast-too-large", plans=[broadcast_exchange(3 * GiB // 2)])
    assert (f.node_index, f.node_name, f.evidence) == (
        2,
        "BroadcastExchange",
        {"bytes": 3 * GiB // 2},
    )
    assert f.label == "broadcast 1.5 GiB"
    comments_then(f.fix)
    assert '# spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")' in f.fix
    assert "broadcast() hint" in f.fix
    assert found("broadcast-too-large", plans=[broadcast_exchange(GiB)]) == []
    env(BROADCAST_TOO_LARGE_BYTES=str(2 * GiB))
    assert found("broadcast-too-large", plans=[broadcast_exchange(3 * GiB // 2)]) == []


def cross(name: str, rows: int) -> dict:
    return plan((-1, name, name, {"number of output rows": ("sum", rows)}), (0, "Range", "", {}))


def test_a_cross_join_of_too_many_rows() -> None:
    (f,) = found("cross-join", plans=[cross("BroadcastNestedLoopJoin", 12_000_000_000)])
    assert f.evidence == {"rows": 12_000_000_000} and f.label == "cross join: 12,000,000,000 rows"
    comments_then(f.fix)
    assert "Add a join condition" in f.fix
    assert len(found("cross-join", plans=[cross("CartesianProduct", 10_000_000_001)])) == 1
    assert found("cross-join", plans=[cross("CartesianProduct", 10_000_000_000)]) == []
    assert found("cross-join", plans=[cross("SortMergeJoin", 12_000_000_000)]) == []
    env(CROSS_JOIN_ROWS="1e9")
    assert len(found("cross-join", plans=[cross("CartesianProduct", 1_000_000_001)])) == 1


# ---- stages


def durations(median: int, longest: int) -> dict:
    return {"taskDurations": {"minMs": 1, "medianMs": median, "maxMs": longest}}


def test_skew_over_five_seconds_and_ten_medians_gets_a_fix() -> None:
    (f,) = found("skew", stages=[stage(**durations(500, 6000))])
    assert f.evidence == {"minMs": 1, "medianMs": 500, "maxMs": 6000}
    assert f.label == "skew" and f.scope == "stage"
    assert f.fix.splitlines()[:4] == [
        "# sparkscope advisor: stage 3's longest task took 6.0 s, 12× its median of 500 ms.",
        "# Let adaptive execution split the skewed partitions of sort-merge joins:",
        'spark.conf.set("spark.sql.adaptive.enabled", "true")',
        'spark.conf.set("spark.sql.adaptive.skewJoin.enabled", "true")',
    ]
    assert "salt" in f.fix
    # the skew hint stays, without a fix, below DataFlint's bar
    (hint,) = found("skew", stages=[stage(**durations(100, 4000))])
    assert hint.fix == ""
    (hint,) = found("skew", stages=[stage(**durations(1000, 6000))])
    assert hint.fix == ""
    env(SKEW_TASK_RATIO="5")
    (advised,) = found("skew", stages=[stage(**durations(1000, 6000))])
    assert "6× its median of 1.0 s" in advised.fix
    env(SKEW_TASK_MS="10000")
    (hint,) = found("skew", stages=[stage(**durations(500, 6000))])
    assert hint.fix == ""


def test_a_spill_to_disk_gets_more_shuffle_partitions() -> None:
    (f,) = found(
        "spill", stages=[stage(numTasks=200, memorySpilledBytes=8 * GiB, diskSpilledBytes=3 * GiB)]
    )
    assert f.evidence == {"memoryBytes": 8 * GiB, "diskBytes": 3 * GiB, "bytes": 11 * GiB}
    assert f.label == "spill 11.0 GiB"
    comments_then(f.fix, 'spark.conf.set("spark.sql.shuffle.partitions", "400")')
    assert "spilled 3.0 GiB to disk over 200 tasks" in f.fix
    # in memory only: the finding, no fix
    (m,) = found("spill", stages=[stage(numTasks=200, memorySpilledBytes=GiB)])
    assert m.fix == ""
    env(SPILL_DISK_BYTES=str(4 * GiB))
    (f,) = found("spill", stages=[stage(numTasks=200, diskSpilledBytes=3 * GiB)])
    assert f.fix == ""


def test_partitions_too_large_on_average() -> None:
    big = stage(numTasks=4, inputBytes=20 * GiB, shuffleReadBytes=4 * GiB)
    (f,) = found("partition-too-large", stages=[big])
    assert f.evidence == {"readBytes": 24 * GiB, "numTasks": 4, "bytesPerTask": 6 * GiB}
    assert f.label == "6.0 GiB per task" and "on average" in f.title
    assert f.job_label == "stage 3: 6.0 GiB per task"
    comments_then(f.fix, "df = df.repartition(192)")
    # stage rows carry the bytes the rule reads
    assert (big["inputBytes"], big["shuffleReadBytes"]) == (20 * GiB, 4 * GiB)
    assert found("partition-too-large", stages=[stage(numTasks=5, inputBytes=24 * GiB)]) == []
    assert found("partition-too-large", stages=[stage(numTasks=0, inputBytes=24 * GiB)]) == []
    env(LARGE_PARTITION_BYTES=str(8 * GiB))
    assert found("partition-too-large", stages=[big]) == []


# ---- the whole cell run


def test_idle_cores_over_a_long_cell_run() -> None:
    jobs = [job(start=1000, end=61_000)]
    # 1 then 2 busy slots of 8 cores, each for half the minute: 18.75 %
    samples = [[500, 0, 8], [1000, 1, 8], [31_000, 2, 8], [61_500, 0, 8]]
    (f,) = found("idle-cores", jobs=jobs, samples=samples)
    assert (f.scope, f.job_ids, f.stage_id, f.execution_id) == ("cell", (), -1, None)
    assert f.evidence == {"busyShare": 0.1875, "cores": 8, "runMs": 60_000}
    assert f.label == "19% of cores busy" and f.job_label == ""
    assert "1 min 00 s of jobs, 19% of the 8 cores" in f.fix
    comments_then(f.fix)
    assert "# df = df.repartition(16)" in f.fix
    # busy enough; too short; still running
    assert found("idle-cores", jobs=jobs, samples=[[1000, 4, 8]]) == []
    assert found("idle-cores", jobs=[job(start=1000, end=20_000)], samples=samples) == []
    assert found("idle-cores", jobs=[job(start=1000, end=None)], samples=samples) == []
    assert found("idle-cores", jobs=jobs, samples=[]) == []
    env(IDLE_CORES_SHARE="0.15")
    assert found("idle-cores", jobs=jobs, samples=samples) == []
    env(IDLE_CORES_SHARE="0.5", IDLE_CORES_MIN_MS="90000")
    assert found("idle-cores", jobs=jobs, samples=samples) == []


# ---- full scans of partitioned tables

SCAN_DETAIL = (
    "FileScan parquet [v#1L,k#2,d#3] Batched: true, DataFilters: [], Format: Parquet, "
    "Location: InMemoryFileIndex(1 paths)[file:/tmp/pt], PartitionFilters: {filters}, "
    "PushedFilters: [], ReadSchema: struct<v:bigint>"
)


def partitioned_scan(partitions: int | None, filters: str = "[]", detail: str = "") -> dict:
    metrics = {
        "number of output rows": ("sum", 1000),
        "number of files read": ("sum", 8),
        "number of partitions read": ("sum", partitions),
    }
    detail = detail or SCAN_DETAIL.format(filters=filters)
    return plan((-1, "WholeStageCodegen (1)", "", {}), (0, "Scan parquet ", detail, metrics))


def test_a_scan_of_every_partition_without_a_partition_filter() -> None:
    (f,) = found("full-scan", plans=[partitioned_scan(4)])
    assert (f.scope, f.node_name, f.label) == ("plan", "Scan parquet", "all 4 partitions read")
    assert f.evidence == {"partitionsRead": 4, "partitionColumns": "k, d", "filesRead": 8}
    assert "no filter on k, d" in f.title
    comments_then(f.fix)
    assert f.fix.endswith('# df = df.where(col("k") == <value>)'), f.fix
    # pruned; one partition; not partitioned (no such metric); not read yet
    assert found("full-scan", plans=[partitioned_scan(1, "[isnotnull(k#2), (k#2 = 1)]")]) == []
    assert found("full-scan", plans=[partitioned_scan(1)]) == []
    assert found("full-scan", plans=[scan(8, 8 * MiB)]) == []
    assert found("full-scan", plans=[partitioned_scan(None)]) == []
    # a description cut before its partition filters says nothing
    cut = SCAN_DETAIL.format(filters="[]")[:120]
    assert found("full-scan", plans=[partitioned_scan(4, detail=cut)]) == []
    # partition columns not told (cut before the read schema): the fix names none
    told = SCAN_DETAIL.format(filters="[]").replace(", ReadSchema: struct<v:bigint>", "")
    (g,) = found("full-scan", plans=[partitioned_scan(4, detail=told)])
    assert "its partition columns" in g.title and '"<partition column>"' in g.fix
    env(FULL_SCAN_PARTITIONS="4")
    assert found("full-scan", plans=[partitioned_scan(4)]) == []


def test_partition_columns_are_the_output_the_files_do_not_hold() -> None:
    pc = cellview.partition_columns
    assert pc(SCAN_DETAIL.format(filters="[]")) == ["k", "d"]
    assert pc(
        "FileScan parquet db.t[a#1,m#2,p#3] Batched: true, ReadSchema: "
        "struct<a:int,m:map<string,struct<x:int,y:int>>>"
    ) == ["p"]
    assert pc("FileScan csv [a#1] ReadSchema: struct<a:int>") == []
    assert pc("Scan ExistingRDD[a#1]") == []


# ---- executor memory


def peaks(heap: int, off_heap: int = 0, storage: int = 0) -> dict:
    return {
        "jvmHeapBytes": str(heap),
        "jvmOffHeapBytes": str(off_heap),
        "onHeapStorageBytes": str(storage),
        "offHeapStorageBytes": "0",
        "gcTimeMs": "0",
    }


def app_memory(**max_heap: int) -> dict:
    """An application as the stream state keeps it, with its executors' heaps."""
    s = StreamState()
    s.apply(
        {
            "generation": "1",
            "snapshot": True,
            "applications": [
                {
                    "id": APP,
                    "executorMemory": [
                        {"executorId": k, "peaks": peaks(1), "maxHeapBytes": str(v)}
                        for k, v in max_heap.items()
                    ],
                }
            ],
        }
    )
    return s.applications[APP]


def test_memory_line_is_the_stages_peaks_against_the_executors_heap() -> None:
    stages = [
        stage(
            3, peakMemory=peaks(600 * MiB, 80 * MiB, 5 * MiB), executorRunTimeMs=1000, gcTimeMs=30
        ),
        stage(4, peakMemory=peaks(700 * MiB, 60 * MiB), executorRunTimeMs=3000, gcTimeMs=10),
        stage(5),  # no heartbeat named it
    ]
    # local mode: the driver is the executor
    m = cellview.memory_of(stages, app_memory(driver=1 * GiB))
    assert m == {
        "driverPeakHeapBytes": 0,
        "driverMaxHeapBytes": 0,
        "peakHeapBytes": 700 * MiB,
        "maxHeapBytes": GiB,
        "heapShare": 0.6836,
        "peakOffHeapBytes": 80 * MiB,
        "peakStorageBytes": 5 * MiB,
        "gcTimeMs": 40,
        "runTimeMs": 4000,
        "gcShare": 0.01,
        "text": "Memory: heap peaked at 700.0 MiB of 1.0 GiB (68%) · off-heap 80.0 MiB · "
        "cached 5.0 MiB · GC 1% of task time",
    }
    # with executors, theirs is the heap that counts, not the driver's, which shows apart
    m = cellview.memory_of(stages, app_memory(driver=4 * GiB, **{"1": 2 * GiB, "2": 2 * GiB}))
    assert (m["maxHeapBytes"], m["heapShare"]) == (2 * GiB, 0.3418)
    assert (m["driverPeakHeapBytes"], m["driverMaxHeapBytes"]) == (1, 4 * GiB)
    assert m["text"].endswith(" · driver heap peaked at 1 B of 4.0 GiB"), m["text"]
    # heap size not known (replayed logs): no share
    m = cellview.memory_of(stages, None)
    assert m["heapShare"] is None and m["text"].startswith("Memory: heap peaked at 700.0 MiB ·")
    assert cellview.memory_of([stage(5)], app_memory(driver=GiB)) is None


def test_executor_memory_nearly_full_or_to_spare() -> None:
    app = app_memory(driver=GiB)
    full = [stage(3, peakMemory=peaks(1000 * MiB), executorRunTimeMs=100)]
    v = CellView("t", [job()], full, 0, memory=cellview.memory_of(full, app))
    (f,) = [f for f in v.findings if f.kind == "memory-high"]
    assert (f.scope, f.severity, f.label) == ("cell", "warning", "heap 98% full")
    assert f.evidence["peakHeapBytes"] == 1000 * MiB and f.evidence["maxHeapBytes"] == GiB
    comments_then(f.fix)
    assert "# spark.executor.memory=1280m" in f.fix
    # a running cell gets none yet
    v = CellView("t", [job(end=None)], full, 0, memory=cellview.memory_of(full, app))
    assert [f for f in v.findings if f.kind.startswith("memory")] == []

    low = [stage(3, peakMemory=peaks(200 * MiB), executorRunTimeMs=100)]
    long_run = [job(start=1000, end=91_000)]
    v = CellView("t", long_run, low, 0, memory=cellview.memory_of(low, app))
    (f,) = [f for f in v.findings if f.kind.startswith("memory")]
    assert (f.kind, f.severity, f.label) == ("memory-low", "info", "heap 20% used")
    assert "# spark.executor.memory=256m" in f.fix
    # a short run, or a heap between the bounds: nothing
    v = CellView("t", [job()], low, 0, memory=cellview.memory_of(low, app))
    assert [f for f in v.findings if f.kind.startswith("memory")] == []
    mid = [stage(3, peakMemory=peaks(800 * MiB))]
    v = CellView("t", long_run, mid, 0, memory=cellview.memory_of(mid, app))
    assert [f for f in v.findings if f.kind.startswith("memory")] == []
    # the thresholds are the user's
    env(MEMORY_HIGH_SHARE="0.7")
    v = CellView("t", long_run, mid, 0, memory=cellview.memory_of(mid, app))
    assert [f.kind for f in v.findings if f.kind.startswith("memory")] == ["memory-high"]
    assert traits(v)["memory"]["heapShare"] == 0.7812


def test_spark_memory_rounds_up_to_quarter_gigabytes() -> None:
    assert cellview.spark_memory(1) == "256m"
    assert cellview.spark_memory(1024 * MiB) == "1g"
    assert cellview.spark_memory(1025 * MiB) == "1280m"
    assert cellview.spark_memory(2 * GiB) == "2g"


# ---- the thresholds


def test_bad_threshold_values_are_ignored_with_a_warning(caplog) -> None:
    before = cellview.advisor_thresholds()
    with caplog.at_level(logging.WARNING, logger="sparkscope"):
        got = env(
            SMALL_FILES="lots",
            IDLE_CORES_SHARE="2",
            SKEW_TASK_MS="-1",
            NO_SUCH="1",
            TARGET_PARTITION_BYTES="0",
            SMALL_TASKS="1.5",
        )
    assert got == {} and cellview.advisor_thresholds() == before
    warned = " ".join(r.getMessage() for r in caplog.records)
    for var in (
        "SMALL_FILES",
        "IDLE_CORES_SHARE",
        "SKEW_TASK_MS",
        "NO_SUCH",
        "TARGET_PARTITION_BYTES",
        "SMALL_TASKS",
    ):
        assert f"SPARKSCOPE_ADVISOR_{var} ignored" in warned, warned
    # every threshold has its variable; numbers may have underscores
    assert env(SMALL_TASKS="1_000", SKEW_TASK_RATIO="2.5") == {
        "SMALL_TASKS": 1000,
        "SKEW_TASK_RATIO": 2.5,
    }
    assert set(cellview.ADVISOR_THRESHOLDS) >= {"SMALL_TASKS", "SMALL_TASK_MS", "SMALL_FILES"}


def test_the_environment_is_read_at_import(monkeypatch) -> None:
    monkeypatch.setenv("SPARKSCOPE_ADVISOR_SMALL_FILE_BYTES", "1048576")
    monkeypatch.setenv("SPARKSCOPE_ADVISOR_SMALL_TASKS", "not a number")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sparkscope import cellview as c; print(c.SMALL_FILE_BYTES, c.SMALL_TASKS)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert out.stdout.split() == ["1048576", "5000"]
    assert "SPARKSCOPE_ADVISOR_SMALL_TASKS ignored" in out.stderr


def test_the_magic_sets_thresholds_all_or_none(capsys) -> None:
    from IPython.core.error import UsageError
    from sparkscope.magic import advisor

    advisor(["small_files=200", "SKEW-TASK-MS=3000"])
    out = capsys.readouterr().out
    assert (cellview.SMALL_FILES, cellview.SKEW_TASK_MS) == (200, 3000)
    assert "small_files=200" in out and "skew_task_ms=3000" in out
    for bad in (["small_files=lots"], ["no_such=1"], ["small_files"], ["small_files=5", "x=1"]):
        with pytest.raises(UsageError):
            advisor(bad)
    assert cellview.SMALL_FILES == 200
    advisor([])
    assert "idle_cores_share=0.5" in capsys.readouterr().out


def test_the_advisor_through_the_sparkscope_magic(shell, capsys, monkeypatch) -> None:
    import sparkscope

    monkeypatch.setenv("SPARKSCOPE_URL", "ws://127.0.0.1:9/api/v1/stream")
    shell.run_line_magic("load_ext", "sparkscope")
    try:
        shell.run_line_magic("sparkscope", "advisor cross_join_rows=1000")
        assert cellview.CROSS_JOIN_ROWS == 1000
        assert "cross_join_rows=1000" in capsys.readouterr().out
    finally:
        shell.run_line_magic("unload_ext", "sparkscope")
    assert sparkscope._monitor is None


# ---- the widget: where each finding and its fix are in the DOM


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the widget")
def test_every_finding_is_in_the_dom_with_its_fix() -> None:
    stages = [
        stage(3, numTasks=4, inputBytes=24 * GiB, **durations(500, 6000), diskSpilledBytes=GiB),
        stage(4, numTasks=6000, completedTasks=6000, **durations(4, 8)),
    ]
    plans = [
        scan(2000, 2000 * 12 * 1024),
        smj(4 * GiB, 12 * MiB),
        cross("CartesianProduct", 12_000_000_000),
    ]
    plans = [{**p, "executionId": i} for i, p in enumerate(plans)]
    jobs = [job(stage_ids=(3, 4), start=1000, end=61_000)]
    view = CellView(
        "t",
        jobs,
        stages,
        61_000,
        state="done",
        cell_done=True,
        cluster={"executors": 1, "cores": 8, "busy": 0},
        samples=[[1000, 1, 8]],
        plans=plans,
    )
    kinds = [(f.scope, f.kind) for f in view.findings]
    assert kinds == [
        ("stage", "skew"),
        ("stage", "spill"),
        ("stage", "partition-too-large"),
        ("stage", "small-tasks"),
        ("plan", "small-files"),
        ("plan", "broadcast"),
        ("plan", "cross-join"),
        ("cell", "idle-cores"),
    ]
    fixes = {f.kind: f.fix for f in view.findings}
    script = """
globalThis.sparkscopeInsertCell = (node, code) => { (globalThis.inserted ||= []).push(code); return true; };
const seen_ = () => all(root, "sparkscope-finding").map((n) => ({
  kind: n.dataset.finding, scope: n.dataset.scope, fix: n.dataset.fix || "", title: n.title,
  cls: n.className }));
const fixes_ = () => all(root, "sparkscope-insert-fix").map((b) => b.dataset.finding);
const inJobs_ = { findings: seen_(), buttons: fixes_(),
  advisor: all(root, "sparkscope-advisor").map((a) => a.dataset.count) };
// the Insert fix of the list's first item: the plan's small files
all(all(root, "sparkscope-advisor")[0], "sparkscope-insert-fix")[0].click();
root.dataset.view = "plan";
TRAITS_.view = "plan";
act.redraw();
const planNodes_ = all(root, "sparkscope-plan-node").filter((n) => n.dataset.findings)
  .map((n) => [n.dataset.nodeName, n.dataset.findings]);
console.log(JSON.stringify({ jobsView: inJobs_, plan: { findings: seen_(), buttons: fixes_(), planNodes: planNodes_ },
  inserted: globalThis.inserted }));
"""
    got = draw(json.loads(json.dumps(traits(view))), script)
    jv = got["jobsView"]
    # stage findings on their stage rows; the plan's and the cell's listed below the jobs
    assert [(f["scope"], f["kind"]) for f in jv["findings"]] == kinds
    assert all(f["fix"] == fixes[f["kind"]] for f in jv["findings"]), jv["findings"]
    assert all(f["title"] for f in jv["findings"])
    assert all("sparkscope-hint-" in f["cls"] for f in jv["findings"][:4])
    assert all("sparkscope-advisor-item" in f["cls"] for f in jv["findings"][4:])
    assert jv["advisor"] == ["4"]
    assert jv["buttons"] == [k for _, k in kinds]
    assert got["inserted"] == [fixes["small-files"]]
    # the Plan view: each operator's finding on its node, with its own Insert fix
    plan_ = got["plan"]
    assert plan_["planNodes"] == [
        ["Scan parquet ", "small-files"],
        ["SortMergeJoin", "broadcast"],
        ["CartesianProduct", "cross-join"],
    ]
    on_nodes = [f for f in plan_["findings"] if "sparkscope-advisor-item" not in f["cls"]]
    assert [f["kind"] for f in on_nodes if f["scope"] == "plan"] == [
        "small-files",
        "broadcast",
        "cross-join",
    ]
