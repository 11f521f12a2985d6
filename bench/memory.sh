#!/usr/bin/env bash
#! Owns the memory benchmark: resident memory (VmRSS from /proc/PID/status, sampled every
#! 100 ms) of `berth server` and of its `berth proxy`, in these phases:
#!   idle-0         right after start, no application (3 s settle, 5 s of samples)
#!   deploy-100     while 10 environments x 10 applications are deployed (10 `deploy
#!                  --wait` at once; the engine runs 4 environments at a time)
#!   idle-100       with the 100 applications serving (10 s settle, 10 s of samples)
#!   deploy-git     while one more application is cloned, built and started from Git
#!                  (examples/hello), the 100 others still serving
#!   idle-100-fresh the server restarted (SIGTERM, start) with the 100 applications:
#!                  idle memory without what the deploys left in the allocator
#! The 100 applications run a tiny image built here (FROM berth/busybox:1, busybox httpd,
#! label berth-bench.run), given with `--image`, so no per-application build is needed;
#! each is checked through the proxy (HTTP 200). Also prints CPU use while idle with 100.
#! Goal: server idle <= 40 MiB (judged on the median of the idle samples). The proxy has no
#! goal. For deploy phases the max column is the peak.
#! Settings: BENCH_MEM_ENVS (10), BENCH_MEM_APPS_PER_ENV (10).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ENVS=${BENCH_MEM_ENVS:-10}
APPS_PER_ENV=${BENCH_MEM_APPS_PER_ENV:-10}
TOTAL=$((ENVS * APPS_PER_ENV))
PROJECT=mem

bench_init memory
server_setup
server_start
SAMPLES=$BENCH_WORK/logs/samples.txt
PHASES=$BENCH_WORK/logs/phases.txt
: >"$PHASES"

# Samples "epoch server_kib proxy_kib" every 100 ms; SERVER_PID is re-read from the pid
# file so the samples follow a restarted server.
sampler() {
  local spid ppid s p k v
  while :; do
    { read -r spid <"$BENCH_DATA/server.pid"; } 2>/dev/null || spid=0
    ppid=$PROXY_PID s=0 p=0
    while read -r k v _; do [ "$k" = VmRSS: ] && { s=$v; break; }; done <"/proc/$spid/status" 2>/dev/null || true
    while read -r k v _; do [ "$k" = VmRSS: ] && { p=$v; break; }; done <"/proc/$ppid/status" 2>/dev/null || true
    printf '%s %s %s\n' "$(now)" "$s" "$p"
    sleep 0.1
  done
}
sampler >"$SAMPLES" 2>/dev/null &
bench_track_pid $!

phase_start() { PHASE=$1 PHASE_T0=$(now); log "phase $1"; }
phase_end() { printf '%s %s %s\n' "$PHASE" "$PHASE_T0" "$(now)" >>"$PHASES"; }
# phase_values PHASE COLUMN(2 server, 3 proxy): the samples in MiB.
phase_values() {
  local t0 t1
  read -r _ t0 t1 < <(awk -v p="$1" '$1 == p' "$PHASES")
  awk -v a="$t0" -v b="$t1" -v c="$2" '$1 >= a && $1 <= b && $c > 0 { printf "%.1f\n", $c / 1024 }' "$SAMPLES"
}

# --- idle, no application --------------------------------------------------------------
sleep 3
phase_start idle-0
sleep 5
phase_end

# --- 100 applications ------------------------------------------------------------------
TINY=$BENCH_WORK/tiny
mkdir -p "$TINY"
cat >"$TINY/Dockerfile" <<'EOF'
FROM berth/busybox:1
RUN mkdir /www && echo ok >/www/index.html
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
EOF
IMAGE=berth-bench/tiny:$BENCH_RUN_ID
DOCKER_BUILDKIT=0 "$DOCKER" build -q --label "$BENCH_LABEL=$BENCH_RUN_ID" -t "$IMAGE" "$TINY" >/dev/null

project_create "$PROJECT"
env_name() { printf 'e%02d' "$1"; }
app_name() { printf 'a%02d' "$1"; }
log "creating $ENVS environments x $APPS_PER_ENV applications"
for ((e = 1; e <= ENVS; e++)); do
  "$BERTH" environment create --project "$PROJECT" "$(env_name "$e")" >/dev/null
done
pids=()
for ((e = 1; e <= ENVS; e++)); do
  (
    for ((a = 1; a <= APPS_PER_ENV; a++)); do
      "$BERTH" application create --project "$PROJECT" --environment "$(env_name "$e")" \
        "$(app_name "$a")" --image "$IMAGE" --port 8080 >/dev/null
    done
  ) &
  pids+=($!)
