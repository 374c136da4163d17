"""The driver's WARN and ERROR lines on the listener's wire, from a real Spark Connect server with
the listener's defaults (docs/wire-protocol.md, `SparkscopeLogLine`): a user's
failing query (division by zero, ANSI) makes Spark log its task failure, and the lines reach
the agent with what says whose they are: the failing stage, in the message or in the task's name
of Spark's logging context (seen here: the executor logs after its task context is gone, and the
scheduler's threads carry no job tags), for the agent to map to the stage's job and session. The agent reads the lines as known ones:
nothing is malformed or unknown. The listener counts what it forwarded in its stats line.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from pathlib import Path

import harness
import pytest


def test_a_failing_querys_error_lines_reach_the_agent_with_whose_they_are(
    tmp_path: Path, require_piece, log_registry
) -> None:
    binary = require_piece(harness.agent_binary(), "sparkscope binary", "make setup")
    jar = require_piece(harness.listener_jar(), "listener jar", "listener-jar/build.sh")
    log_registry(tmp_path / "server" / "spark-connect-server.log", "Spark Connect server log")
    with harness.Agent(binary, tmp_path / "agent", token=secrets.token_hex(16)) as agent:
        tap = harness.Proxy(agent.ingest_addr, record=True)
        server = harness.SparkConnectServer(
            tmp_path / "server",
            listener_jar=jar,
            agent_addr=tap.addr,
            token=agent.token,
            conf={"spark.sql.ansi.enabled": "true"},
        )
        with server:
            spark = harness.connect_session(server.remote_url(user_id="ivy"))
            session = spark.client._session_id
            try:
                with pytest.raises(Exception, match="DIVIDE_BY_ZERO"):
                    spark.range(0, 4, 1, 2).selectExpr("1 / (id - id) AS x").collect()
                failed = [j for j in server.rest("jobs") if j["status"] == "FAILED"]
                assert failed, server.rest("jobs")
                stages = {str(s) for j in failed for s in j["stageIds"]}

                def forwarded() -> list[dict] | None:
                    lines = []
                    for raw in tap.lines():
                        with contextlib.suppress(ValueError):
                            line = json.loads(raw)
                            if line.get("Event") == "SparkscopeLogLine":
                                lines.append(line)
                    errors = [x for x in lines if x["Level"] == "ERROR"]
                    return lines if errors else None

                lines = harness.wait_until(forwarded, 30, 0.3, "the driver's ERROR lines")
                stats = harness.wait_until(
                    lambda: [
                        s
                        for raw in tap.lines()
                        if b"SparkscopeListenerStats" in raw
                        and (s := json.loads(raw))["logLinesForwarded"] > 0
                    ],
                    30,
                    0.3,
                    "a stats line counting them",
                )
                # the agent ties them to ivy's session: the operators' view says whose each is
                kept = harness.wait_until(
                    lambda: (
                        [
                            x
                            for x in agent.get(f"/api/v1/applications/{server.app_id}/logs")[
                                "lines"
                            ]
                            if x["level"] == "ERROR"
                        ]
                        or None
                    ),
                    30,
                    0.3,
                    "the agent's kept ERROR lines",
                )
            finally:
                spark.stop()
            app = agent.application(server.app_id)
        tap.close()
    assert all(x["Level"] in ("WARN", "ERROR", "FATAL") for x in lines), lines
    assert not any(x["Logger"].startswith("io.sparkscope.") for x in lines)

    def whose(x: dict) -> bool:
        """The line names the failing stage (its message, its task's name in Spark's logging
        context), or the user's session (the thread's job tags, the structured context)."""
        named = re.findall(r"\bstage (\d+)\.\d+", x["Message"] + " " + str(x["Context"]))
        return (
            bool(set(named) & stages)
            or session in x["Job Tags"]
            or x["Context"].get("session_id") == session
        )

    errors = [x for x in lines if x["Level"] == "ERROR"]
    mine = [x for x in errors if whose(x)]
    assert mine, errors
    assert any("DIVIDE_BY_ZERO" in x["Thrown"] + x["Message"] for x in lines), lines
    assert all(len(x["Message"]) <= 2000 for x in lines)
    ingest = app["ingest"]
    assert ingest["malformedLines"] == 0 and ingest["unknownEvents"] == 0, ingest
    assert stats[-1]["logLinesDropped"] == 0, stats[-1]
    owned = [x for x in kept if x.get("owner")]
    assert owned, kept
    assert all(
        (x["owner"]["userId"], x["owner"]["sessionId"]) == ("ivy", session) for x in owned
    ), owned
    failed_ids = {j["jobId"] for j in failed}
    assert all(x["owner"].get("jobId") in failed_ids | {None} for x in owned), owned
    assert any(str(x["owner"].get("stageId")) in stages for x in owned), owned
    print(
        f"{len(kept)} ERROR lines kept by the agent, {len(owned)} tied to ivy's session; "
        f"{len(lines)} log lines forwarded ({len(errors)} ERROR, {len(mine)} of them naming the "
        f"failing stage or session); e.g. {mine[0]['Logger']}: {mine[0]['Message'][:80]}"
    )
