"""The table `make bench` ends with: every figure beside its anchor, both measured in the same run
(scripts/bench.sh writes one JSON line per benchmark into the file given here), and the target.

    .venv/bin/python scripts/bench_table.py target/bench/results.jsonl
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def load(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.setdefault(rec.get("bench") or rec.get("mode", "?"), []).append(rec)
    return out


def num(v, fmt: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, fmt)


def ratio(a, b) -> str:
    if not a or not b or any(isinstance(x, float) and math.isnan(x) for x in (a, b)):
        return "n/a"
    return f"{a / b:.1f}×"


def mark(ok: bool | None) -> str:
    return {True: "met", False: "NOT met", None: ""}[ok]


def rows(r: dict[str, list[dict]]) -> list[tuple[str, str, str, str, str]]:
    out = []
    for rep in r.get("replay", []):
        out.append(
            (
                (
                    f"`sparkscope replay` of a generated log ({rep['jobs']} jobs, {rep['tasks']} "
                    f"tasks, {rep['log_mb']:.0f} MB)"
                ),
                f"{rep['replay_s']:.3f} s",
                f"History Server {rep['history_server_s']:.3f} s",
                f"{ratio(rep['history_server_s'], rep['replay_s'])} faster",
                f"≥ 40× · {mark(rep['history_server_s'] / rep['replay_s'] >= 40)}"
                + (f" · {rep['differing_jobs']} jobs differ" if rep["differing_jobs"] else ""),
            )
        )
    for c in r.get("listener_cost", []):
        s, m, n = c.get("sparkscope", {}), c.get("sparkmonitor"), c.get("noop", {})
        anchor = f"no-op {num(n.get('mean_us'), '.2f')} / {num(n.get('p99_us'), '.2f')} µs"
        if m:
            anchor = (
                f"sparkmonitor 3.3 {num(m['mean_us'], '.1f')} / {num(m['p99_us'], '.1f')} µs; "
                + anchor
            )
        ok = s.get("mean_us", 99) <= 1.0 and s.get("p99_us", 99) <= 5.0
        out.append(
            (
                (
                    "listener cost per event on Spark's bus, mean / p99 (same application, same "
                    f"{s.get('count', 0)} events)"
                ),
                f"{num(s.get('mean_us'), '.2f')} / {num(s.get('p99_us'), '.2f')} µs",
                anchor,
                f"{ratio(m['mean_us'], s.get('mean_us'))} less than sparkmonitor" if m else "",
                f"≤ 1 µs / ≤ 5 µs · {mark(ok)}",
            )
        )
    fan = [f for f in r.get("fanout", []) if f["subscribers"] > 0]
    base = [f for f in r.get("fanout", []) if f["subscribers"] == 0]
    for f in fan:
        b = base[0] if base else {}
        what = f"fan-out: {f['subscribers']} WebSocket subscribers at {f['tasks_per_second']:.0f} tasks/s"
        out += [
            (
                f"{what}: agent CPU (of one core)",
                f"{f['cpu_percent']:.1f}%",
                f"same load, no subscribers {num(b.get('cpu_percent'))}%",
                "",
                f"≤ 25% · {mark(f['cpu_percent'] <= 25)}",
            ),
            (
                f"{what}: agent RSS",
                f"{f['rss_mb']:.1f} MB",
                f"no subscribers {num(b.get('rss_mb'))} MB",
                "",
                f"≤ 100 MB · {mark(f['rss_mb'] <= 100)}",
            ),
            (
                f"{what}: event → frame, p50 / p95 / p99",
                f"{f['frame_p50_ms']:.0f} / {f['frame_p95_ms']:.0f} / {f['frame_p99_ms']:.0f} ms",
                f"{f['latency_samples']} events timed",
                "",
                f"p99 ≤ 200 ms · {mark(f['frame_p99_ms'] <= 200)}",
            ),
            (
                f"{what}: ingest lag p99 (histogram bucket)",
                f"≤ {num(f['ingest_lag_p99_ms'], '.0f')} ms",
                f"no subscribers ≤ {num(b.get('ingest_lag_p99_ms'), '.0f')} ms",
                "",
                f"≤ 10 ms · {mark(f['ingest_lag_p99_ms'] <= 10)}",
            ),
            (
                f"{what}: subscribers dropped",
                f"{f['dropped']:.0f}",
                f"{f['frames_per_subscriber_per_s']:.1f} frames/s each",
                "",
                f"0 · {mark(f['dropped'] == 0)}",
            ),
        ]
    idle = [i for i in r.get("idle", []) if i["subscribers"] > 0]
    idle0 = [i for i in r.get("idle", []) if i["subscribers"] == 0]
    for i in idle:
        b = idle0[0] if idle0 else {}
        # The subscribers' cost: the agent's threads other than ingest's, beside the same
        # without subscribers (the busy sessions' ingestion varies more than that cost).
        cost = i["publish_cpu_percent"] - b["publish_cpu_percent"] if b else float("nan")
        busy = f"{i.get('busy_tasks_per_second', 0):,}"
        out.append(
            (
                (
                    f"{i['subscribers']} idle subscribers (each its own idle session) while other "
                    f"sessions run {busy} tasks/s: agent CPU outside ingest (all; RSS)"
                ),
                f"{i['publish_cpu_percent']:.2f}% ({i['cpu_percent']:.2f}%; {i['rss_mb']:.0f} MB)",
                (
                    f"no subscribers {num(b.get('publish_cpu_percent'), '.2f')}% "
                    f"({num(b.get('cpu_percent'), '.2f')}%; {num(b.get('rss_mb'), '.0f')} MB)"
                ),
                f"+{num(cost, '.2f')} points",
                f"≤ 1% for the subscribers · {mark(cost <= 1) if b else ''}",
            )
        )
    for m in r.get("memory", []):
        growth = m.get("rss_growth_after_warmup_mb")
        flat = growth <= 2 if growth is not None else m["rss_end_mb"] <= m["rss_after_burst_mb"] + 2
        out += [
            (
                (
                    f"memory after {m['tasks']:,} tasks in {m['jobs']:,} jobs (retention at its "
                    "defaults): agent RSS"
                ),
                f"{m['rss_after_burst_mb']:.1f} MB",
                f"before them {m['rss_start_mb']:.1f} MB",
                ratio(m["rss_after_burst_mb"], m["rss_start_mb"]),
                f"≤ 100 MB · {mark(m['rss_after_burst_mb'] <= 100)}",
            ),
            (
                (
                    f"… then {m['soak_seconds']} s more at {m['soak_tasks_per_second']:,} tasks/s: "
                    "RSS max / at the end"
                ),
                f"{m['rss_max_mb']:.1f} / {m['rss_end_mb']:.1f} MB",
                (
                    f"after the burst {m['rss_after_burst_mb']:.1f} MB; after "
                    f"{m.get('warmup_seconds', 0):.0f} s of warm-up "
                    f"{m.get('rss_at_warmup_mb', 0):.1f} MB"
                ),
                f"+{growth:.1f} MB after warm-up" if growth is not None else "",
                f"flat (≤ +2 MB after warm-up, no scrape) · {mark(flat)}",
            ),
        ]
    for w in r.get("widget_latency", []):
        q, lo = w.get("quiet", {}), w.get("loaded")
        if lo:
            out.append(
                (
                    (
                        f"stage completes in Spark → the widget shows it, p50 / p95, at "
                        f"{w['load_tasks_per_second']:,} tasks/s"
                    ),
                    f"{lo['p50_ms']:.0f} / {lo['p95_ms']:.0f} ms ({lo['n']} stages)",
                    f"no load {num(q.get('p50_ms'), '.0f')} / {num(q.get('p95_ms'), '.0f')} ms",
                    ratio(lo["p95_ms"], q.get("p95_ms")),
                    f"p95 ≤ 150 ms · {mark(lo['p95_ms'] <= 150)}",
                )
            )
    for c in r.get("cancel_latency", []):
        q, lo = c.get("quiet", {}).get("job_rest", {}), c.get("loaded", {}).get("job_rest")
        if lo:
            out.append(
                (
                    (
                        f"Cancel click → Spark's REST shows the job stopped, p50 / p95, at "
                        f"{c['load_tasks_per_second']:,} tasks/s"
                    ),
                    f"{lo['p50_ms']:.0f} / {lo['p95_ms']:.0f} ms ({lo['n']} runs)",
                    f"no load {num(q.get('p50_ms'), '.0f')} / {num(q.get('p95_ms'), '.0f')} ms",
                    ratio(lo["p95_ms"], q.get("p95_ms")),
                    f"p95 ≤ 1 s · {mark(lo['p95_ms'] <= 1000)}",
                )
            )
    return out


def main() -> int:
    r = load(Path(sys.argv[1]))
    print("| what | sparkscope | anchor, same run | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows(r):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
