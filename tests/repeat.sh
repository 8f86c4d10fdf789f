#!/bin/sh
# Runs one integration test file N times and counts the passes, for tests that must hold N out of N.
# Usage: tests/repeat.sh N TEST [CARGO TEST ARGS...]   e.g. tests/repeat.sh 20 demo
set -eu
n="$1"
test="$2"
shift 2
cargo test --release --test "$test" --no-run >/dev/null 2>&1
passed=0
i=1
while [ "$i" -le "$n" ]; do
  if cargo test --release --test "$test" "$@" >"${TMPDIR:-/tmp}/repeat-$test-$i.log" 2>&1; then
    passed=$((passed + 1))
  else
    echo "run $i failed: ${TMPDIR:-/tmp}/repeat-$test-$i.log"
  fi
  i=$((i + 1))
done
echo "$test: $passed of $n runs passed"
[ "$passed" -eq "$n" ]
