"""Against pyspark's real Connect client objects (no server: creating a session, and adding or
reading tags, make no RPC). Each test runs in a fresh interpreter, because what is tested is what
happens when pyspark is imported after sparkscope is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pyspark.sql.connect.session")

SID = "44444444-4444-4444-8444-444444444444"
URL = f"sc://127.0.0.1:1/;user_id=alice;session_id={SID}"


def run_script(body: str) -> dict:
    script = textwrap.dedent(
        """
        import json, sys, warnings
        warnings.simplefilter("ignore")
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()

        def cell(code):
            result = shell.run_cell(code)
            result.raise_error()
            return shell.user_ns

        """
    ) + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sessions_created_after_loading_are_tagged_in_the_cell_that_creates_them() -> None:
    out = run_script(
        f"""
        shell.run_line_magic("load_ext", "sparkscope")
        pyspark_before = "pyspark.sql.connect.client.core" in sys.modules
        ns = cell('''
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.remote("{URL}").create()
        spark.release_session_on_close = False
        first = set(spark.getTags())  # pyspark returns its live set
        ''')
        first, after = ns["first"], ns["spark"].getTags()
        ns = cell('''
        second = set(spark.getTags())
        other = spark.newSession()
        other.release_session_on_close = False
        other_tags = set(other.getTags())
        ''')
        import sparkscope
        keys = [list(k) for k in sparkscope._monitor.tracker.keys()]
        ns["spark"].stop(), ns["other"].stop()  # else pyspark's atexit calls the (absent) server
        print(json.dumps(dict(pyspark_before=pyspark_before, first=sorted(first),
                              after=sorted(after), second=sorted(ns["second"]),
                              other_tags=sorted(ns["other_tags"]), keys=keys,
                              other_id=ns["other"].client._session_id)))
        """
    )
    assert out["pyspark_before"] is False
    assert len(out["first"]) == 1 and out["first"][0].startswith("sparkscope-cell-")
    assert out["after"] == []
    assert len(out["second"]) == 1 and out["second"] != out["first"]
    assert out["other_tags"] == out["second"]  # newSession() inside the cell
    assert sorted(out["keys"]) == sorted([[SID, "alice"], [out["other_id"], "alice"]])


def test_a_session_made_before_loading_is_found_at_the_next_cell() -> None:
    out = run_script(
        f"""
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.remote("{URL}").getOrCreate()
        spark.release_session_on_close = False
        shell.user_ns["spark"] = spark
        shell.run_line_magic("load_ext", "sparkscope")
        ns = cell("tags = set(spark.getTags())")
        shell.run_line_magic("unload_ext", "sparkscope")
        ns2 = cell("tags_unloaded = set(spark.getTags())")
        spark.stop()
        from pyspark.sql.connect.client.core import SparkConnectClient
        print(json.dumps(dict(tags=sorted(ns["tags"]), unloaded=sorted(ns2["tags_unloaded"]),
              restored=not hasattr(SparkConnectClient.__init__, "__sparkscope_original__"))))
        """
    )
    assert len(out["tags"]) == 1
    assert out["unloaded"] == []
    assert out["restored"] is True


def test_wrong_environment_gives_a_usage_error() -> None:
    out = run_script(
        """
        import sparkscope
        from IPython.core.error import UsageError
        try:
            sparkscope.load_ipython_extension(None)
            msg = ""
        except UsageError as exc:
            msg = str(exc)
        print(json.dumps(dict(msg=msg, heavy=[m for m in ("pyspark", "anywidget", "websocket")
                                               if m in sys.modules])))
        """
    )
    assert "IPython extension" in out["msg"]
    assert out["heavy"] == []  # importing sparkscope imports none of them
