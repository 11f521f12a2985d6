# shellcheck shell=bash
# Owns what every benchmark shares (sourced, never run): the berth binary to measure, a
# private Berth server per benchmark (own data directory, own free loopback ports), the
# fixture Git repositories, HTTP polling through the proxy, timing, statistics
# (min/median/max), the result tables with goals and PASS/MISS, and the cleanup of
# everything a benchmark created (by pid, by label, by name; never by process name).
#
# A benchmark script sources this file, calls `bench_init NAME`, registers what it
# creates (`bench_track_project`, images and containers carry the label
# `berth-bench.run=$BENCH_RUN_ID`), and `bench_cleanup` runs on exit.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
# Benchmarks measure the release build (run.sh builds it); BENCH_BERTH overrides.
BERTH=${BENCH_BERTH:-$REPO_ROOT/target/release/berth}
# Debian's docker.io client matches the 20.10 engine (see scripts/build-base-images.sh).
DOCKER=${BERTH_DOCKER:-/usr/bin/docker}
BENCH_LABEL=berth-bench.run
BENCH_RUN_ID=${BENCH_RUN_ID:-$(date +%Y%m%d%H%M%S)-$$}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# --- time ------------------------------------------------------------------------------

# Seconds since the epoch with microseconds, without a fork.
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
# Seconds from $1 to now (or to $2), 3 decimals.
since() { awk -v s="$1" -v e="${2:-$(now)}" 'BEGIN { printf "%.3f", e - s }'; }

# --- statistics and tables -------------------------------------------------------------

# "min median max" of the numbers given as arguments.
stats() {
  if [ "$#" -eq 0 ]; then echo "nan nan nan"; return 0; fi
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
    END { if (NR == 0) { print "nan nan nan"; exit }
          m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
          printf "%.3f %.3f %.3f\n", a[1], m, a[NR] }'
}
median() { stats "$@" | awk '{ print $2 }'; }
# calc EXPR: floating point arithmetic through awk.
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
# verdict VALUE OP LIMIT -> PASS or MISS (OP is <= or >= or ==).
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    ok = (op == "<=") ? (v <= l) : (op == ">=") ? (v >= l) : (v == l)
    print ok ? "PASS" : "MISS" }'
}

BENCH_TABLE_FORMAT='%-44s %10s %10s %10s  %-12s %s\n'
table_header() {
  printf '\n== %s ==\n' "$1"
  # shellcheck disable=SC2059
  printf "$BENCH_TABLE_FORMAT" figure min median max goal result
  # shellcheck disable=SC2059
  printf "$BENCH_TABLE_FORMAT" "$(printf '%.0s-' {1..44})" ---------- ---------- ---------- ------------ ------
}
# table_row LABEL MIN MEDIAN MAX GOAL RESULT  (use "-" where a column does not apply)
table_row() {
  # shellcheck disable=SC2059
  printf "$BENCH_TABLE_FORMAT" "$1" "$2" "$3" "$4" "$5" "$6"
}
# table_stats_row LABEL GOAL_TEXT OP LIMIT VALUES...: a row of min/median/max; the goal
# (when OP is not "-") is judged on the median.
table_stats_row() {
  local label=$1 goal=$2 op=$3 limit=$4 min med max result=-
  shift 4
  read -r min med max < <(stats "$@")
  [ "$op" = - ] || result=$(verdict "$med" "$op" "$limit")
  table_row "$label" "$min" "$med" "$max" "$goal" "$result"
}

# --- cleanup ---------------------------------------------------------------------------

BENCH_WORK=""
BENCH_PROJECTS=()
BENCH_PIDS=()

