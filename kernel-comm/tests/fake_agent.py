"""The kernel extension's tests use the harness's stand-in agent (tests/harness/fake_agent.py)
with frames recorded from our own agent (tests/data/*.jsonl, made by record_frames.py)."""

from __future__ import annotations

from pathlib import Path

from harness.fake_agent import Connection, FakeAgent

__all__ = ["Connection", "FakeAgent", "load_frames"]

DATA = Path(__file__).parent / "data"


def load_frames(name: str, replace: dict[str, str] | None = None) -> list[str]:
    """Recorded frames (one JSON `ServerMessage` per line), with ids swapped by text."""
    frames = []
    for line in (DATA / name).read_text().splitlines():
        if not line.strip():
            continue
        for old, new in (replace or {}).items():
            line = line.replace(old, new)
        frames.append(line)
    return frames
