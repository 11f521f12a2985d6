#!/usr/bin/env bash
#! Owns the zero-downtime benchmark: wrk sends HTTP load through Berth's edge proxy to a
#! 2-instance application (examples/hello, HTTP health check on /healthz, default drain)
#! while the script runs, one after the other:
#!   - 10 redeploys that must succeed (odd ones change a variable, even ones a commit),
#!   - 3 deploys that must fail: a commit whose Dockerfile fails (build), a release command
#!     that exits 1 (release), a health path that answers 404 (health),
#!   - 1 deploy during which the server is killed with SIGKILL at a chosen step (default
#!     retire: traffic has just switched, the old instances are draining) and restarted.
#! After each deploy it checks what the proxy serves (the new version, or still the old one
#! after a failure). It prints total requests, the achieved rate, non-2xx/3xx responses,
#! socket errors and failed = their sum (goal 0), the outcome of every deploy, and whether
#! exactly the 2 serving containers remain at the end.
#!
#! Settings (environment): BENCH_ZD_CONNECTIONS (32), BENCH_ZD_RATE (target requests/s for
#! the whole load, paced per connection with wrk's delay(); 0 = as fast as wrk can; 1000),
#! BENCH_ZD_KILL_STEP (the step at which the server is killed: clone, build, start, health,
#! route or retire; retire).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CONNECTIONS=${BENCH_ZD_CONNECTIONS:-32}
RATE=${BENCH_ZD_RATE:-1000}
KILL_STEP=${BENCH_ZD_KILL_STEP:-retire}
PROJECT=zd ENVIRONMENT=prod APP=web

bench_init zero-downtime
server_setup
server_start
EVENTS=$BENCH_WORK/logs/events.log
WRK_OUT=$BENCH_WORK/logs/wrk.out
FIXTURE=$BENCH_WORK/hello
HOST=$(app_host "$APP" "$ENVIRONMENT" "$PROJECT")
URL=http://127.0.0.1:$PROXY_PORT/
UNEXPECTED=0
OUTCOMES=()

event() {
  printf '%s %s\n' "$(now)" "$*" >>"$EVENTS"
  log "$*"
}
# outcome LABEL EXPECTED ACTUAL DETAIL: one row of the deploy table; counts surprises.
outcome() {
  local mark=ok
  if [ "$2" != "$3" ]; then mark=UNEXPECTED; UNEXPECTED=$((UNEXPECTED + 1)); fi
  OUTCOMES+=("$(printf '%-34s %-10s %-10s %-10s %s' "$1" "$2" "$3" "$mark" "$4")")
  event "deploy $1: expected $2, got $3 ($4)"
}

fixture_repo "$FIXTURE"
project_create "$PROJECT"
"$BERTH" environment create --project "$PROJECT" "$ENVIRONMENT" >/dev/null
"$BERTH" application create --project "$PROJECT" --environment "$ENVIRONMENT" "$APP" \
  --git "file://$FIXTURE.git" --port 8080 --instances 2 --health-path /healthz >/dev/null
"$BERTH" env-var set --project "$PROJECT" GREETING="zd initial" >/dev/null
"$BERTH" deploy --project "$PROJECT" --environment "$ENVIRONMENT" --wait >/dev/null 2>&1 ||
  die "the initial deploy failed"
wait_for_body "$URL" "$HOST" "zd initial" 10 || die "the initial version is not served"

# Runs `berth deploy --wait`; sets DEPLOY_STATUS (succeeded/failed/...), DEPLOY_ID,
# DEPLOY_DETAIL (the failing step and reason, or the duration).
deploy_wait() {
  local out rc=0 started
  out=$BENCH_WORK/logs/deploy-$(date +%s%N).out
  started=$(now)
  "$BERTH" deploy --project "$PROJECT" --environment "$ENVIRONMENT" --wait >"$out" 2>&1 || rc=$?
  DEPLOY_ID=$(sed -n 's/^deployment \([0-9a-f-]*\) .*/\1/p' "$out" | head -n 1)
  if [ -n "$DEPLOY_ID" ]; then
    DEPLOY_STATUS=$(deployment_field "$DEPLOY_ID" 'd["status"]')
    DEPLOY_DETAIL=$(deployment_field "$DEPLOY_ID" \
      '(d["failure"]["step"] + ": " + " ".join(d["failure"]["message"].split())[:160]) if d.get("failure") else ""')
  else
    DEPLOY_STATUS="cli-error($rc)" DEPLOY_DETAIL=$(tail -n 1 "$out")
  fi
  [ -n "$DEPLOY_DETAIL" ] || DEPLOY_DETAIL="$(since "$started") s"
}

