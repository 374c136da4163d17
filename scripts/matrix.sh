#!/usr/bin/env bash
# The version matrix: this repo's installed listener jar and agent against the Spark of several
# pysparks from PyPI (each in its own venv under target/matrix/, downloaded once, about 400 MB
# each): Spark Connect servers 4.0 to 4.3, and classic sessions on 3.5 to 4.3. For each, the
# agent's jobs must equal Spark's REST API and be attributed to their session and tag
# (scripts/matrix_check.py). Not part of `make test` (it downloads); run after `make setup`.
#
#   bash scripts/matrix.sh            # the whole matrix
#   bash scripts/matrix.sh 4.1.4      # one pyspark, both modes it supports
set -uo pipefail
cd "$(dirname "$0")/.."

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.5.9 4.0.5 4.1.4 4.2.1 4.3.0)
dir=${MATRIX_DIR:-target/matrix}
mkdir -p "$dir"
export SPARKSCOPE_BIN="$PWD/.venv/bin/sparkscope"
SPARKSCOPE_LISTENER_JAR=$("$SPARKSCOPE_BIN" listener-jar) || exit 1
export SPARKSCOPE_LISTENER_JAR
start=$(date +%s)
failed=0
for v in "${versions[@]}"; do
  venv="$dir/venv-$v"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pyspark, harness" 2>/dev/null; then
    python3 -m venv "$venv"
    extra='[connect]'
    [[ $v == 3.* ]] && extra=''  # 3.5: classic sessions only (Connect is 4.0+ here)
    # matrix_check.py imports the tests' harness, installed editable as in .venv
    "$venv/bin/pip" install -q --disable-pip-version-check "pyspark$extra==$v" -e tests/harness \
      || { failed=1; continue; }
  fi
  modes=(connect classic)
  [[ $v == 3.* ]] && modes=(classic)
  for mode in "${modes[@]}"; do
    out=$("$venv/bin/python" scripts/matrix_check.py "$mode" 2>"$dir/$v-$mode.log" | tail -1)
    echo "${out:-{\"pyspark\": \"$v\", \"mode\": \"$mode\", \"ok\": false, \"problems\": [\"see $dir/$v-$mode.log\"]\}}"
    [[ $out == *'"ok": true'* ]] || failed=1
  done
done
echo "matrix: $(( $(date +%s) - start )) s" >&2
exit $failed
