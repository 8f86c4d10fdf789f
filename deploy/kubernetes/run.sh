#!/usr/bin/env bash
# The whole sharded flow on Kubernetes: apply the Job with a common start time, wait for it to
# finish, collect every shard's result from its pod's log, merge them into one verdict, delete the
# Job.
#
#   IMAGE=registry.example.test/gapless:0.1.0 deploy/kubernetes/run.sh [MERGE ARGS...]
#
# IMAGE    the gapless image (built from the repository's Dockerfile, pushed where the cluster
#          pulls from); required.
# OUT      where the logs and reports go (default: gapless-out).
# START_IN seconds from now to the shards' common start (default 30): time enough for every pod
#          to be scheduled and pull the image. A shard that starts late counts the requests it
#          missed as late, never skips them.
# GAPLESS  the local gapless that merges (default: gapless, on PATH).
# kubectl works on the current context and namespace (`kubectl config set-context --current
# --namespace NS` to choose another); deployment/web and the Service `web` are expected there.
#
# Arguments are passed to `gapless merge` (threshold flags, e.g. --max-failure-ratio 0.001).
# Exits with merge's code: 0 pass, 1 dropped requests, 3 a step failed, 4 unhealthy before the
# rollout, 6 a shard missing or interrupted (also when no log could be collected), 2 usage;
# 130 on Ctrl-C (the Job is deleted first).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${IMAGE:?set IMAGE to the gapless image (see README, Across machines)}"
out="${OUT:-gapless-out}"
start_in="${START_IN:-30}"
gapless="${GAPLESS:-gapless}"
poll="${POLL_SECONDS:-5}"
# job.yaml's metadata.name and its container's name.
job=gapless
container=gapless

delete_job() {
  kubectl delete job "$job" --ignore-not-found --cascade=foreground --wait=true >/dev/null || true
}

# Ctrl-C (or SIGTERM): the shards are stopped with the Job, nothing is merged.
trap 'trap - INT TERM; echo "run.sh: interrupted; deleting job/$job" >&2; delete_job; exit 130' INT
trap 'trap - INT TERM; echo "run.sh: terminated; deleting job/$job" >&2; delete_job; exit 143' TERM

# An earlier run's Job (and its pods, which the spread constraints would count) goes first.
delete_job

# The common start: now + START_IN, RFC 3339 UTC (GNU date, then BSD date).
start_epoch=$(($(date +%s) + start_in))
START_AT="$(date -u -d "@$start_epoch" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null ||
  date -u -r "$start_epoch" +%Y-%m-%dT%H:%M:%SZ)"

# job.yaml with its placeholders filled, in plain bash (no envsubst needed). The single quotes
# are meant: the patterns are the literal text ${IMAGE} and ${START_AT}.
manifest="$(<"$here/job.yaml")"
# shellcheck disable=SC2016
manifest="${manifest//'${IMAGE}'/"$IMAGE"}"
# shellcheck disable=SC2016
manifest="${manifest//'${START_AT}'/"$START_AT"}"
# shellcheck disable=SC2016
case "$manifest" in
  *'${'*)
    echo "run.sh: job.yaml has a placeholder run.sh does not fill" >&2
    exit 2
    ;;
esac

kubectl apply -f "$here/rbac.yaml" -f "$here/configmap.yaml"
printf '%s\n' "$manifest" | kubectl apply -f -
echo "run.sh: job/$job applied; the shards start at $START_AT" >&2

# Wait for the Job to finish: Complete when every shard exited 0, Failed as soon as one did not
# (backoffLimit 0) or at the Job's activeDeadlineSeconds. Five failed looks in a row (the Job
# deleted by someone else, the cluster gone): collect what there is.
state=""
misses=0
while [ -z "$state" ]; do
  if conditions="$(kubectl get job "$job" \
    -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{"\n"}{end}')"; then
    misses=0
    state="$(grep -m 1 -E '^(Complete|Failed)$' <<<"$conditions" || true)"
  else
    misses=$((misses + 1))
    if [ "$misses" -ge 5 ]; then
      state="unknown (kubectl get job failed $misses times)"
    fi
  fi
  [ -n "$state" ] || sleep "$poll"
done
echo "run.sh: job/$job $state" >&2

# Each pod's log (stdout: the shard's JSON result on one line; stderr: its text report).
mkdir -p "$out"
rm -f "$out"/shard-*.log
logs=()
while read -r pod index; do
  [ -n "$pod" ] || continue
  index="${index:-unknown}"
  log="$out/shard-$index-$pod.log"
  if kubectl logs "$pod" -c "$container" >"$log"; then
    logs+=("$log")
  else
    echo "run.sh: no log from pod $pod (shard $index)" >&2
    rm -f "$log"
  fi
done < <(kubectl get pods -l "job-name=$job" \
  -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.annotations.batch\.kubernetes\.io/job-completion-index}{"\n"}{end}')

delete_job

if [ "${#logs[@]}" -eq 0 ]; then
  echo "run.sh: no shard's log could be collected: no result to merge" >&2
  exit 6
fi

# One verdict over every shard; a missing or interrupted shard makes it exit 6.
code=0
cat "${logs[@]}" | "$gapless" merge - \
  --json "$out/merged.json" --html "$out/merged.html" --markdown "$out/merged.md" \
  --junit "$out/merged.xml" "$@" || code=$?
echo "run.sh: logs and reports in $out/; gapless merge exited $code" >&2
exit "$code"
