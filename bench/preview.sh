#!/usr/bin/env bash
#! Owns the preview benchmark: how long a pull request waits for its preview environment,
#! from the webhook to every service served, and how much of that is Berth's own work.
#!
#! Setup (untimed): a monorepo (examples/hello twice, as `web/` and `api/`, in a bare
#! repository, file:// URL), a project with a blueprint environment `staging` following
#! `main` with both applications and a PostgreSQL database holding about BENCH_PREVIEW_MB
#! of rows, deployed; previews enabled on `staging` with data.
#! Then, per run (Berth and the baseline alternate which goes first), each on a branch of
#! its own whose commit changes both applications' greeting (their images rebuild):
#!   berth:    a signed GitHub `pull_request` "opened" delivery is POSTed to
#!             /api/v1/webhooks/github; timed until both `web.pr-N...` and `api.pr-N...`
#!             serve the new greeting through the proxy. Berth clones the blueprint (new
#!             credentials, the database's rows copied), builds, starts, health-checks
#!             and routes. The preview's rows are checked afterwards, then a "closed"
#!             delivery deletes it (untimed, waited for).
#!   baseline: the same by hand: `git clone --depth 1 -b BRANCH`, `docker build` of both
#!             applications, a network, a new PostgreSQL container until it answers,
#!             `pg_dump | psql` from the blueprint's database, both applications run with
#!             ports on 127.0.0.1, polled until both serve the new greeting.
#! From the preview's deployment record: the wall-clock time covered by its build, start
#! and health steps (the union of their intervals, applications run in parallel); the
#! rest of the webhook-to-served time is platform overhead (receiving the webhook,
#! cloning the configuration and the data, cloning the repository, routing).
#!
#! Prints min/median/max of both, the ratio of the medians, the build/start/health time,
#! the overhead and its share, and the preview deployment's step durations.
#! Settings: BENCH_RUNS (3), BENCH_PREVIEW_MB (50).
# shellcheck disable=SC2016 # $POSTGRES_* in single quotes: the container's shell expands them
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/postgres.sh"

RUNS=${BENCH_RUNS:-3}
TARGET_MB=${BENCH_PREVIEW_MB:-50}
PROJECT=pv BLUEPRINT=staging DATABASE=main
APPS=(web api)
CHUNK_ROWS=100000
SERVED_TIMEOUT=300

bench_init preview --without-wrk
"$DOCKER" image inspect "$PG_IMAGE" >/dev/null 2>&1 ||
  die "$PG_IMAGE is missing: run scripts/build-base-images.sh --with-databases"

bench_on_cleanup() {
  local project
  docker_remove container "label=$BENCH_LABEL=$BENCH_RUN_ID"
  docker_remove network "label=$BENCH_LABEL=$BENCH_RUN_ID"
  remove_volumes "label=$BENCH_LABEL=$BENCH_RUN_ID"
  for project in "${BENCH_PROJECT_IDS[@]}"; do remove_volumes "label=berth.project=$project"; done
}

# --- the monorepo ------------------------------------------------------------------------

REPO=$BENCH_WORK/shop
REPO_URL=file://$REPO.git
git init -q -b main "$REPO"
for app in "${APPS[@]}"; do
  mkdir -p "$REPO/$app"
  cp -R "$REPO_ROOT/examples/hello/." "$REPO/$app/"
done
fixture_commit "$REPO" "fixture: two applications"
git clone -q --bare "$REPO" "$REPO.git"
git -C "$REPO" remote add origin "$REPO.git"

# branch_with_greetings BRANCH TEXT: a branch off main whose commit sets each
# application's greeting to "APP TEXT"; prints the commit.
branch_with_greetings() {
  local app
  git -C "$REPO" checkout -q -B "$1" main
  for app in "${APPS[@]}"; do
    sed -i -E "s/GREETING=\"[^\"]*\"/GREETING=\"$app $2\"/" "$REPO/$app/Dockerfile"
  done
  git -C "$REPO" add -A
  git -C "$REPO" -c user.name=bench -c user.email=bench@localhost commit -q -m "greetings: $2"
  git -C "$REPO" push -q origin "$1"
  git -C "$REPO" rev-parse HEAD
  git -C "$REPO" checkout -q main
}

# --- the blueprint -----------------------------------------------------------------------

server_setup
server_start
project_create "$PROJECT"
"$BERTH" environment create --project "$PROJECT" "$BLUEPRINT" --branch main >/dev/null
"$BERTH" database create --project "$PROJECT" --environment "$BLUEPRINT" "$DATABASE" \
  --engine postgresql --storage 2 >/dev/null
for app in "${APPS[@]}"; do
  "$BERTH" application create --project "$PROJECT" --environment "$BLUEPRINT" "$app" \
    --git "$REPO_URL" --root-path "$app" --port 8080 >/dev/null
  "$BERTH" env-var alias --project "$PROJECT" --environment "$BLUEPRINT" --application "$app" \
    DATABASE_URL=BERTH_DATABASE_MAIN_URL >/dev/null
