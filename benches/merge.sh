#!/usr/bin/env bash
#
# merge.sh: wall time and peak memory of `gapless merge` over 100 shard results of a one-hour run
# (goal: under 2 s and 100 MB; BENCHMARKS.md, "Merging shard results").
#
#   bash benches/merge.sh                  # every case, 3 merges each, Markdown rows at the end
#   CASES=worst:100000 RUNS=1 bash benches/merge.sh
#
# 1. Builds the release binary (`cargo build --release`).
# 2. Runs a REAL split load: 2 shards (`gapless run --shards 2 --start-at ...`) at 2,000 req/s for
#    8 s against `gapless serve` on loopback, shard 0 running a rollout step that takes the target
#    down: 503s for 0.4 s, then a target that holds every request (a stall) killed after 0.6 s,
#    0.3 s with nothing listening (refused connections), then the healthy target again.
# 3. Scales those two results to SHARDS results of a one-hour run with benches/merge_shards.py
#    (what a one-hour shard holds and why: see its header), for each case KIND:QPS (QPS the total
#    rate of all shards): KIND `healthy` (no failure) or `worst` (1,000 listed windows and up to
#    1,000 stalls per shard, and one shard failing alone for LONE_MINUTES, whose every request
#    the merge then visits).
# 4. Times `gapless merge DIR/shard-*.json --json merged.json --quiet` RUNS times per case under
#    GNU time (`/usr/bin/time -v`: wall clock and maximum resident set size) and checks each merged
#    result: requests.total is the sum of the shards', every shard is in, the exit code is 0
#    (healthy) or 1 (worst: requests failed).
#
# Environment (defaults in brackets): SHARDS [100], CASES [healthy:1000 worst:1000 worst:100000:
# at 1,000 req/s a shard of 100 sends 36,000 requests in the hour, at 100,000 req/s 3.6 million],
# LONE_MINUTES [30, at most 49], FORMAT [json: indented, as `run --json` writes a result; line:
# one compact line per file, as a shard without --json prints it on stdout], RUNS [3],
# PORT [18097, loopback], GAPLESS [target/release/gapless], SKIP_BUILD [0], OUT_DIR (keep the
# real results, the generated ones and the merged ones) [a temp dir, removed at the end],
# COMPARE (another gapless binary, e.g. one built before a change: timed on the same inputs,
# taking turns with GAPLESS, and its merged results must be byte-identical) [none].
# Requires bash, python3 and GNU time at /usr/bin/time (Debian: `apt-get install time`; bash's
# `time` keyword cannot give the peak RSS).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARDS=${SHARDS:-100}
LONE_MINUTES=${LONE_MINUTES:-30}
FORMAT=${FORMAT:-json}
CASES=${CASES:-healthy:1000 worst:1000 worst:100000}
RUNS=${RUNS:-3}
PORT=${PORT:-18097}
GAPLESS=${GAPLESS:-$ROOT/target/release/gapless}
SKIP_BUILD=${SKIP_BUILD:-0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gapless-merge.XXXXXX")
KEEP=${OUT_DIR:+1}
OUT_DIR=${OUT_DIR:-$WORK}
mkdir -p "$OUT_DIR"

die() { printf 'merge.sh: %s\n' "$*" >&2; exit 1; }
[[ $FORMAT == json || $FORMAT == line ]] || die "FORMAT is json or line"
[[ -x /usr/bin/time ]] || die "GNU time is missing: apt-get install time"
command -v python3 >/dev/null || die "python3 is missing"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The targets the step started write their pid where the step reads it.
  for f in "$WORK/target.pid" "$WORK/bad.pid" "$WORK/slow.pid"; do
    if [[ -s $f ]]; then kill -TERM "$(cat "$f")" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $SKIP_BUILD != 1 ]]; then
  (cd "$ROOT" && cargo build --release --quiet)
fi

# --- 1. Two real shards of a short run with an outage -------------------------------------------

