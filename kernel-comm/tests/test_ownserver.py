"""The user's own server: bundles are checked and stored safely, and the `sparkscope server` child
is started, watched and stopped, with nothing left behind. A small script stands in for
`sparkscope server` (these unit tests run without Spark): it prints the server's ready line,
records its arguments and environment, and stops on SIGTERM — or fails, or ignores SIGTERM, or
dies of it, leaving behind a process in its own group as Spark would be."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sparkscope.ownserver import (
    Bundle,
    BundleError,
    Bundles,
    OwnServer,
    OwnServerError,
)

FAKE = """#!{python}
import json, os, signal, subprocess, sys, time
record, mode = {record!r}, {mode!r}
with open(record + ".argv", "w") as f:
    env = {{k: os.environ.get(k) for k in ("SPARKSCOPE_SPARK_MASTER", "SPARKSCOPE_CONNECT_PORT",
                                          "KEEP")}}
    json.dump({{"argv": sys.argv[1:], "env": env}}, f)
if mode == "boom":
    print("boom", flush=True)
    sys.exit(1)

def term(*_):
    time.sleep(0.1)
    with open(record + ".stopped", "w") as f:
        f.write("stopped")
    sys.exit(0)

if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode == "ok":
    signal.signal(signal.SIGTERM, term)
if mode in ("stubborn", "dies"):
    # Spark, in a process group of its own
    spark = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             start_new_session=True)
    with open(record + ".spark", "w") as f:
        f.write(str(spark.pid))
time.sleep(600 if mode == "dies" else 0.2)
port = sys.argv[sys.argv.index("--connect-port") + 1]
print(f"Spark Connect server  sc://127.0.0.1:{{port}}    (log x)", flush=True)
while True:
    time.sleep(1)
"""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """No such process, or only its zombie (a container's init may not reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rfind(")") + 2] == "Z"


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., tuple[OwnServer, Path]]]:
    """`make_server(mode, stop_timeout=…)`: an OwnServer running the stand-in in `mode`, and the
    stand-in's record path (`.argv`, `.stopped`, `.spark` beside it); closed after the test."""
    servers: list[OwnServer] = []

    def make(mode: str = "ok", stop_timeout: float = 10.0) -> tuple[OwnServer, Path]:
        record = tmp_path / f"fake-{mode}"
        exe = tmp_path / f"sparkscope-{mode}"
        exe.write_text(FAKE.format(python=sys.executable, record=str(record), mode=mode))
        exe.chmod(0o755)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "SPARKSCOPE_SPARK_MASTER": "yarn",
            "SPARKSCOPE_CONNECT_PORT": "1",
            "KEEP": "kept",
        }
        server = OwnServer(
            Bundles(tmp_path / "bundles"),
            binary=lambda: exe,
            state_dir=lambda: tmp_path / "home",
            stop_timeout=stop_timeout,
            env=env,
        )
        servers.append(server)
        return server, record

    yield make
    for server in servers:
        server.close()


def problems(obj: Any, name: str = "b") -> list[str]:
    with pytest.raises(BundleError) as e:
        Bundle.from_json(name, obj)
    assert str(e.value) == "; ".join(e.value.problems)
    return e.value.problems


# bundles


def test_args_of_a_default_and_a_full_bundle() -> None:
    assert Bundle("x").args() == ["server", "--master", "local[*]", "--connect-port", "15002"]
    full = Bundle(
        "x",
        master="local[4]",
        driver_memory="4g",
        executor_memory="2g",
        connect_port=15010,
        confs={"spark.sql.shuffle.partitions": "8", "spark.a": "x y"},
        packages=["org.a:b_2.13:1.0", "org.c:d:2.0"],
    )
    assert full.args() == [
        "server", "--master", "local[4]", "--connect-port", "15010",
        "--conf", "spark.driver.memory=4g",
        "--conf", "spark.executor.memory=2g",
        "--conf", "spark.jars.packages=org.a:b_2.13:1.0,org.c:d:2.0",
        "--conf", "spark.a=x y",
        "--conf", "spark.sql.shuffle.partitions=8",
    ]  # fmt: skip
    assert Bundle.from_json("x", full.to_json()) == full
    assert full.to_json()["driverMemory"] == "4g" and full.to_json()["connectPort"] == 15010


