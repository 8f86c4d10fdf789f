#!/bin/sh
# gapless-shard: runs `gapless ARGS...` as one shard of an Indexed Job (installed in the image as
# /usr/local/bin/gapless-shard; job.yaml runs it instead of the image's gapless entrypoint).
#
# Why a wrapper: the Job has backoffLimit 0 (a shard that ran again would send its share of the
# schedule twice), so the first pod that exits non-zero fails the whole Job and Kubernetes kills
# the other shards mid-run. A shard that saw dropped requests exits 1, which is a result, not a
# failure of the shard: the verdict is the merge's (`gapless merge`), over every shard's result.
# So this wrapper exits
#   0     when gapless printed its result: gapless exited 0, 1, 3 or 4 (the merge judges them);
#   else  gapless's own code: 2 (usage or configuration error), 5 (gapless failed), 130 / 143
#         (interrupted: its partial result is printed, the merge marks the shard interrupted),
#         or 128 + N when gapless died of signal N (a crash, the OOM killer: no result).
# Its last line on stderr states gapless's own exit code, so `kubectl logs` shows it either way.
#
# As PID 1 of the container it is the process the kubelet signals: a shell as PID 1 gets only the
# signals it traps, so it traps SIGTERM and SIGINT and forwards them to gapless, which stops the
# load, prints its partial result and exits 143 / 130 (an evicted or deleted shard still reports
# what it measured).
#
# GAPLESS names the binary (default: gapless, on PATH).
set -u

"${GAPLESS:-gapless}" "$@" &
child=$!

trap 'kill -s TERM "$child" 2>/dev/null' TERM
trap 'kill -s INT "$child" 2>/dev/null' INT

# A trapped signal interrupts `wait` (status > 128) while gapless is still running: forward it
# (the trap did) and wait again, until gapless itself has exited and been reaped.
while :; do
  wait "$child"
  code=$?
  kill -0 "$child" 2>/dev/null || break
done

case "$code" in
  0 | 1 | 3 | 4)
    echo "gapless-shard: gapless exited $code with its result printed; the merge gives the verdict (this pod exits 0)" >&2
    exit 0
    ;;
  2) why="a usage or configuration error" ;;
  5) why="gapless failed" ;;
  130 | 143) why="interrupted by a signal, its partial result printed" ;;
  *)
    if [ "$code" -gt 128 ]; then
      why="killed by signal $((code - 128)), no result"
    else
      why="an unexpected exit code"
    fi
    ;;
esac
echo "gapless-shard: gapless exited $code: $why (this pod fails with $code)" >&2
exit "$code"
