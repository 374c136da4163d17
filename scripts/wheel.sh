#!/usr/bin/env bash
# Builds sparkscope's wheel the way a release is built: the listener jar (javac against the
# Spark jars of the pyspark in .venv) goes into the Python package, the JupyterLab extension is
# built with jlpm from the npm registry into the wheel's data (share/jupyter/labextensions, as
# prebuilt extensions ship: users never run node), then maturin builds the agent in release mode
# and packs the binary, the package, the jar and the Lab extension into target/wheels/.
# Prints the wheel's path on its last line; the build's output goes to target/wheel-build.log
# (shown when it fails).
set -euo pipefail
cd "$(dirname "$0")/.."

maturin=${MATURIN:-$PWD/.venv/bin/maturin}
SPARK_HOME=${SPARK_HOME:-$(.venv/bin/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}
export SPARK_HOME
mkdir -p target
log=target/wheel-build.log
if ! {
  bash listener-jar/build.sh &&
    mkdir -p kernel-comm/src/sparkscope/jars &&
    cp listener-jar/target/sparkscope-listener.jar kernel-comm/src/sparkscope/jars/ &&
    (cd kernel-comm/labextension && PATH="$PWD/../../.venv/bin:$PATH" &&
      jlpm install --immutable && jlpm clean && jlpm build) &&
    rm -rf target/wheels &&
    (cd kernel-comm && "$maturin" build --release --out ../target/wheels)
} >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "wheel build failed; the whole log: $log" >&2
  exit 1
fi
ls target/wheels/sparkscope-*.whl
