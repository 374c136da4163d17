"""The client-side copy of what the agent streams (docs/streaming-api.md): snapshots replace it,
deltas replace entities by identity. Frames arrive in the proto3 JSON mapping, which leaves out
fields at their default value and writes 64-bit integers as strings; `normalize_*` puts every
field back with its default and its Python type, so the rest of the package never guesses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

JobKey = tuple[str, int]  # appId, jobId
StageKey = tuple[str, int, int]  # appId, stageId, attemptId
OperationKey = tuple[str, str]  # appId, operationId

# busy-slots samples kept per application (the agent keeps at most its --task-samples)
MAX_SAMPLES = 20_000

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


def _enum(value: Any, prefix: str) -> str:
    """`JOB_STATUS_RUNNING` → `RUNNING`; absent (the default, 0) → `UNSPECIFIED`."""
    name = value if isinstance(value, str) and value else f"{prefix}UNSPECIFIED"
    return name.removeprefix(prefix)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def normalize_job(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A `sparkscope.v1.Job` with every field present; status without its enum prefix."""
    tasks = _dict(raw.get("tasks"))
    stages = _dict(raw.get("stages"))
    connect = raw.get("connect")
    return {
        "appId": _str(raw.get("appId")),
        "jobId": _int(raw.get("jobId")),
        "name": _str(raw.get("name")),
        "description": _str(raw.get("description")),
        "status": _enum(raw.get("status"), "JOB_STATUS_"),
        "stageIds": _ints(raw.get("stageIds")),
        "tasks": {
            k: _int(tasks.get(k))
            for k in ("total", "active", "completed", "skipped", "failed", "killed")
        },
        "stages": {k: _int(stages.get(k)) for k in ("active", "completed", "skipped", "failed")},
        "jobTags": _strs(raw.get("jobTags")),
        "submissionTimeMs": _int(raw.get("submissionTimeMs")),
        "completionTimeMs": _opt_int(raw.get("completionTimeMs")),
        "sqlExecutionId": _opt_int(raw.get("sqlExecutionId")),
        "connect": None
        if not isinstance(connect, dict)
        else {
            "userId": _str(connect.get("userId")),
            "sessionId": _str(connect.get("sessionId")),
            "operationId": _str(connect.get("operationId")),
            "tags": _strs(connect.get("tags")),
        },
        "error": _opt_str(raw.get("error")),
    }


