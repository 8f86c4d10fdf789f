#!/usr/bin/env bash
#
# memory.sh: gapless's resident memory over time, sampled every second from /proc, in three cases.
#
#   bash benches/memory.sh soak    # 10 minutes at 5,000 req/s against a local nginx: RSS stays
#                                  # flat (first minute vs last minute within 10 %)
#   bash benches/memory.sh slots   # the same with --slot 10ms: 60,000 slots wanted, at most
#                                  # 2,048 kept (merged as the run grows); peak RSS under 30 MB
#   bash benches/memory.sh stall   # 10,000 req/s against a target that holds every request for
#                                  # 30 s (`gapless serve --delay 30s`): RSS stays bounded while
#                                  # the backlog fails as `timeout`, unsent
#   bash benches/memory.sh targets # 50 endpoints (--targets FILE, 50 paths of the local nginx,
#                                  # one origin: one pool of -c connections) for 60 s at 5,000
#                                  # req/s in all: peak RSS under 30 MB
#
# Environment (defaults in brackets): SOAK_DURATION [10m], SOAK_QPS [5000] (also for slots),
# SLOT [10ms] (slots), STALL_DURATION [30s], TARGETS [50], TARGETS_DURATION [60s],
# TARGETS_CONNS [4] (connections per origin: the 50 endpoints share them),
# STALL_QPS [10000], CONNS [32], HOST/PORT for nginx [127.0.0.1/18089], STALL_PORT [18090],
# GAPLESS [target/release/gapless], SKIP_BUILD [0], OUT_DIR (keep samples and JSON) [temp dir].
# Prints the samples' summary as Markdown rows for BENCHMARKS.md, with GNU time's peak RSS when
# /usr/bin/time is installed (the samples, once a second, can miss the last half second).
# Requires bash, curl, nginx (soak).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/nginx.sh
source "$ROOT/benches/nginx.sh"

MODE=${1:-}
SOAK_DURATION=${SOAK_DURATION:-10m}
SOAK_QPS=${SOAK_QPS:-5000}
SLOT=${SLOT:-10ms}
STALL_DURATION=${STALL_DURATION:-30s}
STALL_QPS=${STALL_QPS:-10000}
CONNS=${CONNS:-32}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-18089}
STALL_PORT=${STALL_PORT:-18090}
GAPLESS=${GAPLESS:-$ROOT/target/release/gapless}
SKIP_BUILD=${SKIP_BUILD:-0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gapless-memory.XXXXXX")
OUT_DIR=${OUT_DIR:-$WORK}
mkdir -p "$OUT_DIR"
TARGET_PID=""

die() { printf 'memory.sh: %s\n' "$*" >&2; exit 1; }
[[ $HOST == 127.* ]] || die "HOST must be a loopback address"
case $MODE in soak | slots | stall | targets) ;; *) die "usage: bash benches/memory.sh soak|slots|stall|targets" ;; esac
TARGETS=${TARGETS:-50}
TARGETS_DURATION=${TARGETS_DURATION:-60s}
TARGETS_CONNS=${TARGETS_CONNS:-4}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  nginx_stop
  if [[ -n $TARGET_PID ]]; then
    kill -TERM "$TARGET_PID" 2>/dev/null || true
    wait "$TARGET_PID" 2>/dev/null || true
  fi
  [[ $OUT_DIR != "$WORK" ]] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $SKIP_BUILD != 1 ]]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi

if [[ $MODE == targets ]]; then
  nginx_start "$WORK" "$HOST" "$PORT" "$((TARGETS * TARGETS_CONNS))" || die "cannot start nginx"
  for i in $(seq "$TARGETS"); do
    printf 'GET http://%s:%s/endpoint-%s\n\n' "$HOST" "$PORT" "$i"
  done >"$WORK/targets.txt"
  url=""
  args=(--targets "$WORK/targets.txt" -q "$SOAK_QPS" -d "$TARGETS_DURATION" -c "$TARGETS_CONNS")