done
# Not a bare `wait`: the sampler runs in the background until the end.
for pid in "${pids[@]}"; do wait "$pid" || die "creating the applications failed"; done

phase_start deploy-100
pids=()
for ((e = 1; e <= ENVS; e++)); do
  "$BERTH" deploy --project "$PROJECT" --environment "$(env_name "$e")" --wait \
    >"$BENCH_WORK/logs/deploy-$(env_name "$e").out" 2>&1 &
  pids+=($!)
done
deploy_failures=0
for pid in "${pids[@]}"; do wait "$pid" || deploy_failures=$((deploy_failures + 1)); done
phase_end
DEPLOY_100_S=$(awk '$1 == "deploy-100" { printf "%.1f", $3 - $2 }' "$PHASES")
log "deployed $TOTAL applications in $DEPLOY_100_S s ($deploy_failures environment deploys failed)"

served=0
for ((e = 1; e <= ENVS; e++)); do
  for ((a = 1; a <= APPS_PER_ENV; a++)); do
    if http_get "http://127.0.0.1:$PROXY_PORT/" "$(app_host "$(app_name "$a")" "$(env_name "$e")" "$PROJECT")" >/dev/null; then
      served=$((served + 1))
    fi
  done
done

sleep 10
phase_start idle-100
cpu_s0=$(cpu_ticks "$SERVER_PID") cpu_p0=$(cpu_ticks "$PROXY_PID") cpu_t0=$(now)
sleep 10
cpu_s1=$(cpu_ticks "$SERVER_PID") cpu_p1=$(cpu_ticks "$PROXY_PID") cpu_t1=$(now)
phase_end
hz=$(getconf CLK_TCK)
cpu_server=$(calc "100 * ($cpu_s1 - $cpu_s0) / $hz / ($cpu_t1 - $cpu_t0)")
cpu_proxy=$(calc "100 * ($cpu_p1 - $cpu_p0) / $hz / ($cpu_t1 - $cpu_t0)")

# --- one more deploy, with a build, while the 100 serve ------------------------------
FIXTURE=$BENCH_WORK/hello
fixture_repo "$FIXTURE"
"$BERTH" environment create --project "$PROJECT" git >/dev/null
"$BERTH" application create --project "$PROJECT" --environment git web \
  --git "file://$FIXTURE.git" --port 8080 >/dev/null
phase_start deploy-git
git_ok=yes
"$BERTH" deploy --project "$PROJECT" --environment git --wait >"$BENCH_WORK/logs/deploy-git.out" 2>&1 || git_ok=no
phase_end

# --- idle with 100 after a restart ---------------------------------------------------
log "restarting the server"
server_stop
server_start
sleep 10
phase_start idle-100-fresh
sleep 10
phase_end

row() {
  local label=$1 phase=$2 col=$3 goal=${4:-}
  # shellcheck disable=SC2046
  if [ -n "$goal" ]; then
    table_stats_row "$label" "<= 40 MiB" "<=" 40 $(phase_values "$phase" "$col")
  else
    table_stats_row "$label" - - - $(phase_values "$phase" "$col")
  fi
}
table_header "memory: resident set size (MiB; samples every 100 ms; deploy phases: max = peak)"
row "server idle, 0 applications" idle-0 2 goal
row "proxy  idle, 0 applications" idle-0 3
row "server while deploying $TOTAL applications" deploy-100 2
row "proxy  while deploying $TOTAL applications" deploy-100 3
row "server idle, $TOTAL applications" idle-100 2 goal
row "proxy  idle, $TOTAL applications" idle-100 3
row "server deploying 1 git app (build), $TOTAL up" deploy-git 2
row "proxy  deploying 1 git app (build), $TOTAL up" deploy-git 3
row "server idle, $TOTAL apps, after a restart" idle-100-fresh 2 goal
row "proxy  idle, $TOTAL apps, after a restart" idle-100-fresh 3
value_header "memory: context"
value_row "applications deployed (environment deploys failed)" "$TOTAL ($deploy_failures)"
value_row "time to deploy them (s)" "$DEPLOY_100_S"
value_row "applications answering HTTP 200 through the proxy" "$served" "$TOTAL" "==" "$TOTAL"
value_row "git deploy with build succeeded" "$git_ok"
value_row "server CPU idle with $TOTAL apps (% of a core)" "$cpu_server"
value_row "proxy CPU idle with $TOTAL apps (% of a core)" "$cpu_proxy"
host_note
