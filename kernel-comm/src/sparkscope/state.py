"""The client-side copy of what the agent streams (docs/streaming-api.md): snapshots replace it,
deltas replace entities by identity. Frames arrive in the proto3 JSON mapping, which leaves out
fields at their default value and writes 64-bit integers as strings; `normalize_*` puts every
field back with its default and its Python type, so the rest of the package never guesses."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JobKey = tuple[str, int]  # appId, jobId
StageKey = tuple[str, int, int]  # appId, stageId, attemptId
OperationKey = tuple[str, str]  # appId, operationId
SqlKey = tuple[str, int]  # appId, executionId

# busy-slots samples kept per application (the agent keeps at most its --task-samples)
MAX_SAMPLES = 20_000
# the driver's log lines kept per stream (the agent keeps at most its --max-log-lines per
# application), and per cell run
MAX_LOG_LINES = 2_000
MAX_CELL_LOG_LINES = 200
# SQL executions (plans and operator metrics) kept per stream: the oldest ended go first
MAX_SQL_EXECUTIONS = 200

# appId, timeMs, seq: the agent numbers lines anew when it restarts, and a cell run keeps the
# lines it was shown before; in time order
LogKey = tuple[str, int, int]

JOB_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "UNKNOWN"})
OPERATION_TERMINAL = frozenset({"FINISHED", "FAILED", "CANCELED", "CLOSED"})


def _int(value: Any, default: int = 0) -> int:
    """An int32/int64/uint64 field: a JSON number, or a string for 64-bit values."""
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _ints(value: Any) -> list[int]:
    return [_int(v) for v in value] if isinstance(value, list) else []


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# ---- the messages of proto/sparkscope/v1/model.proto as this package reads them: per message,
# a reader per field by its proto3 JSON name (lowerCamelCase). A test parses model.proto and
# fails when a table names a field the proto lacks, reads it as another type, or leaves a field
# of the proto neither read nor in `ignored`.


@dataclass(frozen=True)
class Field:
    """How one field is read: `kind` is its proto type as the test checks it (`string`, `int`,
    `bool`, `enum:<VALUE_PREFIX_>`, `message:<Name>`); `optional` readers give None when the
    field is absent."""

    kind: str
    read: Callable[[Any], Any]
    repeated: bool = False
    optional: bool = False


STRING = Field("string", _str)
OPT_STRING = Field("string", _opt_str, optional=True)
STRINGS = Field("string", _strs, repeated=True)
INT = Field("int", _int)
OPT_INT = Field("int", _opt_int, optional=True)
INTS = Field("int", _ints, repeated=True)
BOOL = Field("bool", lambda v: bool(v or False))


def enum(prefix: str) -> Field:
    """`JOB_STATUS_RUNNING` → `RUNNING`; absent (the default, 0) → `UNSPECIFIED`."""

    def read(value: Any) -> str:
        name = value if isinstance(value, str) and value else f"{prefix}UNSPECIFIED"
        return name.removeprefix(prefix)

    return Field(f"enum:{prefix}", read)


@dataclass(frozen=True)
class Message:
    """One proto message: its name in model.proto, its fields' readers, and the fields it has
    that are deliberately not read."""

    name: str
    fields: Mapping[str, Field]
    ignored: frozenset[str] = frozenset()

    def read(self, raw: Any) -> dict[str, Any]:
        """Every field present, with its default when the JSON left it out."""
        raw = _dict(raw)
        return {k: f.read(raw.get(k)) for k, f in self.fields.items()}

    def singular(self) -> Field:
        """This message as a field: its defaults when absent (a singular message field)."""
        return Field(f"message:{self.name}", self.read)

    def optional(self) -> Field:
        """This message as a field that may be absent (None)."""
        return Field(
            f"message:{self.name}",
            lambda v: self.read(v) if isinstance(v, dict) else None,
            optional=True,
        )

    def repeated(self) -> Field:
        return Field(
            f"message:{self.name}", lambda v: [self.read(m) for m in _list(v)], repeated=True
        )


def _with(field: Field, read: Callable[[Any], Any]) -> Field:
    """The same field, read otherwise."""
    return Field(field.kind, read, field.repeated, field.optional)


TASK_SAMPLES = Message(
    "TaskSamples",
    {
        "startMs": INT,
        "offsetMs": INTS,
        "activeTasks": INTS,
        "totalCores": INTS,
        "executors": INTS,
        "busySessions": INTS,
    },
)
NOTICE_KIND = enum("NOTICE_KIND_")
NOTICE = Message(
    "Notice",
    {
        # `resync`, `dropped`, …: lower case, as the widget's class names use it
        "kind": _with(NOTICE_KIND, lambda v: NOTICE_KIND.read(v).lower()),
        "atMs": INT,
        "message": STRING,
    },
)
CLUSTER = Message("Cluster", {"executors": INT, "totalCores": INT, "activeTasks": INT})
EXECUTOR_LOG = Message("ExecutorLog", {"executorId": STRING, "kind": STRING, "url": STRING})
MEMORY_PEAKS = Message(
    "MemoryPeaks",
    {
        "jvmHeapBytes": INT,
        "jvmOffHeapBytes": INT,
        "onHeapStorageBytes": INT,
        "offHeapStorageBytes": INT,
        "gcTimeMs": INT,
    },
)
EXECUTOR_MEMORY = Message(
    "ExecutorMemory",
    {"executorId": STRING, "peaks": MEMORY_PEAKS.singular(), "maxHeapBytes": INT},
)
APPLICATION = Message(
    "Application",
    {
        "id": STRING,
        "name": STRING,
        "sparkVersion": STRING,
        "sparkUser": STRING,
        "startTimeMs": INT,
        "endTimeMs": OPT_INT,
        "live": BOOL,
        "cluster": CLUSTER.singular(),
        "notices": NOTICE.repeated(),
        "master": STRING,
        "uiLink": STRING,
        "connectAddress": STRING,
        # rows, not columns (see normalize_samples); StreamState keeps them apart
        "taskSamples": _with(TASK_SAMPLES.singular(), lambda v: normalize_samples(_dict(v))),
        "executorLogs": EXECUTOR_LOG.repeated(),
        "executorMemory": EXECUTOR_MEMORY.repeated(),
    },
)
SESSION = Message(
    "Session",
    {
        "appId": STRING,
        "sessionId": STRING,
        "userId": STRING,
        "startTimeMs": INT,
        "endTimeMs": OPT_INT,
    },
)
OPERATION_STATE = enum("OPERATION_STATE_")
OPERATION = Message(
    "Operation",
    {
        "appId": STRING,
        "operationId": STRING,
        "sessionId": STRING,
        "userId": STRING,
        "tags": STRINGS,
        "state": OPERATION_STATE,
        "finalState": OPERATION_STATE,
        "startTimeMs": INT,
        "endTimeMs": OPT_INT,
        "closeTimeMs": OPT_INT,
        "statement": STRING,
        "error": OPT_STRING,
        "jobIds": INTS,
        "producedRowCount": OPT_INT,
    },
)
CONNECT_REF = Message(
    "ConnectRef", {"userId": STRING, "sessionId": STRING, "operationId": STRING, "tags": STRINGS}
)
TASK_COUNTS = Message(
    "TaskCounts",
    {"total": INT, "active": INT, "completed": INT, "skipped": INT, "failed": INT, "killed": INT},
)
STAGE_COUNTS = Message(
    "StageCounts", {"active": INT, "completed": INT, "skipped": INT, "failed": INT}
)
JOB = Message(
    "Job",
    {
        "appId": STRING,
        "jobId": INT,
        "name": STRING,
        "description": STRING,
        "status": enum("JOB_STATUS_"),
        "stageIds": INTS,
        "tasks": TASK_COUNTS.singular(),
        "stages": STAGE_COUNTS.singular(),
        "jobTags": STRINGS,
        "submissionTimeMs": INT,
        "completionTimeMs": OPT_INT,
        "sqlExecutionId": OPT_INT,
        "connect": CONNECT_REF.optional(),
        "error": OPT_STRING,
    },
)
DURATION_SUMMARY = Message("DurationSummary", {"minMs": INT, "medianMs": INT, "maxMs": INT})
TASK_FAILURE = Message(
    "TaskFailure",
    {
        "taskId": INT,
        "index": INT,
        "attempt": INT,
        "executorId": STRING,
        "host": STRING,
        "reason": STRING,
        "exceptionClass": STRING,
        "message": STRING,
        "stackTrace": STRING,
        "timeMs": INT,
    },
)
STAGE = Message(
    "Stage",
    {
        "appId": STRING,
        "stageId": INT,
        "attemptId": INT,
        "name": STRING,
        "status": enum("STAGE_STATUS_"),
        "numTasks": INT,
        "activeTasks": INT,
        "completedTasks": INT,
        "failedTasks": INT,
        "killedTasks": INT,
        "jobIds": INTS,
        "submissionTimeMs": OPT_INT,
        "completionTimeMs": OPT_INT,
        "failureReason": OPT_STRING,
        "executorRunTimeMs": INT,
        "inputBytes": INT,
        "outputBytes": INT,
        "shuffleReadBytes": INT,
        "shuffleWriteBytes": INT,
        "memorySpilledBytes": INT,
        "diskSpilledBytes": INT,
        "gcTimeMs": INT,
        "taskDurations": DURATION_SUMMARY.optional(),
        "firstFailure": TASK_FAILURE.optional(),
        "peakMemory": MEMORY_PEAKS.optional(),
    },
)
TAG_GROUP = Message(
    "TagGroup",
    {
        "tag": STRING,
        "operationIds": STRINGS,
        "jobIds": INTS,
        "appId": STRING,
        "sessionId": STRING,
    },
)
LOG_LINE = Message(
    "LogLine",
    {
        "appId": STRING,
        "seq": INT,
        "timeMs": INT,
        "level": STRING,
        "logger": STRING,
        "thread": STRING,
        "message": STRING,
        "thrown": STRING,
        "sessionId": STRING,
        "userId": STRING,
        "operationId": STRING,
        "tags": STRINGS,
        "jobId": OPT_INT,
        "stageId": OPT_INT,
        "stageAttemptId": INT,
    },
)
PLAN_METRIC = Message("PlanMetric", {"name": STRING, "type": STRING, "accumulatorId": INT})
PLAN_NODE = Message(
    "PlanNode",
    {"parent": INT, "name": STRING, "detail": STRING, "metrics": PLAN_METRIC.repeated()},
)
METRIC_VALUE = Message("MetricValue", {"accumulatorId": INT, "value": INT})
SQL_EXECUTION = Message(
    "SqlExecution",
    {
        "appId": STRING,
        "executionId": INT,
        "operationId": STRING,
        "description": STRING,
        "startMs": INT,
        "endMs": OPT_INT,
        "error": STRING,
        "nodes": PLAN_NODE.repeated(),
        "planVersion": INT,
        "metricValues": METRIC_VALUE.repeated(),
        "nodesDropped": INT,
        "jobIds": INTS,
    },
)
UPDATE = Message(
    "Update",
    {
        "generation": OPT_INT,
        "snapshot": BOOL,
        "sentAtMs": OPT_INT,
        "applications": APPLICATION.repeated(),
        "sessions": SESSION.repeated(),
        "operations": OPERATION.repeated(),
        "jobs": JOB.repeated(),
        "stages": STAGE.repeated(),
        "tagGroups": TAG_GROUP.repeated(),
        "logLines": LOG_LINE.repeated(),
        "sqlExecutions": SQL_EXECUTION.repeated(),
    },
)

# What the agent answers a client's requests with (agent.py).


def _text(value: Any) -> str:
    return str(value or "")


def _true(value: Any) -> bool:
    return value is True


def _job_ids(value: Any) -> list[int]:
    """Job ids as the agent wrote them; anything else is left out."""
    if not isinstance(value, list):
        return []
    return [int(j) for j in value if isinstance(j, (int, str)) and str(j).isdigit()]


TEXT = Field("string", _text)
TRUE = Field("bool", _true)
CANCEL_RESULT = Message(
    "CancelResult",
    {
        "requestId": TEXT,
        "ok": TRUE,
        "message": TEXT,
        "code": TEXT,
        "interruptedOperationIds": STRINGS,
        "cancelledJobIds": Field("int", _job_ids, repeated=True),
    },
)
TASK_DETAIL = Message(
    "TaskDetail",
    {
        "taskId": INT,
        "index": INT,
        "attempt": INT,
        "executorId": TEXT,
        "host": TEXT,
        "status": TEXT,
        "launchTimeMs": INT,
        "durationMs": INT,
        "schedulerDelayMs": INT,
        "deserializeMs": INT,
        "shuffleReadMs": INT,
        "computeMs": INT,
        "shuffleWriteMs": INT,
        "serializeMs": INT,
        "gettingResultMs": INT,
        "gcMs": INT,
        "speculative": TRUE,
        "error": OPT_STRING,
    },
)
THREAD_DUMP = Message(
    "ThreadDump",
    {
        "taskId": INT,
        "executorId": TEXT,
        "runningMs": INT,
        "threadName": TEXT,
        "threadState": TEXT,
        "frames": STRINGS,
        "moreFrames": INT,
        "blockedBy": TEXT,
        "takenAtMs": INT,
        "error": TEXT,
    },
)
TASK_LIST = Message(
    "TaskList",
    {
        "requestId": TEXT,
        "appId": TEXT,
        "stageId": INT,
        "attemptId": INT,
        "ok": TRUE,
        "code": TEXT,
        "message": TEXT,
        "tasks": TASK_DETAIL.repeated(),
        "total": INT,
        "threadDump": THREAD_DUMP.optional(),
    },
)
CELL_RUN = Message(
    "CellRun",
    {
        "appId": STRING,
        "sessionId": STRING,
        "userId": STRING,
        "tag": STRING,
        "notebook": STRING,
        "cellId": STRING,
        "executionCount": INT,
        "state": STRING,
        "startTimeMs": INT,
        "endTimeMs": OPT_INT,
        "jobs": INT,
        "jobsRunning": INT,
        "jobsFailed": INT,
        "tasksTotal": INT,
        "tasksCompleted": INT,
        "tasksActive": INT,
        "tasksFailed": INT,
        "error": OPT_STRING,
        "operationIds": STRINGS,
    },
)
MY_WORK = Message(
    "MyWork",
    {
        "requestId": TEXT,
        "applications": APPLICATION.repeated(),
        "runs": CELL_RUN.repeated(),
        "moreFinished": INT,
    },
)


def normalize_job(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A `sparkscope.v1.Job` with every field present; status without its enum prefix."""
    return JOB.read(raw)


