#!/usr/bin/env bash
#! Owns the deploy-overhead benchmark: how much longer a Berth deploy of a changed commit
#! takes than doing the same by hand with Git and Docker, in the same run.
#!
#! Each run commits a change to the fixture repository (examples/hello in a bare repo,
#! file:// URL): the image's default GREETING changes, so the Dockerfile changes and the
#! layers after it rebuild, and the page shows the new text. Then, timed:
#!   berth:    `berth deploy --wait` (1 instance, default TCP health check, default
#!             drain), until the proxy serves the new text ("served"); the time at which
#!             `deploy --wait` returns is printed too (it also waits out the drain of the
#!             old instance before it stops it).
#!   baseline: `git clone --depth 1 file://... && docker build && docker run -d -p
#!             127.0.0.1::8080 && poll http://127.0.0.1:PORT/ until it serves the new text`.
#! Both poll every 20 ms with curl. Berth and baseline alternate which goes first, each
#! with its own commit (the same kind of change, never a build-cache hit). A warm-up deploy
#! and a warm-up baseline build come first, untimed.
#!
#! Prints min/median/max of each, the ratio of the medians (goal <= 1.10), the absolute
#! overhead (median difference, goal <= 0.5 s) and Berth's step durations.
#! Settings: BENCH_RUNS (5).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUNS=${BENCH_RUNS:-5}
PROJECT=ov ENVIRONMENT=prod APP=web

bench_init deploy-overhead
server_setup
server_start
FIXTURE=$BENCH_WORK/hello
HOST=$(app_host "$APP" "$ENVIRONMENT" "$PROJECT")
URL=http://127.0.0.1:$PROXY_PORT/
STEPS=$BENCH_WORK/logs/steps.txt
BASELINE_STEPS=$BENCH_WORK/logs/baseline-steps.txt
: >"$STEPS"
: >"$BASELINE_STEPS"

fixture_repo "$FIXTURE"
project_create "$PROJECT"
"$BERTH" environment create --project "$PROJECT" "$ENVIRONMENT" >/dev/null
"$BERTH" application create --project "$PROJECT" --environment "$ENVIRONMENT" "$APP" \
  --git "file://$FIXTURE.git" --port 8080 >/dev/null

berth_served=() berth_done=() baseline=()

# berth_run K [timed]
berth_run() {
  local text="ov berth $1" out t0 t_served t_done rc=0 pid id
  fixture_set_greeting "$FIXTURE" "$text"
  out=$BENCH_WORK/logs/berth-deploy-$1.out
  t0=$(now)
  "$BERTH" deploy --project "$PROJECT" --environment "$ENVIRONMENT" --wait >"$out" 2>&1 &
  pid=$!
  wait_for_body "$URL" "$HOST" "$text" 300 || { kill "$pid" 2>/dev/null; cat "$out" >&2; die "berth never served \"$text\""; }
  t_served=$(now)
  wait "$pid" || rc=$?
  t_done=$(now)
  [ "$rc" -eq 0 ] || { cat "$out" >&2; die "berth deploy --wait failed (exit $rc)"; }
  [ "${2:-}" = timed ] || return 0
  berth_served+=("$(since "$t0" "$t_served")")
  berth_done+=("$(since "$t0" "$t_done")")
  id=$(sed -n 's/^deployment \([0-9a-f-]*\) .*/\1/p' "$out" | head -n 1)
  step_durations "$id" >>"$STEPS"
  log "berth run $1: served after ${berth_served[-1]} s, deploy --wait returned after ${berth_done[-1]} s"
}

# baseline_run K [timed]
baseline_run() {
  local text="ov base $1" dir="$BENCH_WORK/clone-$1" image="berth-bench-baseline:$BENCH_RUN_ID-$1"
  local t0 t1 t_clone t_build t_run cid port
  fixture_set_greeting "$FIXTURE" "$text"
  t0=$(now)
  git clone -q --depth 1 --branch main "file://$FIXTURE.git" "$dir"
  t_clone=$(now)
  # No --label: each label is one more builder step; the image is found by its name.
  DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$image" "$dir" >/dev/null
  t_build=$(now)
  cid=$("$DOCKER" run -d --label "$BENCH_LABEL=$BENCH_RUN_ID" -p 127.0.0.1::8080 "$image")
  port=$("$DOCKER" port "$cid" 8080/tcp | head -n 1 | sed 's/.*://')
  t_run=$(now)
  wait_for_body "http://127.0.0.1:$port/" "" "$text" 300 || die "the baseline container never served \"$text\""
  t1=$(now)
  "$DOCKER" rm -f "$cid" >/dev/null
  "$DOCKER" rmi "$image" >/dev/null
  rm -rf "$dir"
  [ "${2:-}" = timed ] || return 0
  baseline+=("$(since "$t0" "$t1")")
  {
    echo "clone $(since "$t0" "$t_clone")"
    echo "build $(since "$t_clone" "$t_build")"
    echo "run+port $(since "$t_build" "$t_run")"
    echo "answer $(since "$t_run" "$t1")"
  } >>"$BASELINE_STEPS"
  log "baseline run $1: served after ${baseline[-1]} s"
}

# The baseline images carry no label (see baseline_run): remove them by name on exit.
bench_on_cleanup() { docker_remove image "reference=berth-bench-baseline:$BENCH_RUN_ID-*"; }

log "warm-up (untimed): first deploy and a first baseline build"
berth_run 0
baseline_run 0
for ((k = 1; k <= RUNS; k++)); do
  if ((k % 2)); then
    berth_run "$k" timed
    baseline_run "$k" timed
  else
    baseline_run "$k" timed
    berth_run "$k" timed
  fi
done

read -r _ b_med _ < <(stats "${berth_served[@]}")
read -r _ base_med _ < <(stats "${baseline[@]}")
ratio=$(calc "$b_med / $base_med")
overhead=$(calc "$b_med - $base_med")

table_header "deploy-overhead: changed commit until served, $RUNS runs (seconds)"
table_stats_row "berth deploy --wait: new version served" - - - "${berth_served[@]}"
table_stats_row "berth deploy --wait: command returned" - - - "${berth_done[@]}"
table_stats_row "baseline clone+build+run+HTTP answers" - - - "${baseline[@]}"
table_row "ratio served/baseline (medians)" - "$ratio" - "<= 1.10" "$(verdict "$ratio" "<=" 1.10)"
table_row "overhead served-baseline (medians, s)" - "$overhead" - "<= 0.5 s" "$(verdict "$overhead" "<=" 0.5)"
echo "berth's steps (from the deployment records):"
step_table "$STEPS"
echo "baseline's steps:"
step_table "$BASELINE_STEPS"
host_note