done
"$BERTH" deploy --project "$PROJECT" --environment "$BLUEPRINT" --wait \
  >"$BENCH_WORK/logs/deploy.out" 2>&1 || { cat "$BENCH_WORK/logs/deploy.out" >&2; die "the blueprint's deploy failed"; }

SRC=berth-$PROJECT-$BLUEPRINT-$DATABASE-db
"$DOCKER" container inspect "$SRC" >/dev/null || die "Berth's database container $SRC is missing"
log "filling $SRC to about $TARGET_MB MB"
pg "$SRC" "CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL)"
rows=0
while :; do
  fill "$SRC" $((rows + 1)) $((rows + CHUNK_ROWS))
  rows=$((rows + CHUNK_ROWS))
  size=$(pg "$SRC" "SELECT pg_database_size(current_database())")
  ((size < TARGET_MB * 1024 * 1024)) || break
done
settle "$SRC"
SOURCE_FINGERPRINT=$(pg "$SRC" "$FINGERPRINT_SQL")
SOURCE_MB=$(calc "$(pg "$SRC" "SELECT pg_database_size(current_database())") / 1048576")
log "blueprint database: $rows rows, $SOURCE_MB MiB"

"$BERTH" environment preview enable --project "$PROJECT" "$BLUEPRINT" --with-data \
  --max-previews 10 >/dev/null
