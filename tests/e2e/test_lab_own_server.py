"""The user's own server from JupyterLab's "Spark" sidebar, in Chromium, with the real
`sparkscope server` (Spark Connect and the agent) started by the Jupyter server extension:

- a bundle with a bad master is refused with a clear message, a good one is saved;
- Start with that bundle brings a Spark Connect server up (its master and confs as the bundle
  says), and a notebook attaches to it with no sparkscope configuration: the kernel and the
  sidebar find the agent and its token where `sparkscope server` left them;
- Spark's UI through the Jupyter server (`<base>sparkscope/ui/<app>/`, on by default for the
  own server): the sidebar's and the widget's links go through it, and every page they link to
  (job, stage, SQL, executors) answers 200 with its stylesheets, behind the Jupyter login only;
- the driver log panel tails the driver's log: a line Spark wrote is shown, the level filter
  keeps only its level and the search only matching lines;
- Stop stops it: no Spark process is left, and the sidebar says stopped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import harness
import nbformat
import pytest
import requests
from harness import browser, nbrun

NOTEBOOK = "own.ipynb"
JOB = "spark.range(0, 1000, 1, 4).selectExpr('sum(id)').collect()"
OWN_JS = """() => {
  const n = document.querySelector('.sparkscope-own');
  if (!n) return null;
  return {
    state: n.dataset.state || '',
    status: (n.querySelector('.sparkscope-own-status') || {}).textContent || '',
    said: (n.querySelector('.sparkscope-own-said') || {}).textContent || '',
    bundles: [...n.querySelectorAll('.sparkscope-own-bundle option')].map(o => o.value),
  };
}"""
LOG_JS = """() => [...document.querySelectorAll('#sparkscope-driver-log .sparkscope-log-line')]
  .map(n => ({level: n.dataset.level, text: n.textContent}))"""


def spark_processes(port: int) -> list[int]:
    """Processes whose command line binds Spark Connect to `port`: this test's Spark."""
    found = []
    needle = f"spark.connect.grpc.binding.port={port}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def pieces(require_piece, require_browser) -> Path:
    return require_piece(harness.agent_binary(), "sparkscope binary", "make setup")


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    names = ("connect", "ui", "http", "ingest", "grpc")
    return dict(zip(names, harness.free_ports(len(names)), strict=True))


@pytest.fixture(scope="module")
def lab(pieces, ports, artifacts_dir: Path, log_registry):
    root = artifacts_dir / "lab-root"
    root.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(nbrun.SETUP), nbformat.v4.new_code_cell(JOB)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / NOTEBOOK)
    home = artifacts_dir / "sparkscope-home"
    log_registry(artifacts_dir / "jupyterlab.log", "JupyterLab log")
    log_registry(home / "own-server.out", "sparkscope server (started from the sidebar)")
    log_registry(home / "spark-connect-server.log", "Spark Connect server log")
    # No agent address nor token: the server started from the sidebar leaves them in
    # SPARKSCOPE_HOME. The notebook names the Connect server it uses, as with the CLI; the
    # agent's own ports are this test's free ones instead of the defaults.
    env = {k: "" for k in os.environ if k.startswith("SPARKSCOPE_") and k != "SPARKSCOPE_BIN"} | {
        "SPARKSCOPE_HOME": str(home),
        "SPARKSCOPE_HTTP": f"127.0.0.1:{ports['http']}",
        "SPARKSCOPE_INGEST": f"127.0.0.1:{ports['ingest']}",
        "SPARKSCOPE_GRPC": f"127.0.0.1:{ports['grpc']}",
        "SPARK_REMOTE": f"sc://127.0.0.1:{ports['connect']}",
    }
    with harness.JupyterLab(root, artifacts_dir, env=env) as lab:
        yield lab
    # whatever happened above, no Spark of this test outlives it
    for pid in spark_processes(ports["connect"]):
        os.kill(pid, 9)


@pytest.fixture(scope="module")
def context(artifacts_dir: Path):
    with browser.chromium(artifacts_dir / "chromium-profile") as ctx:
        yield ctx


def own(page: Any) -> dict:
    return page.evaluate(OWN_JS) or {"state": "", "status": "", "said": "", "bundles": []}


def fill_bundle(page: Any, values: dict[str, str]) -> None:
    form = page.locator(".sparkscope-own-form")
    for name, value in values.items():
        form.locator(f"[name='{name}']").fill(value)
    form.locator(".sparkscope-own-save").click()


