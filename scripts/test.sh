#!/usr/bin/env bash
# Every test and check of sparkscope, in the order a failure is cheapest to see: formatting and
# lint, Rust unit and integration tests, then the end-to-end tests against a real Spark Connect
# server. Assumes scripts/setup.sh has run (make test does both).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== %s\n' "$*"; }

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --all-targets --locked -q -- -D warnings
log "ruff"
.venv/bin/ruff check tests scripts listener-jar kernel-comm
.venv/bin/ruff format --check tests scripts listener-jar kernel-comm
log "rust tests (property tests: 2,000 cases each; scripts/fuzz.sh runs a million)"
cargo test --workspace --locked -q
log "listener unit tests (JUnit 5)"
bash listener-jar/test.sh
# From here on, what is tested is the installed wheel (as a user gets it), not the source tree.
log "the installed wheel"
.venv/bin/python - <<'PY'
import sparkscope, sparkscope.install as i
assert "site-packages" in sparkscope.__file__, f"sparkscope imported from {sparkscope.__file__}"
print("package", sparkscope.__file__, "| agent", i.binary(), "| listener", i.listener_jar())
PY
log "kernel extension tests (in-process IPython, a recorded agent stream, one real notebook run)"
SPARKSCOPE_E2E_STRICT=1 .venv/bin/python -m pytest kernel-comm/tests -q
log "end-to-end tests (real Spark Connect server, JupyterLab in Chromium, Prometheus)"
SPARKSCOPE_E2E_STRICT=1 .venv/bin/python -m pytest tests -q -rA "$@"
log "benchmarks, quick mode (each one small: that they work, not what they measure)"
BENCH_QUICK=1 bash scripts/bench.sh
