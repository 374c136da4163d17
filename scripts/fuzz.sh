#!/usr/bin/env bash
# Property tests of everything the agent reads from the network (agent/tests/fuzz.rs), at
# scale: a million cases per property in the release build unless a count is given, then a
# tenth of that in the debug build, where integer overflow panics instead of wrapping (the
# release build would hide it). `make test` runs 2,000 each, in debug. Prints each property's
# case count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
run() {
  SPARKSCOPE_FUZZ_CASES=$2 cargo test $1 --locked -q -p sparkscope --test fuzz -- \
    --nocapture --test-threads="$(nproc)" 2>&1 |
    grep -oE "fuzz [^:]+: [0-9]+ cases in [0-9.]+ s|test result.*|panicked.*|Test failed.*"
}
echo "release build (speed):"
run --release "$cases"
echo "debug build (overflow checks on):"
run "" "$(( cases / 10 > 0 ? cases / 10 : 1 ))"
