"""Shared pytest plumbing for the whole-system tests: where artifacts (logs, event logs) go, the
"pieces not built yet" policy, and log tails attached to failure reports."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import harness
import pytest

ARTIFACTS_ROOT = Path(__file__).resolve().parent / "artifacts"
_LOGS = pytest.StashKey[dict[Path, str]]()
_DIRS = pytest.StashKey[list[Path]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sparkscope")
    group.addoption(
        "--keep-artifacts",
        action="store_true",
        help=f"write server/agent logs and event logs under {ARTIFACTS_ROOT}/<test module>/ "
        "(wiped at the start of the module) instead of pytest's tmp dir",
    )
    group.addoption(
        "--require-sparkscope",
        action="store_true",
        help="fail instead of skipping when the listener jar or the agent binary is missing "
        "(also on when $CI, $SPARKSCOPE_E2E_STRICT or $SPARKSCOPE_BIN is set)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_LOGS] = {}
    config.stash[_DIRS] = []
    # pyspark 4.3 warns about pandas 3 on import of its Connect client; not ours to act on
    config.addinivalue_line(
        "filterwarnings", "ignore:PySpark does not yet fully support pandas:FutureWarning"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # every Connect session's channel closed before the interpreter exits (see the harness)
    harness.close_connect_sessions()


def strict(config: pytest.Config) -> bool:
    return bool(
        config.getoption("--require-sparkscope")
        or os.environ.get("CI")
        or os.environ.get("SPARKSCOPE_E2E_STRICT")
        # naming the binary explicitly (scripts/test.sh does) means "test it", never "skip"
        or os.environ.get("SPARKSCOPE_BIN")
    )


@pytest.fixture(scope="module")
def artifacts_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A directory for this test module's logs and event logs."""
    name = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    if request.config.getoption("--keep-artifacts"):
        path = ARTIFACTS_ROOT / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    else:
        path = tmp_path_factory.mktemp(name)
    request.config.stash[_DIRS].append(path)
    return path


@pytest.fixture(scope="module")
def log_registry(request: pytest.FixtureRequest):
    """`register(path, title)`: attach the tail of that log to every failing report while the
    calling module's fixtures are alive."""
    logs = request.config.stash[_LOGS]
    mine: list[Path] = []

    def register(path: Path, title: str) -> None:
        logs[Path(path)] = title
        mine.append(Path(path))

    yield register
    for path in mine:
        logs.pop(path, None)


@pytest.fixture(scope="session")
def require_piece(request: pytest.FixtureRequest):
    """`require(path_or_none, what, how_to_build)`: skip (locally) or fail (CI, strict) when a
    piece under test has not been built."""

    def require(path: Path | None, what: str, how: str) -> Path:
        if path is not None:
            return path
        msg = f"{what} not found; build it with: {how}"
        if strict(request.config):
            pytest.fail(
                f"{msg} (strict because of --require-sparkscope, $CI, "
                "$SPARKSCOPE_E2E_STRICT or $SPARKSCOPE_BIN)"
            )
        pytest.skip(msg)

    return require


@pytest.fixture(scope="session")
def require_browser(require_piece) -> None:
    """Playwright and Debian's Chromium, for the browser tests (skip or fail as require_piece)."""
    from harness import browser

    require_piece(
        Path(browser.__file__) if browser.playwright_available() else None,
        "the playwright Python package",
        ".venv/bin/pip install -r tests/requirements.txt",
    )
    require_piece(browser.chromium_path(), "Chromium", "apt-get install chromium")


@pytest.fixture(scope="session")
def reporting_to(require_piece):
    """`reporting_to(work_dir, agent, **kw)`: a Spark Connect server (a context manager) whose
    listener reports to `agent` with its listener token; `kw` goes to SparkConnectServer."""

    def start(work_dir: Path, agent: harness.Agent, **kw) -> harness.SparkConnectServer:
        jar = require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
        return harness.SparkConnectServer(
            work_dir, listener_jar=jar, agent_addr=agent.ingest_addr, token=agent.token, **kw
        )

    return start


@pytest.fixture(scope="module")
def notebook_server(reporting_to, artifacts_dir: Path, log_registry):
    """`notebook_server(agent, **kw)`: a module's Spark Connect server (a context manager)
    reporting to `agent`, its log shown when a test fails; `kw` goes to SparkConnectServer."""

    def start(agent: harness.Agent, **kw) -> harness.SparkConnectServer:
        log_registry(artifacts_dir / "spark-connect-server.log", "Spark Connect server log")
        return reporting_to(artifacts_dir, agent, **kw)

    return start


@pytest.fixture(scope="module")
def notebook_agent(require_browser, require_piece, artifacts_dir: Path, log_registry):
    """`notebook_agent(**kw)`: the real agent (a context manager) for a module's notebooks, with
    a listener token of its own and its log shown when a test fails; `kw` goes to Agent."""

    def start(**kw) -> harness.Agent:
        binary = require_piece(harness.agent_binary(), "sparkscope binary", "make setup")
        log_registry(artifacts_dir / "sparkscope-agent.log", "sparkscope agent log")
        kw.setdefault("token", "nb-" + secrets.token_hex(16))
        return harness.Agent(binary, artifacts_dir, **kw)

    return start


@pytest.fixture(scope="module")
def notebook_lab(artifacts_dir: Path, log_registry):
    """`notebook_lab(agent, {name: cells})`: JupyterLab (a context manager) on a root holding
    these notebooks, its kernels following `agent`'s stream with its subscriber token."""

    def start(agent: harness.Agent, notebooks: dict[str, list[str]]) -> harness.JupyterLab:
        from harness import nbrun

        root = artifacts_dir / "lab-root"
        root.mkdir(exist_ok=True)
        for name, cells in notebooks.items():
            nbrun.write_notebook(root / name, cells)
        log_registry(artifacts_dir / "jupyterlab.log", "JupyterLab log")
        env = {"SPARKSCOPE_URL": agent.stream_url, "SPARKSCOPE_TOKEN": agent.subscriber_token}
        return harness.JupyterLab(root, artifacts_dir, env=env)

    return start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        for path, title in item.config.stash[_LOGS].items():
            report.sections.append((f"{title}: {path} (tail)", harness.tail(path, 80)))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for path in config.stash[_DIRS]:
        terminalreporter.write_line(f"sparkscope e2e artifacts: {path}")


@pytest.fixture(scope="module")
def screenshots_dir(request: pytest.FixtureRequest, artifacts_dir: Path) -> Path:
    """Where browser tests save screenshots: tests/artifacts/screenshots/ with --keep-artifacts
    (files are named after the test, so runs overwrite their own), else the module's tmp dir."""
    if request.config.getoption("--keep-artifacts"):
        path = ARTIFACTS_ROOT / "screenshots"
    else:
        path = artifacts_dir / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    if path not in request.config.stash[_DIRS]:
        request.config.stash[_DIRS].append(path)
    print(f"screenshots: {path}")
    return path
