"""Shared fixtures: an in-process IPython shell, the stand-in agent, a monitor factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_agent import FakeAgent
from IPython.core.interactiveshell import InteractiveShell
from sparkscope.extension import Config, Monitor
from support import RecordingPublisher


@pytest.fixture(scope="session")
def shell() -> InteractiveShell:
    return InteractiveShell.instance()


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    with FakeAgent(token="S") as fake:
        yield fake


@pytest.fixture
def make_monitor(shell: InteractiveShell) -> Iterator[Callable[..., Monitor]]:
    """`make_monitor(url=…, **config)`: a started Monitor on the test shell with a recording
    publisher (`monitor.publisher`); stopped after the test."""
    monitors: list[Monitor] = []

    def make(publisher: Any = None, **config: Any) -> Monitor:
        config.setdefault("url", "ws://127.0.0.1:9/api/v1/stream")
        config.setdefault("token", "S")
        config.setdefault("throttle_ms", 20)
        config.setdefault("settle_ms", 0)
        monitor = Monitor(shell, Config(**config), publisher or RecordingPublisher())
        monitor.start()
        monitors.append(monitor)
        return monitor

    yield make
    for monitor in monitors:
        monitor.stop()
