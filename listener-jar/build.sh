#!/usr/bin/env bash
# Builds target/sparkscope-listener.jar with plain javac against the jars of a Spark install.
# SPARK_HOME comes from the environment, else from the pyspark in ../.venv (or on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [[ -z "${SPARK_HOME:-}" ]]; then
    python=python3
    [[ -x ../.venv/bin/python ]] && python=../.venv/bin/python
    SPARK_HOME="$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')" || {
        echo "build.sh: set SPARK_HOME or install pyspark (e.g. in ../.venv)" >&2
        exit 1
    }
fi
if ! compgen -G "$SPARK_HOME/jars/spark-core_*.jar" >/dev/null; then
    echo "build.sh: no spark-core jar under $SPARK_HOME/jars" >&2
    exit 1
fi

command -v javac >/dev/null || { echo "build.sh: javac not found (need JDK 17+)" >&2; exit 1; }

classes="target/classes"
rm -rf "$classes" target/sparkscope-listener.jar
mkdir -p "$classes"
# shellcheck disable=SC2046
javac --release 17 -Xlint:all -Xlint:-serial -Xlint:-processing -Xlint:-path -Werror -encoding UTF-8 \
    -cp "$SPARK_HOME/jars/*" -d "$classes" $(find src/main/java -name '*.java' | sort)
jar --create --file target/sparkscope-listener.jar -C "$classes" .
echo "built $here/target/sparkscope-listener.jar (against $SPARK_HOME)"
