#!/usr/bin/env bash
#
# compare.sh: gapless against its peers (oha, hey; h2load for HTTP/2; wrk as a closed-loop
# reference) at fixed request rates, against an nginx this script starts on a loopback port. Prints a Markdown table
# of achieved rate, CPU microseconds per request, peak RSS and (gapless only) p99 lateness. See
# BENCHMARKS.md for what the columns mean and the goals they are checked against.
#
# Usage:
#   bash benches/compare.sh                                  # full run (about 4 minutes)
#   DURATION=3s RATES="20000" bash benches/compare.sh        # quick smoke run
#   LONG=1 bash benches/compare.sh                           # plus a 60 s gapless RSS run
#   OUT_DIR=bench-out bash benches/compare.sh                # keep raw outputs and results.md
#
# Environment (defaults in brackets):
#   RATES          target rates in req/s, space separated       ["5000 20000 80000 100000"]
#   DURATION       length of each fixed-rate run                [10s]
#   CONNS          connections (hey: workers)                   [32]
#   TOOLS          fixed-rate tools to run, in order            ["gapless oha hey"]
#   WRK            1 = also run the closed loop once: wrk -t1, and gapless -q 0 --threads 1 [1]
#   H2             1 = also run HTTP/2, h2c and over TLS, gapless against h2load [1]
#   H2_RATE        the HTTP/2 rows' rate                        [20000]
#   H2_CONNS       the HTTP/2 rows' connections                 [8]
#   H2_STREAMS     the HTTP/2 rows' streams per connection      [10]
#                  (h2load: -c H2_CONNS -m H2_STREAMS --rps H2_RATE/H2_CONNS)
#   LONG           1 = also run gapless for LONG_DURATION at the highest rate, for peak RSS [0]
#   LONG_DURATION  length of that run                           [60s]
#   THREADS        passed to gapless as --threads if set        [unset: gapless decides]
#   SKIP_BUILD     1 = do not run `cargo build --release`        [0]
#   GAPLESS        gapless binary                               [target/release/gapless]
#   OHA, HEY, WRK_BIN, H2LOAD, NGINX   tool binaries            [found on PATH; oha also in ~/.cargo/bin]
#   HOST, PORT     where nginx listens; HOST must be 127.x.x.x  [127.0.0.1, 18088]
#                  (h2c on PORT+1, HTTP/2 over TLS on PORT+2, with a self-signed certificate)
#   PAUSE          seconds of rest between runs                 [2]
#   OUT_DIR        keep raw tool outputs and results.md here    [unset: kept in a temp dir, removed]
#
# How each run is measured: the tool runs under `/usr/bin/time -f '%e %U %S %M'` (wall s, user s,
# sys s, peak RSS KiB). Requests completed and wall seconds come from each tool's own output
# (gapless: --json `requests.total` and `actual_qps`; oha: JSON `statusCodeDistribution`,
# `errorDistribution` and `summary.total`, not counting requests it aborted at the deadline;
# hey and wrk: their text summaries; h2load: its `requests:` line, succeeded plus failed and
# errored, over the `finished in` time). CPU us/request = (user + sys) x 1e6 / requests completed.
#
# nginx runs as an ordinary foreground process (`daemon off`) with its config, pid file, logs and
# temp paths in a `mktemp -d` directory; it is stopped on exit, including on Ctrl-C. Everything
# runs on the same machine, so nginx and the load tool share the cores: compare tools against
# each other, not against numbers from a machine with a separate target.
#
# Requires: bash, python3, GNU time (/usr/bin/time), coreutils timeout, nginx, curl; openssl for
# the HTTP/2 rows (h2load is Debian's nghttp2-client).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/nginx.sh
source "$ROOT/benches/nginx.sh"