def test_start_my_server_from_the_sidebar_run_a_notebook_read_its_log_and_stop_it(
    lab, ports, context, screenshots_dir: Path
) -> None:
    shots = browser.Screenshots(screenshots_dir, "lab-own-server", [])
    errors: list[str] = []
    nb = browser.LabNotebook.open(context, lab, NOTEBOOK)
    page = nb.page
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.evaluate("() => window.jupyterapp.shell.activateById('sparkscope-sidebar')")
    harness.wait_until(lambda: own(page)["state"] == "stopped", 30, 0.3, "the own server section")
    page.locator(".sparkscope-own-details summary").click()

    # a bundle with a wrong master is refused, saying what is wrong
    fill_bundle(page, {"name": "small", "master": "locale[2]"})
    said = harness.wait_until(
        lambda: "not saved" in (s := own(page)["said"]) and s, 15, 0.2, "the refusal"
    )
    assert "is not a Spark master" in said, said
    fill_bundle(
        page,
        {
            "name": "small",
            "master": "local[2]",
            "driverMemory": "1g",
            "connectPort": str(ports["connect"]),
            "confs": f"spark.ui.port={ports['ui']}\nspark.sql.shuffle.partitions=3",
        },
    )
    harness.wait_until(
        lambda: "bundle small saved" in own(page)["said"], 15, 0.2, "the bundle saved"
    )
    assert "small" in own(page)["bundles"]
    page.locator(".sparkscope-own-bundle").select_option("small")
    page.locator(".sparkscope-own-start").click()
    seen: list[dict] = []

    def up() -> dict | None:
        seen[:] = [own(page)]
        assert seen[0]["state"] != "failed", seen[0]
        return seen[0] if seen[0]["state"] == "running" else None

    try:
        running = harness.wait_until(up, 240, 0.5, "the own server running")
    except TimeoutError as e:
        raise AssertionError(f"not running: {seen}") from e
    assert f"sc://127.0.0.1:{ports['connect']}" in running["status"], running
    assert "bundle small" in running["status"], running
    shots.save(page, "running")

    # a notebook attaches with no sparkscope configuration and its cell run is listed
    nb.run_cell(0)
    nb.wait_cell_done(0, 180)
    nb.run_cell(1)
    nb.wait_cell_done(1, 120)
    assert "[Row(sum(id)=499500)]" in nb.cell_text_outputs(1)

    def listed() -> list[dict] | None:
        # the sidebar polls: a run first seen running is listed as succeeded on a later poll
        runs = [
            r
            for r in page.evaluate(
                "() => [...document.querySelectorAll('.sparkscope-sb-run')].map(n => n.dataset)"
            )
            if r["notebook"] == NOTEBOOK
        ]
        return runs if runs and runs[-1]["state"] != "running" else None

    runs = harness.wait_until(listed, 30, 0.3, "the notebook's cell run ended in the sidebar")
    assert runs[-1]["state"] == "succeeded", runs
    app = page.evaluate(
        "() => [...document.querySelectorAll('.sparkscope-sb-app')].map(n => n.textContent)"
    )
    assert any("local[2]" in a for a in app), app

    # Spark's UI through the Jupyter server: the links, and every page they lead to with its CSS
    proxied = check_ui_proxy(page, lab)

    # the driver's log, live, with its level filter and search
    page.locator(".sparkscope-own-log").click()
    lines = harness.wait_until(
        lambda: (
            [ln for ln in page.evaluate(LOG_JS) if "Running Spark version" in ln["text"]]
            and page.evaluate(LOG_JS)
        ),
        30,
        0.3,
        "a line the driver wrote in the log panel",
    )
    assert any(ln["level"] == "INFO" for ln in lines), lines[:5]
    page.locator(".sparkscope-log-level").select_option("WARN")
    shown = page.evaluate(LOG_JS)
    assert all(ln["level"] in ("WARN", "ERROR", "FATAL") for ln in shown), shown[:5]
    page.locator(".sparkscope-log-level").select_option("ALL")
    page.locator(".sparkscope-log-search").fill("SparkContext")
    found = page.evaluate(LOG_JS)
    assert found and all("sparkcontext" in ln["text"].lower() for ln in found), found[:5]
    shots.save(page, "driver-log")
    page.locator(".sparkscope-log-search").fill("")

    # Stop: no Spark process is left
    page.evaluate("() => window.jupyterapp.shell.activateById('sparkscope-sidebar')")
    assert spark_processes(ports["connect"]), "the bundle's port is not Spark's"
    page.locator(".sparkscope-own-stop").click()
    harness.wait_until(lambda: own(page)["state"] == "stopped", 120, 0.5, "the own server stopped")
    harness.wait_until(
        lambda: not spark_processes(ports["connect"]), 30, 0.5, "no Spark process left"
    )
    shots.save(page, "stopped")
    assert not errors, errors
    assert re.search(r"stopped", own(page)["status"])
    print(
        f"own server: started, ran {NOTEBOOK}, {len(proxied)} proxied UI pages answered 200 "
        f"with their CSS, log panel {len(lines)} lines, stopped"
    )


