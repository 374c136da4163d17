"""The Plan view: SQL executions merged from the stream (a new plan replaces the one held, metric
values are deltas, a snapshot replaces everything), given to the cell runs whose jobs or
operations ran them, formatted as Spark's SQL tab writes them, each operator's share of the
plan's time, the bounds; the widget's traits and the DOM its ESM draws; and the log line indexes
that replaced scanning every kept line per view."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_agent import load_frames
from sparkscope import cellrun, cellview, state
from sparkscope.cellrun import CellRun, CellRuns
from sparkscope.cellview import format_metric, plan_row, spark_bytes, spark_ms
from sparkscope.state import SQL_EXECUTION, StreamState
from sparkscope.widget import CellWidget, traits

TAG = "sparkscope-cell-000000000001"
OTHER = "sparkscope-cell-000000000002"
APP = "local-1795258400000"
OP = "22222222-2222-4222-8222-222222222222"
WIDGET_JS = Path(cellview.__file__).parent / "static" / "widget.js"


def metric(name: str, kind: str, acc: int) -> dict:
    return {"name": name, "type": kind, "accumulatorId": str(acc)}


# A plan in pre-order as the agent sends it (proto3 JSON: a parent of 0 is left out).
NODES = [
    {"parent": -1, "name": "AdaptiveSparkPlan", "detail": "AdaptiveSparkPlan isFinalPlan=false"},
    {
        "name": "HashAggregate",
        "detail": "HashAggregate(keys=[k#1], functions=[count(1)])",
        "metrics": [
            metric("time in aggregation build", "timing", 2),
            metric("number of output rows", "sum", 1),
            metric("spill size", "size", 3),
        ],
    },
    {
        "parent": 1,
        "name": "Exchange",
        "detail": "Exchange hashpartitioning(k#1, 200), ENSURE_REQUIREMENTS, [plan_id=12]",
        "metrics": [metric("shuffle write time", "nsTiming", 4), metric("data size", "size", 5)],
    },
    {
        "parent": 2,
        "name": "WholeStageCodegen (1)",
        "detail": "WholeStageCodegen (1)",
        "metrics": [metric("duration", "timing", 6)],
    },
    {
        "parent": 3,
        "name": "HashAggregate",
        "detail": "HashAggregate(keys=[k#1], functions=[partial_count(1)])",
        "metrics": [
            metric("number of output rows", "sum", 7),
            metric("time in aggregation build", "timing", 8),
        ],
    },
    {
        "parent": 4,
        "name": "Range",
        "detail": "Range (0, 1000, step=1, splits=8)",
        "metrics": [metric("number of output rows", "sum", 9)],
    },
]
VALUES = {1: 4, 2: 300, 4: 200_000_000, 5: 4096, 6: 5000, 7: 40, 8: 500, 9: 1000}


def values(pairs: dict[int, int]) -> list[dict]:
    return [{"accumulatorId": str(a), "value": str(v)} for a, v in pairs.items()]


def execution(eid: int = 3, **fields) -> dict:
    base = {
        "appId": APP,
        "executionId": str(eid),
        "description": "count at <stdin>:1",
        "startMs": "1795258404050",
        "jobIds": [4],
    }
    return {**base, **fields}


def held(s: StreamState, eid: int = 3) -> dict:
    return s.sql_executions[(APP, eid)]


def replay(n: int | None = None) -> tuple[CellRun, CellRuns, StreamState]:
    """The handmade cell (its job 4 of operation OP has TAG) merged into a run."""
    s, runs = StreamState(), CellRuns()
    run = CellRun(TAG, None, 0, finished=True)
    runs.start(run)
    for frame in load_frames("handmade_cell.jsonl")[:n]:
        update = json.loads(frame)["update"]
        runs.merge(s, update, s.apply(update))
    return run, runs, s


def push(runs: CellRuns, s: StreamState, update: dict) -> set[str] | None:
    touched = s.apply(update)
    runs.merge(s, update, touched)
    return touched


# ---- merging


def test_a_plan_stands_until_a_new_one_and_metric_values_are_deltas() -> None:
    s = StreamState()
    s.apply({"sqlExecutions": [execution(nodes=NODES, metricValues=values({1: 2, 2: 100}))]})
    ex = held(s)
    assert [n["name"] for n in ex["nodes"]][:2] == ["AdaptiveSparkPlan", "HashAggregate"]
    assert ex["nodes"][1]["parent"] == 0, "proto3 leaves a parent of 0 out"
    assert ex["nodes"][1]["metrics"][0]["accumulatorId"] == 2
    assert ex["values"] == {1: 2, 2: 100} and ex["endMs"] is None and ex["planVersion"] == 0
    first = ex

    # no nodes: the plan held stands; the changed values merge into the ones held
    s.apply({"sqlExecutions": [execution(metricValues=values({2: 250, 7: 40}))]})
    ex = held(s)
    assert ex["nodes"] == first["nodes"] and ex["planVersion"] == 0
    assert ex["values"] == {1: 2, 2: 250, 7: 40}
    assert first["values"] == {1: 2, 2: 100}, "a new record: a cell run holds the old one"

    # an AQE re-plan: its nodes replace the plan; values of metrics it kept stay, the others go
    replanned = [NODES[0], {**NODES[1], "metrics": [metric("number of output rows", "sum", 1)]}]
    s.apply(
        {"sqlExecutions": [execution(nodes=replanned, planVersion=1, metricValues=values({1: 5}))]}
    )
    ex = held(s)
    assert len(ex["nodes"]) == 2 and ex["planVersion"] == 1 and ex["values"] == {1: 5}
    # the end (and the version it ended on, when left out of the update) stands
    s.apply({"sqlExecutions": [execution(endMs="1795258404900", jobIds=[4, 5])]})
    ex = held(s)
    assert ex["planVersion"] == 1 and len(ex["nodes"]) == 2 and ex["values"] == {1: 5}
    assert ex["endMs"] == 1795258404900 and ex["jobIds"] == [4, 5]


def test_a_snapshot_replaces_every_execution() -> None:
    s = StreamState()
    s.apply({"sqlExecutions": [execution(3, nodes=NODES, metricValues=values(VALUES))]})
    s.apply({"sqlExecutions": [execution(4, nodes=NODES, jobIds=[6])]})
    assert (
        s.apply({"snapshot": True, "sqlExecutions": [execution(4, nodes=NODES[:1], jobIds=[6])]})
        is None
    )
    assert list(s.sql_executions) == [(APP, 4)]
    assert held(s, 4)["values"] == {} and len(held(s, 4)["nodes"]) == 1
    # and the indexes followed: execution 3 is no job's any more
    assert s._sql_by_job == {(APP, 6): {(APP, 4)}}


def test_the_stream_keeps_at_most_max_sql_executions_oldest_ended_first(monkeypatch) -> None:
    monkeypatch.setattr(state, "MAX_SQL_EXECUTIONS", 4)
    s = StreamState()
    s.apply(
        {
            "sqlExecutions": [
                execution(i, startMs=str(100 + i), jobIds=[i], nodes=NODES[:1])
                | ({"endMs": str(1000 - i)} if i < 4 else {})
                for i in range(6)
            ]
        }
    )
    # ended: 0 (at 1000), 1 (999), 2 (998), 3 (997); the two that ended first go
    assert sorted(e for _, e in s.sql_executions) == [0, 1, 4, 5]
    s.apply({"sqlExecutions": [execution(9, startMs="50", jobIds=[9])]})
    assert sorted(e for _, e in s.sql_executions) == [0, 4, 5, 9]
    assert (APP, 3) not in s._sql_by_job and (APP, 2) not in s._sql_by_job
    # only running ones left: the oldest started goes
    s.apply({"sqlExecutions": [execution(0, startMs="100", jobIds=[0])]})
    s.apply({"sqlExecutions": [execution(10, startMs="500", jobIds=[10])]})
    assert sorted(e for _, e in s.sql_executions) == [0, 4, 5, 10]


# ---- which cell runs they belong to


def test_an_execution_belongs_to_the_cell_whose_job_or_operation_ran_it() -> None:
    run, runs, s = replay()
    # by its job (4: TAG's, by the job's Connect tags and the tag group)
    touched = push(runs, s, {"sqlExecutions": [execution(3, nodes=NODES)]})
    assert touched == {TAG}
    # by its operation alone (no job yet)
    push(runs, s, {"sqlExecutions": [execution(8, operationId=OP, jobIds=[])]})
    # another cell's job, and no job or operation at all
    push(
        runs,
        s,
        {
            "jobs": [{"appId": APP, "jobId": 40, "connect": {"tags": [OTHER]}}],
            "sqlExecutions": [execution(9, jobIds=[40]), execution(10, jobIds=[])],
        },
    )
    assert sorted(s.view(TAG).sql_executions) == [(APP, 3), (APP, 8)]
    assert list(s.view(OTHER).sql_executions) == [(APP, 9)]
    assert sorted(run.plans) == [(APP, 3), (APP, 8)]
    view = cellview.build(run, s, now_ms=1795258405000)
    assert [p["executionId"] for p in view.plans] == [3, 8]


def test_a_classic_cells_job_found_by_its_tag_group_brings_its_execution() -> None:
    s, runs = StreamState(), CellRuns()
    run = CellRun(TAG, None, 0)
    runs.start(run)
    push(
        runs,
        s,
        {
            "jobs": [{"appId": APP, "jobId": 1, "status": "JOB_STATUS_RUNNING"}],
            "tagGroups": [{"tag": TAG, "jobIds": [1], "appId": APP, "sessionId": "s"}],
        },
    )
    touched = push(runs, s, {"sqlExecutions": [execution(0, jobIds=[1], nodes=NODES)]})
    assert touched == {TAG} and list(run.plans) == [(APP, 0)]


def test_new_executions_and_ends_are_urgent_metric_values_wait_for_the_throttle() -> None:
    run, runs, s = replay()
    run.dirty = run.urgent = False
    push(runs, s, {"sqlExecutions": [execution(nodes=NODES)]})
    assert run.dirty and run.urgent
    run.dirty = run.urgent = False
    push(runs, s, {"sqlExecutions": [execution(metricValues=values({1: 3}))]})
    assert run.dirty and not run.urgent
    assert run.plans[(APP, 3)]["values"] == {1: 3}
    run.dirty = False
    push(runs, s, {"jobs": []})  # nothing about it: unchanged
    assert not run.dirty
    push(runs, s, {"sqlExecutions": [execution(endMs="1795258404900")]})
    assert run.urgent


def test_a_run_keeps_its_newest_plans(monkeypatch) -> None:
    monkeypatch.setattr(cellrun, "MAX_CELL_PLANS", 3)
    run, runs, s = replay()
    push(runs, s, {"sqlExecutions": [execution(i, startMs=str(1000 + i)) for i in range(5)]})
    assert sorted(e for _, e in run.plans) == [2, 3, 4] and run.plans_dropped == 2
    # an update of one it let go does not bring it back
    push(runs, s, {"sqlExecutions": [execution(0, startMs="1000", endMs="2000")]})
    assert sorted(e for _, e in run.plans) == [2, 3, 4] and run.plans_dropped == 2
    assert cellview.build(run, s, 0).plans_dropped == 2


# ---- what the view shows


def test_metric_values_read_as_sparks_sql_tab_writes_them() -> None:
    cases = [
        ("sum", 1000, "1,000"),
        ("sum", 0, "0"),
        ("size", 512, "512.0 B"),
        ("size", 2047, "2047.0 B"),
        ("size", 2048, "2.0 KiB"),
        ("size", 3 << 29, "1536.0 MiB"),  # Spark moves to a unit at two of it
        ("size", 5 << 30, "5.0 GiB"),
        ("timing", 350, "350 ms"),
        ("timing", 1200, "1.2 s"),
        ("timing", 1250, "1.3 s"),
        ("timing", 150_000, "2.5 m"),
        ("timing", 4_500_000, "1.25 h"),
        ("nsTiming", 350_000_000, "350 ms"),
        ("nsTiming", 1_234_000_000, "1.2 s"),
        ("nsTiming", 999_999, "0 ms"),
        ("average", 17, "17"),
        ("sum", None, "–"),
        ("size", None, "–"),
    ]
    assert [format_metric(k, v) for k, v, _ in cases] == [text for _, _, text in cases]
    assert spark_bytes(0) == "0.0 B" and spark_ms(0) == "0 ms"


def test_each_nodes_share_of_the_plans_time_without_codegens_duration() -> None:
    s = StreamState()
    s.apply({"sqlExecutions": [execution(nodes=NODES, metricValues=values(VALUES))]})
    row = plan_row(held(s))
    nodes = row["nodes"]
    assert [(n["name"], n["depth"]) for n in nodes] == [
        ("AdaptiveSparkPlan", 0),
        ("HashAggregate", 1),
        ("Exchange", 2),
        ("WholeStageCodegen (1)", 3),
        ("HashAggregate", 4),
        ("Range", 5),
    ]
    # 300 ms + 200 ms (ns) + 500 ms; the codegen stage's 5 s is its children's
    assert row["totalTimeMs"] == 1000
    assert [n["share"] for n in nodes] == [0, 0.3, 0.2, 0, 0.5, 0]
    assert [n["top"] for n in nodes] == [False, False, False, False, True, False]
    agg = nodes[1]
    # the rows first, then the others as Spark lists them; no value yet: "–"
    assert [(m["name"], m["value"], m["text"]) for m in agg["metrics"]] == [
        ("number of output rows", 4, "4"),
        ("time in aggregation build", 300, "300 ms"),
        ("spill size", None, "–"),
    ]
    assert agg["rows"] == 4 and nodes[0]["rows"] is None and nodes[5]["rows"] == 1000
    assert [m["text"] for m in nodes[2]["metrics"]] == ["200 ms", "4.0 KiB"]
    assert nodes[3]["metrics"][0]["text"] == "5.0 s"
    assert (row["status"], row["planVersion"], row["planLabel"]) == ("running", 0, "")
    assert row["label"] == "count at <stdin>:1" and row["moreNodes"] == 0


def test_no_time_no_shares_and_how_an_execution_ended() -> None:
    s = StreamState()
    s.apply(
        {
            "sqlExecutions": [
                execution(1, nodes=NODES, metricValues=values({1: 4, 9: 10})),
                execution(2, nodes=NODES, endMs="2", planVersion=2),
                execution(3, nodes=NODES, endMs="2", error="java.lang.ArithmeticException"),
            ]
        }
    )
    row = plan_row(held(s, 1))
    assert row["totalTimeMs"] == 0 and {n["share"] for n in row["nodes"]} == {0}
    assert not any(n["top"] for n in row["nodes"])
    done = plan_row(held(s, 2))
    assert (done["status"], done["planLabel"]) == ("succeeded", "re-planned by AQE 2×")
    assert plan_row(held(s, 3))["status"] == "failed"
    # a metric named a time but counted (a sum) adds to its node; a size so named does not
    node = {"name": "X", "detail": "", "parent": -1, "metrics": []}
    timed = [
        {**node, "metrics": [{"name": "scan time", "type": "sum", "accumulatorId": 1}]},
        {**node, "parent": 0, "metrics": [{"name": "time", "type": "size", "accumulatorId": 2}]},
    ]
    ex = {**held(s, 1), "nodes": timed, "values": {1: 40, 2: 60}}
    assert [n["share"] for n in plan_row(ex)["nodes"]] == [1.0, 0]


def test_at_most_max_plan_nodes_are_shown_and_the_rest_is_said(monkeypatch) -> None:
    monkeypatch.setattr(cellview, "MAX_PLAN_NODES", 4)
    s = StreamState()
    s.apply({"sqlExecutions": [execution(nodes=NODES, nodesDropped=7)]})
    row = plan_row(held(s))
    assert len(row["nodes"]) == 4 and row["nodeCount"] == 6
    assert (row["nodesHidden"], row["nodesDropped"], row["moreNodes"]) == (2, 7, 9)


def test_the_widgets_traits_carry_the_plans_and_no_ids_of_who_ran_them() -> None:
    run, runs, s = replay()
    connect_description = (
        "Spark Connect - session_id: 11111111-1111-4111-8111-111111111111 user_id: alice"
    )
    push(
        runs,
        s,
        {
            "sqlExecutions": [
                execution(
                    operationId=OP,
                    description=connect_description,
                    nodes=NODES,
                    metricValues=values(VALUES),
                )
            ]
        },
    )
    view = cellview.build(run, s, now_ms=1795258405000)
    values_ = traits(view)
    assert values_.keys() == set(CellWidget.class_own_traits()) - {"view"}
    (plan,) = values_["plans"]
    assert values_["plans_dropped"] == 0
    # Connect names the execution after its request: the operation's label names it instead
    assert plan["description"] == "" and plan["label"] == run.labels[OP]
    synced = json.dumps([values_["plans"], values_["plan_shapes"]])
    for secret in (OP, "11111111-1111-4111-8111-111111111111", "alice"):
        assert secret not in synced
    assert "operationId" not in plan
    # the same row again while nothing changed: not rebuilt
    assert cellview.build(run, s, 0).plans[0] is view.plans[0]


# ---- the widget's Plan view, drawn by its ESM in node against a minimal DOM

FAKE_DOM = r"""
class Node {
  constructor(tag) {
    this.tagName = tag.toUpperCase(); this.children = []; this.dataset = {}; this.attrs = {};
    this.className = ""; this.textContent = ""; this.title = ""; this.listeners = {};
    const style = {}; style.setProperty = (k, v) => { style[k] = v; }; this.style = style;
    const self = this;
    this.classList = {
      add(c) { if (!self.className.split(" ").includes(c)) self.className = `${self.className} ${c}`.trim(); },
      toggle(c, on) { const has = self.className.split(" ").includes(c); if (on && !has) this.add(c);
        if (!on && has) self.className = self.className.split(" ").filter((x) => x !== c).join(" "); },
    };
  }
  get childNodes() { return this.children; }
  appendChild(c) { this.children.push(c); return c; }
  replaceChildren(...c) { this.children = c; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  addEventListener(t, f) { (this.listeners[t] ||= []).push(f); }
  click() { for (const f of this.listeners.click || []) f({ stopPropagation() {} }); }
}
globalThis.document = {
  createElement: (t) => new Node(t),
  createElementNS: (_ns, t) => new Node(t),
  createTextNode: (t) => { const n = new Node("#text"); n.textContent = t; return n; },
};
function all(node, cls, out = []) {
  if (node.className.split(" ").includes(cls)) out.push(node);
  for (const c of node.children) all(c, cls, out);
  return out;
}
function text(node) { return node.textContent + node.children.map(text).join(""); }
"""


def draw(traits_: dict, script: str) -> object:
    source = WIDGET_JS.read_text(encoding="utf-8").replace("export default { render };", "")
    harness = (
        FAKE_DOM
        + source
        + f"\nconst TRAITS_ = {json.dumps(traits_)};"
        + "\nconst model = { get: (k) => TRAITS_[k] };"
        + "\nconst root = document.createElement('div');"
        + "\nconst act = { redraw: () => drawCell(root, readTraits(model), stateFor('t'), act),"
        + " schedule() {}, send() {}, setView() {} };"
        + "\nstateFor('t').collapsed = false;  // a done cell starts folded"
        + "\nact.redraw();\n"
        + script
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", harness],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the widget")
def test_the_plan_tab_draws_each_node_with_its_data_attributes() -> None:
    run, runs, s = replay()
    push(
        runs,
        s,
        {
            "sqlExecutions": [
                execution(nodes=NODES, metricValues=values(VALUES), planVersion=1, nodesDropped=2)
            ]
        },
    )
    values_ = {**traits(cellview.build(run, s, 1795258405000)), "view": "plan"}
    got = draw(
        values_,
        """
const tab = all(root, "sparkscope-tab").find((t) => t.dataset.view === "plan");
const rows = () => all(root, "sparkscope-plan-node").map((n) => ({ ...n.dataset }));
const before = rows();
const exec = all(root, "sparkscope-plan-execution")[0];
const chips = all(root, "sparkscope-plan-metric").map((c) => text(c));
const detail = all(root, "sparkscope-plan-detail").map((d) => [text(d), d.title]);
const more = all(root, "sparkscope-plan-more").map((m) => m.dataset.more);
const aqe = all(root, "sparkscope-plan-aqe").map(text);
// fold the Exchange: what it reads is hidden
all(root, "sparkscope-plan-node").find((n) => n.dataset.nodeName === "Exchange")
  .children[1].children[0].click();
const folded = rows().map((r) => r.nodeName);
all(root, "sparkscope-plan-toggle")[0].click();
const closed = all(root, "sparkscope-plan-node").length;
console.log(JSON.stringify({ tab: { ...tab.dataset, text: text(tab) }, before, exec: { ...exec.dataset },
  chips, detail, more, aqe, folded, closed }));
""",
    )
    assert got["tab"] == {"view": "plan", "count": "1", "text": "Plan (1)"}
    assert got["exec"] == {
        "executionId": "3",
        "status": "running",
        "planVersion": "1",
        "expanded": "true",
    }
    rows = got["before"]
    assert [r["nodeName"] for r in rows] == [
        "AdaptiveSparkPlan",
        "HashAggregate",
        "Exchange",
        "WholeStageCodegen (1)",
        "HashAggregate",
        "Range",
    ]
    assert [r.get("rows") for r in rows] == [None, "4", None, None, "40", "1000"]
    assert [r["share"] for r in rows] == ["0", "0.3", "0.2", "0", "0.5", "0"]
    assert [r.get("top") for r in rows] == [None, None, None, None, "true", None]
    assert [r["depth"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert got["chips"][:3] == [
        "number of output rows: 4",
        "time in aggregation build: 300 ms",
        "spill size: –",
    ]
    # the node's name is not said twice; the whole detail on hover
    assert got["detail"][1] == [
        "(keys=[k#1], functions=[count(1)])",
        "HashAggregate(keys=[k#1], functions=[count(1)])",
    ]
    assert got["more"] == ["2"] and got["aqe"] == ["re-planned by AQE 1×"]
    assert got["folded"] == ["AdaptiveSparkPlan", "HashAggregate", "Exchange"]
    assert got["closed"] == 0


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the widget")
def test_the_plan_tab_says_when_the_cell_ran_no_sql() -> None:
    run, _runs, s = replay()
    values_ = {**traits(cellview.build(run, s, 0)), "view": "plan"}
    got = draw(
        values_,
        """
console.log(JSON.stringify({
  empty: all(root, "sparkscope-plan-empty").map(text),
  view: all(root, "sparkscope-plan-view").map((v) => v.dataset.executions),
  tab: all(root, "sparkscope-tab").filter((t) => t.dataset.view === "plan").map(text),
}));
""",
    )
    assert got["view"] == ["0"] and got["tab"] == ["Plan"]
    assert got["empty"] and "no SQL query" in got["empty"][0]


# ---- the log line indexes (the view no longer scans every kept line)


def brute_force_logs(s: StreamState, tag: str) -> list:
    """What view(tag).logs held when it scanned every kept line."""
    view = s.view(tag)
    return sorted(
        key
        for key, line in s.log_lines.items()
        if tag in line["tags"]
        or (line["jobId"] is not None and (key[0], line["jobId"]) in view.jobs)
        or (line["operationId"] and (key[0], line["operationId"]) in view.operations)
    )


def test_views_by_index_hold_the_same_lines_in_time_order(monkeypatch) -> None:
    monkeypatch.setattr(state, "MAX_LOG_LINES", 50)
    _run, _runs, s = replay()
    s.apply({"jobs": [{"appId": APP, "jobId": 40, "connect": {"tags": [OTHER]}}]})
    kinds = [
        {"tags": [TAG]},
        {"jobId": 4},
        {"operationId": OP},
        {"jobId": 40},
        {"tags": [OTHER], "jobId": 4},
        {"stageId": 6},
        {},
    ]
    # out of time order, some sent twice (the second copy names another job), and more than
    # are kept
    for i in range(120):
        t = 1000 + (i * 37) % 101
        s.apply(
            {
                "logLines": [
                    {"appId": APP, "seq": str(i), "timeMs": str(t), **kinds[i % len(kinds)]},
                    {"appId": APP, "seq": str(i // 2), "timeMs": str(1000 + (i // 2 * 37) % 101)}
                    | ({"jobId": 40} if i % 2 else {}),
                ]
            }
        )
        for tag in (TAG, OTHER, "sparkscope-cell-none"):
            assert list(s.view(tag).logs) == brute_force_logs(s, tag)
    assert len(s.log_lines) == 50
    # the oldest went: the kept ones are the newest 50 by time
    assert sorted(s.log_lines) == sorted(s.log_lines)[-50:]
    assert max(sorted(s._log_heap)[:1]) == min(s.log_lines)
    assert sorted(s._log_heap) == sorted(s.log_lines)
    # the indexes hold only kept lines, and no empty entry
    for index in (s._logs_by_tag, s._logs_by_job, s._logs_by_op):
        assert all(keys and keys <= s.log_lines.keys() for keys in index.values())


def test_a_resent_log_line_is_indexed_anew() -> None:
    s = StreamState()
    line = {"appId": APP, "seq": "1", "timeMs": "5", "message": "m"}
    s.apply({"logLines": [{**line, "tags": [TAG]}]})
    assert len(s.view(TAG).logs) == 1
    s.apply({"logLines": [{**line, "tags": [OTHER]}]})
    assert not s.view(TAG).logs and len(s.view(OTHER).logs) == 1
    assert s._logs_by_tag == {OTHER: {(APP, 5, 1)}} and len(s._log_heap) == 1


def test_sql_execution_table_reads_every_field() -> None:
    ex = SQL_EXECUTION.read({"executionId": "9", "endMs": "7", "nodes": [{"parent": -1}]})
    assert ex["executionId"] == 9 and ex["endMs"] == 7 and ex["nodes"][0]["metrics"] == []
    assert SQL_EXECUTION.read({})["endMs"] is None


def test_a_plans_operators_travel_once_and_their_values_with_every_update() -> None:
    from sparkscope.widget import split_plans

    rows = {"name": "number of output rows", "type": "sum", "value": 0, "text": "0"}
    spill = {"name": "spill size", "type": "size", "value": 0, "text": "0.0 B"}
    time_ = {"name": "sort time", "type": "timing", "value": 5, "text": "5 ms"}
    node = {
        "index": 0,
        "parent": -1,
        "depth": 0,
        "name": "Sort",
        "detail": "Sort [k#1 ASC]",
        "metrics": [rows, spill, time_],
        "rows": 0,
        "timeMs": 5.0,
        "share": 1.0,
        "top": True,
    }
    plans = [{"appId": "a", "executionId": 1, "planVersion": 2, "nodes": [node]}]
    (plan,), shapes = split_plans(plans)
    assert plan["shape"] == "a/1/2" and plan["executionId"] == 1
    assert shapes == {
        "a/1/2": [
            {
                "parent": -1,
                "depth": 0,
                "name": "Sort",
                "detail": "Sort [k#1 ASC]",
                "metrics": [
                    ["number of output rows", "sum"],
                    ["spill size", "size"],
                    ["sort time", "timing"],
                ],
            }
        ]
    }
    assert plan["nodes"] == [
        {
            "m": [[0, "0"], [0, "0.0 B"], [5, "5 ms"]],
            "rows": 0,
            "timeMs": 5.0,
            "share": 1.0,
            "top": True,
        }
    ]
    assert "Sort [k#1 ASC]" not in json.dumps(plan), "the description travels with the shape"
    # a running query's next update: the same shapes (not sent again), new values
    later = [{**plans[0], "nodes": [{**node, "metrics": [rows, spill, {**time_, "value": 9}]}]}]
    (plan2,), shapes2 = split_plans(later)
    assert shapes2 == shapes and plan2["nodes"][0]["m"][2][0] == 9


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the widget")
def test_the_browser_joins_shapes_and_values_and_names_zeros_apart() -> None:
    from sparkscope.widget import split_plans

    rows = {"name": "number of output rows", "type": "sum", "value": 0, "text": "0"}
    spill = {"name": "spill size", "type": "size", "value": 0, "text": "0.0 B"}
    time_ = {"name": "sort time", "type": "timing", "value": None, "text": "–"}
    node = {
        "index": 0,
        "parent": -1,
        "depth": 0,
        "name": "Sort",
        "detail": "d",
        "metrics": [rows, spill, time_],
        "rows": 0,
        "timeMs": 0,
        "share": 0,
        "top": False,
    }
    plans, shapes = split_plans(
        [{"appId": "a", "executionId": 1, "planVersion": 0, "nodes": [node]}]
    )
    got = draw(
        {"plans": plans, "plan_shapes": shapes},
        "console.log(JSON.stringify(joinPlans(model.get('plans'), model.get('plan_shapes'))"
        ".concat(joinPlans(model.get('plans'), {}))));",
    )
    joined, unshaped = got
    (n,) = joined["nodes"]
    assert n["metrics"] == [rows, time_], "the rows always show"
    assert n["zeros"] == ["spill size"]
    assert (n["name"], n["detail"], n["index"], n["parent"]) == ("Sort", "d", 0, -1)
    assert unshaped["nodes"] == [], "values without their shape wait for it"
