"""The widget outside Jupyter: VS Code's notebooks (and Colab, marimo) render anywidget's
front-end modules with their own host, not JupyterLab's widget manager. Here a page of our own
plays that host in Chromium: it loads the shipped `widget.js` as a plain ES module and calls its
`render({model, el})` with a model that offers anywidget's documented model interface and
nothing else (`get`, `set`, `on`, `off`, `send`, `save_changes`). The widget must draw a recorded
cell run from its traits, follow a trait change, send its messages through `send`, and clean up.

What runs in VS Code itself is not run here (no VS Code on this machine); README.md says which
check was made.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
from harness import browser
from sparkscope import cellview
from sparkscope.cellrun import CellRun, CellRuns
from sparkscope.state import StreamState
from sparkscope.widget import STATIC, traits

RECORDED = harness.REPO_ROOT / "kernel-comm" / "tests" / "data" / "handmade_cell.jsonl"
TAG = "sparkscope-cell-000000000001"
# anywidget's model interface (its front-end module spec): what a host must offer, and all the
# widget may use
AFM_MODEL = {"get", "set", "on", "off", "send", "save_changes", "widget_manager"}

HOST = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="widget.css"></head>
<body><div id="host"></div>
<script type="module">
import widget from "./widget.js";
const traits = await (await fetch("traits.json")).json();
const handlers = new Map();
const used = new Set();
const sent = [];
const model = new Proxy({
  get: (k) => traits[k],
  set: (k, v) => { traits[k] = v; (handlers.get("change:" + k) || []).forEach((f) => f()); },
  on: (e, f) => handlers.set(e, [...(handlers.get(e) || []), f]),
  off: (e, f) => handlers.set(e, (handlers.get(e) || []).filter((g) => g !== f)),
  send: (m) => sent.push(m),
  save_changes: () => {},
}, { get: (t, k) => { used.add(String(k)); return t[k]; } });
const cleanup = await widget.render({ model, el: document.getElementById("host") });
window.host = {
  used: () => [...used],
  sent,
  set: (k, v) => model.set(k, v),
  listeners: () => [...handlers.values()].reduce((n, l) => n + l.length, 0),
  cleanup: () => { if (typeof cleanup === "function") cleanup(); },
};
</script></body></html>
"""


def recorded_traits() -> dict[str, Any]:
    state, runs = StreamState(), CellRuns()
    run = CellRun(TAG, None, 0, finished=True)
    runs.start(run)
    for line in RECORDED.read_text(encoding="utf-8").splitlines():
        if line.strip():
            update = json.loads(line)["update"]
            runs.merge(state, update, state.apply(update))
    view = cellview.build(run, state, now_ms=1795258405000)
    return traits(view, agent_error="", hidden=False)


@pytest.fixture(scope="module")
def host_page(require_browser, tmp_path_factory) -> Iterator[str]:
    site = tmp_path_factory.mktemp("anywidget-host")
    for name in ("widget.js", "widget.css"):
        shutil.copy(STATIC / name, site / name)
    (site / "traits.json").write_text(json.dumps(recorded_traits()), encoding="utf-8")
    (site / "index.html").write_text(HOST, encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_module_imports_nothing_and_exports_render() -> None:
    source = (STATIC / "widget.js").read_text(encoding="utf-8")
    assert not re.search(r"^\s*import\s", source, re.MULTILINE), "the module must stand alone"
    assert "require(" not in source
    assert re.search(r"^export default \{ render \};$", source, re.MULTILINE)
    # no JupyterLab globals: another host has none
    for name in ("jupyterapp", "@jupyterlab", "IPython", "Jupyter."):
        assert name not in source, name


def test_a_plain_anywidget_host_renders_the_widget(host_page: str, tmp_path: Path) -> None:
    errors: list[str] = []
    with browser.chromium(tmp_path / "profile") as context:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "response",
            lambda r: (
                r.status >= 400
                and not r.url.endswith("/favicon.ico")  # the browser's, not the widget's
                and errors.append(f"{r.status} {r.url}")
            ),
        )
        page.goto(host_page)
        page.wait_for_function("() => window.host !== undefined", timeout=15000)
        summary = page.locator(".sparkscope-summary").first.text_content()
        # the recorded run: two jobs, 16 of 24 tasks
        assert "2 jobs" in summary and "16/24 tasks" in summary, summary
        assert page.locator(".sparkscope-cell").count() == 1
        # a trait change redraws, as a kernel's update would
        page.evaluate(
            "() => host.set('notices', [{kind: 'reconnect', message: 'reconnected: 3 s missed'}])"
        )
        page.wait_for_function(
            "() => document.body.textContent.includes('reconnected: 3 s missed')", timeout=5000
        )
        used = set(page.evaluate("() => host.used()"))
        assert used <= AFM_MODEL, used - AFM_MODEL
        assert page.evaluate("() => host.listeners()") > 0
        page.evaluate("() => host.cleanup()")
        assert page.evaluate("() => host.listeners()") == 0, "render's clean-up left listeners"
        browser.Screenshots(tmp_path, "portable", []).save(page, "host")
    assert not errors, errors