elif [[ $MODE == soak || $MODE == slots ]]; then
  nginx_start "$WORK" "$HOST" "$PORT" "$CONNS" || die "cannot start nginx"
  url="http://$HOST:$PORT/"
  slot=10s
  [[ $MODE == slots ]] && slot=$SLOT
  args=(-q "$SOAK_QPS" -d "$SOAK_DURATION" -c "$CONNS" --slot "$slot")
else
  "$GAPLESS" serve --listen "$HOST:$STALL_PORT" --delay 30s >"$WORK/target.log" 2>&1 &
  TARGET_PID=$!
  # Wait until it accepts connections (it never answers: that is the point).
  for _ in $(seq 50); do
    (: <"/dev/tcp/$HOST/$STALL_PORT") 2>/dev/null && break
    sleep 0.1
  done
  url="http://$HOST:$STALL_PORT/"
  args=(-q "$STALL_QPS" -d "$STALL_DURATION" -c "$CONNS" --timeout 3s)
fi

timed=()
[[ -x /usr/bin/time ]] && timed=(/usr/bin/time -v -o "$OUT_DIR/$MODE.time")
"${timed[@]}" "$GAPLESS" run ${url:+"$url"} "${args[@]}" --quiet --json "$OUT_DIR/$MODE.json" >"$OUT_DIR/$MODE.txt" 2>/dev/null &
pid=$!
if [[ ${#timed[@]} -gt 0 ]]; then
  # Sample gapless, not GNU time.
  for _ in $(seq 50); do
    child=$(pgrep -P "$pid" -n || true)
    [[ -n $child ]] && break
    sleep 0.02
  done
  timer=$pid
  pid=${child:-$pid}
fi
: >"$OUT_DIR/$MODE-rss.tsv"
t=0
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [[ -n $rss ]] && printf '%s\t%s\n' "$t" "$rss" >>"$OUT_DIR/$MODE-rss.tsv"
  sleep 1
  t=$((t + 1))
done
wait "${timer:-$pid}" 2>/dev/null || true

python3 - "$OUT_DIR/$MODE-rss.tsv" "$OUT_DIR/$MODE.json" "$MODE" "$OUT_DIR/$MODE.time" <<'PY'
import json, os, sys
samples = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
result = json.load(open(sys.argv[2]))
mode = sys.argv[3]
timed = "—"
if os.path.exists(sys.argv[4]):
    for line in open(sys.argv[4]):
        if "Maximum resident set size" in line:
            timed = f"{int(line.split(':')[1]) / 1024:.1f}"

kib = [r for _, r in samples]
first = [r for t, r in samples if t < 60] or kib[:1]
last = [r for t, r in samples if t >= samples[-1][0] - 60] or kib[-1:]
mean = lambda xs: sum(xs) / len(xs) / 1024
req = result["requests"]
load = result["load"]
slots = f"{len(result['timeline']):,} × {load['slot_ms']:g} ms (asked {load.get('slot_requested_ms')} ms)"
if result.get("targets"):
    slots += f"; {len(result['targets'])} endpoints, each {min(t['requests']['total'] for t in result['targets']):,} to {max(t['requests']['total'] for t in result['targets']):,} requests"
print(f"| mode | requests | ok | failed (unsent) | RSS first minute MB | RSS last minute MB | change | peak MB | peak (GNU time) MB | connections | slots |")
print(f"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
print(f"| {mode} | {req['total']:,} | {req['ok']:,} | {req['failed']:,} ({req['unsent']:,}) | "
      f"{mean(first):.1f} | {mean(last):.1f} | {100 * (mean(last) / mean(first) - 1):+.1f} % | {max(kib) / 1024:.1f} | "
      f"{timed} | {result['connections']['opened']:,} | {slots} |")
if mode == "slots":
    # Minute by minute, to show where the timeline's growth stops.
    minutes = {}
    for t, r in samples:
        minutes.setdefault(t // 60, []).append(r)
    print("per minute (mean RSS MB): " + ", ".join(f"{mean(v):.1f}" for _, v in sorted(minutes.items())))
PY
