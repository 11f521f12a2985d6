#!/usr/bin/env bash
#! Owns the redeploy-unchanged benchmark: `berth deploy --wait` with nothing changed (same
#! commit, same variables), so the image is reused and no build runs, against the raw
#! baseline of starting a container of the same image and its first successful HTTP check.
#!
#! Berth: the application (examples/hello, 1 instance, default TCP health check, default
#! drain) is deployed once; each timed run then redeploys it and polls the proxy every
#! 20 ms until the page names a new instance (container hostname): "served". The time at
#! which `deploy --wait` returns (after the old instance's drain) is printed too. Each run
#! checks that the build step reused the image.
#! Baseline: `docker run -d -p 127.0.0.1::8080 IMAGE` of the image Berth runs, then curl
#! every 20 ms until HTTP 200. Runs alternate which goes first.
#!
#! Goal: served <= 1 s (absolute); the ratio and the difference to the baseline are printed.
#! Settings: BENCH_RUNS (5).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUNS=${BENCH_RUNS:-5}
PROJECT=ru ENVIRONMENT=prod APP=web

bench_init redeploy-unchanged
server_setup
server_start
FIXTURE=$BENCH_WORK/hello
HOST=$(app_host "$APP" "$ENVIRONMENT" "$PROJECT")
URL=http://127.0.0.1:$PROXY_PORT/
STEPS=$BENCH_WORK/logs/steps.txt
: >"$STEPS"

fixture_repo "$FIXTURE"
project_create "$PROJECT"
"$BERTH" environment create --project "$PROJECT" "$ENVIRONMENT" >/dev/null
"$BERTH" application create --project "$PROJECT" --environment "$ENVIRONMENT" "$APP" \
  --git "file://$FIXTURE.git" --port 8080 >/dev/null
"$BERTH" deploy --project "$PROJECT" --environment "$ENVIRONMENT" --wait >/dev/null 2>&1 ||
  die "the first deploy failed"
wait_for_body "$URL" "$HOST" "Hello from Berth" 10 || die "the first deploy is not served"
IMAGE=$("$DOCKER" inspect --format '{{.Config.Image}}' \
  "$("$DOCKER" ps -q --filter "label=berth.project=${BENCH_PROJECT_IDS[0]}" | head -n 1)")
log "image under test: $IMAGE"

berth_served=() berth_done=() baseline=() not_reused=0

berth_run() {
  local out t0 t_served t_done rc=0 pid id old build
  old=$(page_instance "$(http_get "$URL" "$HOST")")
  [ -n "$old" ] || die "cannot read the serving instance"
  out=$BENCH_WORK/logs/berth-redeploy-$1.out
  t0=$(now)
  "$BERTH" deploy --project "$PROJECT" --environment "$ENVIRONMENT" --wait >"$out" 2>&1 &
  pid=$!
  wait_for_body_without "$URL" "$HOST" "<dd id=\"instance\">$old<" 300 ||
    { kill "$pid" 2>/dev/null; cat "$out" >&2; die "a new instance never served"; }
  t_served=$(now)
  wait "$pid" || rc=$?
  t_done=$(now)
  [ "$rc" -eq 0 ] || { cat "$out" >&2; die "berth deploy --wait failed (exit $rc)"; }
  berth_served+=("$(since "$t0" "$t_served")")
  berth_done+=("$(since "$t0" "$t_done")")
  id=$(sed -n 's/^deployment \([0-9a-f-]*\) .*/\1/p' "$out" | head -n 1)
  step_durations "$id" >>"$STEPS"
  build=$(deployment_field "$id" '[s.get("message") or "" for s in d["steps"] if s["name"] == "build"][0]')
  case "$build" in *built\ *) not_reused=$((not_reused + 1)) ;; esac
  log "berth run $1: served after ${berth_served[-1]} s, returned after ${berth_done[-1]} s; build: $build"
}

baseline_run() {
  local t0 t1 cid port
  t0=$(now)
  cid=$("$DOCKER" run -d --label "$BENCH_LABEL=$BENCH_RUN_ID" -p 127.0.0.1::8080 "$IMAGE")
  port=$("$DOCKER" port "$cid" 8080/tcp | head -n 1 | sed 's/.*://')
  wait_for_body "http://127.0.0.1:$port/" "" "Hello from Berth" 60 || die "the baseline container never answered"
  t1=$(now)
  "$DOCKER" rm -f "$cid" >/dev/null
  baseline+=("$(since "$t0" "$t1")")
  log "baseline run $1: answered after ${baseline[-1]} s"
}

for ((k = 1; k <= RUNS; k++)); do
  if ((k % 2)); then berth_run "$k"; baseline_run "$k"; else baseline_run "$k"; berth_run "$k"; fi
done

read -r _ b_med _ < <(stats "${berth_served[@]}")
read -r _ base_med _ < <(stats "${baseline[@]}")

table_header "redeploy-unchanged: no change, image reused, $RUNS runs (seconds)"
table_stats_row "berth deploy --wait: new instance served" "<= 1 s" "<=" 1 "${berth_served[@]}"
table_stats_row "berth deploy --wait: command returned" - - - "${berth_done[@]}"
table_stats_row "baseline docker run + first HTTP 200" - - - "${baseline[@]}"
table_row "ratio served/baseline (medians)" - "$(calc "$b_med / $base_med")" - - -
table_row "difference served-baseline (medians, s)" - "$(calc "$b_med - $base_med")" - - -
table_row "redeploys that rebuilt the image" - "$not_reused" - "0" "$(verdict "$not_reused" == 0)"
echo "berth's steps (from the deployment records):"
step_table "$STEPS"
host_note
