"""A notebook's view of the agent's stream, for tests: the kernel extension's own client
(`sparkscope.agent.AgentClient`) following sessions, its updates merged."""

from __future__ import annotations

import threading

from sparkscope.agent import AgentClient
from sparkscope.sessions import SessionKey

from .agent import Agent
from .util import wait_until


class Feed:
    """A notebook's view of the agent's stream, merged: the latest of each application, job,
    stage attempt and tag group of the sessions it follows."""

    def __init__(self, agent: Agent, key: SessionKey) -> None:
        self.lock = threading.Lock()
        self.apps: dict[str, dict] = {}
        self.jobs: dict[int, dict] = {}
        self.stages: dict[tuple[int, int], dict] = {}
        self.groups: dict[str, dict] = {}
        self.key = key
        self.snapshots = 0  # how many snapshots arrived: one per (re)subscription
        self.client = AgentClient(
            agent.stream_url, agent.subscriber_token, self._update, backoff_max=1.0
        )
        self.client.follow([key])

    def _update(self, update) -> None:
        with self.lock:
            if update.get("snapshot"):
                self.apps, self.jobs, self.stages, self.groups = {}, {}, {}, {}
                self.snapshots += 1
            for a in update.get("applications", []):
                self.apps[a["id"]] = a
            for j in update.get("jobs", []):
                self.jobs[j.get("jobId", 0)] = j
            for s in update.get("stages", []):
                self.stages[(s.get("stageId", 0), s.get("attemptId", 0))] = s
            for g in update.get("tagGroups", []):
                self.groups[g["tag"]] = g

    def view(self) -> tuple[dict, dict, dict, dict]:
        with self.lock:
            return dict(self.apps), dict(self.jobs), dict(self.stages), dict(self.groups)

    def wait(self, what: str, check, timeout: float = 30) -> None:
        wait_until(lambda: check(*self.view()), timeout, 0.1, what)

    def wait_snapshot_after(self, seen: int, timeout: float = 30) -> None:
        """Waits for a snapshot newer than the `seen`-th: the stream back after a restart, so
        that what the feed holds is the agent's state now and not the one before."""
        wait_until(lambda: self.snapshots > seen, timeout, 0.1, "a new snapshot on the stream")

    def cancel(self, target: dict, timeout: float = 15) -> dict:
        done = threading.Event()
        result: dict = {}

        def got(r: dict) -> None:
            result.update(r)
            done.set()

        self.client.cancel(self.key, target, got, reason="test")
        assert done.wait(timeout), "no answer to the cancel"
        return result

    def close(self) -> None:
        self.client.stop()