def normalize_stage(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A `sparkscope.v1.Stage` (one attempt) with every field present."""
    return STAGE.read(raw)


def normalize_operation(raw: Mapping[str, Any]) -> dict[str, Any]:
    return OPERATION.read(raw)


def normalize_session(raw: Mapping[str, Any]) -> dict[str, Any]:
    return SESSION.read(raw)


def normalize_application(raw: Mapping[str, Any]) -> dict[str, Any]:
    return APPLICATION.read(raw)


def normalize_notice(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A gap in what the agent saw, or what it did about one (`sparkscope.v1.Notice`)."""
    return NOTICE.read(raw)


def normalize_tag_group(raw: Mapping[str, Any]) -> dict[str, Any]:
    return TAG_GROUP.read(raw)


Sample = tuple[int, int, int, int, int]  # atMs, activeTasks, totalCores, executors, busySessions


def normalize_samples(raw: Mapping[str, Any]) -> list[Sample]:
    """`sparkscope.v1.TaskSamples` (columns, times as offsets) as (atMs, active, cores,
    executors, busy sessions) rows, oldest first."""
    t = TASK_SAMPLES.read(raw)
    columns = [t[k] for k in ("activeTasks", "totalCores", "executors", "busySessions")]
    rows = []
    for i, off in enumerate(t["offsetMs"]):
        a, c, e, b = (col[i] if i < len(col) else 0 for col in columns)
        rows.append((t["startMs"] + off, a, c, e, b))
    return rows


def operation_finished(op: Mapping[str, Any]) -> bool:
    return op["state"] in OPERATION_TERMINAL or op["finalState"] in OPERATION_TERMINAL


@dataclass
class TagView:
    """Everything the agent reported for one client tag (one notebook cell run)."""

    jobs: dict[JobKey, dict[str, Any]] = field(default_factory=dict)
    stages: dict[StageKey, dict[str, Any]] = field(default_factory=dict)
    operations: dict[OperationKey, dict[str, Any]] = field(default_factory=dict)
    logs: dict[LogKey, dict[str, Any]] = field(default_factory=dict)  # in time order
    # the SQL executions of its jobs and operations, by execution id (see StreamState)
    sql_executions: dict[SqlKey, dict[str, Any]] = field(default_factory=dict)


class StreamState:
    """What one WebSocket stream has delivered so far. Not thread-safe: one owner (the agent
    client's thread) applies updates and reads views."""

    def __init__(self) -> None:
        self.generation = 0
        self.sent_at_ms = 0
        self.applications: dict[str, dict[str, Any]] = {}
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[OperationKey, dict[str, Any]] = {}
        self.jobs: dict[JobKey, dict[str, Any]] = {}
        self.stages: dict[StageKey, dict[str, Any]] = {}
        self.tag_groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        # the driver's log lines of the followed sessions (in arrival order; _log_heap has
        # their keys, the oldest on top)
        self.log_lines: dict[LogKey, dict[str, Any]] = {}
        # SQL executions: each as the agent last sent it, but its plan (`nodes`, `planVersion`,
        # `nodesDropped`) is the last one sent, and `metricValues` is merged into `values`
        # (accumulatorId → value; a metric not in it has no value yet)
        self.sql_executions: dict[SqlKey, dict[str, Any]] = {}
        # busy task slots per application, oldest first: a snapshot sends them all, a delta
        # the new ones
        self.samples: dict[str, list[Sample]] = {}
        # indexes kept in step with the maps above
        self._stage_attempts: dict[tuple[str, int], set[int]] = {}
        self._log_heap: list[LogKey] = []
        self._logs_by_tag: dict[str, set[LogKey]] = {}
        self._logs_by_job: dict[JobKey, set[LogKey]] = {}
        self._logs_by_op: dict[OperationKey, set[LogKey]] = {}
        self._sql_by_job: dict[JobKey, set[SqlKey]] = {}
        self._sql_by_op: dict[OperationKey, set[SqlKey]] = {}

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def apply(self, update: Mapping[str, Any]) -> set[str] | None:
        """Merge one `Update`. Returns the client tags whose jobs, stages or operations may have
        changed, or None after a snapshot (anything may have changed)."""
        u = UPDATE.read(update)
        snapshot = u["snapshot"]
        if snapshot:
            self.clear()
        if u["generation"] is not None:
            self.generation = u["generation"]
        if u["sentAtMs"] is not None:
            self.sent_at_ms = u["sentAtMs"]
        touched: set[str] = set()

        for app in u["applications"]:
            self.applications[app["id"]] = app
            new = app.pop("taskSamples")
            if new:
                kept = self.samples.setdefault(app["id"], [])
                kept.extend(s for s in new if not kept or s[0] > kept[-1][0])
                del kept[: max(0, len(kept) - MAX_SAMPLES)]
        for sess in u["sessions"]:
            self.sessions[(sess["appId"], sess["sessionId"])] = sess
        for op in u["operations"]:
            self.operations[(op["appId"], op["operationId"])] = op
            touched.update(op["tags"])
        for job in u["jobs"]:
            self.jobs[(job["appId"], job["jobId"])] = job
            touched.update(self._job_tags(job))
        for stage in u["stages"]:
            key = (stage["appId"], stage["stageId"], stage["attemptId"])
            self.stages[key] = stage
            self._stage_attempts.setdefault(key[:2], set()).add(key[2])
            for job_id in stage["jobIds"]:
                job = self.jobs.get((stage["appId"], job_id))
                if job is not None:
                    touched.update(self._job_tags(job))
        for group in u["tagGroups"]:
            self.tag_groups[(group["appId"], group["sessionId"], group["tag"])] = group
            touched.add(group["tag"])
        for line in u["logLines"]:
            key = (line["appId"], line["timeMs"], line["seq"])
            old = self.log_lines.get(key)
            if old is None:
                heapq.heappush(self._log_heap, key)
            else:
                _unindex(self._log_index(key, old), key)
            self.log_lines[key] = line
            _index(self._log_index(key, line), key)
            touched.update(self._line_tags(line))
        while len(self.log_lines) > MAX_LOG_LINES:
            key = heapq.heappop(self._log_heap)
            _unindex(self._log_index(key, self.log_lines.pop(key)), key)
        if u["sqlExecutions"]:
            group_tags = self._group_tags()
            for ex in u["sqlExecutions"]:
                self._merge_sql(ex)
                touched.update(self._sql_tags(ex, group_tags))
            self._bound_sql()
        return None if snapshot else touched

    def _log_index(self, key: LogKey, line: Mapping[str, Any]) -> list[tuple[dict, Any]]:
        """Where one log line is indexed: by its tags, its job, its operation."""
        app = key[0]
        out: list[tuple[dict, Any]] = [(self._logs_by_tag, tag) for tag in line["tags"]]
        if line["jobId"] is not None:
            out.append((self._logs_by_job, (app, line["jobId"])))
        if line["operationId"]:
            out.append((self._logs_by_op, (app, line["operationId"])))
        return out

    def _sql_index(self, key: SqlKey, ex: Mapping[str, Any]) -> list[tuple[dict, Any]]:
        """Where one SQL execution is indexed: by its jobs, its operation."""
        app = key[0]
        out: list[tuple[dict, Any]] = [(self._sql_by_job, (app, j)) for j in ex["jobIds"]]
        if ex["operationId"]:
            out.append((self._sql_by_op, (app, ex["operationId"])))
        return out

    def _merge_sql(self, ex: dict[str, Any]) -> None:
        """One `SqlExecution` of an update: a new plan replaces the one held (and the values of
        metrics it no longer has go); without one, the plan held stands; the changed metric
        values are merged. A new record each time: cell runs hold the previous ones."""
        key = (ex["appId"], ex["executionId"])
        old = self.sql_executions.get(key)
        changed = ex.pop("metricValues")
        if ex["nodes"] or old is None:
            ids = {m["accumulatorId"] for n in ex["nodes"] for m in n["metrics"]}
            values = {a: v for a, v in old["values"].items() if a in ids} if old else {}
        else:
            for k in ("nodes", "planVersion", "nodesDropped"):
                ex[k] = old[k]
            values = dict(old["values"])
        values.update((m["accumulatorId"], m["value"]) for m in changed)
        ex["values"] = values
        if old is not None:
            _unindex(self._sql_index(key, old), key)
        self.sql_executions[key] = ex
        _index(self._sql_index(key, ex), key)

    def _bound_sql(self) -> None:
        """At most MAX_SQL_EXECUTIONS: the oldest ended go first, then the oldest started."""
        over = len(self.sql_executions) - MAX_SQL_EXECUTIONS
        if over <= 0:
            return
        items = self.sql_executions.items()
        ended = sorted((e["endMs"], k) for k, e in items if e["endMs"] is not None)
        victims = [k for _, k in ended[:over]]
        if len(victims) < over:
            running = sorted((e["startMs"], k) for k, e in items if e["endMs"] is None)
            victims += [k for _, k in running[: over - len(victims)]]
        for key in victims:
            _unindex(self._sql_index(key, self.sql_executions.pop(key)), key)

    def _group_tags(self) -> dict[tuple[str, Any], set[str]]:
        """The client tags of each job and operation named by a tag group."""
        out: dict[tuple[str, Any], set[str]] = {}
        for group in self.tag_groups.values():
            app = group["appId"]
            for ident in (*group["jobIds"], *group["operationIds"]):
                out.setdefault((app, ident), set()).add(group["tag"])
        return out

    def _sql_tags(
        self, ex: Mapping[str, Any], group_tags: Mapping[tuple[str, Any], set[str]]
    ) -> set[str]:
        """The client tags an execution concerns: its jobs' and its operation's."""
        app = ex["appId"]
        tags: set[str] = set()
        for job_id in ex["jobIds"]:
            job = self.jobs.get((app, job_id))
            if job is not None:
                tags.update(self._job_tags(job))
            tags.update(group_tags.get((app, job_id), ()))
        if ex["operationId"]:
            op = self.operations.get((app, ex["operationId"]))
            if op is not None:
                tags.update(op["tags"])
            tags.update(group_tags.get((app, ex["operationId"]), ()))
        return tags

    def _line_tags(self, line: Mapping[str, Any]) -> set[str]:
        """The client tags a log line concerns: its own, and its job's or operation's."""
        app = line["appId"]
        tags = set(line["tags"])
        job = self.jobs.get((app, line["jobId"])) if line["jobId"] is not None else None
        if job is not None:
            tags.update(self._job_tags(job))
        op = self.operations.get((app, line["operationId"]))
        if op is not None:
            tags.update(op["tags"])
        return tags

    def prune(self, max_jobs: int = 2000, max_operations: int = 2000) -> None:
        """Forget the oldest ended jobs (and their stage attempts) and finished operations beyond
        the limits, so a long-lived kernel's copy stays bounded. Cell runs keep their own copies,
        so nothing shown changes."""
        if len(self.jobs) > max_jobs:
            ended = sorted(
                (k for k, j in self.jobs.items() if j["status"] in JOB_TERMINAL),
                key=lambda k: (self.jobs[k]["completionTimeMs"] or 0, k),
            )
            for key in ended[: len(self.jobs) - max_jobs]:
                job = self.jobs.pop(key)
                for stage_id in job["stageIds"]:
                    for attempt in self._stage_attempts.pop((key[0], stage_id), ()):
                        self.stages.pop((key[0], stage_id, attempt), None)
        if len(self.operations) > max_operations:
            finished = sorted(
                (k for k, op in self.operations.items() if operation_finished(op)),
                key=lambda k: (self.operations[k]["startTimeMs"], k),
            )
            for key in finished[: len(self.operations) - max_operations]:
                del self.operations[key]

    def _job_tags(self, job: Mapping[str, Any]) -> list[str]:
        connect = job["connect"]
        return connect["tags"] if connect else []

    def knows_session(self, session_id: str) -> bool:
        return any(sid == session_id for _, sid in self.sessions)

    def view(self, tag: str) -> TagView:
        """The jobs (by their Connect tags and by the agent's tag groups), their stage attempts,
        and the operations of one client tag; the log lines of the tag, its jobs or operations;
        the SQL executions of its jobs (their `jobIds`) or operations (`operationId`)."""
        view = TagView()
        for group in self.tag_groups.values():
            if group["tag"] != tag:
                continue
            app = group["appId"]
            for job_id in group["jobIds"]:
                job = self.jobs.get((app, job_id))
                if job is not None:
                    view.jobs[(app, job_id)] = job
            for op_id in group["operationIds"]:
                op = self.operations.get((app, op_id))
                if op is not None:
                    view.operations[(app, op_id)] = op
        for key, job in self.jobs.items():
            if key not in view.jobs and tag in self._job_tags(job):
                view.jobs[key] = job
        for key, op in self.operations.items():
            if key not in view.operations and tag in op["tags"]:
                view.operations[key] = op
                for job_id in op["jobIds"]:
                    job = self.jobs.get((key[0], job_id))
                    if job is not None:
                        view.jobs[(key[0], job_id)] = job
        for (app, _), job in view.jobs.items():
            for stage_id in job["stageIds"]:
                for attempt in self._stage_attempts.get((app, stage_id), ()):
                    view.stages[(app, stage_id, attempt)] = self.stages[(app, stage_id, attempt)]
        # by the indexes: a view costs what it holds, not every line and execution kept
        lines = set(self._logs_by_tag.get(tag, ()))
        executions: set[SqlKey] = set()
        for key in view.jobs:
            lines.update(self._logs_by_job.get(key, ()))
            executions.update(self._sql_by_job.get(key, ()))
        for key in view.operations:
            lines.update(self._logs_by_op.get(key, ()))
            executions.update(self._sql_by_op.get(key, ()))
        for key in sorted(lines):
            view.logs[key] = self.log_lines[key]
        for key in sorted(executions):
            view.sql_executions[key] = self.sql_executions[key]
        return view


def _index(slots: list[tuple[dict, Any]], key: Any) -> None:
    for index, by in slots:
        index.setdefault(by, set()).add(key)


def _unindex(slots: list[tuple[dict, Any]], key: Any) -> None:
    """The reverse of `_index`: no empty entry stays behind."""
    for index, by in slots:
        keys = index.get(by)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[by]
