#!/usr/bin/env bash
# Measures what SparkscopeListener costs Spark's listener bus: starts a Spark Connect server with
# the listener pointed at a sink agent, runs a task-heavy workload, and prints Spark's own timer
# listenerProcessingTime.io.sparkscope.listener.SparkscopeListener plus the shared-queue drops.
#
#   bench/measure_cost.sh [TASKS_PER_ROUND] [ROUNDS]     (defaults: 5000 4)
#
# Uses ports 15102 (gRPC), 4141 (UI) and 4752 (sink); override with GRPC_PORT, UI_PORT, SINK_PORT.
# EXTRA_SUBMIT_ARGS is appended to spark-submit (word-split), e.g. "--conf spark.x=y".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
tasks="${1:-5000}"
rounds="${2:-4}"
grpc_port="${GRPC_PORT:-15102}"
ui_port="${UI_PORT:-4141}"
sink_port="${SINK_PORT:-4752}"

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    python=python3
    [[ -x "$root/../.venv/bin/python" ]] && python="$root/../.venv/bin/python"
fi
export SPARK_HOME="${SPARK_HOME:-$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
export SPARK_LOCAL_IP=127.0.0.1

jar="${JAR:-$root/target/sparkscope-listener.jar}"
[[ -f "$jar" ]] || "$root/build.sh"

work="$(mktemp -d /tmp/sparkscope-bench.XXXXXX)"
# The no-op baseline listener runs in the same queue and sees the same events.
mkdir -p "$work/noop"
javac --release 17 -Xlint:-path -cp "$SPARK_HOME/jars/*" -d "$work/noop" "$here/NoopListener.java"
jar --create --file "$work/noop.jar" -C "$work/noop" .
server_pid=""
sink_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$server_pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$sink_pid" ]]; then kill "$sink_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

for port in "$grpc_port" "$ui_port" "$sink_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "measure_cost.sh: port $port is already in use" >&2
        exit 1
    fi
done

"$python" "$here/sink_agent.py" "$sink_port" "$work/sink-status" &
sink_pid=$!

# setsid: the server gets its own process group, so cleanup can stop all of it.
setsid "$SPARK_HOME/bin/spark-submit" \
    --class org.apache.spark.sql.connect.service.SparkConnectServer \
    --name "sparkscope bench" --master 'local[2]' \
    --jars "$jar,$work/noop.jar" \
    --conf "spark.extraListeners=${LISTENERS:-io.sparkscope.bench.NoopListener,io.sparkscope.listener.SparkscopeListener}" \
    --conf "spark.sparkscope.agent=127.0.0.1:$sink_port" \
    --conf spark.connect.grpc.binding.address=127.0.0.1 \
    --conf "spark.connect.grpc.binding.port=$grpc_port" \
    --conf "spark.ui.port=$ui_port" \
    --conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 \
    ${EXTRA_SUBMIT_ARGS:-} \
    >"$work/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 120); do
    grep -q "Spark Connect server started" "$work/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 1
done
grep -q "Spark Connect server started" "$work/server.log" || {
    echo "measure_cost.sh: server did not start, log: $work/server.log" >&2
    exit 1
}

echo "workload: $rounds rounds x $tasks map tasks (local[2]), logs in $work"
"$python" "$here/workload.py" "sc://127.0.0.1:$grpc_port/;user_id=bench" "$tasks" "$rounds"
sleep 2 # let the sender flush and the sink count

curl -sf "http://127.0.0.1:$ui_port/metrics/json/" >"$work/metrics.json"
"$python" - "$work/metrics.json" <<'PY'
import json, sys

m = json.load(open(sys.argv[1]))
timers, counters = m["timers"], m["counters"]

def one(table, suffix):
    hits = [v for k, v in table.items() if k.endswith(suffix)]
    return hits[0] if hits else None

scale = {"nanoseconds": 1e-3, "microseconds": 1.0, "milliseconds": 1e3, "seconds": 1e6}
for label, suffix in [
    ("SparkscopeListener", "listenerProcessingTime.io.sparkscope.listener.SparkscopeListener"),
    ("NoopListener (baseline)", "listenerProcessingTime.io.sparkscope.bench.NoopListener"),
    ("AppStatusListener (reference)", "listenerProcessingTime.org.apache.spark.status.AppStatusListener"),
]:
    t = one(timers, suffix)
    if t is None:
        print(f"{label}: timer not found")
        continue
    us = scale[t["duration_units"]]
    print(f"{label}: count={t['count']} mean={t['mean'] * us:.3f} us p50={t['p50'] * us:.3f} us "
          f"p99={t['p99'] * us:.3f} us p999={t['p999'] * us:.3f} us max={t['max'] * us:.1f} us "
          f"(timer unit: {t['duration_units']})")
for q in ("shared", "appStatus"):
    c = one(counters, f"queue.{q}.numDroppedEvents")
    print(f"queue.{q}.numDroppedEvents={c['count'] if c else 'n/a'}")
PY
echo "sink received: $(cat "$work/sink-status")"
grep -h "sparkscope" "$work/server.log" | grep -E "WARN|ERROR" | head -5 || true
