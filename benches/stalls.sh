#!/usr/bin/env bash
#
# stalls.sh: the longest silence (the longest time no answer arrived while requests waited, JSON
# `longest_stall_ms`) of healthy runs, quiet and beside `stress-ng --cpu 2`, to choose and check
# the default of --max-stall (1s). The target is a local nginx (benches/nginx.sh), which answers
# every request at once: any silence is the machine's, never the target's.
#
#   bash benches/stalls.sh
#
# Environment (defaults in brackets): RATES ["100 500 20000"], DURATION [20s], CONNS [32],
# HOST/PORT for nginx [127.0.0.1/18091], GAPLESS [target/release/gapless], SKIP_BUILD [0],
# STRESS [stress-ng], PAUSE between runs [2], OUT_DIR (keep each run's JSON) [temp dir].
# Prints a Markdown table for BENCHMARKS.md. Requires bash, python3, curl, nginx, stress-ng.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/nginx.sh
source "$ROOT/benches/nginx.sh"

RATES=${RATES:-"100 500 20000"}
DURATION=${DURATION:-20s}
CONNS=${CONNS:-32}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-18091}
GAPLESS=${GAPLESS:-$ROOT/target/release/gapless}
SKIP_BUILD=${SKIP_BUILD:-0}
STRESS=${STRESS:-$(command -v stress-ng || echo stress-ng)}
PAUSE=${PAUSE:-2}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gapless-stalls.XXXXXX")
OUT_DIR=${OUT_DIR:-$WORK}
mkdir -p "$OUT_DIR"
HOG_PID=""

die() { printf 'stalls.sh: %s\n' "$*" >&2; exit 1; }
[[ $HOST == 127.* ]] || die "HOST must be a loopback address"
command -v "$STRESS" >/dev/null || die "stress-ng not found (apt-get install stress-ng), or set STRESS"

hog_stop() {
  [[ -n $HOG_PID ]] || return 0
  # stress-ng runs in its own process group (setsid): its workers go with it.
  kill -KILL -- "-$HOG_PID" 2>/dev/null || true
  wait "$HOG_PID" 2>/dev/null || true
  HOG_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  hog_stop
  nginx_stop
  [[ $OUT_DIR != "$WORK" ]] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $SKIP_BUILD != 1 ]]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi
nginx_start "$WORK" "$HOST" "$PORT" "$CONNS" || die "cannot start nginx"
url="http://$HOST:$PORT/"

for rate in $RATES; do
  for beside in quiet stress; do
    if [[ $beside == stress ]]; then
      setsid "$STRESS" --cpu 2 --quiet >/dev/null 2>&1 &
      HOG_PID=$!
      sleep 1 # let its workers start
    fi
    code=0
    "$GAPLESS" run "$url" -q "$rate" -d "$DURATION" -c "$CONNS" --quiet \
      --json "$OUT_DIR/$rate-$beside.json" >/dev/null 2>&1 || code=$?
    echo "$code" >"$OUT_DIR/$rate-$beside.code"
    hog_stop
    sleep "$PAUSE"
  done
done

python3 - "$OUT_DIR" "$RATES" "$DURATION" "$CONNS" <<'PY'
import json, os, sys
out, rates, duration, conns = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
def cell(rate, beside):
    j = json.load(open(os.path.join(out, f"{rate}-{beside}.json")))
    code = open(os.path.join(out, f"{rate}-{beside}.code")).read().strip()
    req = j["requests"]
    return (f"{j['longest_stall_ms']:.1f} | {j['stalls_total']} | {j['lateness_ms']['p99']:.2f} | "
            f"{req['ok']:,} of {req['total']:,} | {code}")
print(f"gapless run URL -q RATE -d {duration} -c {conns} (nginx on loopback), release build")
print()
print("| rate req/s | beside | longest silence ms | stalls (≥ 200 ms) | lateness p99 ms | ok | exit |")
print("|---:|---|---:|---:|---:|---|---:|")
for rate in rates:
    for beside, name in (("quiet", "nothing"), ("stress", "stress-ng --cpu 2")):
        print(f"| {int(rate):,} | {name} | {cell(rate, beside)} |")
PY