# bench_init NAME [--without-wrk]: a work directory (kept logs go to $BENCH_WORK/logs) and
# the exit trap, after checking the prerequisites (wrk unless the benchmark does not use it).
bench_init() {
  [ -x "$BERTH" ] || die "$BERTH not found: build it with 'cargo build --release -p berth' (run.sh does)"
  [ "${2:-}" = --without-wrk ] || command -v wrk >/dev/null || die "wrk is not installed"
  "$DOCKER" version >/dev/null 2>&1 || die "the Docker engine does not answer"
  "$DOCKER" image inspect berth/busybox:1 >/dev/null 2>&1 ||
    die "berth/busybox:1 is missing: run scripts/build-base-images.sh"
  BENCH_NAME=$1
  BENCH_WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-$1.XXXXXX")
  mkdir -p "$BENCH_WORK/logs"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  log "$1: work directory $BENCH_WORK (run id $BENCH_RUN_ID)"
}

bench_track_project() { BENCH_PROJECTS+=("$1"); }
bench_track_pid() { BENCH_PIDS+=("$1"); }

# Sends SIGTERM to PID, waits up to $2 seconds (default 10), then SIGKILL.
stop_pid() {
  local pid=$1 wait_s=${2:-10} i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# docker_remove container|network|image FILTER: removes the matching objects (by id).
docker_remove() {
  local -a ids=()
  case "$1" in
    container) mapfile -t ids < <("$DOCKER" ps -aq --filter "$2") ;;
    network) mapfile -t ids < <("$DOCKER" network ls -q --filter "$2") ;;
    image) mapfile -t ids < <("$DOCKER" images -q --filter "$2" | sort -u) ;;
  esac
  [ "${#ids[@]}" -eq 0 ] && return 0
  case "$1" in
    container) "$DOCKER" rm -f "${ids[@]}" >/dev/null ;;
    network) "$DOCKER" network rm "${ids[@]}" >/dev/null ;;
    image) "$DOCKER" rmi -f "${ids[@]}" >/dev/null ;;
  esac
}

