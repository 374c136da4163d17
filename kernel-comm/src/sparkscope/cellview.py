"""One cell run as every view shows it: its job and stage rows, the findings on its stages (skew,
spill, GC), on its SQL plans' operators and on the whole run (the advisor's), the root cause of
each failed job, the summary, links into Spark's UI, the cluster context and busy task slots.
Pure: plain data in (the stream state's normalized entities), plain data out; the widget's
traits, the text/plain and the text/html all render this one model."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from .contention import contention
from .state import Sample

log = logging.getLogger("sparkscope")

if TYPE_CHECKING:
    from .cellrun import CellRun
    from .state import StreamState

# A stage is skewed when its slowest task takes more than this many times its median, and at
# least SKEW_MIN_MS longer (a few milliseconds either way are no finding).
SKEW_RATIO = 3.0
SKEW_MIN_MS = 1000
# Garbage collection over this share of a stage's task time is worth a look.
GC_SHARE = 0.1
# Too many small tasks (DataFlint's rule): more than this many tasks in a stage, with a median
# run time under SMALL_TASK_MS: scheduling them costs more than their work.
SMALL_TASKS = 5000
SMALL_TASK_MS = 500

# ---- the advisor's other rules (DataFlint's alerts). Each threshold may be set per user by the
# kernel's environment, SPARKSCOPE_ADVISOR_<NAME> (read once at import), or `%sparkscope advisor
# <name>=<value>`; see ADVISOR_THRESHOLDS.
MiB = 1 << 20
GiB = 1 << 30
# Small files: a scan read (a write wrote) more than SMALL_FILES files of under SMALL_FILE_BYTES
# on average: opening each costs more than reading it.
SMALL_FILES = 100
SMALL_FILE_BYTES = 3 * MiB
# A scan of a partitioned table with no filter on its partition columns that read more than
# this many of its partitions: every query reads the whole table (DataFlint's full-scan rule).
FULL_SCAN_PARTITIONS = 1
# What a fix aims at per partition or file: Spark's own default split size.
TARGET_PARTITION_BYTES = 128 * MiB
# A sort-merge join whose smaller side shuffled less than this could broadcast that side.
BROADCAST_CANDIDATE_BYTES = 100 * MiB
# A broadcast of more than this goes to every executor's memory, and through the driver.
BROADCAST_TOO_LARGE_BYTES = 1 * GiB
# A join without an equality condition (CartesianProduct, BroadcastNestedLoopJoin) producing
# more rows than this.
CROSS_JOIN_ROWS = 10_000_000_000
# The advisor's skew (DataFlint's): the longest task over SKEW_TASK_MS and at least
# SKEW_TASK_RATIO times the median (the skew hint above has a lower bar and no fix).
SKEW_TASK_MS = 5000
SKEW_TASK_RATIO = 10.0
# A task's partition over this (only totals are known: the stage's input and shuffle read over
# its tasks, on average).
LARGE_PARTITION_BYTES = 5 * GiB
# A cell run of IDLE_CORES_MIN_MS or more whose tasks kept under IDLE_CORES_SHARE of the cores
# busy, on average.
IDLE_CORES_MIN_MS = 30_000
IDLE_CORES_SHARE = 0.5
# A stage spilled more than this to disk (the spill finding gets a fix).
SPILL_DISK_BYTES = 0
# Executor memory (DataFlint's rule): the heap in use peaked over MEMORY_HIGH_SHARE of the
# executors' heap while the cell's stages ran (raise it, or process less per task), or stayed
# under MEMORY_LOW_SHARE over a run of MEMORY_LOW_MIN_MS or more (the executors could do with
# less). The heap in use counts garbage not yet collected, so a low peak is a safe margin.
MEMORY_HIGH_SHARE = 0.95
MEMORY_LOW_SHARE = 0.70
MEMORY_LOW_MIN_MS = 60_000
# What a fix aims the heap at: this much above the peak (DataFlint's 20%).
MEMORY_HEADROOM = 0.2

# name -> its type; SPARKSCOPE_ADVISOR_<name> in the environment sets it.
ADVISOR_THRESHOLDS: dict[str, type] = {
    "SMALL_TASKS": int,
    "SMALL_TASK_MS": int,
    "SMALL_FILES": int,
    "SMALL_FILE_BYTES": int,
    "FULL_SCAN_PARTITIONS": int,
    "TARGET_PARTITION_BYTES": int,
    "BROADCAST_CANDIDATE_BYTES": int,
    "BROADCAST_TOO_LARGE_BYTES": int,
    "CROSS_JOIN_ROWS": int,
    "SKEW_TASK_MS": int,
    "SKEW_TASK_RATIO": float,
    "LARGE_PARTITION_BYTES": int,
    "IDLE_CORES_MIN_MS": int,
    "IDLE_CORES_SHARE": float,
    "SPILL_DISK_BYTES": int,
    "MEMORY_HIGH_SHARE": float,
    "MEMORY_LOW_SHARE": float,
    "MEMORY_LOW_MIN_MS": int,
    "MEMORY_HEADROOM": float,
}
ADVISOR_ENV = "SPARKSCOPE_ADVISOR_"
# Samples sent to the browser per cell: enough for a chart as wide as a notebook.
MAX_POINTS = 400
# After a cell's last job ended, the first sample this soon after still belongs to it.
SETTLE_MS = 2000
# executors' log links a widget shows at most (two per executor: stdout, stderr)
MAX_EXECUTOR_LOGS = 64
# plan nodes a view shows per SQL execution (pre-order: the deepest, last ones are left out)
MAX_PLAN_NODES = 500

# Job statuses in the order a summary names them.
JOB_ORDER = ("RUNNING", "SUCCEEDED", "FAILED", "UNKNOWN")
# Findings of one stage in the order they are shown.
FINDING_ORDER = ("skew", "spill", "small-tasks", "partition-too-large", "gc")
# The advisor's findings on a SQL execution's operators, and on the whole cell run.
PLAN_FINDINGS = ("small-files", "full-scan", "broadcast", "broadcast-too-large", "cross-join")
CELL_FINDINGS = ("idle-cores", "memory-high", "memory-low")

JOB_FIELDS = (
    "appId",
    "jobId",
    "name",
    "description",
    "status",
    "stageIds",
    "tasks",
    "stages",
    "submissionTimeMs",
    "completionTimeMs",
    "error",
    "sqlExecutionId",
)
STAGE_FIELDS = (
    "appId",
    "stageId",
    "attemptId",
    "name",
    "status",
    "numTasks",
    "activeTasks",
    "completedTasks",
    "failedTasks",
    "killedTasks",
    "jobIds",
    "submissionTimeMs",
    "completionTimeMs",
    "failureReason",
    "executorRunTimeMs",
    "inputBytes",
    "outputBytes",
    "shuffleReadBytes",
    "shuffleWriteBytes",
    "memorySpilledBytes",
    "diskSpilledBytes",
    "gcTimeMs",
    "taskDurations",
    "firstFailure",
    "peakMemory",
)

# Spark names every Connect job and stage after its truncated request: not worth showing.
CONNECT_NAME = "Spark Connect - "


# ---- numbers as people read them (the widget draws its live durations the same way)


def _fixed1(x: float) -> str:
    """`x` with one decimal, ties away from zero, as JavaScript's `toFixed(1)` rounds."""
    return str(Decimal(x).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _round(x: float) -> int:
    """JavaScript's `Math.round`: ties towards +infinity."""
    r = math.floor(x)
    return r + 1 if x - r >= 0.5 else r


def format_duration(ms: float) -> str:
    """`4.2 s`, `3 min 07 s`, `1 h 02 min`."""
    s = max(ms, 0) / 1000
    if s < 60:
        return f"{_fixed1(s)} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def format_short(ms: float) -> str:
    """Milliseconds below a second, else as `format_duration`."""
    return f"{_round(ms)} ms" if ms < 1000 else format_duration(ms)


def format_bytes(n: int) -> str:
    """`512 B`, `1.5 MiB`."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    v: float = n
    i = 0
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{_fixed1(v) if i else int(v)} {units[i]}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def shorten(text: str, limit: int) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def job_key(row: Mapping[str, Any]) -> str:
    return f"{row['appId']}/{row['jobId']}"


def stage_key(row: Mapping[str, Any]) -> str:
    return f"{row['appId']}/{row['stageId']}/{row['attemptId']}"


# ---- what ran


# Spark Connect relation and command names worth showing (spark/connect/relations.proto,
# commands.proto); the rest of a plan's text (common, input, expressions, …) is structure.
_PLAN_NODES = frozenset(
    (
        "read",
        "project",
        "filter",
        "join",
        "set_op",
        "sort",
        "limit",
        "aggregate",
        "sql",
        "local_relation",
        "sample",
        "offset",
        "deduplicate",
        "range",
        "subquery_alias",
        "repartition",
        "to_df",
        "with_columns_renamed",
        "show_string",
        "drop",
        "tail",
        "with_columns",
        "hint",
        "unpivot",
        "to_schema",
        "repartition_by_expression",
        "map_partitions",
        "collect_metrics",
        "parse",
        "group_map",
        "co_group_map",
        "with_watermark",
        "apply_in_pandas_with_state",
        "html_string",
        "cached_local_relation",
        "cached_remote_relation",
        "as_of_join",
        "lateral_join",
        "transpose",
        "write_operation",
        "write_operation_v2",
        "create_dataframe_view",
        "sql_command",
        "write_stream_operation_start",
    )
)
_SQL_TEXT = re.compile(r'^\s*(?:query|sql): "((?:[^"\\]|\\.)*)"', re.MULTILINE)
_NODE = re.compile(r"^\s*([a-z_0-9]+) \{", re.MULTILINE)


def plan_label(statement: str, limit: int = 80) -> str:
    """A short name for a Connect operation from its plan text: the SQL it ran, else its plan's
    relations outermost first (`sort ← aggregate ← range`)."""
    sql = _SQL_TEXT.search(statement)
    if sql:
        text = " ".join(sql.group(1).replace("\\'", "'").replace('\\"', '"').split())
    else:
        nodes: list[str] = []
        for name in _NODE.findall(statement):
            if name in _PLAN_NODES and name not in nodes:
                nodes.append(name)
        text = " ← ".join(nodes)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_row(job: Mapping[str, Any], label: str = "") -> dict[str, Any]:
    """A normalized agent job (state.normalize_job) as a view shows it; `label` is what the row
    names it by (the operation's SQL text or plan outline)."""
    out = {k: job[k] for k in JOB_FIELDS}
    connect = job.get("connect") or {}
    out["sessionId"] = connect.get("sessionId", "")
    out["userId"] = connect.get("userId", "")
    out["operationId"] = connect.get("operationId", "")
    name = job["name"]
    out["label"] = label or ("" if name.startswith(CONNECT_NAME) else name)
    return out


def stage_row(stage: Mapping[str, Any]) -> dict[str, Any]:
    """A normalized stage attempt as a view shows it, `label` the name worth showing."""
    out = {k: stage[k] for k in STAGE_FIELDS}
    out["label"] = "" if stage["name"].startswith(CONNECT_NAME) else stage["name"]
    return out


def stages_of(job: Mapping[str, Any], stages: Iterable[Mapping[str, Any]]) -> list:
    return [s for s in stages if s["appId"] == job["appId"] and s["stageId"] in job["stageIds"]]


# ---- the summary


@dataclass(frozen=True)
class Summary:
    """The summary line: `3 jobs (2 succeeded, 1 failed) · 180/200 tasks (20 skipped, 1 failed)`
    and the time from the first job's submission to the last one's end (Spark's clock), which
    runs on while a job runs."""

    head: str
    job_counts: dict[str, int]
    # no jobs: no elapsed time at all; else from start_ms to end_ms, or to now while live
    has_jobs: bool = False
    start_ms: int = 0
    end_ms: int = 0
    live: bool = False

    def elapsed_ms(self, now_ms: int) -> int:
        return (max(self.end_ms, now_ms) if self.live else self.end_ms) - self.start_ms

    def text(self, now_ms: int) -> str:
        if not self.has_jobs:
            return self.head
        return f"{self.head} · {format_duration(self.elapsed_ms(now_ms))}"

    def to_json(self) -> dict[str, Any]:
        elapsed = (
            {"startMs": self.start_ms, "endMs": self.end_ms, "live": self.live}
            if self.has_jobs
            else None
        )
        return {"text": self.head, "elapsed": elapsed, "jobCounts": dict(self.job_counts)}


def _rank(status: str) -> int:
    return JOB_ORDER.index(status) if status in JOB_ORDER else len(JOB_ORDER)


def summary(jobs: Sequence[Mapping[str, Any]]) -> Summary:
    by_status: dict[str, int] = {}
    for job in jobs:
        by_status[job["status"]] = by_status.get(job["status"], 0) + 1
    counts = {s.lower(): by_status.get(s, 0) for s in JOB_ORDER}
    if not jobs:
        return Summary("no Spark jobs", counts)
    statuses = ", ".join(f"{by_status[s]} {s.lower()}" for s in sorted(by_status, key=_rank))
    tasks = {k: sum(j["tasks"][k] for j in jobs) for k in jobs[0]["tasks"]}
    extra = [
        f"{tasks[k]} {label}"
        for k, label in (("active", "running"), ("skipped", "skipped"), ("failed", "failed"))
        if tasks[k]
    ]
    task_text = f"{tasks['completed']}/{tasks['total']} tasks"
    if extra:
        task_text += f" ({', '.join(extra)})"
    head = f"{plural(len(jobs), 'job')} ({statuses}) · {task_text}"
    starts = [j["submissionTimeMs"] for j in jobs if j["submissionTimeMs"]]
    if not starts:
        return Summary(head, counts, has_jobs=True)
    return Summary(
        head,
        counts,
        has_jobs=True,
        start_ms=min(starts),
        end_ms=max((j["completionTimeMs"] or 0 for j in jobs), default=0),
        live=any(not j["completionTimeMs"] for j in jobs),
    )


def summarize(jobs: Sequence[Mapping[str, Any]], now_ms: int) -> str:
    """`3 jobs (2 succeeded, 1 failed) · 180/200 tasks (20 skipped, 1 failed) · 4.2 s`."""
    return summary(jobs).text(now_ms)


# ---- findings on stages


@dataclass(frozen=True)
class Finding:
    """Something worth a reader's attention, with the numbers behind it: about one stage attempt
    (`scope` "stage"), one operator of a SQL execution's plan ("plan": `execution_id`,
    `node_index`, `node_name`; stage and attempt -1) or the whole cell run ("cell": stage and
    attempt -1, no jobs). `severity` is `warning` (highlighted) or `info` (shown plainly: a GC
    share below GC_SHARE)."""

    # stage: skew | spill | small-tasks | partition-too-large | gc; plan: small-files |
    # broadcast | broadcast-too-large | cross-join; cell: idle-cores
    kind: str
    severity: str
    app_id: str
    stage_id: int
    attempt_id: int
    job_ids: tuple[int, ...]
    evidence: Mapping[str, float]
    label: str  # the badge on the stage
    title: str  # what it means, and what to do about it
    # the badge on the job row ("" when the finding shows on the stage only), and the sentence
    # a static report prints
    job_label: str = ""
    text: str = ""
    # code a reader may insert as a new cell to act on it (never run for them); "" when none
    fix: str = ""
    scope: str = "stage"  # stage | plan | cell
    execution_id: int | None = None
    node_index: int | None = None
    node_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "executionId": self.execution_id,
            "nodeIndex": self.node_index,
            "nodeName": self.node_name,
            "kind": self.kind,
            "severity": self.severity,
            "appId": self.app_id,
            "stageId": self.stage_id,
            "attemptId": self.attempt_id,
            "jobIds": list(self.job_ids),
            "evidence": dict(self.evidence),
            "label": self.label,
            "jobLabel": self.job_label,
            "title": self.title,
            "text": self.text,
            "fix": self.fix,
        }


def skewed(stage: Mapping[str, Any]) -> bool:
    d = stage.get("taskDurations")
    if not d:
        return False
    return d["maxMs"] - d["medianMs"] >= SKEW_MIN_MS and d["maxMs"] > SKEW_RATIO * d["medianMs"]


def spilled(stage: Mapping[str, Any]) -> int:
    return int(stage.get("memorySpilledBytes", 0)) + int(stage.get("diskSpilledBytes", 0))


def gc_share(stage: Mapping[str, Any]) -> float:
    run = stage.get("executorRunTimeMs", 0)
    return stage.get("gcTimeMs", 0) / run if run > 0 else 0.0


def small_tasks(stage: Mapping[str, Any]) -> bool:
    d = stage.get("taskDurations")
    return bool(d) and stage["numTasks"] > SMALL_TASKS and d["medianMs"] < SMALL_TASK_MS


def skew_advised(stage: Mapping[str, Any]) -> bool:
    """DataFlint's skew: the longest task over SKEW_TASK_MS, SKEW_TASK_RATIO times the median."""
    d = stage.get("taskDurations")
    return bool(d) and d["maxMs"] > SKEW_TASK_MS and d["maxMs"] >= SKEW_TASK_RATIO * d["medianMs"]


def skew_fix(stage_id: int, d: Mapping[str, Any]) -> str:
    ratio = f"{d['maxMs'] / d['medianMs']:.0f}× its median of" if d["medianMs"] else "its median"
    return (
        f"# sparkscope advisor: stage {stage_id}'s longest task took "
        f"{format_duration(d['maxMs'])}, {ratio} {format_short(d['medianMs'])}.\n"
        "# Let adaptive execution split the skewed partitions of sort-merge joins:\n"
        'spark.conf.set("spark.sql.adaptive.enabled", "true")\n'
        'spark.conf.set("spark.sql.adaptive.skewJoin.enabled", "true")\n'
        "# Skew on a hot key outside a join (an aggregation): salt the key, e.g.\n"
        "# from pyspark.sql import functions as F\n"
        '# salted = df.withColumn("salt", (F.rand() * 16).cast("int"))\n'
        '# salted.groupBy("key", "salt").agg(F.sum("v").alias("v")).groupBy("key").agg(F.sum("v"))'
    )


def spill_fix(stage_id: int, disk: int, tasks: int) -> str:
    return (
        f"# sparkscope advisor: stage {stage_id} spilled {format_bytes(disk)} to disk over "
        f"{plural(tasks, 'task')}: their data did not fit in execution memory.\n"
        "# Twice the shuffle partitions, half the data per task (or more memory per task):\n"
        f'spark.conf.set("spark.sql.shuffle.partitions", "{max(2, 2 * tasks)}")'
    )


def stage_read_bytes(stage: Mapping[str, Any]) -> int:
    return int(stage.get("inputBytes", 0) or 0) + int(stage.get("shuffleReadBytes", 0) or 0)


def partition_bytes(stage: Mapping[str, Any]) -> float:
    """What a task of the stage read, on average (only the stage's totals are known)."""
    n = stage.get("numTasks", 0)
    return stage_read_bytes(stage) / n if n > 0 else 0.0


def stage_findings(
    stage: Mapping[str, Any], job_ids: Sequence[int] = (), cores: int = 0
) -> list[Finding]:
    """Skew, spill, too many small tasks, partitions too large and the GC share of one stage
    attempt, in FINDING_ORDER; `cores`: the application's, for the size of a fix."""
    where = {
        "app_id": stage["appId"],
        "stage_id": stage["stageId"],
        "attempt_id": stage["attemptId"],
        "job_ids": tuple(job_ids),
    }
    sid = stage["stageId"]
    out = []
    advised = skew_advised(stage)
    if skewed(stage) or advised:
        d = stage["taskDurations"]
        out.append(
            Finding(
                "skew",
                "warning",
                evidence={k: d[k] for k in ("minMs", "medianMs", "maxMs")},
                label="skew",
                title=(
                    f"Skew: the slowest task took {format_short(d['maxMs'])}, the median "
                    f"{format_short(d['medianMs'])} (more than {SKEW_RATIO:g}×). One partition "
                    "holds much more data than the others: repartition, or salt the key."
                ),
                job_label=f"stage {sid}: skew",
                text=(
                    f"stage {sid}: skew, slowest task {format_duration(d['maxMs'])} against a "
                    f"median of {format_duration(d['medianMs'])}"
                ),
                fix=skew_fix(sid, d) if advised else "",
                **where,
            )
        )
    total = spilled(stage)
    if total:
        memory, disk = stage["memorySpilledBytes"], stage["diskSpilledBytes"]
        out.append(
            Finding(
                "spill",
                "warning",
                evidence={"memoryBytes": memory, "diskBytes": disk, "bytes": total},
                label=f"spill {format_bytes(total)}",
                title=(
                    f"Spill: {format_bytes(memory)} in memory, {format_bytes(disk)} on disk. "
                    "Tasks ran out of execution memory: more partitions, or more memory per task."
                ),
                job_label=f"stage {sid}: spill {format_bytes(total)}",
                text=f"stage {sid}: spilled {total:,} bytes",
                fix=spill_fix(sid, disk, stage["numTasks"]) if disk > SPILL_DISK_BYTES else "",
                **where,
            )
        )
    if small_tasks(stage):
        n, median = stage["numTasks"], stage["taskDurations"]["medianMs"]
        partitions = max(2, 3 * cores)
        out.append(
            Finding(
                "small-tasks",
                "warning",
                evidence={"numTasks": n, "medianMs": median},
                label=f"{n:,} small tasks",
                title=(
                    f"Too many small tasks: {n:,} tasks of a median {format_short(median)} "
                    f"(over {SMALL_TASKS:,} under {format_short(SMALL_TASK_MS)}): scheduling "
                    "them costs more than their work. Fewer, larger partitions: coalesce "
                    "(or repartition) the data before this stage."
                ),
                job_label=f"stage {sid}: {n:,} small tasks",
                text=f"stage {sid}: {n:,} tasks of a median {format_duration(median)}",
                fix=(
                    f"# sparkscope advisor: stage {sid} ran {n:,} tasks of a median "
                    f"{format_short(median)} each.\n"
                    "# Fewer, larger partitions before the work, e.g. about three per core "
                    f"({cores} cores here):\n"
                    f"df = df.coalesce({partitions})"
                ),
                **where,
            )
        )
    big = int(partition_bytes(stage))
    if big > LARGE_PARTITION_BYTES:
        n, read = stage["numTasks"], stage_read_bytes(stage)
        partitions = math.ceil(read / TARGET_PARTITION_BYTES)
        out.append(
            Finding(
                "partition-too-large",
                "warning",
                evidence={"readBytes": read, "numTasks": n, "bytesPerTask": big},
                label=f"{format_bytes(big)} per task",
                title=(
                    f"Partitions too large: stage {sid} read {format_bytes(read)} (input and "
                    f"shuffle) in {plural(n, 'task')}, {format_bytes(big)} per task on average "
                    f"(over {format_bytes(LARGE_PARTITION_BYTES)}): each task holds more than "
                    "its memory, and runs long. More, smaller partitions."
                ),
                job_label=f"stage {sid}: {format_bytes(big)} per task",
                text=(
                    f"stage {sid}: {format_bytes(big)} per task on average "
                    f"({read:,} bytes read by {plural(n, 'task')})"
                ),
                fix=(
                    f"# sparkscope advisor: stage {sid} read {format_bytes(read)} in "
                    f"{plural(n, 'task')}, {format_bytes(big)} per task on average.\n"
                    f"# About {format_bytes(TARGET_PARTITION_BYTES)} per partition before the "
                    "work:\n"
                    f"df = df.repartition({partitions})"
                ),
                **where,
            )
        )
    run = stage["executorRunTimeMs"]
    if run > 0:
        share = gc_share(stage)
        out.append(
            Finding(
                "gc",
                "warning" if share >= GC_SHARE else "info",
                evidence={"gcTimeMs": stage["gcTimeMs"], "executorRunTimeMs": run, "share": share},
                label=f"GC {_round(share * 100)}%",
                title=(
                    f"Garbage collection took {format_short(stage['gcTimeMs'])} of "
                    f"{format_short(run)} task time"
                ),
                **where,
            )
        )
    return out


def findings(
    jobs: Sequence[Mapping[str, Any]], stages: Sequence[Mapping[str, Any]], cores: int = 0
) -> list[Finding]:
    """The findings of every stage attempt of the cell, by stage attempt."""
    out = []
    for s in stages:
        job_ids = [
            j["jobId"] for j in jobs if j["appId"] == s["appId"] and s["stageId"] in j["stageIds"]
        ]
        out.extend(stage_findings(s, job_ids, cores))
    return out


# ---- why a job failed


@dataclass(frozen=True)
class RootCause:
    """Why a failed job failed: the first task failure among its stage attempts."""

    app_id: str
    job_id: int
    stage_id: int
    attempt_id: int
    failure: Mapping[str, Any]  # the stage attempt's `firstFailure`

    @property
    def what(self) -> str:
        f = self.failure
        return f["exceptionClass"] or f["reason"] or "failure"

    @property
    def text(self) -> str:
        """`java.lang.ArithmeticException: / by zero`."""
        return f"{self.what}: {self.failure['message']}" if self.failure["message"] else self.what

    @property
    def where(self) -> str:
        f = self.failure
        attempt = f" (attempt {self.attempt_id})" if self.attempt_id else ""
        return (
            f"stage {self.stage_id}{attempt} · task {f['index']}, attempt {f['attempt']} · "
            f"executor {f['executorId'] or '?'} on {f['host'] or '?'}"
        )

    def to_json(self) -> dict[str, Any]:
        f = self.failure
        return {
            "appId": self.app_id,
            "jobId": self.job_id,
            "stageId": self.stage_id,
            "attemptId": self.attempt_id,
            "taskId": f["taskId"],
            "what": self.what,
            "message": f["message"],
            "where": self.where,
            "stackTrace": f["stackTrace"],
        }


def root_cause(
    job: Mapping[str, Any], stages: Iterable[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The stage attempt with the first task failure among the job's (by when it happened)."""
    failures = [
        (s["firstFailure"]["timeMs"], s["stageId"], s["attemptId"], s)
        for s in stages_of(job, stages)
        if s.get("firstFailure")
    ]
    if not failures:
        return None
    return min(failures, key=lambda f: f[:3])[3]


def root_causes(
    jobs: Sequence[Mapping[str, Any]], stages: Sequence[Mapping[str, Any]]
) -> list[RootCause]:
    """A root cause for each failed job that has one."""
    out = []
    for job in jobs:
        stage = root_cause(job, stages) if job["status"] == "FAILED" else None
        if stage is not None:
            out.append(
                RootCause(
                    job["appId"],
                    job["jobId"],
                    stage["stageId"],
                    stage["attemptId"],
                    stage["firstFailure"],
                )
            )
    return out


def operation_errors(operations: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Connect operations of the cell that failed before running any job (an analysis error):
    a failed job shows its own root cause."""
    return [
        {"operationId": op["operationId"], "message": op["error"]}
        for op in sorted(operations, key=lambda o: o["startTimeMs"])
        if op.get("error") and "FAILED" in (op["state"], op["finalState"]) and not op["jobIds"]
    ]


# ---- where the cell ran, and links into Spark's UI


def context(app: Mapping[str, Any] | None, app_id: str, session_id: str, user_id: str) -> dict:
    """The cell's application and session."""
    app = app or {}
    return {
        "appId": app_id,
        "appName": app.get("name", ""),
        "sparkVersion": app.get("sparkVersion", ""),
        "master": app.get("master", ""),
        "connectAddress": app.get("connectAddress", ""),
        "userId": user_id,
        "sessionId": session_id,
        "live": bool(app.get("live", False)),
        "uiLink": ui_link(app.get("uiLink", ""), user_id),
    }


_HTTP_URL = re.compile(r"^https?://[^/?#\s\"'<>`]+[^\s\"'<>`]*$", re.IGNORECASE)


def is_http_url(url: str) -> bool:
    """Whether `url` may become a link: http or https with a host, nothing a browser would run.
    The agent checks the addresses it sends too; this is the same rule where they are drawn."""
    return bool(_HTTP_URL.match(url)) and not any(ord(c) < 32 or ord(c) == 127 for c in url)


def ui_link(template: str, user: str) -> str:
    """The agent's UI address with the `{user}` it leaves for the client filled in; "" unless it
    is an http or https address."""
    link = template.replace("{user}", user) if template else ""
    return link if is_http_url(link) else ""


def details(ctx: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The details line's parts, by what they name: Spark version, master, application, Connect
    server. Never who ran the cell or in which session: the line is saved with the notebook."""
    parts = [
        ("spark", f"Spark {ctx['sparkVersion']}" if ctx.get("sparkVersion") else ""),
        ("master", ctx.get("master", "")),
        ("app", ""),
        ("connect", f"Connect {ctx['connectAddress']}" if ctx.get("connectAddress") else ""),
    ]
    if ctx.get("appId"):
        name = ctx.get("appName", "")
        parts[2] = ("app", f"{name} ({ctx['appId']})" if name else ctx["appId"])
    return [(k, v) for k, v in parts if v]


def cluster(app: Mapping[str, Any] | None) -> dict[str, int]:
    c = (app or {}).get("cluster") or {}
    return {
        "executors": int(c.get("executors", 0)),
        "cores": int(c.get("totalCores", 0)),
        "busy": int(c.get("activeTasks", 0)),
    }


def executor_logs(app: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Where the live executors' logs are (stdout, stderr), http or https only, by executor."""
    return [
        {"executorId": e["executorId"], "kind": e["kind"], "url": e["url"]}
        for e in (app or {}).get("executorLogs", [])
        if is_http_url(e["url"])
    ][:MAX_EXECUTOR_LOGS]


def links(
    ui: str,
    jobs: Sequence[Mapping[str, Any]],
    stages: Sequence[Mapping[str, Any]],
    executors: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """Spark UI pages: the application's, each job's (and its SQL query's), each stage attempt's;
    none without the UI's address. And the executors' logs, which their workers serve."""
    if not is_http_url(ui):
        ui = ""
    out: dict[str, Any] = {
        "ui": ui,
        "jobs": {},
        "sql": {},
        "stages": {},
        "executorLogs": list(executors),
    }
    if not ui:
        return out
    for j in jobs:
        out["jobs"][job_key(j)] = f"{ui}/jobs/job/?id={j['jobId']}"
        if j.get("sqlExecutionId") is not None:
            out["sql"][job_key(j)] = f"{ui}/SQL/execution/?id={j['sqlExecutionId']}"
    for s in stages:
        out["stages"][stage_key(s)] = (
            f"{ui}/stages/stage/?id={s['stageId']}&attempt={s['attemptId']}"
        )
    return out


def window(
    samples: Sequence[Sample], start_ms: int, end_ms: int, max_points: int = MAX_POINTS
) -> list[list[int]]:
    """The samples of [start_ms, end_ms] as `[atMs, activeTasks, totalCores]` rows, starting with
    the value in force at start_ms; at most `max_points`, keeping each bucket's busiest sample
    (a short burst of tasks stays visible)."""
    rows: list[list[int]] = []
    before = None
    for at, active, cores, *_ in samples:
        if at < start_ms:
            before = [start_ms, active, cores]
            continue
        if at > end_ms:
            # the agent samples at its stream's cadence: the value the work ended on comes a
            # moment after Spark's end time
            if at <= end_ms + SETTLE_MS:
                rows.append([at, active, cores])
            break
        rows.append([at, active, cores])
    if before is not None:
        rows.insert(0, before)
    if len(rows) <= max_points:
        return rows
    span = max(end_ms - start_ms, 1)
    buckets: dict[int, list[int]] = {}
    for row in rows:
        b = min((row[0] - start_ms) * max_points // span, max_points - 1)
        kept = buckets.get(b)
        if kept is None or row[1] > kept[1] or (row[1] == kept[1] and row[2] != kept[2]):
            buckets[b] = row
    out = [buckets[b] for b in sorted(buckets)]
    # the latest value is the one in force now
    if out[-1] is not rows[-1]:
        out.append(rows[-1])
    return out


def log_row(line: Mapping[str, Any]) -> dict[str, Any]:
    """A driver log line as the Logs view shows it: what it says and which job and stage it is
    about; whose it is (session, user, operation) stays in the kernel."""
    return {
        "appId": line["appId"],
        "seq": line["seq"],
        "timeMs": line["timeMs"],
        "level": line["level"],
        "logger": line["logger"],
        "message": line["message"],
        "thrown": line["thrown"],
        "jobId": line["jobId"],
        "stageId": line["stageId"],
        "stageAttemptId": line["stageAttemptId"],
    }


# ---- SQL executions: their physical plans with live operator metrics (the Plan view)

ROWS_METRIC = "number of output rows"
# A node's own time: its timing metrics (Spark's `timing`, ms; `nsTiming`, ns), and metrics named
# a time or a duration (taken as ms) that are no size or average.
_TIME_NAME = re.compile(r"\b(?:time|duration)\b", re.IGNORECASE)
# Whole-stage codegen's "duration" is its children's time: no time of its own.
_CODEGEN = re.compile(r"^WholeStageCodegen\b")


_BYTE_UNITS = ((60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB"))


def spark_bytes(n: int) -> str:
    """A size as Spark's UI writes it (Utils.bytesToString): a unit once the value is two of
    it, one decimal: `512.0 B`, `2.0 KiB`, `1.5 GiB`."""
    for shift, unit in _BYTE_UNITS:
        if n >= 2 << shift:
            return f"{_fixed1(Decimal(n) / (1 << shift))} {unit}"
    return f"{_fixed1(n)} B"


def spark_ms(ms: int) -> str:
    """A duration as Spark's UI writes a timing metric (Utils.msDurationToString): `350 ms`,
    `1.2 s`, `2.5 m`, `1.25 h`."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{_fixed1(Decimal(ms) / 1000)} s"
    if ms < 3_600_000:
        return f"{_fixed1(Decimal(ms) / 60_000)} m"
    return f"{(Decimal(ms) / 3_600_000).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)} h"


def format_metric(kind: str, value: int | None) -> str:
    """An operator metric's value as Spark's SQL tab shows it, by its type; `–` without one."""
    if value is None:
        return "–"
    if kind == "size":
        return spark_bytes(value)
    if kind == "timing":
        return spark_ms(value)
    if kind == "nsTiming":
        return spark_ms(value // 1_000_000)
    if kind == "average":
        return str(value)
    return f"{value:,}"


def metric_ms(metric: Mapping[str, Any], value: int | None) -> float:
    """What a metric adds to its node's own time, in ms (0 when it is no time)."""
    kind = metric["type"]
    if value is None or value <= 0:
        return 0.0
    if kind == "nsTiming":
        return value / 1e6
    if kind == "timing":
        return float(value)
    if kind not in ("size", "average") and _TIME_NAME.search(metric["name"]):
        return float(value)
    return 0.0


def node_ms(node: Mapping[str, Any], values: Mapping[int, int]) -> float:
    """A plan node's own time; none for a WholeStageCodegen node (its children's time)."""
    if _CODEGEN.match(node["name"]):
        return 0.0
    return sum(metric_ms(m, values.get(m["accumulatorId"])) for m in node["metrics"])


def execution_status(ex: Mapping[str, Any]) -> str:
    """`running`, `failed` or `succeeded`."""
    if ex["endMs"] is None:
        return "running"
    return "failed" if ex["error"] else "succeeded"


def plan_label_of(version: int) -> str:
    return f"re-planned by AQE {version}×" if version > 0 else ""


def plan_row(ex: Mapping[str, Any], label: str = "") -> dict[str, Any]:
    """One SQL execution (as StreamState keeps it) as the Plan view shows it: its nodes in
    pre-order with their depth, metrics (`number of output rows` first) formatted, and each
    node's share of the plan's time; at most MAX_PLAN_NODES nodes. `label`: what names it (the
    operation's SQL text or plan outline), else Spark's description. Which operation, session
    or user ran it stays in the kernel."""
    nodes, values = ex["nodes"], ex["values"]
    depths: list[int] = []
    for i, n in enumerate(nodes):
        p = n["parent"]
        depths.append(depths[p] + 1 if 0 <= p < i else 0)
    times = [node_ms(n, values) for n in nodes]
    total = sum(times)
    top = max(range(len(nodes)), key=lambda i: (times[i], -i)) if total > 0 else -1
    rows = []
    for i, n in enumerate(nodes[:MAX_PLAN_NODES]):
        metrics = [
            {
                "name": m["name"],
                "type": m["type"],
                "value": values.get(m["accumulatorId"]),
                "text": format_metric(m["type"], values.get(m["accumulatorId"])),
            }
            for m in sorted(n["metrics"], key=lambda m: m["name"] != ROWS_METRIC)
        ]
        rows.append(
            {
                "index": i,
                "parent": n["parent"],
                "depth": depths[i],
                "name": n["name"],
                "detail": n["detail"],
                "metrics": metrics,
                "rows": next((m["value"] for m in metrics if m["name"] == ROWS_METRIC), None),
                "timeMs": round(times[i], 3),
                "share": round(times[i] / total, 4) if total > 0 else 0.0,
                "top": i == top,
            }
        )
    description = "" if ex["description"].startswith(CONNECT_NAME) else ex["description"]
    hidden = max(0, len(nodes) - MAX_PLAN_NODES)
    return {
        "appId": ex["appId"],
        "executionId": ex["executionId"],
        "label": label or description,
        "description": description,
        "status": execution_status(ex),
        "error": ex["error"],
        "startMs": ex["startMs"],
        "endMs": ex["endMs"],
        "jobIds": list(ex["jobIds"]),
        "planVersion": ex["planVersion"],
        "planLabel": plan_label_of(ex["planVersion"]),
        "nodes": rows,
        "nodeCount": len(nodes),
        "nodesHidden": hidden,
        "nodesDropped": ex["nodesDropped"],
        "moreNodes": hidden + ex["nodesDropped"],
        "totalTimeMs": round(total, 3),
    }


# ---- the advisor on SQL plans (an operator's metrics) and on the whole cell run

FILES_READ = "number of files read"
FILES_READ_SIZE = "size of files read"
PARTITIONS_READ = "number of partitions read"  # a scan of a partitioned table only
FILES_WRITTEN = "number of written files"
WRITTEN_SIZE = "written output"
DYNAMIC_PARTS = "number of dynamic part"
DATA_SIZE = "data size"
SHUFFLE_WRITTEN = "shuffle bytes written"

# "Scan parquet ", "Scan parquet spark_catalog.default.t", "FileScan csv"
_SCAN_FORMAT = re.compile(r"(?:^|\s|File)Scan\s+(\w+)")
# the formats DataFrameReader and DataFrameWriter have a method for
_FORMATS = frozenset(("parquet", "orc", "json", "csv", "text"))
# Spark's join type names (JoinType.toString) as DataFrame.join's `how`; and which side of such a
# join a broadcast hash join may build on.
_HOW = {
    "Inner": None,
    "LeftOuter": "left",
    "RightOuter": "right",
    "LeftSemi": "left_semi",
    "LeftAnti": "left_anti",
}
_BUILDS = {
    "Inner": ("left", "right"),
    "Cross": ("left", "right"),
    "LeftOuter": ("right",),
    "LeftSemi": ("right",),
    "LeftAnti": ("right",),
    "ExistenceJoin": ("right",),
    "RightOuter": ("left",),
    "FullOuter": (),
}
_EXPR_ID = re.compile(r"#\d+L?\b")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def metric_value(node: Mapping[str, Any], name: str) -> int | None:
    """A plan_row() node's metric by name (None: no such metric, or not updated yet)."""
    return next((m["value"] for m in node["metrics"] if m["name"] == name), None)


def _bracketed(text: str) -> tuple[list[list[str]], str]:
    """The top-level `[...]` groups at the start of `text` (`[a, b], [c], rest`), each split
    at its top-level commas, and what follows them."""
    groups: list[list[str]] = []
    i = 0
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i >= len(text) or text[i] != "[":
            break
        depth, parts, start = 0, [], i + 1
        for j in range(i, len(text)):
            c = text[j]
            if c in "[(":
                depth += 1
            elif c in "])":
                depth -= 1
                if depth == 0:
                    parts.append(text[start:j])
                    break
            elif c == "," and depth == 1:
                parts.append(text[start:j])
                start = j + 1
        else:
            break  # cut short (the detail is cut to 300 characters)
        groups.append([p.strip() for p in parts if p.strip()])
        i = j + 1
    return groups, text[i:].lstrip(" ,")


def join_keys(detail: str) -> tuple[list[str], list[str], str] | None:
    """A SortMergeJoin's keys without their expression ids, and its join type, from its
    one-line description (`SortMergeJoin [k#1L], [k#5L], Inner` → ["k"], ["k"], "Inner")."""
    rest = detail.split(None, 1)[1] if len(detail.split(None, 1)) == 2 else ""
    groups, tail = _bracketed(rest)
    if len(groups) < 2 or len(groups[0]) != len(groups[1]) or not groups[0]:
        return None
    left, right = ([_EXPR_ID.sub("", k) for k in g] for g in groups[:2])
    how = re.match(r"\w+", tail)
    return left, right, how.group(0) if how else ""


def join_code(keys: tuple[list[str], list[str], str] | None, small: str) -> str:
    """`large_df.join(broadcast(small_df), ["k"])`: the small side broadcast, the sides in the
    plan's order; `<keys>` where the keys are no plain columns."""
    left, right = ("large_df", "small_df") if small == "right" else ("small_df", "large_df")
    on, how = "<keys>", ""
    if keys is not None:
        left_keys, right_keys, kind = keys
        if all(_IDENTIFIER.fullmatch(k) for k in left_keys + right_keys):
            if left_keys == right_keys:
                on = "[" + ", ".join(f'"{k}"' for k in left_keys) + "]"
            else:
                terms = [
                    f'{left}["{a}"] == {right}["{b}"]'
                    for a, b in zip(left_keys, right_keys, strict=True)
                ]
                on = terms[0] if len(terms) == 1 else " & ".join(f"({t})" for t in terms)
        if _HOW.get(kind):
            how = f', "{_HOW[kind]}"'
    first, second = (
        (left, f"broadcast({right})") if small == "right" else (f"broadcast({left})", right)
    )
    return f"result = {first}.join({second}, {on}{how})"


def _exchange_bytes(
    start: int, nodes: Sequence[Mapping[str, Any]], children: Mapping[int, list[int]]
) -> int | None:
    """What the nearest Exchange at or under node `start` shuffled: its "data size", else its
    "shuffle bytes written"; None without one, or before it has a value."""
    level = [start]
    while level:
        for i in level:
            n = nodes[i]
            if n["name"].strip() == "Exchange":
                size = metric_value(n, DATA_SIZE)
                return size if size is not None else metric_value(n, SHUFFLE_WRITTEN)
        level = [c for i in level for c in children.get(i, [])]
    return None


def _scan_io(fmt: str) -> tuple[str, str]:
    """How a fix reads and writes files of the scan's format."""
    if fmt in _FORMATS:
        return f"spark.read.{fmt}(path)", f'.write.mode("overwrite").{fmt}(new_path)'
    if fmt:
        return (
            f'spark.read.format("{fmt}").load(path)',
            f'.write.format("{fmt}").mode("overwrite").save(new_path)',
        )
    return "spark.read.load(path)", '.write.mode("overwrite").save(new_path)'


_SCAN_OUTPUT = re.compile(r"^\S*Scan \w+ [^\[]*\[([^\]]*)\]")
_READ_SCHEMA = re.compile(r"ReadSchema: struct<(.*)>")


def partition_columns(detail: str) -> list[str]:
    """A file scan's partition columns, as far as its one-line description tells: the columns it
    outputs that its files do not hold (not in its ReadSchema); [] when the description was cut
    before them."""
    out, schema = _SCAN_OUTPUT.search(detail), _READ_SCHEMA.search(detail)
    if not out or not schema:
        return []
    names = [c.split("#")[0].strip() for c in out.group(1).split(",") if c.strip()]
    depth, field, fields = 0, "", set()
    for ch in schema.group(1) + ",":
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            fields.add(field.split(":")[0].strip())
            field = ""
        else:
            field += ch
    return [n for n in names if n and n not in fields and n != "..."]


def full_scan(node: Mapping[str, Any]) -> tuple[int, list[str]] | None:
    """(partitions read, partition columns) of a scan of a partitioned table that filtered on
    none of its partition columns, or None."""
    read = metric_value(node, PARTITIONS_READ)
    if read is None or read <= FULL_SCAN_PARTITIONS:
        return None
    if "PartitionFilters: []" not in node.get("detail", ""):
        return None  # it pruned, or its description was cut before saying
    return read, partition_columns(node["detail"])


def plan_findings(plan: Mapping[str, Any]) -> list[Finding]:
    """The advisor's findings on the operators of one SQL execution (a plan_row()): small files
    read or written, a sort-merge join that could broadcast a side, a broadcast too large, a
    join without a condition that multiplied its rows."""
    nodes = plan["nodes"]
    children: dict[int, list[int]] = {}
    for n in nodes:
        children.setdefault(n["parent"], []).append(n["index"])
    qid = plan["executionId"]
    out = []
    for n in nodes:
        name = n["name"].strip()
        where = {
            "app_id": plan["appId"],
            "stage_id": -1,
            "attempt_id": -1,
            "job_ids": tuple(plan["jobIds"]),
            "scope": "plan",
            "execution_id": qid,
            "node_index": n["index"],
            "node_name": name,
        }
        of = f"{name} (query {qid})"

        files, size = metric_value(n, FILES_READ), metric_value(n, FILES_READ_SIZE)
        if files and size is not None and files > SMALL_FILES and size / files < SMALL_FILE_BYTES:
            avg = size // files
            fmt_match = _SCAN_FORMAT.search(name)
            read, write = _scan_io(fmt_match.group(1).lower() if fmt_match else "")
            parts = max(1, math.ceil(size / TARGET_PARTITION_BYTES))
            out.append(
                Finding(
                    "small-files",
                    "warning",
                    evidence={"filesRead": files, "bytesRead": size, "avgBytes": avg},
                    label=f"{files:,} small files read",
                    title=(
                        f"Small files: {name} read {files:,} files of {format_bytes(avg)} on "
                        f"average, {format_bytes(size)} in all (over {SMALL_FILES:,} files under "
                        f"{format_bytes(SMALL_FILE_BYTES)}): opening each costs more than "
                        "reading it. Compact them into fewer, larger files."
                    ),
                    job_label=f"query {qid}: {files:,} small files read",
                    text=(
                        f"query {qid}, {name}: read {files:,} files of {format_bytes(avg)} on "
                        "average"
                    ),
                    fix=(
                        f"# sparkscope advisor: {of} read {format_bytes(size)} in all.\n"
                        f"# {files:,} files of {format_bytes(avg)} on average: compact them, "
                        "e.g.\n"
                        f"# {read}.repartition({parts}){write}"
                    ),
                    **where,
                )
            )

        full = full_scan(n)
        if full:
            read, columns = full
            named = ", ".join(columns) if columns else "its partition columns"
            example = (
                f'df = df.where(col("{columns[0]}") == <value>)'
                if columns
                else 'df = df.where(col("<partition column>") == <value>)'
            )
            files = metric_value(n, FILES_READ)
            evidence = {"partitionsRead": read, "partitionColumns": ", ".join(columns)}
            if files is not None:
                evidence["filesRead"] = files
            out.append(
                Finding(
                    "full-scan",
                    "warning",
                    evidence=evidence,
                    label=f"all {read:,} partitions read",
                    title=(
                        f"Full scan: {name} read all {read:,} partitions of a partitioned table "
                        f"with no filter on {named}. A filter on them reads only the partitions "
                        "it needs (partition pruning)."
                    ),
                    job_label=f"query {qid}: full scan of {read:,} partitions",
                    text=f"query {qid}, {name}: {read:,} partitions read, no filter on {named}",
                    fix=(
                        f"# sparkscope advisor: {of} read all {read:,} partitions of the table, "
                        f"with no filter on {named}.\n"
                        "# Filter on them where the data is read, e.g.\n"
                        f"# {example}"
                    ),
                    **where,
                )
            )

        files, size = metric_value(n, FILES_WRITTEN), metric_value(n, WRITTEN_SIZE)
        if files and size is not None and files > SMALL_FILES and size / files < SMALL_FILE_BYTES:
            avg = size // files
            parts = max(1, math.ceil(size / TARGET_PARTITION_BYTES))
            dynamic = metric_value(n, DYNAMIC_PARTS) or 0
            partitioned = (
                f"# A partitioned write ({dynamic:,} partitions): repartition by its partition "
                "columns instead, e.g. df = df.repartition(*partition_columns)\n"
                if dynamic > 1
                else ""
            )
            out.append(
                Finding(
                    "small-files",
                    "warning",
                    evidence={"filesWritten": files, "bytesWritten": size, "avgBytes": avg},
                    label=f"{files:,} small files written",
                    title=(
                        f"Small files: {name} wrote {files:,} files of {format_bytes(avg)} on "
                        f"average, {format_bytes(size)} in all (over {SMALL_FILES:,} files under "
                        f"{format_bytes(SMALL_FILE_BYTES)}): whatever reads them will open "
                        "each. Fewer partitions before the write."
                    ),
                    job_label=f"query {qid}: {files:,} small files written",
                    text=(
                        f"query {qid}, {name}: wrote {files:,} files of {format_bytes(avg)} on "
                        "average"
                    ),
                    fix=(
                        f"# sparkscope advisor: {of} wrote {format_bytes(size)} in all.\n"
                        + partitioned
                        + f"df = df.coalesce({parts})  # before the write: {files:,} files of "
                        f"{format_bytes(avg)} each"
                    ),
                    **where,
                )
            )

        if name.startswith("SortMergeJoin") and plan["status"] != "running":
            sides = children.get(n["index"], [])
            sizes = [_exchange_bytes(c, nodes, children) for c in sides[:2]]
            keys = join_keys(n["detail"])
            builds = _BUILDS.get(keys[2], ("left", "right")) if keys else ("left", "right")
            if len(sizes) == 2 and None not in sizes:
                left, right = int(sizes[0] or 0), int(sizes[1] or 0)
                small = "right" if right <= left else "left"
                small_bytes = min(left, right)
                if small_bytes < BROADCAST_CANDIDATE_BYTES and small in builds:
                    out.append(
                        Finding(
                            "broadcast",
                            "warning",
                            evidence={
                                "leftBytes": left,
                                "rightBytes": right,
                                "smallBytes": small_bytes,
                            },
                            label=f"broadcast the {format_bytes(small_bytes)} side",
                            title=(
                                f"Broadcast join: {name} shuffled {format_bytes(left)} (left) "
                                f"and {format_bytes(right)} (right); the {small} side is under "
                                f"{format_bytes(BROADCAST_CANDIDATE_BYTES)}: broadcast it, and "
                                "the larger side is neither shuffled nor sorted."
                            ),
                            job_label=(
                                f"query {qid}: {name} could broadcast its "
                                f"{format_bytes(small_bytes)} side"
                            ),
                            text=(
                                f"query {qid}, {name}: the {small} side "
                                f"({format_bytes(small_bytes)}) could be broadcast"
                            ),
                            fix=(
                                "from pyspark.sql.functions import broadcast\n"
                                f"# sparkscope advisor: {of} shuffled {format_bytes(left)} "
                                f"(left) and {format_bytes(right)} (right).\n"
                                f"# the {format_bytes(small_bytes)} side of the SortMergeJoin "
                                "is small enough to broadcast:\n"
                                f"# {join_code(keys, small)}"
                            ),
                            **where,
                        )
                    )

        size = metric_value(n, DATA_SIZE)
        if name.startswith("BroadcastExchange") and size and size > BROADCAST_TOO_LARGE_BYTES:
            out.append(
                Finding(
                    "broadcast-too-large",
                    "warning",
                    evidence={"bytes": size},
                    label=f"broadcast {format_bytes(size)}",
                    title=(
                        f"Broadcast too large: {name} sent {format_bytes(size)} to every "
                        f"executor (over {format_bytes(BROADCAST_TOO_LARGE_BYTES)}), through "
                        "the driver and into each executor's memory. A sort-merge join "
                        "would do better."
                    ),
                    job_label=f"query {qid}: broadcast {format_bytes(size)}",
                    text=f"query {qid}, {name}: broadcast {size:,} bytes",
                    fix=(
                        f"# sparkscope advisor: {of} broadcast {format_bytes(size)} to every "
                        "executor.\n"
                        "# Remove the broadcast() hint on that side of the join, or stop "
                        "Spark broadcasting on its own:\n"
                        '# spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")'
                    ),
                    **where,
                )
            )

        rows = metric_value(n, ROWS_METRIC)
        cross = name.startswith(("CartesianProduct", "BroadcastNestedLoopJoin"))
        if cross and rows and rows > CROSS_JOIN_ROWS:
            out.append(
                Finding(
                    "cross-join",
                    "warning",
                    evidence={"rows": rows},
                    label=f"cross join: {rows:,} rows",
                    title=(
                        f"Cross join: {name} produced {rows:,} rows (over {CROSS_JOIN_ROWS:,}): "
                        "a join without an equality condition pairs every row of one side "
                        "with every row of the other. Join on a key both sides share."
                    ),
                    job_label=f"query {qid}: cross join of {rows:,} rows",
                    text=f"query {qid}, {name}: {rows:,} rows",
                    fix=(
                        f"# sparkscope advisor: {of} produced {rows:,} rows: a join without an "
                        "equality condition pairs every row with every row of the other side.\n"
                        "# Add a join condition on a key both sides share, e.g.\n"
                        '# result = left_df.join(right_df, left_df["id"] == right_df["id"])'
                    ),
                    **where,
                )
            )
    return out


def busy_share(samples: Sequence[Sequence[int]], start_ms: int, end_ms: int) -> tuple[float, int]:
    """The busy task slots over the cores, over [start_ms, end_ms] (each sample holds until the
    next), and the most cores seen; (0.0, 0) without cores."""
    busy = cores_ms = most = 0
    for i, (at, active, cores, *_) in enumerate(samples):
        until = samples[i + 1][0] if i + 1 < len(samples) else end_ms
        lo, hi = max(at, start_ms), min(until, end_ms)
        if hi <= lo or cores <= 0:
            continue
        cores_ms += cores * (hi - lo)
        busy += min(active, cores) * (hi - lo)
        most = max(most, cores)
    return (busy / cores_ms if cores_ms else 0.0), most


def cell_findings(
    jobs: Sequence[Mapping[str, Any]], run: Summary, samples: Sequence[Sequence[int]]
) -> list[Finding]:
    """The advisor's findings on the whole cell run, once its jobs have ended: cores left idle
    (the application's busy task slots over its cores, over the jobs' run)."""
    if not run.has_jobs or run.live or run.end_ms - run.start_ms < IDLE_CORES_MIN_MS:
        return []
    share, cores = busy_share(samples, run.start_ms, run.end_ms)
    if not cores or share >= IDLE_CORES_SHARE:
        return []
    took = run.end_ms - run.start_ms
    pct = _round(share * 100)
    return [
        Finding(
            "idle-cores",
            "warning",
            app_id=jobs[0]["appId"],
            stage_id=-1,
            attempt_id=-1,
            job_ids=(),
            scope="cell",
            evidence={"busyShare": round(share, 4), "cores": cores, "runMs": took},
            label=f"{pct}% of cores busy",
            title=(
                f"Idle cores: over this cell's {format_duration(took)} of jobs, {pct}% of the "
                f"{cores} cores were busy on average (under {_round(IDLE_CORES_SHARE * 100)}%): "
                "too few partitions to give every core a task, or more executors than the work "
                "needs."
            ),
            text=f"the cell: {pct}% of {cores} cores busy over {format_duration(took)}",
            fix=(
                f"# sparkscope advisor: over this cell's {format_duration(took)} of jobs, {pct}% "
                f"of the {cores} cores were busy on average.\n"
                "# More partitions, so that every core has a task, e.g.\n"
                f"# df = df.repartition({2 * cores})\n"
                "# or fewer executors for this work (spark.executor.instances, dynamic "
                "allocation)."
            ),
        )
    ]


def spark_memory(n: int) -> str:
    """Bytes as a spark.executor.memory value, rounded up to 256 MiB: `1280m`, `2g`."""
    mib = max(256, -(-n // (256 * MiB)) * 256)
    return f"{mib // 1024}g" if mib % 1024 == 0 else f"{mib}m"


def memory_of(
    stages: Sequence[Mapping[str, Any]], app: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The memory of the executors while the cell's stages ran (their heartbeats' peaks, as
    Spark's stage peakExecutorMetrics), against the heap they may grow to, and the garbage
    collection share of the cell's task time; None before a heartbeat named one of its stages."""
    peaks = [st["peakMemory"] for st in stages if st.get("peakMemory")]
    if not peaks:
        return None
    heap = max(int(p.get("jvmHeapBytes", 0)) for p in peaks)
    off_heap = max(int(p.get("jvmOffHeapBytes", 0)) for p in peaks)
    storage = max(
        int(p.get("onHeapStorageBytes", 0)) + int(p.get("offHeapStorageBytes", 0)) for p in peaks
    )
    executors = {e["executorId"]: e for e in (app or {}).get("executorMemory", [])}
    limits = {k: int(e.get("maxHeapBytes", 0)) for k, e in executors.items()}
    limits = {k: v for k, v in limits.items() if v > 0}
    # Tasks run on the executors; on the driver only in local mode, where it is the executor.
    others = [v for k, v in limits.items() if k != "driver"]
    max_heap = max(others) if others else limits.get("driver", 0)
    run = sum(int(st.get("executorRunTimeMs", 0) or 0) for st in stages)
    gc = sum(int(st.get("gcTimeMs", 0) or 0) for st in stages)
    gc_share = gc / run if run else 0.0
    share = heap / max_heap if max_heap else None
    text = f"Memory: heap peaked at {format_bytes(heap)}"
    if share is not None:
        text += f" of {format_bytes(max_heap)} ({_round(share * 100)}%)"
    text += f" · off-heap {format_bytes(off_heap)}"
    if storage:
        text += f" · cached {format_bytes(storage)}"
    if run:
        text += f" · GC {_round(gc_share * 100)}% of task time"
    # with executors of its own the driver runs no tasks: its heap (since it started) apart
    driver = (executors.get("driver") or {}).get("peaks") or {}
    driver_heap = int(driver.get("jvmHeapBytes", 0)) if others else 0
    if driver_heap:
        text += f" · driver heap peaked at {format_bytes(driver_heap)}"
        if limits.get("driver"):
            text += f" of {format_bytes(limits['driver'])}"
    return {
        "driverPeakHeapBytes": driver_heap,
        "driverMaxHeapBytes": limits.get("driver", 0) if driver_heap else 0,
        "peakHeapBytes": heap,
        "maxHeapBytes": max_heap,
        "heapShare": round(share, 4) if share is not None else None,
        "peakOffHeapBytes": off_heap,
        "peakStorageBytes": storage,
        "gcTimeMs": gc,
        "runTimeMs": run,
        "gcShare": round(gc_share, 4),
        "text": text,
    }


def memory_findings(
    jobs: Sequence[Mapping[str, Any]], run: Summary, memory: Mapping[str, Any] | None
) -> list[Finding]:
    """The advisor's executor-memory findings on a finished cell run (DataFlint's rule): the
    heap nearly full, or far from full over a long run."""
    if not run.has_jobs or run.live or not memory or memory.get("heapShare") is None:
        return []
    share, heap, limit = memory["heapShare"], memory["peakHeapBytes"], memory["maxHeapBytes"]
    took = run.end_ms - run.start_ms
    pct = _round(share * 100)
    suggested = spark_memory(int(heap * (1 + MEMORY_HEADROOM)))
    common = {
        "app_id": jobs[0]["appId"],
        "stage_id": -1,
        "attempt_id": -1,
        "job_ids": (),
        "scope": "cell",
        "evidence": {
            "peakHeapBytes": heap,
            "maxHeapBytes": limit,
            "heapShare": share,
            "runMs": took,
            "gcShare": memory["gcShare"],
        },
    }
    said = f"the executors' heap peaked at {format_bytes(heap)} of {format_bytes(limit)} ({pct}%)"
    if share > MEMORY_HIGH_SHARE:
        return [
            Finding(
                "memory-high",
                "warning",
                label=f"heap {pct}% full",
                title=(
                    f"Executor memory nearly full: while this cell's stages ran, {said}, over "
                    f"{_round(MEMORY_HIGH_SHARE * 100)}%. Tasks risk long garbage collections, "
                    "spills and out-of-memory failures. More memory per executor (a restart of "
                    "the server, by its operator), or less data per task."
                ),
                text=f"the cell: {said}",
                fix=(
                    f"# sparkscope advisor: while this cell's stages ran, {said}.\n"
                    f"# Ask the server's operator for more memory per executor (a restart), e.g.\n"
                    f"# spark.executor.memory={spark_memory(int(limit * (1 + MEMORY_HEADROOM)))}\n"
                    "# or give each task less data: more partitions, e.g.\n"
                    "# df = df.repartition(df.rdd.getNumPartitions() * 2)"
                ),
                **common,
            )
        ]
    if share < MEMORY_LOW_SHARE and took >= MEMORY_LOW_MIN_MS:
        return [
            Finding(
                "memory-low",
                "info",
                label=f"heap {pct}% used",
                title=(
                    f"Executor memory to spare: over this cell's {format_duration(took)} of "
                    f"jobs, {said}, under {_round(MEMORY_LOW_SHARE * 100)}%. The executors "
                    f"could run with about {suggested} (the peak and "
                    f"{_round(MEMORY_HEADROOM * 100)}%), or run more tasks each."
                ),
                text=f"the cell: {said}",
                fix=(
                    f"# sparkscope advisor: over this cell's {format_duration(took)} of jobs, "
                    f"{said}.\n"
                    "# The executors could do with less memory (a restart of the server, by "
                    "its operator), e.g.\n"
                    f"# spark.executor.memory={suggested}"
                ),
                **common,
            )
        ]
    return []


# ---- the advisor's thresholds, per user


def advisor_thresholds() -> dict[str, int | float]:
    """Every threshold of the advisor by its name, as it stands."""
    return {name: globals()[name] for name in ADVISOR_THRESHOLDS}


def _threshold(name: str, value: Any) -> tuple[str, int | float]:
    """A threshold's constant name and its value from text, or ValueError."""
    key = str(name).strip().upper().replace("-", "_")
    key = key.removeprefix(ADVISOR_ENV)
    kind = ADVISOR_THRESHOLDS.get(key)
    if kind is None:
        known = ", ".join(n.lower() for n in ADVISOR_THRESHOLDS)
        raise ValueError(f"no advisor threshold {name!r} (one of {known})")
    text = str(value).strip().replace("_", "")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{key.lower()}: {value!r} is no number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{key.lower()}: {value!r} is not a number of 0 or more")
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"{key.lower()}: {value!r} is no whole number")
        number = int(number)
    if key.endswith("_SHARE") and number > 1:
        raise ValueError(f"{key.lower()}: {value!r} is no share (0 to 1)")
    if key == "TARGET_PARTITION_BYTES" and number < 1:
        raise ValueError(f"{key.lower()}: {value!r} is under 1 byte")
    return key, number


def set_advisor_thresholds(settings: Mapping[str, Any]) -> dict[str, int | float]:
    """Set thresholds by name (`SMALL_FILE_BYTES`, `small_file_bytes`, `small-file-bytes`, or
    the environment variable's name): all of them, or none and ValueError."""
    parsed = dict(_threshold(name, value) for name, value in settings.items())
    globals().update(parsed)
    return parsed


def read_advisor_env(environ: Mapping[str, str] | None = None) -> dict[str, int | float]:
    """The thresholds the environment sets (SPARKSCOPE_ADVISOR_<NAME>); a bad value is ignored
    with a warning in the log."""
    env = os.environ if environ is None else environ
    out: dict[str, int | float] = {}
    for var in sorted(env):
        if not var.startswith(ADVISOR_ENV):
            continue
        try:
            out.update(set_advisor_thresholds({var: env[var]}))
        except ValueError as e:
            log.warning("sparkscope: %s ignored: %s", var, e)
    return out


read_advisor_env()


# ---- the whole view


@dataclass
class CellView:
    """Everything a view of one cell run shows. The rows and facts are given; the summary,
    findings, root causes and links follow from them."""

    tag: str
    jobs: list[dict[str, Any]]  # job_row()s, oldest first
    stages: list[dict[str, Any]]  # stage_row()s, by stage attempt
    now_ms: int  # the agent's clock now: running durations end here
    state: str = "running"  # running | done | cancelled
    cell_done: bool = False
    context: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, int] = field(default_factory=dict)
    samples: list[list[int]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    operation_ids: list[str] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    # the Cancel buttons' outcome and the stages whose tasks were asked for
    cancel: dict[str, Any] = field(default_factory=dict)
    cancelled_jobs: list[int] = field(default_factory=list)
    task_lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)  # log_row()s, oldest first
    executor_logs: list[dict[str, str]] = field(default_factory=list)
    # plan_row()s of its SQL executions, by start; and how many older ones are not shown
    plans: list[dict[str, Any]] = field(default_factory=list)
    plans_dropped: int = 0
    # its share of the server's cores over its run, beside the other sessions' (contention.py)
    contention: dict[str, Any] | None = None
    # how it differs from the cell's previous run (rundiff.diff), once both are known
    diff: dict[str, Any] | None = None
    # the executors' memory while its stages ran, and its GC share (memory_of)
    memory: dict[str, Any] | None = None

    summary: Summary = field(init=False)
    findings: list[Finding] = field(init=False)
    root_causes: list[RootCause] = field(init=False)
    links: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summary(self.jobs)
        self.findings = [
            *findings(self.jobs, self.stages, self.cluster.get("cores", 0)),
            *(f for plan in self.plans for f in plan_findings(plan)),
            *cell_findings(self.jobs, self.summary, self.samples),
            *memory_findings(self.jobs, self.summary, self.memory),
        ]
        self.root_causes = root_causes(self.jobs, self.stages)
        self.links = links(
            self.context.get("uiLink", ""), self.jobs, self.stages, self.executor_logs
        )

    @property
    def summary_text(self) -> str:
        return self.summary.text(self.now_ms)

    def root_cause_of(self, job: Mapping[str, Any]) -> RootCause | None:
        return next(
            (c for c in self.root_causes if (c.app_id, c.job_id) == (job["appId"], job["jobId"])),
            None,
        )

    def findings_of(self, job: Mapping[str, Any]) -> list[Finding]:
        return [f for f in self.findings if f.app_id == job["appId"] and job["jobId"] in f.job_ids]


def build(run: CellRun, stream: StreamState, now_ms: int) -> CellView:
    """The view of a cell run from what the agent streamed so far, at `now_ms` (agent clock)."""
    ordered = sorted(run.jobs.values(), key=lambda j: (j["submissionTimeMs"], j["jobId"]))
    jobs = [job_row(j, run.label_of(j)) for j in ordered]
    stages = [stage_row(s) for _, s in sorted(run.stages.items())]
    app_id = next(iter(sorted(run.app_ids())), "")
    app = stream.applications.get(app_id)
    sessions = run.sessions()
    session = sessions[0] if sessions else None
    ctx = context(
        app, app_id, session.session_id if session else "", session.user_id if session else ""
    )
    end_ms = now_ms
    if run.done():
        end_ms = max((j["completionTimeMs"] for j in jobs if j["completionTimeMs"]), default=now_ms)
    return CellView(
        tag=run.tag,
        jobs=jobs,
        stages=stages,
        now_ms=now_ms,
        state=run.state(),
        cell_done=run.finished,
        context=ctx,
        cluster=cluster(app),
        samples=window(stream.samples.get(app_id, []), run.started_ms, end_ms),
        errors=operation_errors(run.operations.values()),
        notices=[dict(n) for n in run.notices],
        operation_ids=sorted({op_id for _, op_id in run.operations}),
        session_ids=sorted({j["sessionId"] for j in jobs if j["sessionId"]}),
        cancel=dict(run.cancel or {}),
        cancelled_jobs=sorted(run.cancelled_jobs),
        task_lists={k: dict(v) for k, v in run.task_lists.items()},
        logs=[log_row(line) for _, line in sorted(run.logs.items())],
        executor_logs=executor_logs(app),
        plans=run.plan_rows(),
        plans_dropped=run.plans_dropped,
        contention=contention_of(
            jobs, stages, stream.samples.get(app_id, []), end_ms, run.slot_points
        ),
        diff=dict(run.diff) if run.diff else None,
        memory=memory_of(stages, app),
    )


def contention_of(
    jobs: Sequence[Mapping[str, Any]],
    stages: Sequence[Mapping[str, Any]],
    samples: Sequence[Sample],
    end_ms: int,
    points: Sequence[tuple[int, int, int]] = (),
) -> dict[str, Any] | None:
    """The cell's contention over its jobs' run (first submission to the end), with the window
    it covers; None before a job ran or without samples."""
    starts = [j["submissionTimeMs"] for j in jobs if j["submissionTimeMs"]]
    if not starts:
        return None
    start_ms = min(starts)
    own_ms = sum(int(s.get("executorRunTimeMs", 0) or 0) for s in stages)
    c = contention(samples, start_ms, end_ms, own_ms, points)
    if c is None:
        return None
    return {**c.as_dict(), "startMs": start_ms, "endMs": end_ms}
