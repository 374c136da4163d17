#!/usr/bin/env bash
# What log forwarding costs a thread that logs a WARN line: log4j2 with Spark's own
# configuration, its console output sent to /dev/null, without and with LogForwarder, and with
# it over its rate. Prints one JSON line (nanoseconds per line).
#
#   bench/measure_log_cost.sh [LINES]     (default 200000)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
python=python3
[[ -x "$root/../.venv/bin/python" ]] && python="$root/../.venv/bin/python"
export SPARK_HOME="${SPARK_HOME:-$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
jar="$root/target/sparkscope-listener.jar"
[[ -f "$jar" ]] || "$root/build.sh"
work="$(mktemp -d /tmp/sparkscope-logcost.XXXXXX)"
trap 'rm -rf "$work"' EXIT
javac --release 17 -Xlint:-path -cp "$SPARK_HOME/jars/*:$jar" -d "$work" "$here/logcost/LogCost.java"
# Spark's default log4j2 configuration (a console appender), as a driver without its own has it
(cd "$work" && unzip -q -o "$(compgen -G "$SPARK_HOME/jars/spark-common-utils-java_*.jar" | head -1)" \
    org/apache/spark/log4j2-defaults.properties)
java -cp "$work:$jar:$SPARK_HOME/jars/*" \
    -Dlog4j2.configurationFile="$work/org/apache/spark/log4j2-defaults.properties" \
    io.sparkscope.listener.LogCost "${1:-200000}" 2>/dev/null | tail -1