# A redeploy that must succeed and then serve TEXT.
redeploy() {
  local label=$1 text=$2 served=served
  deploy_wait
  wait_for_body "$URL" "$HOST" "$text" 10 || { served="NOT serving the new version"; UNEXPECTED=$((UNEXPECTED + 1)); }
  outcome "$label" succeeded "$DEPLOY_STATUS" "$DEPLOY_DETAIL; $served"
}
# A deploy that must fail at STEP while the proxy keeps serving TEXT.
failing_deploy() {
  local label=$1 step=$2 text=$3 served="old version still served"
  deploy_wait
  http_get "$URL" "$HOST" | grep -qF -- "$text" || { served="old version NOT served"; UNEXPECTED=$((UNEXPECTED + 1)); }
  case "$DEPLOY_DETAIL" in "$step":*) ;; *) DEPLOY_DETAIL="expected step $step; $DEPLOY_DETAIL" ;; esac
  outcome "$label" failed "$DEPLOY_STATUS" "$DEPLOY_DETAIL; $served"
}

current=""
var_redeploy() {
  current="zd rev $1"
  "$BERTH" env-var set --project "$PROJECT" GREETING="$current" >/dev/null
  event "redeploy $1: variable GREETING=$current"
  redeploy "redeploy $1 (variable)" "$current"
}
commit_redeploy() {
  echo "revision $1" >"$FIXTURE/REVISION"
  fixture_commit "$FIXTURE" "revision $1"
  current=$(fixture_head "$FIXTURE")
  event "redeploy $1: commit $current"
  redeploy "redeploy $1 (commit)" "$current"
}

fail_build() {
  printf 'RUN echo "bench: this build fails on purpose" && exit 1\n' >>"$FIXTURE/Dockerfile"
  fixture_commit "$FIXTURE" "a Dockerfile that fails"
  event "failing deploy: Dockerfile RUN exit 1"
  failing_deploy "failing build (RUN exit 1)" build "$current"
  git -C "$FIXTURE" -c user.name=bench -c user.email=bench@localhost revert --no-edit HEAD >/dev/null
  git -C "$FIXTURE" push -q origin main
}
fail_release() {
  "$BERTH" application update --project "$PROJECT" --environment "$ENVIRONMENT" "$APP" \
    --release-command 'echo "bench: release fails on purpose"; exit 1' >/dev/null
  event "failing deploy: release command exit 1"
  failing_deploy "failing release command (exit 1)" release "$current"
  "$BERTH" application update --project "$PROJECT" --environment "$ENVIRONMENT" "$APP" \
    --no-release-command >/dev/null
}
fail_health() {
  "$BERTH" application update --project "$PROJECT" --environment "$ENVIRONMENT" "$APP" \
    --health-path /bench-missing >/dev/null
  event "failing deploy: health path /bench-missing (404)"
  failing_deploy "failing health check (404)" health "$current"
  "$BERTH" application update --project "$PROJECT" --environment "$ENVIRONMENT" "$APP" \
    --health-path /healthz >/dev/null
}

# Queues a deploy of a variable change, waits until its KILL_STEP runs, kills the server
# with SIGKILL, leaves it down 3 s (the proxy serves alone), restarts it and waits until
# the interrupted deployment has an outcome; then checks what is served.
kill_during_deploy() {
  local id i step_running="" status="" text="zd killed-deploy" served
  "$BERTH" env-var set --project "$PROJECT" GREETING="$text" >/dev/null
  id=$("$BERTH" deploy --project "$PROJECT" --environment "$ENVIRONMENT" --output json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  for ((i = 0; i < 1200; i++)); do
    step_running=$(deployment_field "$id" \
      "any(s['name'] == '$KILL_STEP' and s['status'] == 'running' for s in d['steps'])")
    [ "$step_running" = True ] && break
    sleep 0.05
  done
  [ "$step_running" = True ] || log "step $KILL_STEP was not seen running; killing anyway"
  event "kill -9 server pid $SERVER_PID (deployment $id at step $KILL_STEP: $step_running)"
  kill -KILL "$SERVER_PID"
  sleep 3
  server_start
  event "server restarted (pid $SERVER_PID)"
  for ((i = 0; i < 600; i++)); do
    status=$(deployment_field "$id" 'd["status"]')
    case "$status" in succeeded | failed | cancelled | superseded) break ;; esac
    sleep 0.2
  done
  DEPLOY_DETAIL=$(deployment_field "$id" \
    '(d["failure"]["step"] + ": " + " ".join(d["failure"]["message"].split())[:160]) if d.get("failure") else "switched before the kill"')
  # Whichever outcome, the environment must converge and serve: the new version when the
  # deployment switched before the kill, else the previous one.
  if [ "$status" = succeeded ]; then current=$text; fi
  served="serves \"$current\""
  wait_for_body "$URL" "$HOST" "$current" 20 || { served="does NOT serve \"$current\""; UNEXPECTED=$((UNEXPECTED + 1)); }
  OUTCOMES+=("$(printf '%-34s %-10s %-10s %-10s %s' "kill -9 at $KILL_STEP + restart" "any" "$status" ok "$DEPLOY_DETAIL; $served")")
  event "killed deployment $id ended $status ($DEPLOY_DETAIL; $served)"
}