@pytest.mark.parametrize(
    "master",
    [
        "local", "local[*]", "local[4]", "local[4,2]", "local[*,3]", "local-cluster[2,1,1024]",
        "spark://h:7077", "spark://h1:7077,h2.example.com:7077", "yarn",
        "k8s://https://10.0.0.1:443",
    ],
)  # fmt: skip
def test_spark_masters_are_accepted(master: str) -> None:
    assert Bundle.from_json("b", {"master": master}).master == master


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ({"master": "foo"}, "master 'foo' is not a Spark master (local[*]"),
        ({"master": "local[0]"}, "is not a Spark master"),
        ({"master": "spark://h"}, "is not a Spark master"),
        ({"master": "--help"}, "is not a Spark master"),
        ({"master": ""}, "master must be a non-empty string"),
        ({"master": "k8s://" + "x" * 300}, "at most 200 characters"),
        ({"master": 4}, "master must be a non-empty string"),
        ({"driverMemory": "2 GB"}, "driverMemory '2 GB' is not a JVM size such as 2g or 512m"),
        ({"executorMemory": "lots"}, "executorMemory 'lots' is not a JVM size"),
        ({"executorMemory": 4}, "executorMemory 4 is not a JVM size"),
        ({"connectPort": 80}, "connectPort must be a whole number from 1024 to 65535; got 80"),
        ({"connectPort": 70000}, "from 1024 to 65535"),
        ({"connectPort": True}, "from 1024 to 65535"),
        ({"connectPort": "15002"}, "from 1024 to 65535"),
        ({"foo": 1}, "unknown field 'foo'; known: name, master"),
        ({"name": "other"}, "name 'other' differs from the bundle's 'b'"),
        ({"confs": []}, "confs must be an object"),
        ({"confs": {"sql.x": "1"}}, "conf 'sql.x' is not a Spark conf name"),
        ({"confs": {"spark.a b": "1"}}, "conf 'spark.a b' is not a Spark conf name"),
        ({"confs": {"spark.x": 1}}, "conf 'spark.x' must have a string value"),
        ({"confs": {"spark.x": "a\nb"}}, "with a line break"),
        ({"confs": {"spark.x": "a\0b"}}, "with a line break"),
        ({"confs": {"spark.x": "v" * 4097}}, "over 4096 characters"),
        ({"confs": {f"spark.k{i}": "v" for i in range(101)}}, "101 entries; at most 100"),
        ({"packages": "org.a:b:1"}, "packages must be a list"),
        ({"packages": ["org.a:b:1"] * 51}, "at most 50"),
        ({"packages": ["org.a:b"]}, "package 'org.a:b' is not a Maven coordinate"),
        ({"packages": ["org.a:b:1 --x"]}, "is not a Maven coordinate"),
    ],
)
def test_each_rule_names_its_field(obj: dict[str, Any], fragment: str) -> None:
    found = problems(obj)
    assert len(found) == 1, found
    assert fragment in found[0]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {"master": "foo", "driverMemory": "2 GB", "connectPort": 1, "bar": 0,
         "confs": {"spark.master": "yarn"}, "packages": ["x"]},
        name="bad name",
    )  # fmt: skip
    assert len(found) == 7, found
    for fragment in ("a bundle's name", "unknown field 'bar'", "master 'foo'", "driverMemory",
                     "connectPort", "spark.master", "package 'x'"):  # fmt: skip
        assert any(fragment in p for p in found), (fragment, found)


def test_a_bundle_is_an_object() -> None:
    assert problems(["local"]) == ["a bundle is a JSON object"]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("spark.master", "use the master field"),
        ("spark.jars.packages", "use the packages field"),
        ("spark.driver.memory", "use the driverMemory field"),
        ("spark.executor.memory", "use the executorMemory field"),
        ("spark.jars", "listener jar"),
        ("spark.extraListeners", "its listener"),
        ("spark.driver.host", "127.0.0.1"),
        ("spark.driver.bindAddress", "127.0.0.1"),
        ("spark.connect.grpc.binding.address", "sets it itself"),
        ("spark.connect.grpc.binding.port", "sets it itself"),
        ("spark.sparkscope.streamUrl", "sets it itself"),
        ("spark.sparkscope.tokenFile", "sets it itself"),
    ],
)
def test_the_servers_own_confs_are_refused(key: str, why: str) -> None:
    [found] = problems({"confs": {key: "x"}})
    assert f"conf {key!r} is set by the server" in found and why in found


@pytest.mark.parametrize(
    "key", ["spark.foo.password", "spark.ssl.keyStorePassword", "spark.authenticate.secret",
            "spark.hadoop.fs.s3a.secret.key", "spark.x.TOKEN"],
)  # fmt: skip
def test_secret_looking_confs_are_refused(key: str) -> None:
    [found] = problems({"confs": {key: "hunter2"}})
    assert found == (
        f"conf {key!r} looks like a secret; bundles are stored in plain text — put secrets in "
        "the server's environment or spark-defaults.conf instead"
    )


def test_a_conf_naming_a_secrets_file_is_allowed() -> None:
    confs = {"spark.authenticate.secret.file": "/etc/spark/secret"}
    assert Bundle.from_json("b", {"confs": confs}).confs == confs


