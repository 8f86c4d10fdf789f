#!/bin/sh
# Runs one area of the integration tests (a module of tests/it/) N times and counts the passes,
# for tests that must hold N out of N.
# Usage: tests/repeat.sh N AREA [CARGO TEST ARGS...]   e.g. tests/repeat.sh 20 demo
# (AREA is a module name such as demo or proxies; add -- --include-ignored for the ignored tests).
set -eu
n="$1"
area="$2"
shift 2
cargo test --release --test it --no-run >/dev/null 2>&1
passed=0
i=1
while [ "$i" -le "$n" ]; do
  if cargo test --release --test it "$area::" "$@" >"${TMPDIR:-/tmp}/repeat-$area-$i.log" 2>&1; then
    passed=$((passed + 1))
  else
    echo "run $i failed: ${TMPDIR:-/tmp}/repeat-$area-$i.log"
  fi
  i=$((i + 1))
done
echo "$area: $passed of $n runs passed"
[ "$passed" -eq "$n" ]