# --- the load --------------------------------------------------------------------------

DELAY_MS=0
if [ "$RATE" -gt 0 ]; then DELAY_MS=$((CONNECTIONS * 1000 / RATE)); fi
LUA=$BENCH_DIR/wrk-load.lua

# Reference, without Berth in the path: half the connections (one instance's share) at the
# same pacing, straight to one instance's published port, for 20 s. The application's own
# tail latency (busybox httpd forks per connection) shows here.
instance=$("$DOCKER" ps -q --filter "label=berth.project=${BENCH_PROJECT_IDS[0]}" | head -n 1)
instance_port=$("$DOCKER" port "$instance" 8080/tcp | head -n 1 | sed 's/.*://')
log "reference: wrk straight to one instance (127.0.0.1:$instance_port) for 20 s"
BENCH_HOST=$HOST BENCH_DELAY_MS=$DELAY_MS wrk -t2 -c$((CONNECTIONS / 2)) -d20s --timeout 2s \
  -s "$LUA" "http://127.0.0.1:$instance_port/" >"$BENCH_WORK/logs/wrk-direct.out" 2>&1

event "wrk: $CONNECTIONS connections, target $RATE req/s (delay ${DELAY_MS} ms per connection)"
BENCH_HOST=$HOST BENCH_DELAY_MS=$DELAY_MS wrk -t2 -c"$CONNECTIONS" -d3600s --timeout 2s \
  -s "$LUA" "$URL" >"$WRK_OUT" 2>&1 &
WRK_PID=$!
bench_track_pid "$WRK_PID"
PROBE_OUT=$BENCH_WORK/logs/probe.txt
python3 "$BENCH_DIR/probe.py" "$URL" "$HOST" 0.05 10 "$PROBE_OUT" &
PROBE_PID=$!
bench_track_pid "$PROBE_PID"
sleep 3

var_redeploy 1
commit_redeploy 2
var_redeploy 3
fail_build
commit_redeploy 4
var_redeploy 5
commit_redeploy 6
fail_release
var_redeploy 7
commit_redeploy 8
fail_health
var_redeploy 9
kill_during_deploy
commit_redeploy 10
sleep 3

event "stopping wrk and the probe"
kill -INT "$WRK_PID"
kill -TERM "$PROBE_PID"
wait "$WRK_PID" || true
wait "$PROBE_PID" || true

# Orphans: after the drain and a reconcile pass only the 2 serving instances may remain.
containers=0
for ((i = 0; i < 30; i++)); do
  containers=$("$DOCKER" ps -aq --filter "label=berth.project=${BENCH_PROJECT_IDS[0]}" | wc -l)
  [ "$containers" -eq 2 ] && break
  sleep 1
done

# --- results ---------------------------------------------------------------------------

# wrk_value FILE KEY [FIELD]: from the "BENCH KEY ..." line, the word after FIELD (or the
# first value).
wrk_value() {
  awk -v k="$2" -v f="${3:-}" '$1 == "BENCH" && $2 == k {
    if (f == "") { print $3; exit }
    for (i = 3; i < NF; i++) if ($i == f) { print $(i + 1); exit } }' "$1"
}
requests=$(wrk_value "$WRK_OUT" requests)
duration=$(wrk_value "$WRK_OUT" duration_s)
[ -n "$requests" ] || { cat "$WRK_OUT" >&2; die "wrk printed no summary"; }
non2xx=$(wrk_value "$WRK_OUT" errors status) connect=$(wrk_value "$WRK_OUT" errors connect)
read_e=$(wrk_value "$WRK_OUT" errors read) write_e=$(wrk_value "$WRK_OUT" errors write)
timeout_e=$(wrk_value "$WRK_OUT" errors timeout)
failed=$((non2xx + connect + read_e + write_e + timeout_e))
rate=$(calc "$requests / $duration")
ok_responses=$(awk '$1 == "BENCH" && $2 == "status" && $3 ~ /^[23]/ { n += $4 } END { print n + 0 }' "$WRK_OUT")
DIRECT=$BENCH_WORK/logs/wrk-direct.out

