#!/usr/bin/env bash
# Property tests of everything the agent reads from the network (agent/tests/fuzz.rs), at
# scale: a million cases per property unless a count is given. `make test` runs 2,000 each.
# Prints each property's case count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
SPARKSCOPE_FUZZ_CASES=$cases cargo test --release --locked -q -p sparkscope --test fuzz -- \
  --nocapture --test-threads="$(nproc)" 2>&1 | grep -oE "fuzz [^:]+: [0-9]+ cases in [0-9.]+ s|test result.*|panicked.*|Test failed.*"
