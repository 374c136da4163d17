#!/usr/bin/env bash
# sparkscope's benchmarks (timings live here, not in tests):
#   1. agent ingest throughput, lines/s on one core (criterion: agent/benches/ingest.rs);
#   2. `sparkscope replay` against Spark's History Server on the same event log;
#   3. the listener's cost per event on Spark's listener bus (Spark's own timer);
#   4. the notebook view on the wire: the widget's code as shipped, and the stream's and the
#      widget's bytes per second while a 10,000-task stage runs.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== %s\n' "$*"; }

log "agent ingest (cargo bench --bench ingest)"
cargo bench -q -p sparkscope --bench ingest -- --warm-up-time 2 --measurement-time 5 2>&1 \
  | grep -E "^ingest/|thrpt:" || true
log "replay vs History Server"
.venv/bin/python scripts/bench_replay.py
log "listener cost on the listener bus"
bash listener-jar/bench/measure_cost.sh
log "the notebook view: code shipped, bytes on the wire"
for f in kernel-comm/src/sparkscope/static/widget.js kernel-comm/src/sparkscope/static/widget.css; do
  printf '%s: %s bytes, %s gzipped\n' "$f" "$(wc -c < "$f")" "$(gzip -9c "$f" | wc -c)"
done
.venv/bin/python scripts/bench_stream_bytes.py