echo
echo "wrk output through the proxy (as printed):"
sed 's/^/  /' "$WRK_OUT"
echo "wrk output straight to one instance, reference (as printed):"
sed 's/^/  /' "$DIRECT"
echo
printf '%-34s %-10s %-10s %-10s %s\n' deploy expected got check detail
printf '%-34s %-10s %-10s %-10s %s\n' ---------------------------------- ---------- ---------- ---------- ------
printf '%s\n' "${OUTCOMES[@]}"

value_header "zero-downtime: load through the proxy during 10 redeploys, 3 failing deploys, 1 kill -9 + restart"
value_row "duration of the load (s)" "$duration"
value_row "requests completed" "$requests"
value_row "achieved rate (req/s; target $RATE, $CONNECTIONS connections)" "$rate" ">= 500 req/s" ">=" 500
value_row "non-2xx/3xx responses" "$non2xx"
value_row "socket errors: connect" "$connect"
value_row "socket errors: read" "$read_e"
value_row "socket errors: write" "$write_e"
value_row "socket errors: timeout (> 2 s)" "$timeout_e"
value_row "failed requests (non-2xx/3xx + socket errors)" "$failed" "0" "==" 0
value_row "responses 2xx/3xx (slow ones included)" "$ok_responses"
value_row "latency p50 / p99 / max (ms)" "$(wrk_value "$WRK_OUT" latency_ms p50) / $(wrk_value "$WRK_OUT" latency_ms p99) / $(wrk_value "$WRK_OUT" latency_ms max)"
value_row "reference, 1 instance direct, 20 s: requests" "$(wrk_value "$DIRECT" requests)"
value_row "reference: non-2xx/3xx + socket errors" "$(awk '$1 == "BENCH" && $2 == "errors" { print $4 + $6 + $8 + $10 + $12 }' "$DIRECT")"
value_row "reference: latency p50 / p99 / max (ms)" "$(wrk_value "$DIRECT" latency_ms p50) / $(wrk_value "$DIRECT" latency_ms p99) / $(wrk_value "$DIRECT" latency_ms max)"
read -r probe_total probe_failed probe_slow probe_max < <(awk '
  { n++; if ($3 !~ /^[23][0-9][0-9]$/) f++; if ($2 > 1000) s++; if ($2 > m) m = $2 }
  END { printf "%d %d %d %.0f\n", n, f, s, m }' "$PROBE_OUT")
value_row "probe: sequential requests, new connection each" "$probe_total"
value_row "probe: failed (non-2xx/3xx, refused, reset, 10 s)" "$probe_failed" "0" "==" 0
value_row "probe: slower than 1 s" "$probe_slow"
value_row "probe: slowest (ms)" "$probe_max"
value_row "deploys with an unexpected outcome or content" "$UNEXPECTED" "0" "==" 0
value_row "containers of the project at the end (2 serving)" "$containers" "2" "==" 2
host_note
if [ "$failed" -gt 0 ] || [ "$probe_failed" -gt 0 ] || [ "$probe_slow" -gt 0 ] || [ "$UNEXPECTED" -gt 0 ]; then
  echo
  echo "timeline: events, wrk's non-2xx/3xx per second, probe requests failed or slower than 1 s"
  echo "(seconds since the load started)"
  t_load=$(awk 'NR == 1 { print $1 }' "$EVENTS")
  {
    awk '{ t = $1; $1 = ""; print t, "event" $0 }' "$EVENTS"
    awk '$1 == "BENCH" && $2 == "bad" { print $3, "wrk: " $5 " responses with status " $4 }' "$WRK_OUT"
    awk '$3 !~ /^[23][0-9][0-9]$/ || $2 > 1000 { print $1, "probe: " $3 " after " $2 " ms" }' "$PROBE_OUT"
  } | sort -g | awk -v t0="$t_load" '{ t = $1; $1 = ""; printf "  %8.2f %s\n", t - t0, $0 }'
fi