addr=127.0.0.1:$PORT
wait_listening() {
  for _ in $(seq 50); do
    (: <"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
cat >"$WORK/step.sh" <<'EOF'
#!/usr/bin/env bash
# The rollout: the healthy target goes; a broken one answers 503 for 0.4 s; one that holds every
# request for 0.6 s is killed; nothing listens for 0.3 s; the healthy target is back.
G=$1 ADDR=$2 DIR=$3
serve() { setsid "$G" serve --listen "$ADDR" "$@" </dev/null >/dev/null 2>&1 & }
kill "$(cat "$DIR/target.pid")"; sleep 0.02
serve --status 503; echo $! >"$DIR/bad.pid"; sleep 0.4
kill "$(cat "$DIR/bad.pid")"; sleep 0.02
serve --delay 10s; echo $! >"$DIR/slow.pid"; sleep 0.6
kill "$(cat "$DIR/slow.pid")"; sleep 0.3
serve; echo $! >"$DIR/target.pid"; sleep 0.2
EOF
chmod +x "$WORK/step.sh"
"$GAPLESS" serve --listen "$addr" </dev/null >/dev/null 2>&1 &
echo $! >"$WORK/target.pid"
wait_listening || die "gapless serve did not start on $addr"

start=$(($(date +%s%3N) + 1500))
pids=()
for i in 0 1; do
  "$GAPLESS" run "http://$addr/" -q 2000 -d 8s --warmup 2s --cooldown 3s \
    --shards 2 --shard-index "$i" --start-at "$start" --shard-label "node-$i" \
    --json "$OUT_DIR/real-$i.json" --quiet --step-name rollout \
    -- "$WORK/step.sh" "$GAPLESS" "$addr" "$WORK" >"$OUT_DIR/real-$i.txt" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done
for i in 0 1; do
  [[ -s $OUT_DIR/real-$i.json ]] || die "real shard $i wrote no result: $(cat "$OUT_DIR/real-$i.txt")"
  printf 'real shard %s: %s\n' "$i" "$(cat "$OUT_DIR/real-$i.txt")"
done

# --- 2. Scale, merge and measure ----------------------------------------------------------------

rows=()
for spec in $CASES; do
  case=${spec%%:*} QPS=${spec#*:}
  if [[ $case != healthy && $case != worst || ! $QPS =~ ^[0-9]+$ ]]; then
    die "bad case $spec (healthy:QPS or worst:QPS)"
  fi
  dir=$OUT_DIR/$case-$QPS
  rm -rf "$dir" "$dir".*
  line=()
  [[ $FORMAT == line ]] && line=(--line)
  made=$(python3 "$ROOT/benches/merge_shards.py" --real "$OUT_DIR/real-0.json" "$OUT_DIR/real-1.json" \
    --out "$dir" --case "$case" --shards "$SHARDS" --qps "$QPS" --lone-minutes "$LONE_MINUTES" "${line[@]}")
  size=$(du -sm "$dir" | cut -f1)
  printf '%s at %s req/s: %s shard results, %s MB on disk: %s\n' "$case" "$QPS" "$SHARDS" "$size" "$made"
  expected=0
  [[ $case == worst ]] && expected=1
  for run in $(seq "$RUNS"); do
    # With COMPARE, the two binaries take turns on the same input under the same load.
    for bin in "$GAPLESS" ${COMPARE:+"$COMPARE"}; do
      label=gapless
      [[ $bin == "${COMPARE:-}" ]] && label=compare
      out=$dir.$label
      rc=0
      /usr/bin/time -v -o "$out.time" "$bin" merge "$dir"/shard-*.json --json "$out.json" \
        --quiet >"$out.out" 2>&1 || rc=$?
      wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$out.time")
      rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out.time")
      cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {print u + s}' "$out.time")
      # The merged result must be the sum of the shards, complete, judged as expected.
      check=$(python3 - "$out.json" "$made" "$rc" "$expected" <<'PY'
import json, sys
merged = json.load(open(sys.argv[1]))
made = json.loads(sys.argv[2])
rc, expected = int(sys.argv[3]), int(sys.argv[4])
problems = []
if merged["requests"]["total"] != made["total"]:
    problems.append(f"requests.total {merged['requests']['total']} != {made['total']}")
if merged["requests"]["failed"] != made["failed"]:
    problems.append(f"requests.failed {merged['requests']['failed']} != {made['failed']}")
shards = merged["shards"]
if len(shards) != made["shards"] or any(s["missing"] for s in shards):
    problems.append("a shard is missing")
slots = sum(s["ok"] + s["failed"] for s in merged["timeline"])
if slots != made["total"]:
    problems.append(f"the slots hold {slots} requests, not {made['total']}")
if rc != expected:
    problems.append(f"exit {rc}, expected {expected}")
print("; ".join(problems) or
      f"ok: {merged['requests']['total']:,} requests, {merged['requests']['failed']:,} failed, "
      f"{len(merged['timeline'])} slots, windows_total {merged['windows_total']:,}, "
      f"gaps_total {merged['gaps_total']:,}, stalls_total {merged['stalls_total']:,}, exit {rc}")
PY
)
      printf '  run %s, %s: %s s, %s KiB, CPU %s s; %s\n' "$run" "$label" "$wall" "$rss" "$cpu" "$check"
      [[ $check == ok:* ]] || die "$case: the merged result of $bin is wrong: $check"
      printf '%s %s %s\n' "$wall" "$rss" "$cpu" >>"$dir.$label.samples"
    done
    if [[ -n ${COMPARE:-} ]]; then
      cmp -s "$dir.gapless.json" "$dir.compare.json" || die "$case: $COMPARE merges differently"
    fi
  done
  for label in gapless ${COMPARE:+compare}; do
    rows+=("$(python3 -c '
import statistics, sys
case, shards, qps, size, label = sys.argv[1:6]
rows = [tuple(map(float, l.split())) for l in open(sys.argv[6]) if l.strip()]
wall = statistics.median(r[0] for r in rows)
rss = statistics.median(r[1] for r in rows) / 1024
cpu = statistics.median(r[2] for r in rows)
verdict = "met" if wall < 2 and rss < 100 else "MISSED"
binary = "" if label == "gapless" else " (COMPARE)"
print(f"| {case}{binary} | {int(shards)} × 1 h | {int(qps):,} | {size} MB | {wall:.2f} s | {cpu:.2f} s | {rss:.1f} MB | {verdict} |")
' "$case" "$SHARDS" "$QPS" "$size" "$label" "$dir.$label.samples")")
  done
  [[ -n $KEEP ]] || rm -rf "$dir"
done

echo
echo "| case | results | total req/s | input on disk | wall (median of $RUNS) | CPU | peak RSS | goal (< 2 s, < 100 MB) |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