RATES=${RATES:-"5000 20000 80000 100000"}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
TOOLS=${TOOLS:-"gapless oha hey"}
WRK=${WRK:-1}
H2=${H2:-1}
H2_RATE=${H2_RATE:-20000}
H2_CONNS=${H2_CONNS:-8}
H2_STREAMS=${H2_STREAMS:-10}
LONG=${LONG:-0}
LONG_DURATION=${LONG_DURATION:-60s}
THREADS=${THREADS:-}
SKIP_BUILD=${SKIP_BUILD:-0}
GAPLESS=${GAPLESS:-$ROOT/target/release/gapless}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-18088}
PAUSE=${PAUSE:-2}
OUT_DIR=${OUT_DIR:-}
HEY=${HEY:-$(command -v hey || true)}
WRK_BIN=${WRK_BIN:-$(command -v wrk || true)}
H2LOAD=${H2LOAD:-$(command -v h2load || true)}
OHA=${OHA:-$(command -v oha || { [[ -x $HOME/.cargo/bin/oha ]] && echo "$HOME/.cargo/bin/oha"; } || true)}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ---- checks -------------------------------------------------------------------------------------

[[ $HOST =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "HOST must be a loopback address (127.x.x.x), got '$HOST'"
[[ $PORT =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer, got '$CONNS'"
for rate in $RATES; do
  [[ $rate =~ ^[1-9][0-9]*$ ]] || die "RATES must be positive integers, got '$rate'"
done
[[ -n ${RATES// /} ]] || die "RATES is empty"
for n in "$H2_RATE" "$H2_CONNS" "$H2_STREAMS"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "H2_RATE, H2_CONNS and H2_STREAMS must be positive integers, got '$n'"
done
if [[ $H2 == 1 ]] && ! command -v openssl >/dev/null; then
  die "openssl is required for the HTTP/2 rows (or set H2=0)"
fi
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is required: apt-get install time"
command -v python3 >/dev/null || die "python3 is required"
command -v timeout >/dev/null || die "coreutils timeout is required"
command -v curl >/dev/null || die "curl is required"
[[ -x $NGINX ]] || die "nginx not found (apt-get install nginx-light), or set NGINX"

URL="http://$HOST:$PORT/"
H2C_URL="http://$HOST:$((PORT + 1))/"
TLS_URL="https://$HOST:$((PORT + 2))/"

# Seconds in a humantime/Go-style duration such as 10s, 1m30s, 500ms.
duration_secs() {
  python3 - "$1" <<'EOF'
import re, sys
text = sys.argv[1]
units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
if not parts or "".join(n + u for n, u in parts) != text:
    sys.exit(f"bad duration {text!r} (use e.g. 10s, 1m, 1m30s)")
print(sum(float(n) * units[u] for n, u in parts))
EOF
}
DURATION_S=$(duration_secs "$DURATION") || die "bad DURATION '$DURATION'"
LONG_DURATION_S=$(duration_secs "$LONG_DURATION") || die "bad LONG_DURATION '$LONG_DURATION'"
DURATION_MS=$(python3 -c "print(round($DURATION_S * 1000))")

# ---- scratch directory, cleanup -----------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gapless-compare.XXXXXX")
if [[ -n $OUT_DIR ]]; then
  mkdir -p "$OUT_DIR"
  OUT_DIR=$(cd "$OUT_DIR" && pwd)
else
  OUT_DIR=$WORK/out
  mkdir -p "$OUT_DIR"
fi
CUR_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The running load tool: it was started under setsid, so its pid is its process group.
  if [[ -n $CUR_PID ]]; then
    kill -TERM -- "-$CUR_PID" "$CUR_PID" 2>/dev/null || true
    wait "$CUR_PID" 2>/dev/null || true
  fi
  nginx_stop
  [[ $OUT_DIR == "$WORK"/* ]] || cp -f "$WORK/nginx.conf" "$OUT_DIR/" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "compare.sh: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# ---- build --------------------------------------------------------------------------------------

if [[ $SKIP_BUILD != 1 && " $TOOLS " == *" gapless "* ]]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
fi

# ---- nginx --------------------------------------------------------------------------------------

log "starting nginx on $URL (config in $WORK)"
if [[ $H2 == 1 ]]; then
  nginx_start "$WORK" "$HOST" "$PORT" "$CONNS" "$((PORT + 1))" "$((PORT + 2))" || die "cannot start nginx"
else
  nginx_start "$WORK" "$HOST" "$PORT" "$CONNS" || die "cannot start nginx"
fi

# ---- measuring ----------------------------------------------------------------------------------

# The parser: turns one run's raw output and /usr/bin/time line into a Markdown table row.
cat >"$WORK/row.py" <<'PYEOF'
import json, re, sys

tool, label, target, out_path, time_path, json_path, notes_path = sys.argv[1:8]
notes = []

def text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""

def search(pattern, s, cast=float):
    m = re.search(pattern, s, re.M)
    return cast(m.group(1)) if m else None

def text_summary(s):
    """hey's (and oha's text) summary: total seconds, status counts, errors."""
    total = search(r"^\s*Total:\s+([\d.]+)\s*secs", s)
    codes = {int(c): int(n) for c, n in re.findall(r"^\s*\[(\d{3})\]\s+(\d+)\s+responses", s, re.M)}
    errors = {}
    if "Error distribution:" in s:
        for n, msg in re.findall(r"^\s*\[(\d+)\]\s+(.+)$", s.split("Error distribution:", 1)[1], re.M):
            errors[msg.strip()] = errors.get(msg.strip(), 0) + int(n)
    rps = search(r"Requests/sec:\s+([\d.]+)", s)
    return total, codes, errors, rps

def from_counts(total_s, codes, errors, rps):
    # Requests cut off by the tool's own deadline at the end of the run are not completions.
    aborted = sum(n for msg, n in errors.items() if "deadline" in msg.lower())
    failed_errors = sum(errors.values()) - aborted
    completed = sum(codes.values()) + failed_errors
    failed = failed_errors + sum(n for c, n in codes.items() if not 200 <= c < 300)
    if aborted:
        notes.append(f"{label} @ {target}: {aborted} in-flight request(s) aborted at the deadline (not counted)")
    if total_s and completed:
        return completed, completed / total_s, failed
    if rps and total_s:
        return round(rps * total_s), rps, failed
    return None, None, failed

requests = achieved = failed = lateness = None
out = text(out_path)
try:
    if tool == "gapless":
        j = json.loads(text(json_path))
        requests = j["requests"]["total"]
        achieved = j["actual_qps"]
        failed = j["requests"]["failed"]
        lateness = j["lateness_ms"]["p99"]
        if j["requests"].get("unsent"):
            notes.append(f"{label} @ {target}: {j['requests']['unsent']} requests never sent (deadline passed)")
        if j.get("interrupted"):
            notes.append(f"{label} @ {target}: run was interrupted")
    elif tool == "oha":
        try:
            j = json.loads(out)
            codes = {int(c): int(n) for c, n in j.get("statusCodeDistribution", {}).items()}
            errors = {k: int(v) for k, v in j.get("errorDistribution", {}).items()}
            requests, achieved, failed = from_counts(
                j["summary"]["total"], codes, errors, j["summary"].get("requestsPerSec"))
        except (ValueError, KeyError):
            requests, achieved, failed = from_counts(*text_summary(out))
    elif tool == "hey":
        requests, achieved, failed = from_counts(*text_summary(out))
    elif tool == "h2load":
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        total_s = search(r"finished in ([\d.]+)s", out)
        if m and total_s:
            succeeded, failed_n, errored = int(m.group(4)), int(m.group(5)), int(m.group(6))
            requests = succeeded + failed_n + errored
            achieved = requests / total_s
            failed = failed_n + errored
    elif tool == "wrk":
        m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", out)
        if m:
            requests = int(m.group(1))
            secs = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(3)]
            # wrk's own rate divides by the exact run time; the "in 3.00s" above is rounded.
            achieved = search(r"Requests/sec:\s+([\d.]+)", out) or requests / secs
        non2xx = search(r"Non-2xx or 3xx responses:\s+(\d+)", out, int) or 0
        sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        failed = non2xx + (sum(int(x) for x in sock.groups()) if sock else 0)
except (ValueError, KeyError, TypeError) as e:
    notes.append(f"{label} @ {target}: could not parse output ({e!r})")

timing = [l.split() for l in text(time_path).splitlines() if len(l.split()) == 4]
try:
    wall, user, sys_, rss_kb = (float(x) for x in timing[-1])
except (IndexError, ValueError):
    wall = user = sys_ = rss_kb = None
    notes.append(f"{label} @ {target}: no /usr/bin/time line")

if requests is None or achieved is None:
    notes.append(f"{label} @ {target}: could not find the request count; raw output in {out_path}")
if failed:
    notes.append(f"{label} @ {target}: {failed} failed requests (non-2xx or transport errors)")

dash = "—"
target_s = f"{int(target):,}" if target.isdigit() else target
achieved_s = f"{achieved:,.0f}" if achieved is not None else dash
pct_s = f"{100 * achieved / int(target):.2f} %" if achieved is not None and target.isdigit() else dash
cpu_s = f"{(user + sys_) * 1e6 / requests:.1f}" if requests and user is not None else dash
rss_s = f"{rss_kb / 1024:.1f}" if rss_kb is not None else dash
late_s = f"{lateness:.3f}" if lateness is not None else dash
print(f"| {label} | {target_s} | {achieved_s} | {pct_s} | {cpu_s} | {rss_s} | {late_s} |")
with open(notes_path, "a") as f:
    for n in notes:
        f.write(f"- {n}\n")
PYEOF

ROWS=()
NOTES=$WORK/notes.md
: >"$NOTES"
note() { printf -- '- %s\n' "$*" >>"$NOTES"; log "$*"; }

# measure TOOL KEY LABEL TARGET SECONDS -- COMMAND...: runs COMMAND under /usr/bin/time (and a
# generous timeout), in its own process group so that cleanup can stop it, then appends a table
# row. Raw outputs go to OUT_DIR/KEY.{out,err,time} (and KEY.json for gapless).
measure() {
  local tool=$1 key=$2 label=$3 target=$4 secs=$5
  shift 6
  local base=$OUT_DIR/$key limit row
  limit=$(python3 -c "import math; print(math.ceil($secs) + 60)")
  log "$label @ $target: $*"
  rm -f "$base.out" "$base.err" "$base.time" "$base.json"
  local rc=0
  setsid -w /usr/bin/time -f '%e %U %S %M' -o "$base.time" \
    timeout --foreground -k 5 "$limit" "$@" >"$base.out" 2>"$base.err" &
  CUR_PID=$!
  wait "$CUR_PID" || rc=$?
  CUR_PID=""
  if [[ $rc != 0 ]]; then
    note "$label @ $target: exited with status $rc (see $base.err)"
  fi
  if ! row=$(python3 "$WORK/row.py" "$tool" "$label" "$target" "$base.out" "$base.time" \
    "$base.json" "$NOTES"); then
    row="| $label | $target | — | — | — | — | — |"
    note "$label @ $target: parser failed; raw output in $base.out"
  fi
  ROWS+=("$row")
  sleep "$PAUSE"
}

have_tool() {
  case $1 in
    gapless) [[ -x $GAPLESS ]] ;;
    oha) [[ -n $OHA && -x $OHA ]] ;;
    hey) [[ -n $HEY && -x $HEY ]] ;;
    h2load) [[ -n $H2LOAD && -x $H2LOAD ]] ;;
    *) return 1 ;;
  esac
}

# oha 1.x prints JSON with --output-format json; older releases used -j.
OHA_JSON=()
if [[ -n $OHA && -x $OHA ]]; then
  oha_help=$("$OHA" --help 2>&1 || true)
  if [[ $oha_help == *--output-format* ]]; then
    OHA_JSON=(--output-format json)
  elif [[ $oha_help == *--json* ]]; then
    OHA_JSON=(-j)
  fi
fi

GAPLESS_THREADS=()
[[ -z $THREADS ]] || GAPLESS_THREADS=(--threads "$THREADS")

for tool in $TOOLS; do
  have_tool "$tool" || note "$tool: not installed, skipped"
done

max_rate=0
for rate in $RATES; do
  if (( rate > max_rate )); then max_rate=$rate; fi
  for tool in $TOOLS; do
    have_tool "$tool" || continue
    case $tool in
      gapless)
        measure gapless "gapless-$rate" gapless "$rate" "$DURATION_S" -- \
          "$GAPLESS" run "$URL" -q "$rate" -d "$DURATION" -c "$CONNS" "${GAPLESS_THREADS[@]}" \
          --json "$OUT_DIR/gapless-$rate.json" --quiet
        ;;
      oha)
        measure oha "oha-$rate" oha "$rate" "$DURATION_S" -- \
          "$OHA" -z "$DURATION" -q "$rate" -c "$CONNS" --no-tui "${OHA_JSON[@]}" "$URL"
        ;;
      hey)
        # hey's -q is per worker: split the total rate across the CONNS workers.
        per_worker=$(python3 -c "print(round($rate / $CONNS, 3))")
        measure hey "hey-$rate" hey "$rate" "$DURATION_S" -- \
          "$HEY" -z "$DURATION" -c "$CONNS" -q "$per_worker" "$URL"
        ;;
      *)
        note "$tool: unknown tool, skipped"
        ;;
    esac
  done
done

if [[ $H2 == 1 ]]; then
  # Same connections and streams for both; h2load's --rps is per connection (client).
  per_client=$(python3 -c "print(round($H2_RATE / $H2_CONNS, 3))")
  for proto in h2c tls; do
    if [[ $proto == h2c ]]; then h2_url=$H2C_URL; else h2_url=$TLS_URL; fi
    label="$proto, $H2_CONNS × $H2_STREAMS streams"
    if have_tool gapless; then
      measure gapless "gapless-$proto" "gapless ($label)" "$H2_RATE" "$DURATION_S" -- \
        "$GAPLESS" run "$h2_url" --http2 --insecure -q "$H2_RATE" -d "$DURATION" -c "$H2_CONNS" \
        --streams "$H2_STREAMS" "${GAPLESS_THREADS[@]}" --json "$OUT_DIR/gapless-$proto.json" --quiet
    fi
    if have_tool h2load; then
      measure h2load "h2load-$proto" "h2load ($label)" "$H2_RATE" "$DURATION_S" -- \
        "$H2LOAD" -c "$H2_CONNS" -m "$H2_STREAMS" --rps "$per_client" -D "${DURATION_MS}ms" "$h2_url"
    else
      note "h2load: not installed, skipped"
    fi
  done
fi

if [[ $WRK == 1 ]]; then
  if have_tool gapless; then
    measure gapless gapless-closed "gapless (closed loop, --threads 1)" "closed loop" "$DURATION_S" -- \
      "$GAPLESS" run "$URL" -q 0 --threads 1 -d "$DURATION" -c "$CONNS" \
      --json "$OUT_DIR/gapless-closed.json" --quiet
  fi
  if [[ -n $WRK_BIN && -x $WRK_BIN ]]; then
    measure wrk wrk "wrk (closed loop, -t1)" "closed loop" "$DURATION_S" -- \
      "$WRK_BIN" -t1 -c "$CONNS" -d "$DURATION" "$URL"
  else
    note "wrk: not installed, skipped"
  fi
fi

if [[ $LONG == 1 ]]; then
  if [[ -x $GAPLESS ]]; then
    measure gapless "gapless-long-$max_rate" "gapless ($LONG_DURATION)" "$max_rate" \
      "$LONG_DURATION_S" -- \
      "$GAPLESS" run "$URL" -q "$max_rate" -d "$LONG_DURATION" -c "$CONNS" \
      "${GAPLESS_THREADS[@]}" --json "$OUT_DIR/gapless-long-$max_rate.json" --quiet
  else
    note "gapless: not built, long run skipped"
  fi
fi

# ---- report -------------------------------------------------------------------------------------

version() { "$@" 2>&1 | head -n1 || true; }
{
  echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)); Linux $(uname -r)"
  echo "Target: $(version "$NGINX" -v) on $URL, same machine, worker_processes 1"
  echo "Load: $DURATION per run, $CONNS connections; gapless $(version "$GAPLESS" --version | awk '{print $2}')${THREADS:+, --threads $THREADS}; $( [[ -n $OHA ]] && version "$OHA" --version); $( [[ -n $WRK_BIN ]] && version "$WRK_BIN" --version | awk '{print $1, $2}')"
  echo
  echo "| tool | target rate | achieved rate | achieved % | CPU µs/req | peak RSS MB | lateness p99 ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  if [[ -s $NOTES ]]; then
    echo
    echo "Notes:"
    echo
    cat "$NOTES"
  fi
} | tee "$OUT_DIR/results.md"