@pytest.mark.parametrize("name", ["", ".hidden", "../etc", "a/b", "a b", "x" * 65, "é"])
def test_bad_names_are_refused_everywhere(tmp_path: Path, name: str) -> None:
    assert "a bundle's name is 1–64 letters" in problems({}, name=name)[0]
    store = Bundles(tmp_path)
    for call in (store.get, store.delete, lambda n: store.save(n, {})):
        with pytest.raises(BundleError, match="a bundle's name"):
            call(name)
    assert list(tmp_path.iterdir()) == []


# the store


def test_save_list_get_delete(tmp_path: Path) -> None:
    directory = tmp_path / "cfg" / "bundles"
    store = Bundles(directory)
    big = store.save("big", {"master": "local[8]", "driverMemory": "8g", "packages": ["a:b:1"]})
    small = store.save("small", Bundle("small", master="local[2]").to_json())
    assert [b.name for b in store.list()] == ["big", "small"] and store.errors == {}
    assert store.get("big") == big and store.get("small") == small
    assert stat.S_IMODE((directory / "big.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["big.json", "small.json"]
    assert json.loads((directory / "big.json").read_text())["driverMemory"] == "8g"

    store.save("big", {"master": "local[1]"})  # replaced
    assert store.get("big").master == "local[1]" and store.get("big").driver_memory == ""
    store.delete("big")
    assert [b.name for b in store.list()] == ["small"]
    with pytest.raises(BundleError, match="no bundle named 'big'"):
        store.get("big")
    with pytest.raises(BundleError, match="no bundle named 'big'"):
        store.delete("big")


def test_a_bad_bundle_is_not_saved(tmp_path: Path) -> None:
    store = Bundles(tmp_path / "b")
    with pytest.raises(BundleError, match="not a Spark master"):
        store.save("x", {"master": "foo"})
    assert not (tmp_path / "b").exists()


def test_an_oversized_bundle_is_refused(tmp_path: Path) -> None:
    confs = {f"spark.k{i}": "v" * 4000 for i in range(20)}
    with pytest.raises(BundleError, match="at most 64 KiB"):
        Bundles(tmp_path).save("x", {"confs": confs})
    assert list(tmp_path.iterdir()) == []


def test_the_default_bundle_without_any(tmp_path: Path) -> None:
    store = Bundles(tmp_path / "none")
    assert store.list() == [Bundle("default")]
    assert store.get("default") == Bundle("default")
    assert not (tmp_path / "none").exists()
    with pytest.raises(BundleError, match="no bundle named 'other'"):
        store.get("other")


def test_a_broken_file_is_skipped_and_reported(tmp_path: Path) -> None:
    store = Bundles(tmp_path)
    store.save("good", {})
    (tmp_path / "torn.json").write_text('{"master": ')
    (tmp_path / "wrong.json").write_text('{"master": "foo"}')
    (tmp_path / "huge.json").write_text(" " * (65 * 1024) + "{}")
    assert [b.name for b in store.list()] == ["good"]
    assert sorted(store.errors) == ["huge", "torn", "wrong"]
    assert "is not JSON" in store.errors["torn"]
    assert "master 'foo' is not a Spark master" in store.errors["wrong"]
    assert "over 64 KiB" in store.errors["huge"]
    with pytest.raises(BundleError, match="is not JSON"):
        store.get("torn")


# the server


def test_start_run_stop(make_server: Callable[..., tuple[OwnServer, Path]]) -> None:
    server, record = make_server()
    bundle = server.bundles.save("dev", {"master": "local[2]", "connectPort": 15123})
    assert server.status()["state"] == "stopped"
    started = server.start("dev")
    assert started["state"] == "starting" and started["bundle"] == "dev"
    assert started["connectUrl"] == "" and started["startedAtMs"] > 0
    pid = started["pid"]
    wait_for(lambda: server.status()["state"] == "running", "running state")
    status = server.status()
    assert status["connectUrl"] == "sc://127.0.0.1:15123" and status["pid"] == pid
    assert status["driverLog"].endswith("home/spark-connect-server.log")
    seen = json.loads(record.with_suffix(".argv").read_text())
    # the bundle's arguments, and Spark's UI on a free port the proxy is told of
    assert seen["argv"][:-2] == bundle.args() and seen["argv"][-2] == "--conf"
    assert seen["argv"][-1] == f"spark.ui.port={status['uiPort']}" and status["uiPort"] > 0
    # the bundle's flags win over the Jupyter server's environment; the rest is passed on
    assert seen["env"] == {
        "SPARKSCOPE_SPARK_MASTER": None,
        "SPARKSCOPE_CONNECT_PORT": None,
        "KEEP": "kept",
    }
    out = record.parent / "home" / "own-server.out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    stopping = server.stop()
    assert stopping["state"] in ("stopping", "stopped")
    stopped = server.stop(wait=True)
    assert stopped["state"] == "stopped" and stopped["pid"] is None and stopped["message"] == ""
    assert record.with_suffix(".stopped").read_text() == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert server.stop(wait=True)["state"] == "stopped"  # again: no error


def test_one_server_at_a_time(make_server: Callable[..., tuple[OwnServer, Path]]) -> None:
    server, _ = make_server()
    server.start("default")
    with pytest.raises(OwnServerError) as e:
        server.start("default")
    assert e.value.code == "already_running" and "stop it first" in str(e.value)
    wait_for(lambda: server.status()["state"] == "running", "running state")
    with pytest.raises(OwnServerError, match="is running with bundle 'default'"):
        server.start("default")


def test_restart_with_another_bundle(make_server: Callable[..., tuple[OwnServer, Path]]) -> None:
    server, record = make_server()
    server.bundles.save("other", {"connectPort": 15200})
    first = server.start("default")["pid"]
    wait_for(lambda: server.status()["state"] == "running", "running state")
    with pytest.raises(BundleError, match="no bundle named 'nope'"):
        server.restart("nope")
    assert server.status()["pid"] == first  # a bad name left it alone
    again = server.restart("other")
    assert again["bundle"] == "other" and again["pid"] != first
    assert gone(first)
    wait_for(lambda: server.status()["connectUrl"] == "sc://127.0.0.1:15200", "the new url")
    argv = json.loads(record.with_suffix(".argv").read_text())["argv"]
    assert argv[argv.index("--connect-port") + 1] == "15200"


def test_a_failed_start(make_server: Callable[..., tuple[OwnServer, Path]]) -> None:
    server, _ = make_server("boom")
    server.start("default")
    wait_for(lambda: server.status()["state"] == "failed", "failed state")
    status = server.status()
    assert status["pid"] is None and status["connectUrl"] == ""
    assert status["message"].startswith("sparkscope server exited with code 1:")
    assert "boom" in status["message"]
    assert server.start("default")["state"] == "starting"  # may be started again


def test_unknown_bundle_or_no_binary(tmp_path: Path) -> None:
    def missing() -> Path:
        from sparkscope.install import NotInstalled

        raise NotInstalled("the sparkscope agent binary is not installed")

    server = OwnServer(Bundles(tmp_path), binary=missing, state_dir=lambda: tmp_path / "h")
    with pytest.raises(BundleError, match="no bundle named 'x'"):
        server.start("x")
    with pytest.raises(OwnServerError, match="binary is not installed") as e:
        server.start("default")
    assert e.value.code == "cannot_start"
    assert server.status()["state"] == "stopped"


def test_a_server_ignoring_sigterm_is_killed(
    make_server: Callable[..., tuple[OwnServer, Path]],
) -> None:
    server, record = make_server("stubborn", stop_timeout=1.0)
    pid = server.start("default")["pid"]
    wait_for(lambda: server.status()["state"] == "running", "running state")
    spark = int(record.with_suffix(".spark").read_text())
    status = server.stop(wait=True)
    assert status["state"] == "stopped"
    assert "did not stop within 1 s; killed" in status["message"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert gone(spark)


def test_spark_is_stopped_when_the_server_dies_starting(
    make_server: Callable[..., tuple[OwnServer, Path]],
) -> None:
    """A server signalled before it is ready may die without stopping Spark: Spark's group gets
    the SIGTERM instead."""
    server, record = make_server("dies")
    pid = server.start("default")["pid"]
    spark_file = record.with_suffix(".spark")
    wait_for(lambda: spark_file.exists() and spark_file.read_text().isdigit(), "spark stand-in")
    spark = int(spark_file.read_text())
    assert server.status()["state"] == "starting"
    assert server.stop(wait=True)["state"] == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert gone(spark)


def test_the_ui_port_is_the_bundles_or_none_when_the_ui_is_off(
    make_server: Callable[..., tuple[OwnServer, Path]],
) -> None:
    server, record = make_server()
    server.bundles.save("ui", {"confs": {"spark.ui.port": "4999"}})
    server.start("ui")
    wait_for(lambda: server.status()["state"] == "running", "running state")
    assert server.status()["uiPort"] == 4999
    argv = json.loads(record.with_suffix(".argv").read_text())["argv"]
    assert argv.count("spark.ui.port=4999") == 1  # the bundle's own, not added twice
    server.stop(wait=True)
    assert server.status()["uiPort"] is None
    server.bundles.save("noui", {"confs": {"spark.ui.enabled": "false"}})
    server.start("noui")
    wait_for(lambda: server.status()["state"] == "running", "running state")
    assert server.status()["uiPort"] is None
    argv = json.loads(record.with_suffix(".argv").read_text())["argv"]
    assert not any(a.startswith("spark.ui.port") for a in argv), argv
    server.stop(wait=True)
