"""In a real IPython kernel (ipykernel, driven over ZMQ by jupyter_client): the widget's
display_data carries the execute_request of the cell whose tag the job has, while that cell runs
and after it finished; updates and widget state flow from the background thread while the kernel
is busy with other cells. The Spark side is pyspark's real Connect session object (no server) and
the agent is the stand-in of fake_agent.py."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_agent import FakeAgent, load_frames

pytest.importorskip("ipykernel")
pytest.importorskip("pyspark.sql.connect.session")
import zmq
from jupyter_client.manager import KernelManager

SID = "55555555-5555-4555-8555-555555555555"
RECORDED_TAG = "sparkscope-cell-000000000001"
RECORDED_SID = "11111111-1111-4111-8111-111111111111"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Kernel:
    """A kernel and every IOPub message it sent, collected on a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env={**os.environ, **env})
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            except (RuntimeError, OSError, zmq.ZMQError):  # channels closed at shutdown
                return
            with self._cond:
                self.messages.append(msg)
                self._cond.notify_all()

    def stop(self) -> None:
        self._stop = True
        self._reader.join(2)
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def execute(self, code: str) -> str:
        return self.kc.execute(code)

    def wait_for(self, pred: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := pred()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("kernel: condition not met")
                self._cond.wait(min(remaining, 0.1))
            return value

    def of(self, msg_type: str, parent: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m["msg_type"] == msg_type
            and (parent is None or m["parent_header"].get("msg_id") == parent)
        ]

    def idle(self, msg_id: str) -> bool:
        return any(m["content"].get("execution_state") == "idle" for m in self.of("status", msg_id))

    def run(self, code: str, timeout: float = 60.0) -> str:
        msg_id = self.execute(code)
        self.wait_for(lambda: self.idle(msg_id), timeout)
        errors = self.of("error", msg_id)
        assert not errors, errors[0]["content"]["traceback"]
        return msg_id

    def create_subshell(self) -> str:
        """A kernel subshell (ipykernel >= 7), as JupyterLab makes one per comm target."""
        self.kc.control_channel.send(self.kc.session.msg("create_subshell_request", {}))
        reply = self.kc.control_channel.get_msg(timeout=10)
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply["content"]["subshell_id"]

    def comm_msg(self, comm_id: str, data: dict, subshell_id: str | None) -> None:
        """A comm message from the frontend, on `subshell_id` as JupyterLab >= 4.4 sends it."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        msg["header"]["subshell_id"] = subshell_id
        self.kc.shell_channel.send(msg)

    def stdout(self, msg_id: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.of("stream", msg_id)
            if m["content"]["name"] == "stdout"
        )


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    with FakeAgent(token="S") as fake:
        yield fake


@pytest.fixture
def kernel(agent: FakeAgent) -> Iterator[Kernel]:
    k = Kernel(
        {
            "SPARKSCOPE_URL": agent.url,
            "SPARKSCOPE_TOKEN": "S",
            "SPARKSCOPE_THROTTLE_MS": "50",
            "SPARKSCOPE_SETTLE_MS": "0",
            "PYTHONWARNINGS": "ignore",
        }
    )
    try:
        k.run("%load_ext sparkscope")
        k.run(
            "from pyspark.sql import SparkSession\n"
            f"spark = SparkSession.builder.remote('sc://127.0.0.1:1/;user_id=alice;session_id={SID}')"
            ".create()\n"
            "spark.release_session_on_close = False\n"
            "import sparkscope, time"
        )
        yield k
    finally:
        try:
            k.run("spark.stop()", timeout=20)  # pyspark's atexit would call the absent server
        finally:
            k.stop()


def frames_for(tag: str) -> list[str]:
    return load_frames("handmade_cell.jsonl", {RECORDED_TAG: tag, RECORDED_SID: SID})


def test_widget_lands_in_the_cell_that_ran_the_job(kernel: Kernel, agent: FakeAgent) -> None:
    agent.wait_for(lambda: agent.subscribes())
    assert agent.subscribes()[0] == {"sessions": [{"sessionId": SID, "userId": "alice"}]}

    # a long cell: its first job is reported while it runs
    long_cell = kernel.execute("print(sparkscope.current_tag(), flush=True); time.sleep(4)")
    tag = kernel.wait_for(lambda: kernel.stdout(long_cell).strip())
    frames = frames_for(tag)
    agent.send(frames[:3])
    (shown,) = kernel.wait_for(lambda: kernel.of("display_data", long_cell))
    assert not kernel.idle(long_cell)  # it appeared while the cell was still running
    model_id = shown["content"]["data"][WIDGET_MIME]["model_id"]
    display_id = shown["content"]["transient"]["display_id"]
    opened = [m for m in kernel.of("comm_open") if m["content"]["comm_id"] == model_id]
    assert opened, "the widget's comm was opened before its display"
    state = opened[0]["content"]["data"]["state"]
    assert state["tag"] == tag and state["jobs"][0]["jobId"] == 4

    # the rest arrives while another cell runs: trait syncs and the final text go out anyway
    kernel.wait_for(lambda: kernel.idle(long_cell))
    other = kernel.execute("print('running', flush=True); time.sleep(3)")
    # sent once the other cell runs (not merely once its request is on its way)
    kernel.wait_for(lambda: kernel.stdout(other).strip())
    agent.send(frames[3:])
    (final,) = kernel.wait_for(lambda: kernel.of("update_display_data"))
    assert final["content"]["transient"]["display_id"] == display_id
    assert "2 jobs (2 succeeded)" in final["content"]["data"]["text/plain"]
    # routed by display id; its parent is the cell running now, which nbclient needs
    assert final["parent_header"]["msg_id"] == other
    synced = [
        m["content"]["data"]["state"]
        for m in kernel.of("comm_msg")
        if m["content"]["comm_id"] == model_id and "state" in m["content"]["data"]
    ]
    assert any(s.get("state") == "done" for s in synced)
    assert not kernel.of("display_data", other)
    kernel.wait_for(lambda: kernel.idle(other))


def test_first_job_reported_after_the_cell_finished_still_goes_to_that_cell(
    kernel: Kernel, agent: FakeAgent
) -> None:
    short = kernel.run("print(sparkscope.current_tag())")
    tag = kernel.stdout(short).strip()
    later = kernel.run("x = 1")
    # frames sent before the kernel's client has subscribed would reach nobody
    agent.wait_for(lambda: agent.subscribes())
    agent.send(frames_for(tag))
    (shown,) = kernel.wait_for(lambda: kernel.of("display_data"))
    assert shown["parent_header"]["msg_id"] == short  # not `later`, not none
    assert shown["content"]["data"][WIDGET_MIME]["model_id"]
    display_id = shown["content"]["transient"]["display_id"]

    def final_text() -> str:
        texts = [shown["content"]["data"]["text/plain"]] + [
            m["content"]["data"]["text/plain"]
            for m in kernel.of("update_display_data")
            if m["content"]["transient"]["display_id"] == display_id
        ]
        return texts[-1] if "2 jobs (2 succeeded)" in texts[-1] else ""

    assert kernel.wait_for(final_text)
    assert later != short


def test_loaded_in_every_kernel_from_the_kernel_config(tmp_path) -> None:
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        'c.InteractiveShellApp.extensions = ["sparkscope"]\n'
    )
    k = Kernel({"IPYTHONDIR": str(tmp_path / "ipython"), "SPARKSCOPE_URL": "ws://127.0.0.1:9/"})
    try:
        msg_id = k.run(
            "import sparkscope\n"
            "print('sparkscope' in get_ipython().extension_manager.loaded,"
            " sparkscope.current_tag() is not None, 'pyspark' in __import__('sys').modules)"
        )
        # loaded, tagging this cell, and pyspark still not imported
        assert k.stdout(msg_id).split() == ["True", "True", "False"]
    finally:
        k.stop()


def test_cancel_click_is_handled_while_the_cell_still_runs(
    kernel: Kernel, agent: FakeAgent
) -> None:
    """JupyterLab (`commsOverSubshells`, on by default) sends widget comm messages on a kernel
    subshell. The Cancel click must be taken there while the cell is still busy in a blocking
    Spark call — not queued behind it on the main shell, where ipykernel 7.4 would route it
    because the widget publishes from a background thread (see sparkscope/widget.py)."""
    agent.wait_for(lambda: agent.subscribes())
    agent.on_cancel = lambda request: {"ok": True, "message": "interrupted 1 operation(s)"}
    busy = kernel.execute("print(sparkscope.current_tag(), flush=True); time.sleep(6)")
    tag = kernel.wait_for(lambda: kernel.stdout(busy).strip())
    agent.send(frames_for(tag)[:2])  # the cell's first job is running
    (shown,) = kernel.wait_for(lambda: kernel.of("display_data", busy))
    model_id = shown["content"]["data"][WIDGET_MIME]["model_id"]
    subshell = kernel.create_subshell()

    clicked = time.monotonic()
    click = {"kind": "cancel", "target": "cell", "requestId": "lab1"}
    kernel.comm_msg(model_id, {"method": "custom", "content": click}, subshell)
    (sent,) = agent.wait_for(lambda: agent.cancels(), timeout=5)
    assert sent["requestId"] == "lab1" and sent["tag"] == tag
    assert (sent["sessionId"], sent["userId"]) == (SID, "alice")

    def outcome() -> dict | None:
        for m in kernel.of("comm_msg"):
            if m["content"]["comm_id"] == model_id:
                cancel = m["content"]["data"].get("state", {}).get("cancel") or {}
                if cancel.get("status") == "done":
                    return cancel
        return None

    result = kernel.wait_for(outcome, timeout=5)
    assert result["ok"] is True and result["message"] == "interrupted 1 operation(s)"
    assert not kernel.idle(busy), "the click waited for the cell to end"
    assert time.monotonic() - clicked < 5
    kernel.wait_for(lambda: kernel.idle(busy), timeout=30)