bench_cleanup() {
  local status=$? project pid i
  trap - EXIT INT TERM
  set +e
  log "$BENCH_NAME: cleaning up"
  for pid in "${BENCH_PIDS[@]}"; do stop_pid "$pid" 5; done
  # The engine may be restarting (tests on the same machine restart dockerd): wait for it
  # rather than leave containers behind.
  for ((i = 0; i < 120; i++)); do "$DOCKER" version >/dev/null 2>&1 && break; sleep 1; done
  # Projects first, through Berth itself, while its server runs: `project delete` waits
  # until every container, network and image labelled for the project is gone.
  if [ -n "${BENCH_DATA:-}" ] && server_answers; then
    for project in "${BENCH_PROJECTS[@]}"; do
      timeout 300 "$BERTH" project delete "$project" --yes >/dev/null 2>&1 ||
        log "could not delete project $project through Berth; removing its objects by label"
    done
  fi
  # Anything still labelled for a project of this run (a crashed server, a timeout).
  for project in "${BENCH_PROJECT_IDS[@]}"; do
    docker_remove container "label=berth.project=$project"
    docker_remove network "label=berth.project=$project"
    docker_remove image "label=berth.project=$project"
  done
  # The benchmark's own baseline containers and images.
  if declare -F bench_on_cleanup >/dev/null; then bench_on_cleanup; fi
  docker_remove container "label=$BENCH_LABEL=$BENCH_RUN_ID"
  docker_remove image "label=$BENCH_LABEL=$BENCH_RUN_ID"
  if [ -n "${BENCH_DATA:-}" ]; then
    server_stop
    stop_pid "$(cat "$BENCH_DATA/proxy.pid" 2>/dev/null)" 10
    cp "$BENCH_DATA"/*.log "$BENCH_DATA"/server.out "$BENCH_WORK/logs/" 2>/dev/null
  fi
  # Keep only the logs (server, proxy, wrk, events) for a look afterwards.
  find "$BENCH_WORK" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf --one-file-system {} +
  log "$BENCH_NAME: logs kept in $BENCH_WORK/logs"
  exit "$status"
}

# --- the Berth server under test -------------------------------------------------------

BENCH_PROJECT_IDS=()

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# server_setup: data directory and ports for this benchmark's server (kept across restarts).
server_setup() {
  BENCH_DATA=$BENCH_WORK/data
  mkdir -p "$BENCH_DATA"
  API_PORT=$(free_port)
  PROXY_PORT=$(free_port)
  while [ "$PROXY_PORT" = "$API_PORT" ]; do PROXY_PORT=$(free_port); done
  export BERTH_DATA_DIR=$BENCH_DATA BERTH_URL=http://127.0.0.1:$API_PORT
  unset BERTH_TOKEN
}

server_answers() { curl -fsS -m 2 "$BERTH_URL/api/v1/health" >/dev/null 2>&1; }

# server_start: starts `berth server` (which starts or finds its proxy) in the background
# and waits until the API answers. Sets SERVER_PID and PROXY_PID.
server_start() {
  local i
  setsid "$BERTH" server --data-dir "$BENCH_DATA" --listen "127.0.0.1:$API_PORT" \
    --proxy-listen "127.0.0.1:$PROXY_PORT" --allow-local-repositories \
    >>"$BENCH_DATA/server.out" 2>&1 </dev/null &
  SERVER_PID=$!
  # Not a job of this shell: a deliberate kill -9 should not print "Killed ...".
  disown "$SERVER_PID" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    server_answers && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$BENCH_DATA/server.out" >&2; die "berth server exited"; }
    sleep 0.1
  done
  server_answers || { tail -n 20 "$BENCH_DATA/server.out" >&2; die "berth server did not answer"; }
  SERVER_PID=$(cat "$BENCH_DATA/server.pid")
  for ((i = 0; i < 100; i++)); do [ -s "$BENCH_DATA/proxy.pid" ] && break; sleep 0.1; done
  # shellcheck disable=SC2034 # read by the benchmarks
  PROXY_PID=$(cat "$BENCH_DATA/proxy.pid")
  export BERTH_TOKEN
  BERTH_TOKEN=$(cat "$BENCH_DATA/admin.token")
}

server_stop() {
  [ -n "${SERVER_PID:-}" ] && stop_pid "$SERVER_PID" 15
  SERVER_PID=""
}

# --- projects and applications ---------------------------------------------------------

# project_create NAME: creates it and records its id for the label-based safety net.
project_create() {
  local id
  id=$("$BERTH" project create "$1" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  bench_track_project "$1"
  BENCH_PROJECT_IDS+=("$id")
}

# app_host APP ENV PROJECT: the Host header the proxy routes.
app_host() { printf '%s.%s.%s.localhost' "$1" "$2" "$3"; }

# deployment_field ID PYTHON_EXPR: a value of `berth deployment show ID` (JSON as `d`).
deployment_field() {
  "$BERTH" deployment show "$1" --output json |
    python3 -c "import json,sys; d = json.load(sys.stdin); print($2)"
}

# latest_deployment PROJECT ENV: id of the newest deployment of the environment.
latest_deployment() {
  "$BERTH" deployment list --project "$1" --environment "$2" --output json |
    python3 -c 'import json,sys; d = json.load(sys.stdin); d = d.get("items", d) if isinstance(d, dict) else d; print(d[0]["id"] if d else "")'
}

# --- fixture repositories --------------------------------------------------------------

# fixture_repo DIR: a working repository with examples/hello at its root, and its bare
# clone DIR.git (the application's file:// URL). Commits go to main and are pushed.
fixture_repo() {
  local dir=$1
  git init -q -b main "$dir"
  cp -R "$REPO_ROOT/examples/hello/." "$dir/"
  fixture_commit "$dir" "fixture: examples/hello"
  git clone -q --bare "$dir" "$dir.git"
  git -C "$dir" remote add origin "$dir.git"
}

# fixture_commit DIR MESSAGE: commits everything in DIR and pushes it to DIR.git if present.
fixture_commit() {
  git -C "$1" add -A
  git -C "$1" -c user.name=bench -c user.email=bench@localhost commit -q -m "$2"
  if [ -d "$1.git" ]; then git -C "$1" push -q origin main; fi
}

# fixture_set_greeting DIR TEXT: changes the image's default GREETING (a Dockerfile change:
# the layers after it rebuild) and commits.
fixture_set_greeting() {
  sed -i -E "s/GREETING=\"[^\"]*\"/GREETING=\"$2\"/" "$1/Dockerfile"
  grep -q "GREETING=\"$2\"" "$1/Dockerfile" || die "could not set GREETING in $1/Dockerfile"
  fixture_commit "$1" "greeting: $2"
}

fixture_head() { git -C "$1" rev-parse HEAD; }

# --- HTTP ------------------------------------------------------------------------------

# http_get URL [HOST]: the body, or nothing (exit 1) unless the answer is 2xx.
http_get() {
  if [ -n "${2:-}" ]; then
    curl -fsS -m 2 -H "Host: $2" "$1" 2>/dev/null
  else
    curl -fsS -m 2 "$1" 2>/dev/null
  fi
}

# wait_for_body URL HOST TEXT TIMEOUT_S: polls every 20 ms until a 2xx body contains TEXT.
wait_for_body() {
  local url=$1 host=$2 text=$3 deadline
  deadline=$(calc "$(now) + $4")
  while :; do
    if http_get "$url" "$host" | grep -qF -- "$text"; then return 0; fi
    awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }' && return 1
    sleep 0.02
  done
}

# wait_for_body_without URL HOST TEXT TIMEOUT_S: until a 2xx body no longer contains TEXT.
wait_for_body_without() {
  local url=$1 host=$2 text=$3 deadline body
  deadline=$(calc "$(now) + $4")
  while :; do
    if body=$(http_get "$url" "$host") && ! grep -qF -- "$text" <<<"$body"; then return 0; fi
    awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }' && return 1
    sleep 0.02
  done
}

# page_instance BODY: the hello page's instance (container hostname).
page_instance() { sed -n 's/.*<dd id="instance">\([^<]*\)<.*/\1/p' <<<"$1"; }

# --- process memory --------------------------------------------------------------------

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# cpu_ticks PID: utime + stime in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# host_note: one line about the machine's load, printed with each result table: these
# figures are only comparable on an otherwise idle machine.
host_note() {
  printf 'host: %s cores, load average %s (1/5/15 min); %s, checkout %s\n' "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$("$BERTH" --version)" \
    "$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
}

# Tables of single values (one measurement, or counts): figure, value, goal, result.
BENCH_VALUE_FORMAT='%-52s %14s  %-14s %s\n'
value_header() {
  printf '\n== %s ==\n' "$1"
  # shellcheck disable=SC2059
  printf "$BENCH_VALUE_FORMAT" figure value goal result
  # shellcheck disable=SC2059
  printf "$BENCH_VALUE_FORMAT" "$(printf '%.0s-' {1..52})" -------------- -------------- ------
}
# value_row LABEL VALUE [GOAL_TEXT OP LIMIT]
value_row() {
  local result=- goal=-
  if [ "$#" -ge 5 ]; then goal=$3; result=$(verdict "$2" "$4" "$5"); fi
  # shellcheck disable=SC2059
  printf "$BENCH_VALUE_FORMAT" "$1" "$2" "$goal" "$result"
}

# step_durations ID: "STEP SECONDS" for each finished step of a deployment, plus
# "queued SECONDS" (created until started).
step_durations() {
  "$BERTH" deployment show "$1" --output json | python3 -c '
import json, sys
from datetime import datetime
d = json.load(sys.stdin)
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
if d.get("started_at"):
    print("queued", "%.3f" % (t(d["started_at"]) - t(d["created_at"])).total_seconds())
for s in d["steps"]:
    if s.get("duration_ms") is not None:
        print(s["name"], "%.3f" % (s["duration_ms"] / 1000))'
}

# step_table FILE: for a file of "STEP SECONDS" lines over several deployments, one stats
# row per step (in the order of the first appearance), no goal.
step_table() {
  local step
  awk '!seen[$1]++ { print $1 }' "$1" | while read -r step; do
    # shellcheck disable=SC2046
    table_stats_row "  step $step (s)" - - - $(awk -v s="$step" '$1 == s { print $2 }' "$1")
  done
}
