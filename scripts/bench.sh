#!/usr/bin/env bash
# sparkscope's benchmarks (timings live here, not in tests). Each figure is measured beside its
# anchor in the same run, and the run ends with the table of them (scripts/bench_table.py):
#   1. `sparkscope replay` against Spark's History Server on the same generated event log;
#   2. the listener's cost per event on Spark's listener bus, beside sparkmonitor 3.3's listener
#      and a no-op one in the same application (Spark's own timers);
#   3. fan-out: 100 sessions x 10 WebSocket subscribers at 10,000 tasks/s from the repo's load
#      generator (agent/examples/loadgen/), beside the same load with nobody watching; 1,000
#      idle subscribers beside none;
#   4. memory: 1M tasks in 10k jobs, then a 30-minute soak at 10,000 tasks/s (RSS flat within
#      2 MB after a 5-minute warm-up, nothing scraping), beside the empty agent;
#   5. event -> widget and click -> stopped in JupyterLab, quiet and at 10,000 tasks/s;
#   6. agent ingest throughput (criterion) and the notebook view's bytes on the wire.
# BENCH_QUICK=1 runs every one of them small, to check they work (make test does).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== %s\n' "$*"; }
quick="${BENCH_QUICK:-}"
py=.venv/bin/python
out=target/bench
results="$out/results.jsonl"
mkdir -p "$out"
rm -f "$results"
started=$(date +%s)

# Quick mode checks that the benchmarks work: the debug build (which `cargo test` makes) will do.
if [[ -n "$quick" ]]; then
    cargo build --locked -q -p sparkscope --example loadgen
    export LOADGEN=target/debug/examples/loadgen
else
    cargo build --release --locked -q -p sparkscope --example loadgen
    export LOADGEN=target/release/examples/loadgen
fi
loadgen="$LOADGEN"
agent=.venv/bin/sparkscope
sparkmonitor_jar="$out/sparkmonitor/sparkmonitor/listener_spark4_2.13.jar"
[[ -f "$sparkmonitor_jar" ]] || { echo "no $sparkmonitor_jar: run make setup" >&2; exit 1; }

log "1. sparkscope replay vs Spark's History Server"
if [[ -n "$quick" ]]; then
    "$py" scripts/bench_replay.py --jobs 2 --tasks 100 --runs 1 --json "$results"
else
    "$py" scripts/bench_replay.py --jobs 30 --tasks 2000 --runs 3 --json "$results"
fi

log "2. the listener's cost per event, beside sparkmonitor 3.3's and a no-op listener"
cost_args=()
[[ -n "$quick" ]] && cost_args=(500 1)
RESULT_JSON="$results" SPARKMONITOR_JAR="$sparkmonitor_jar" \
    bash listener-jar/bench/measure_cost.sh "${cost_args[@]}"

log "3. fan-out and idle subscribers (the load generator, agent in its own process)"
gen() { "$loadgen" --agent "$agent" "$@" | tee "$out/loadgen.txt"; tail -n 1 "$out/loadgen.txt" >>"$results"; }
if [[ -n "$quick" ]]; then
    gen fanout --sessions 10 --subscribers-per-session 3 --tasks-per-second 1000 --seconds 3
    gen fanout --sessions 10 --subscribers-per-session 0 --tasks-per-second 1000 --seconds 3
    gen idle --subscribers 30 --seconds 2
    gen idle --subscribers 0 --seconds 2
else
    gen fanout --seconds 20
    gen fanout --subscribers-per-session 0 --seconds 10
    gen idle --subscribers 1000 --seconds 20
    gen idle --subscribers 0 --seconds 10
fi

log "4. memory: bounded by retention, not by history"
if [[ -n "$quick" ]]; then
    gen memory --tasks 20000 --jobs 200 --soak-seconds 5
else
    # the soak: 30 minutes at 10,000 tasks/s, RSS sampled every 5 s and never a scrape
    gen memory --tasks 1000000 --jobs 10000 --soak-seconds 1800
fi

log "5. event -> widget and click -> stopped, quiet and at 10,000 tasks/s (JupyterLab, Chromium)"
if [[ -n "$quick" ]]; then
    "$py" scripts/bench_widget_latency.py --jobs 3 --runs 2 --load-tasks-per-second 1000 --json "$results"
    "$py" scripts/bench_cancel_latency.py --quick --load-tasks-per-second 1000 --json "$results"
else
    "$py" scripts/bench_widget_latency.py --jobs 30 --runs 2 --load-tasks-per-second 10000 --json "$results"
    "$py" scripts/bench_cancel_latency.py --runs 10 --load-tasks-per-second 10000 --json "$results"
fi

log "6. agent ingest (criterion) and the notebook view on the wire"
if [[ -z "$quick" ]]; then
    cargo bench -q -p sparkscope --bench ingest -- --warm-up-time 2 --measurement-time 5 2>&1 \
        | grep -E "^ingest/|thrpt:" || true
    .venv/bin/python scripts/bench_stream_bytes.py
fi
for f in kernel-comm/src/sparkscope/static/widget.js kernel-comm/src/sparkscope/static/widget.css; do
    printf '%s: %s bytes, %s gzipped\n' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)"
done

log "every figure beside its anchor, measured in this run ($(($(date +%s) - started)) s)"
"$py" scripts/bench_table.py "$results"