SECRET=$("$BERTH" webhook show --project "$PROJECT" --output json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
WEBHOOK_URL="$BERTH_URL/api/v1/webhooks/github?project=$PROJECT"

# --- pull requests -----------------------------------------------------------------------

# pull_request ACTION NUMBER BRANCH COMMIT: a signed GitHub-shaped delivery; fails unless
# Berth accepts it.
pull_request() {
  local body signature
  body=$(python3 -c '
import json, sys
action, number, branch, commit, url = sys.argv[1:]
repo = {"full_name": "bench/shop", "clone_url": url, "html_url": url}
print(json.dumps({
    "action": action, "number": int(number),
    "pull_request": {"number": int(number),
        "head": {"ref": branch, "sha": commit, "repo": repo},
        "base": {"ref": "main", "sha": commit, "repo": repo}},
    "repository": repo}))' "$@" "$REPO_URL")
  signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" | awk '{ print $NF }')
  curl -fsS -m 10 -H 'Content-Type: application/json' -H 'X-GitHub-Event: pull_request' \
    -H "X-GitHub-Delivery: bench-$1-$2" -H "X-Hub-Signature-256: sha256=$signature" \
    --data-binary "$body" "$WEBHOOK_URL" >>"$BENCH_WORK/logs/deliveries.out" ||
    die "the $1 delivery for pull request $2 was refused"
  echo >>"$BENCH_WORK/logs/deliveries.out"
}

environment_exists() {
  "$BERTH" environment list --project "$PROJECT" --output json |
    python3 -c 'import json,sys
d = json.load(sys.stdin); d = d.get("items", d) if isinstance(d, dict) else d
sys.exit(0 if any(e["name"] == sys.argv[1] for e in d) else 1)' "$1"
}

# build_start_health_seconds DEPLOYMENT: the union of the intervals of its build, start
# and health steps, in seconds.
build_start_health_seconds() {
  "$BERTH" deployment show "$1" --output json | python3 -c '
import json, sys
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
spans = sorted((t(s["started_at"]), t(s["finished_at"])) for s in json.load(sys.stdin)["steps"]
               if s["name"] in ("build", "start", "health") and s.get("finished_at"))
total, end = 0.0, None
for a, b in spans:
    if end is None or a > end:
        total += b - a; end = b
    elif b > end:
        total += b - end; end = b
print("%.3f" % total)'
}

berth_times=() baseline_times=() inside=() overhead=() share=()
STEPS=$BENCH_WORK/logs/steps.txt
: >"$STEPS"

# berth_run K
berth_run() {
  local number=$1 env="pr-$1" branch="feature/berth-$1" commit t0 t1 app deployment busy i
  commit=$(branch_with_greetings "$branch" "berth $1")
  t0=$(now)
  pull_request opened "$number" "$branch" "$commit"
  for app in "${APPS[@]}"; do
    wait_for_body "http://127.0.0.1:$PROXY_PORT/" "$(app_host "$app" "$env" "$PROJECT")" \
      "$app berth $1" "$SERVED_TIMEOUT" || die "the preview $env did not serve $app within $SERVED_TIMEOUT s"
  done
  t1=$(now)
  berth_times+=("$(since "$t0" "$t1")")
  deployment=$(latest_deployment "$PROJECT" "$env")
  busy=$(build_start_health_seconds "$deployment")
  inside+=("$busy")
  overhead+=("$(calc "${berth_times[-1]} - $busy")")
  share+=("$(calc "100 * (${berth_times[-1]} - $busy) / ${berth_times[-1]}")")
  step_durations "$deployment" >>"$STEPS"
  [ "$(pg "berth-$PROJECT-$env-$DATABASE-db" "$FINGERPRINT_SQL")" = "$SOURCE_FINGERPRINT" ] ||
    die "the preview $env does not hold the blueprint's rows"
  log "berth run $1: ${berth_times[-1]} s (build/start/health $busy s)"
  pull_request closed "$number" "$branch" "$commit"
  for ((i = 0; i < 1200; i++)); do environment_exists "$env" || return 0; sleep 0.1; done
  die "the preview $env was not deleted within 120 s of the closed delivery"
}

# baseline_run K
baseline_run() {
  local branch="feature/baseline-$1" tag="b$1-$BENCH_RUN_ID" checkout="$BENCH_WORK/baseline-$1"
  local network="berth-bench-pv-$1-$BENCH_RUN_ID" db="berth-bench-pv-db-$1-$BENCH_RUN_ID"
  local t0 t1 app port
  local -A ports=()
  branch_with_greetings "$branch" "baseline $1" >/dev/null
  t0=$(now)
  git clone -q --depth 1 -b "$branch" "$REPO_URL" "$checkout"
  for app in "${APPS[@]}"; do
    "$DOCKER" build -q --label "$BENCH_LABEL=$BENCH_RUN_ID" -t "berth-bench-pv-$app:$tag" \
      "$checkout/$app" >/dev/null
  done
  "$DOCKER" network create --label "$BENCH_LABEL=$BENCH_RUN_ID" "$network" >/dev/null
  plain_container "$db" "$db" bench --network "$network" --network-alias db
  wait_pg_ready "$db"
  "$DOCKER" exec "$SRC" sh -c 'exec pg_dump --no-owner --no-privileges -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"' |
    "$DOCKER" exec -i "$db" sh -c \
      'exec psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"' >/dev/null
  for app in "${APPS[@]}"; do
    "$DOCKER" run -d --label "$BENCH_LABEL=$BENCH_RUN_ID" --network "$network" \
      -p 127.0.0.1::8080 -e "DATABASE_URL=postgres://bench:bench-$BENCH_RUN_ID@db:5432/bench" \
      --name "berth-bench-pv-$app-$1-$BENCH_RUN_ID" "berth-bench-pv-$app:$tag" >/dev/null
    port=$("$DOCKER" port "berth-bench-pv-$app-$1-$BENCH_RUN_ID" 8080/tcp | head -n 1)
    ports[$app]=${port##*:}
  done
  for app in "${APPS[@]}"; do
    wait_for_body "http://127.0.0.1:${ports[$app]}/" "" "$app baseline $1" "$SERVED_TIMEOUT" ||
      die "the baseline's $app did not serve within $SERVED_TIMEOUT s"
  done
  t1=$(now)
  baseline_times+=("$(since "$t0" "$t1")")
  log "baseline run $1: ${baseline_times[-1]} s"
  [ "$(pg "$db" "$FINGERPRINT_SQL")" = "$SOURCE_FINGERPRINT" ] || die "the baseline's copy differs"
  docker_remove container "name=berth-bench-pv-.*-$1-$BENCH_RUN_ID"
  "$DOCKER" volume rm "$db" >/dev/null
  "$DOCKER" network rm "$network" >/dev/null
  rm -rf "$checkout"
}

log "warm-up (untimed): one preview and one baseline"
berth_run 100
baseline_run 100
berth_times=() baseline_times=() inside=() overhead=() share=()
: >"$STEPS"
for ((k = 1; k <= RUNS; k++)); do
  if ((k % 2)); then berth_run "$k"; baseline_run "$k"; else baseline_run "$k"; berth_run "$k"; fi
done

read -r _ berth_med _ < <(stats "${berth_times[@]}")
read -r _ baseline_med _ < <(stats "${baseline_times[@]}")
table_header "preview: 2 applications + PostgreSQL $SOURCE_MB MiB, $RUNS runs (seconds)"
table_stats_row "berth: webhook until every service served" - - - "${berth_times[@]}"
table_stats_row "baseline: the same by hand (git, docker, psql)" - - - "${baseline_times[@]}"
table_row "ratio berth/baseline (medians)" - "$(calc "$berth_med / $baseline_med")" - - -
table_stats_row "  berth: build/start/health (wall clock)" - - - "${inside[@]}"
table_stats_row "  berth: platform overhead (the rest)" - - - "${overhead[@]}"
table_stats_row "  berth: platform overhead share (%)" - - - "${share[@]}"
step_table "$STEPS"
host_note
