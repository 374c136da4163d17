"""What a widget asks the agent for: cancelling a cell run's work or one of its jobs, and the tasks
of a stage attempt. Called on the thread of the kernel subshell that received the comm message
(or the shell's, with frontends that do not use subshells), so nothing here blocks: the request
goes to the agent client's thread, the answer comes back to the cell run, and from there to its
widget."""

from __future__ import annotations

import logging
import secrets
import threading
from typing import TYPE_CHECKING, Any

from .agent import NO_AGENT, task_list

if TYPE_CHECKING:
    from .cellrun import CellRun, CellRuns
    from .connection import AgentConnection

log = logging.getLogger("sparkscope")

CANCEL_REASON = "cancelled from the notebook (sparkscope widget)"  # Spark shows it as the reason
MAX_TASK_LISTS = 8  # opened stages' task lists kept per cell run
NOT_CONNECTED = "not connected to the sparkscope agent"


class Requests:
    """Cancel and task-list requests of the cell runs' widgets."""

    def __init__(self, runs: CellRuns, connection: AgentConnection) -> None:
        self.runs = runs
        self.connection = connection

    def cancel(
        self,
        tag: str,
        job_id: int | None = None,
        app_id: str | None = None,
        request_id: str | None = None,
    ) -> str | None:
        """Stop a cell run's work: every operation carrying its tag (in each Connect session its
        operations ran in), or one of its jobs. The outcome goes to the run's `cancel`, pending
        at once, then the agent's answer. Returns the request id (None: unknown run)."""
        rid = request_id or secrets.token_hex(8)
        with self.runs.cond:
            run = self.runs.get(tag)
            if run is None:
                log.info("sparkscope: cancel for a cell run no longer followed (%s)", tag)
                return None
            if job_id is None:
                targets = [(key, {"tag": tag}) for key in run.sessions()]
                missing = "the agent has reported no Spark Connect session for this cell"
            else:
                job = next(
                    (
                        j
                        for (app, jid), j in run.jobs.items()
                        if jid == job_id and app_id in (None, app)
                    ),
                    None,
                )
                targets = [(key, {"jobId": job_id}) for key in run.sessions(job)] if job else []
                missing = f"job {job_id} is not one of this cell's jobs"
            run.cancel = {
                "requestId": rid,
                "target": "cell" if job_id is None else "job",
                "jobId": job_id,
                "status": "pending",
                "ok": False,
                "code": "",
                "message": "asking the agent to cancel…",
            }
            self.runs.mark(run, urgent=True)
            client = self.connection.client
        if not targets:
            self._cancel_answered(tag, rid, [_failure("not_found", missing)])
            return rid
        if client is None:
            why = self.connection.unavailable() or NOT_CONNECTED
            self._cancel_answered(tag, rid, [_failure(NO_AGENT, why)])
            return rid
        results: dict[int, dict[str, Any]] = {}
        lock = threading.Lock()

        def collect(i: int, result: dict[str, Any]) -> None:
            with lock:
                results[i] = result
                if len(results) < len(targets):
                    return
            self._cancel_answered(tag, rid, [results[n] for n in range(len(targets))])

        for i, (key, target) in enumerate(targets):
            client.cancel(
                key,
                target,
                lambda result, i=i: collect(i, result),
                reason=CANCEL_REASON,
                request_id=rid if len(targets) == 1 else f"{rid}-{i}",
            )
        return rid

    def _cancel_answered(self, tag: str, rid: str, results: list[dict[str, Any]]) -> None:
        """All the answers for one widget request are in: one outcome for the widget."""
        ok = any(r["ok"] for r in results)
        failed = [r for r in results if not r["ok"]]
        # one request per session the cell ran in: every answer counts
        message = "; ".join(dict.fromkeys(r["message"] for r in results if r["message"]))
        with self.runs.cond:
            run = self.runs.get(tag)
            if run is None:
                return
            current = run.cancel or {}
            outcome = {
                **current,
                "status": "done",
                "ok": ok,
                "code": "" if ok else failed[0]["code"],
                "message": message or ("done" if ok else "failed"),
                "interruptedOperationIds": [
                    op for r in results for op in r.get("interruptedOperationIds", [])
                ],
                "cancelledJobIds": [j for r in results for j in r.get("cancelledJobIds", [])],
            }
            if ok and current.get("requestId") == rid:
                if current.get("target") == "cell":
                    run.cancel_ok = True
                else:
                    run.cancelled_jobs.update(outcome["cancelledJobIds"])
            if current.get("requestId") == rid:  # a newer request's outcome is not replaced
                run.cancel = outcome
                self.runs.mark(run, urgent=True)
        log.info("sparkscope: cancel %s of %s: %s", rid, tag, message)

    def request_tasks(
        self, tag: str, app_id: str, stage_id: int, attempt_id: int, thread_dump: bool = False
    ) -> None:
        """Ask the agent for a stage attempt's tasks (Spark's REST API), and with `thread_dump`
        where its longest-running task's thread is now; the answer goes to the run's
        `task_lists`."""
        key = f"{app_id}/{stage_id}/{attempt_id}"
        with self.runs.cond:
            run = self.runs.get(tag)
            if run is None:
                return
            stage = run.stages.get((app_id, stage_id, attempt_id))
            job = next(
                (
                    j
                    for (app, _), j in run.jobs.items()
                    if app == app_id and stage is not None and stage_id in j["stageIds"]
                ),
                None,
            )
            sessions = run.sessions(job) if job is not None else []
            run.task_lists[key] = {"status": "pending", "ok": False, "code": "", "message": ""}
            self.runs.mark(run, urgent=True)
            client = self.connection.client

        def answered(result: dict[str, Any]) -> None:
            with self.runs.cond:
                r = self.runs.get(tag)
                if r is not None:
                    _keep_task_list(r, key, result)
                    self.runs.mark(r, urgent=True)

        if not sessions:
            answered(task_list(key, code="not_found", message="not a stage of this cell's jobs"))
        elif client is None:
            answered(task_list(key, code=NO_AGENT, message=NOT_CONNECTED))
        else:
            client.request_tasks(
                sessions[0], app_id, stage_id, attempt_id, answered, thread_dump=thread_dump
            )


def _keep_task_list(run: CellRun, key: str, result: dict[str, Any]) -> None:
    run.task_lists[key] = {"status": "done", **result}
    # only the newest few lists are kept: a long timeline is opened a few at a time
    while len(run.task_lists) > MAX_TASK_LISTS:
        del run.task_lists[next(iter(run.task_lists))]


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "message": message}
