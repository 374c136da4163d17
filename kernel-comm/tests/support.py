"""Test doubles for the parts of pyspark and ipykernel the extension talks to."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any


class StubClient:
    """The part of pyspark's SparkConnectClient sparkscope uses, with pyspark's semantics: tags
    are per thread, a tag may not contain ',', progress handlers are called once per operation
    with done=True on the thread that ran it."""

    def __init__(self, session_id: str | None = None, user_id: str | None = "alice") -> None:
        self._session_id = session_id or str(uuid.uuid4())
        self._user_id = user_id
        self.thread_local = threading.local()
        self.is_closed = False
        self._handlers: list[Callable[..., None]] = []

    def _tags(self) -> set[str]:
        if not hasattr(self.thread_local, "tags"):
            self.thread_local.tags = set()
        return self.thread_local.tags

    def add_tag(self, tag: str) -> None:
        if not tag or "," in tag:
            raise ValueError(f"invalid tag {tag!r}")
        self._tags().add(tag)

    def remove_tag(self, tag: str) -> None:
        self._tags().discard(tag)

    def get_tags(self) -> set[str]:
        return set(self._tags())

    def register_progress_handler(self, handler: Callable[..., None]) -> None:
        self._handlers.append(handler)

    def remove_progress_handler(self, handler: Callable[..., None]) -> None:
        self._handlers.remove(handler)

    def execute(self, operation_id: str | None = None) -> str:
        """What an ExecutePlan looks like to progress handlers; returns the operation id."""
        op_id = operation_id or str(uuid.uuid4())
        for handler in list(self._handlers):
            handler(stages=[], inflight_tasks=0, operation_id=op_id, done=True)
        return op_id


class RecordingPublisher:
    """Records displays and display updates (a kernel would send display_data messages)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def display(self, parent: Any, display_id: str, data: dict, metadata: dict) -> None:
        self._add(kind="display", parent=parent, display_id=display_id, data=data)

    def update(self, display_id: str, data: dict, metadata: dict) -> None:
        self._add(kind="update", display_id=display_id, data=data)

    def _add(self, **event: Any) -> None:
        with self._cond:
            event["thread"] = threading.current_thread().name
            self.events.append(event)
            self._cond.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e["kind"] == kind]

    def wait_for(self, pred: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := pred()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("publisher: condition not met")
                self._cond.wait(min(remaining, 0.05))
            return value
