#!/usr/bin/env bash
# Measures what SparkscopeListener costs Spark's listener bus: starts a Spark Connect server with
# the listener pointed at a sink agent, runs a task-heavy workload, and prints Spark's own timer
# listenerProcessingTime.io.sparkscope.listener.SparkscopeListener plus the shared-queue drops.
#
#   bench/measure_cost.sh [TASKS_PER_ROUND] [ROUNDS]     (defaults: 5000 4)
#
# Uses ports 15102 (gRPC), 4141 (UI) and 4752 (sink); override with GRPC_PORT, UI_PORT, SINK_PORT.
# EXTRA_SUBMIT_ARGS is appended to spark-submit (word-split), e.g. "--conf spark.x=y".
# SPARKMONITOR_JAR: sparkmonitor's listener jar (listener_spark4_2.13.jar from its PyPI wheel);
# when given, its JupyterSparkMonitorListener runs in the same application too, sending to a
# socket that discards (SPARKMONITOR_PORT, default 4753), as it would to its notebook kernel.
# RESULT_JSON: a file to append the figures to, as one JSON line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
tasks="${1:-5000}"
rounds="${2:-4}"
grpc_port="${GRPC_PORT:-15102}"
ui_port="${UI_PORT:-4141}"
sink_port="${SINK_PORT:-4752}"
sparkmonitor_port="${SPARKMONITOR_PORT:-4753}"
sparkmonitor_jar="${SPARKMONITOR_JAR:-}"

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
discard_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$server_pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$sink_pid" ]]; then kill "$sink_pid" 2>/dev/null || true; fi
    if [[ -n "$discard_pid" ]]; then kill "$discard_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

for port in "$grpc_port" "$ui_port" "$sink_port" "$sparkmonitor_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "measure_cost.sh: port $port is already in use" >&2
        exit 1
    fi
done

"$python" "$here/sink_agent.py" "$sink_port" "$work/sink-status" &
sink_pid=$!

jars="$jar,$work/noop.jar"
listeners="io.sparkscope.bench.NoopListener,io.sparkscope.listener.SparkscopeListener"
if [[ -n "$sparkmonitor_jar" ]]; then
    [[ -f "$sparkmonitor_jar" ]] || { echo "measure_cost.sh: no $sparkmonitor_jar" >&2; exit 1; }
    # What sparkmonitor's kernel extension would be: a socket that takes every message.
    "$python" - "$sparkmonitor_port" <<'PY' &
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def drain(c):
    with c:
        while c.recv(1 << 16):
            pass
while True:
    threading.Thread(target=drain, args=(srv.accept()[0],), daemon=True).start()
PY
    discard_pid=$!
    export SPARKMONITOR_KERNEL_PORT="$sparkmonitor_port"
    jars="$jars,$sparkmonitor_jar"
    listeners="$listeners,sparkmonitor.listener.JupyterSparkMonitorListener"
fi

# setsid: the server gets its own process group, so cleanup can stop all of it.
setsid "$SPARK_HOME/bin/spark-submit" \
    --class org.apache.spark.sql.connect.service.SparkConnectServer \
    --name "sparkscope bench" --master 'local[2]' \
    --jars "$jars" \
    --conf "spark.extraListeners=${LISTENERS:-$listeners}" \
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
"$python" - "$work/metrics.json" "${RESULT_JSON:-}" <<'PY'
import json, sys

m = json.load(open(sys.argv[1]))
timers, counters = m["timers"], m["counters"]

def one(table, suffix):
    hits = [v for k, v in table.items() if k.endswith(suffix)]
    return hits[0] if hits else None

scale = {"nanoseconds": 1e-3, "microseconds": 1.0, "milliseconds": 1e3, "seconds": 1e6}
figures = {}
for key, label, suffix in [
    ("sparkscope", "SparkscopeListener", "listenerProcessingTime.io.sparkscope.listener.SparkscopeListener"),
    ("sparkmonitor", "sparkmonitor 3.3 JupyterSparkMonitorListener", "listenerProcessingTime.sparkmonitor.listener.JupyterSparkMonitorListener"),
    ("noop", "NoopListener (baseline)", "listenerProcessingTime.io.sparkscope.bench.NoopListener"),
    ("app_status", "AppStatusListener (reference)", "listenerProcessingTime.org.apache.spark.status.AppStatusListener"),
]:
    t = one(timers, suffix)
    if t is None:
        if key != "sparkmonitor":
            print(f"{label}: timer not found")
        continue
    us = scale[t["duration_units"]]
    figures[key] = {"count": t["count"], "mean_us": t["mean"] * us, "p99_us": t["p99"] * us}
    print(f"{label}: count={t['count']} mean={t['mean'] * us:.3f} us p50={t['p50'] * us:.3f} us "
          f"p99={t['p99'] * us:.3f} us p999={t['p999'] * us:.3f} us max={t['max'] * us:.1f} us "
          f"(timer unit: {t['duration_units']})")
for q in ("shared", "appStatus"):
    c = one(counters, f"queue.{q}.numDroppedEvents")
    figures[f"dropped_{q}"] = c["count"] if c else None
    print(f"queue.{q}.numDroppedEvents={c['count'] if c else 'n/a'}")
if "sparkscope" in figures and "sparkmonitor" in figures:
    ratio = figures["sparkmonitor"]["mean_us"] / max(figures["sparkscope"]["mean_us"], 1e-9)
    print(f"sparkmonitor's listener costs {ratio:.0f}x sparkscope's per event (means, same events)")
if sys.argv[2]:
    with open(sys.argv[2], "a") as out:
        out.write(json.dumps({"bench": "listener_cost", **figures}) + "\n")
PY
echo "sink received: $(cat "$work/sink-status")"
grep -h "sparkscope" "$work/server.log" | grep -E "WARN|ERROR" | head -5 || true