LINKS_JS = """() => ({
  sidebar: [...document.querySelectorAll('.sparkscope-sb-ui-link')].map(a => a.href),
  widget: [...document.querySelectorAll('.sparkscope-cell a[href]')].map(a => a.href),
})"""


def check_ui_proxy(page: Any, lab: Any) -> list[str]:
    """Every Spark UI link of the sidebar and the widget goes through the Jupyter server's proxy
    and answers 200, with its stylesheets; without the Jupyter login it does not."""
    prefix = f"{lab.url}/sparkscope/ui/"
    links = harness.wait_until(
        lambda: (x := page.evaluate(LINKS_JS))["sidebar"] and len(x["widget"]) >= 3 and x,
        30,
        0.3,
        "the UI links of the sidebar and the widget",
    )
    (app_link,) = links["sidebar"]
    assert app_link.startswith(prefix), links
    app = app_link[len(prefix) :].split("/")[0]
    assert re.fullmatch(r"local-\d+", app), app_link
    assert all(h.startswith(prefix + app + "/") for h in links["widget"]), links["widget"]
    kinds = {k for h in links["widget"] for k in ("/jobs/job/", "/SQL/execution/") if k in h}
    assert kinds == {"/jobs/job/", "/SQL/execution/"}, links["widget"]
    base = prefix + app
    pages = sorted(
        {app_link, *links["widget"], f"{base}/executors/", f"{base}/stages/stage/?id=0&attempt=0"}
    )
    for url in pages:
        resp = page.request.get(url)
        assert resp.status == 200, (url, resp.status)
        html = resp.text()
        sheets = re.findall(r'<link[^>]+href="([^"]+\.css)"', html)
        assert sheets, (url, html[:300])
        for sheet in sheets:
            assert sheet.startswith(f"/sparkscope/ui/{app}/"), (url, sheet)  # not Spark's root
            css = page.request.get(f"{lab.url}{sheet}")
            assert css.status == 200 and "text/css" in css.headers["content-type"], sheet
    # behind Jupyter's login: no cookie, no UI; an application the proxy does not serve: 404
    anonymous = requests.get(f"{base}/jobs/", allow_redirects=False, timeout=10)
    assert anonymous.status_code in (302, 403), anonymous.status_code
    assert page.request.get(f"{prefix}local-1/jobs/").status == 404
    return pages


def test_bad_requests_to_the_own_server_endpoints_are_answered(lab) -> None:
    """Hostile or broken requests get a clear 4xx and change nothing; without Jupyter's login
    nothing is answered at all."""
    api = f"{lab.url}/sparkscope/api"
    auth = {"Authorization": f"token {lab.token}"}

    def call(method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{api}/{path}", headers=auth, timeout=10, **kw)

    before = call("GET", "server").json()
    assert call("POST", "server", data="{not json").status_code == 400
    assert call("POST", "server", json=["start"]).status_code == 400
    assert call("POST", "server", json={"action": "format-disk"}).status_code == 400
    assert call("POST", "server", json={"action": "start", "bundle": 7}).status_code == 400
    unknown = call("POST", "server", json={"action": "start", "bundle": "nope"})
    assert unknown.status_code == 400 and "no bundle named" in unknown.json()["message"]
    assert call("PUT", "bundles/x", data="{" + " " * 70_000 + "}").status_code == 413
    bad = call("PUT", "bundles/..%2Fescape", json={"master": "local[2]"})
    assert bad.status_code in (400, 404), bad.status_code
    secret = call("PUT", "bundles/s", json={"confs": {"spark.ssl.keyPassword": "hunter2"}})
    assert secret.status_code == 400 and "looks like a secret" in secret.json()["message"]
    assert call("GET", "server/log?offset=abc").status_code == 400
    assert call("DELETE", "bundles/nope").status_code == 404
    after = call("GET", "server").json()
    assert [b["name"] for b in after["bundles"]] == [b["name"] for b in before["bundles"]]
    assert after["server"]["state"] == before["server"]["state"]
    # no login: refused before any of it runs
    anonymous = requests.post(f"{api}/server", json={"action": "start"}, timeout=10)
    assert anonymous.status_code == 403, anonymous.status_code
    assert requests.get(f"{api}/server/log", timeout=10).status_code == 403