def normalize_stage(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A `sparkscope.v1.Stage` (one attempt) with every field present."""
    return {
        "appId": _str(raw.get("appId")),
        "stageId": _int(raw.get("stageId")),
        "attemptId": _int(raw.get("attemptId")),
        "name": _str(raw.get("name")),
        "status": _enum(raw.get("status"), "STAGE_STATUS_"),
        "numTasks": _int(raw.get("numTasks")),
        "activeTasks": _int(raw.get("activeTasks")),
        "completedTasks": _int(raw.get("completedTasks")),
        "failedTasks": _int(raw.get("failedTasks")),
        "killedTasks": _int(raw.get("killedTasks")),
        "jobIds": _ints(raw.get("jobIds")),
        "submissionTimeMs": _opt_int(raw.get("submissionTimeMs")),
        "completionTimeMs": _opt_int(raw.get("completionTimeMs")),
        "failureReason": _opt_str(raw.get("failureReason")),
        "executorRunTimeMs": _int(raw.get("executorRunTimeMs")),
        "inputBytes": _int(raw.get("inputBytes")),
        "outputBytes": _int(raw.get("outputBytes")),
        "shuffleReadBytes": _int(raw.get("shuffleReadBytes")),
        "shuffleWriteBytes": _int(raw.get("shuffleWriteBytes")),
        "memorySpilledBytes": _int(raw.get("memorySpilledBytes")),
        "diskSpilledBytes": _int(raw.get("diskSpilledBytes")),
        "gcTimeMs": _int(raw.get("gcTimeMs")),
        "taskDurations": _durations(raw.get("taskDurations")),
        "firstFailure": _failure(raw.get("firstFailure")),
    }


def _durations(raw: Any) -> dict[str, int] | None:
    if not isinstance(raw, dict):
        return None
    return {k: _int(raw.get(k)) for k in ("minMs", "medianMs", "maxMs")}


def _failure(raw: Any) -> dict[str, Any] | None:
    """A stage attempt's first failed task (`sparkscope.v1.TaskFailure`)."""
    if not isinstance(raw, dict):
        return None
    return {
        "taskId": _int(raw.get("taskId")),
        "index": _int(raw.get("index")),
        "attempt": _int(raw.get("attempt")),
        "executorId": _str(raw.get("executorId")),
        "host": _str(raw.get("host")),
        "reason": _str(raw.get("reason")),
        "exceptionClass": _str(raw.get("exceptionClass")),
        "message": _str(raw.get("message")),
        "stackTrace": _str(raw.get("stackTrace")),
        "timeMs": _int(raw.get("timeMs")),
    }


def normalize_operation(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "appId": _str(raw.get("appId")),
        "operationId": _str(raw.get("operationId")),
        "sessionId": _str(raw.get("sessionId")),
        "userId": _str(raw.get("userId")),
        "tags": _strs(raw.get("tags")),
        "state": _enum(raw.get("state"), "OPERATION_STATE_"),
        "finalState": _enum(raw.get("finalState"), "OPERATION_STATE_"),
        "startTimeMs": _int(raw.get("startTimeMs")),
        "endTimeMs": _opt_int(raw.get("endTimeMs")),
        "closeTimeMs": _opt_int(raw.get("closeTimeMs")),
        "statement": _str(raw.get("statement")),
        "error": _opt_str(raw.get("error")),
        "jobIds": _ints(raw.get("jobIds")),
        "producedRowCount": _opt_int(raw.get("producedRowCount")),
    }


def normalize_session(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "appId": _str(raw.get("appId")),
        "sessionId": _str(raw.get("sessionId")),
        "userId": _str(raw.get("userId")),
        "startTimeMs": _int(raw.get("startTimeMs")),
        "endTimeMs": _opt_int(raw.get("endTimeMs")),
    }


def normalize_application(raw: Mapping[str, Any]) -> dict[str, Any]:
    cluster = _dict(raw.get("cluster"))
    return {
        "id": _str(raw.get("id")),
        "name": _str(raw.get("name")),
        "sparkVersion": _str(raw.get("sparkVersion")),
        "sparkUser": _str(raw.get("sparkUser")),
        "startTimeMs": _int(raw.get("startTimeMs")),
        "endTimeMs": _opt_int(raw.get("endTimeMs")),
        "live": bool(raw.get("live", False)),
        "cluster": {
            "executors": _int(cluster.get("executors")),
            "totalCores": _int(cluster.get("totalCores")),
            "activeTasks": _int(cluster.get("activeTasks")),
        },
        "notices": [
            normalize_notice(n) for n in _list(raw.get("notices")) if isinstance(n, Mapping)
        ],
        "master": _str(raw.get("master")),
        "uiLink": _str(raw.get("uiLink")),
        "connectAddress": _str(raw.get("connectAddress")),
        "taskSamples": normalize_samples(_dict(raw.get("taskSamples"))),
    }


Sample = tuple[int, int, int, int]  # atMs, activeTasks, totalCores, executors


def normalize_samples(raw: Mapping[str, Any]) -> list[Sample]:
    """`sparkscope.v1.TaskSamples` (columns, times as offsets) as (atMs, active, cores,
    executors) rows, oldest first."""
    start = _int(raw.get("startMs"))
    offsets = _ints(raw.get("offsetMs"))
    columns = [_ints(raw.get(k)) for k in ("activeTasks", "totalCores", "executors")]
    rows = []
    for i, off in enumerate(offsets):
        a, c, e = (col[i] if i < len(col) else 0 for col in columns)
        rows.append((start + off, a, c, e))
    return rows


def normalize_notice(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A gap in what the agent saw, or what it did about one (`sparkscope.v1.Notice`)."""
    kind = _str(raw.get("kind")).removeprefix("NOTICE_KIND_").lower()
    return {
        "kind": kind or "unspecified",
        "atMs": _int(raw.get("atMs")),
        "message": _str(raw.get("message")),
    }


def normalize_tag_group(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "tag": _str(raw.get("tag")),
        "operationIds": _strs(raw.get("operationIds")),
        "jobIds": _ints(raw.get("jobIds")),
        "appId": _str(raw.get("appId")),
        "sessionId": _str(raw.get("sessionId")),
    }


def operation_finished(op: Mapping[str, Any]) -> bool:
    return op["state"] in OPERATION_TERMINAL or op["finalState"] in OPERATION_TERMINAL


@dataclass
class TagView:
    """Everything the agent reported for one client tag (one notebook cell run)."""

    jobs: dict[JobKey, dict[str, Any]] = field(default_factory=dict)
    stages: dict[StageKey, dict[str, Any]] = field(default_factory=dict)
    operations: dict[OperationKey, dict[str, Any]] = field(default_factory=dict)


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
        # busy task slots per application, oldest first: a snapshot sends them all, a delta
        # the new ones
        self.samples: dict[str, list[Sample]] = {}
        # indexes kept in step with the maps above
        self._stage_attempts: dict[tuple[str, int], set[int]] = {}

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def apply(self, update: Mapping[str, Any]) -> set[str] | None:
        """Merge one `Update`. Returns the client tags whose jobs, stages or operations may have
        changed, or None after a snapshot (anything may have changed)."""
        snapshot = bool(update.get("snapshot", False))
        if snapshot:
            self.clear()
        self.generation = _int(update.get("generation"), self.generation)
        self.sent_at_ms = _int(update.get("sentAtMs"), self.sent_at_ms)
        touched: set[str] = set()

        for raw in _list(update.get("applications")):
            app = normalize_application(raw)
            self.applications[app["id"]] = app
            new = app.pop("taskSamples")
            if new:
                kept = self.samples.setdefault(app["id"], [])
                kept.extend(s for s in new if not kept or s[0] > kept[-1][0])
                del kept[: max(0, len(kept) - MAX_SAMPLES)]
        for raw in _list(update.get("sessions")):
            sess = normalize_session(raw)
            self.sessions[(sess["appId"], sess["sessionId"])] = sess
        for raw in _list(update.get("operations")):
            op = normalize_operation(raw)
            self.operations[(op["appId"], op["operationId"])] = op
            touched.update(op["tags"])
        for raw in _list(update.get("jobs")):
            job = normalize_job(raw)
            self.jobs[(job["appId"], job["jobId"])] = job
            touched.update(self._job_tags(job))
        for raw in _list(update.get("stages")):
            stage = normalize_stage(raw)
            key = (stage["appId"], stage["stageId"], stage["attemptId"])
            self.stages[key] = stage
            self._stage_attempts.setdefault(key[:2], set()).add(key[2])
            for job_id in stage["jobIds"]:
                job = self.jobs.get((stage["appId"], job_id))
                if job is not None:
                    touched.update(self._job_tags(job))
        for raw in _list(update.get("tagGroups")):
            group = normalize_tag_group(raw)
            self.tag_groups[(group["appId"], group["sessionId"], group["tag"])] = group
            touched.add(group["tag"])
        return None if snapshot else touched

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
        and the operations of one client tag."""
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
        return view


def _list(value: Any) -> Iterable[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
