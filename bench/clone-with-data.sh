#!/usr/bin/env bash
#! Owns the clone-with-data benchmark: a consistent copy of a PostgreSQL database holding
#! about 200 MB into a new, running database, by each method, against the raw baseline
#! measured in the same run.
#!
#! Setup (untimed): a Berth environment holding only a PostgreSQL 15 database is deployed
#! and filled with `INSERT ... SELECT generate_series` rows of md5 text until
#! pg_database_size reaches BENCH_CLONE_MB; a plain PostgreSQL container started by this
#! script (berth/postgres:15, its own volume, not Berth's) gets the same rows. Both are
#! vacuumed (freeze) and checkpointed so every method reads the same settled data.
#! Then, per run (the order of the four rotates from run to run), timed:
#!   a  berth clone --method dump: `berth database clone` (POST .../databases/main/clone):
#!      Berth starts the new database, waits until it answers, and streams the source's
#!      pg_dump (custom format, uncompressed) into the new database's pg_restore. Ends when
#!      the command returns.
#!   d  berth clone --method physical: Berth streams `pg_basebackup -F tar -X fetch` from
#!      inside the source's container (online: the source keeps serving) into a one-off
#!      container that extracts it into the new volume, starts the new database on it
#!      (it replays the WAL of the copy) and renames and re-passwords the copied role (new
#!      credentials). Ends when the command returns.
#!   b  volume copy, measured by the script itself: `docker stop` of the source (Berth's
#!      container), a new volume, `docker run --rm -v SRC:/from -v DST:/to berth/busybox:1
#!      cp -a /from/. /to/`, `docker start` of the source, a PostgreSQL container on the
#!      copy, until pg_isready answers on it. The source's downtime (stop until it answers
#!      again) is printed too. The copy keeps the source's credentials (new ones would
#!      need one more step).
#!   c  raw baseline: a new plain container (own volume) started until pg_isready answers,
#!      then `docker exec SRC pg_dump | docker exec -i DST psql` from the plain source.
#!      The dump|psql stream alone is printed as well.
#! Every copy is checked (row count and a hash of every row equal the source's), untimed,
#! then removed. One untimed round comes first: a `berth database clone` without
#! --method (its answer says which method Berth uses by default), b and c (warm-up).
#!
#! Prints min/median/max of each, the ratios of the medians a/c, d/c and b/c; the goal,
#! <= 1.2, applies to the method Berth uses by default (printed; physical for PostgreSQL).
#! Settings: BENCH_RUNS (3), BENCH_CLONE_MB (200), BENCH_CLONE_WARMUP (1).
# shellcheck disable=SC2016 # $POSTGRES_* in single quotes: the container's shell expands them
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/postgres.sh"

RUNS=${BENCH_RUNS:-3}
TARGET_MB=${BENCH_CLONE_MB:-200}
WARMUP=${BENCH_CLONE_WARMUP:-1}
PROJECT=cw ENVIRONMENT=prod DATABASE=main
# Rows per INSERT while filling (about 24 MB each).
CHUNK_ROWS=200000

bench_init clone-with-data --without-wrk
"$DOCKER" image inspect "$PG_IMAGE" >/dev/null 2>&1 ||
  die "$PG_IMAGE is missing: run scripts/build-base-images.sh --with-databases"

# The plain containers and volumes of this benchmark (label berth-bench.run), containers
# first: a volume in use cannot be removed. Then what Berth left of the project (deleting
# the project through Berth removes its volumes; this is the safety net).
bench_on_cleanup() {
  local project
  docker_remove container "label=$BENCH_LABEL=$BENCH_RUN_ID"
  remove_volumes "label=$BENCH_LABEL=$BENCH_RUN_ID"
  for project in "${BENCH_PROJECT_IDS[@]}"; do remove_volumes "label=berth.project=$project"; done
}

# --- setup -----------------------------------------------------------------------------------

server_setup
server_start
project_create "$PROJECT"
"$BERTH" environment create --project "$PROJECT" "$ENVIRONMENT" >/dev/null
"$BERTH" database create --project "$PROJECT" --environment "$ENVIRONMENT" "$DATABASE" \
  --engine postgresql --storage 2 >/dev/null
"$BERTH" deploy --project "$PROJECT" --environment "$ENVIRONMENT" --wait \
  >"$BENCH_WORK/logs/deploy.out" 2>&1 || { cat "$BENCH_WORK/logs/deploy.out" >&2; die "the deploy failed"; }
db_field() {
  "$BERTH" database show --project "$PROJECT" --environment "$ENVIRONMENT" "$DATABASE" --output json |
    python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}
SRC=berth-$PROJECT-$ENVIRONMENT-$DATABASE-db
SRC_VOLUME=berth-db-$(db_field id)
SRC_USER=$(db_field user)
"$DOCKER" container inspect "$SRC" >/dev/null || die "Berth's database container $SRC is missing"

PLAIN_SRC=berth-bench-cw-src-$BENCH_RUN_ID
plain_container "$PLAIN_SRC" "$PLAIN_SRC"
wait_pg_ready "$PLAIN_SRC"

log "filling $SRC (Berth's) and $PLAIN_SRC (plain) to about $TARGET_MB MB"
for c in "$SRC" "$PLAIN_SRC"; do
  pg "$c" "CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL)"
done
rows=0
while :; do
  fill "$SRC" $((rows + 1)) $((rows + CHUNK_ROWS))
  rows=$((rows + CHUNK_ROWS))
  size=$(pg "$SRC" "SELECT pg_database_size(current_database())")
  ((size < TARGET_MB * 1024 * 1024)) || break
done
for ((first = 1; first <= rows; first += CHUNK_ROWS)); do
  fill "$PLAIN_SRC" "$first" $((first + CHUNK_ROWS - 1))
done
settle "$SRC"
settle "$PLAIN_SRC"
SOURCE_FINGERPRINT=$(pg "$SRC" "$FINGERPRINT_SQL")
[ "$(pg "$PLAIN_SRC" "$FINGERPRINT_SQL")" = "$SOURCE_FINGERPRINT" ] ||
  die "the plain source does not hold the same rows as Berth's"
SOURCE_MB=$(calc "$(pg "$SRC" "SELECT pg_database_size(current_database())") / 1048576")
PLAIN_DUMP_MB=$(calc "$("$DOCKER" exec "$PLAIN_SRC" sh -c \
  'exec pg_dump -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"' | wc -c) / 1048576")
log "source: $rows rows, $SOURCE_MB MiB (pg_database_size); plain dump $PLAIN_DUMP_MB MiB"

# check_copy CONTAINER WHAT: the copy holds exactly the source's rows.
check_copy() {
  local seen
  seen=$(pg "$1" "$FINGERPRINT_SQL")
  [ "$seen" = "$SOURCE_FINGERPRINT" ] || die "$2: the copy holds \"$seen\", the source \"$SOURCE_FINGERPRINT\""
}

# --- the three methods -----------------------------------------------------------------------

a_times=() b_times=() b_downtime=() c_times=() c_stream=() a_bytes=() d_times=() d_bytes=()

# berth_clone NAME [METHOD]: `berth database clone` into NAME (by METHOD, else Berth's
# default), checked, then deleted. Sets CLONE_SECONDS, CLONE_MIB (streamed) and
# CLONE_METHOD (as the answer reports it).
berth_clone() {
  local name=$1 out="$BENCH_WORK/logs/berth-clone-$1.out" answer="$BENCH_WORK/logs/berth-clone-$1.json" t0 t1
  local -a method=()
  [ -z "${2:-}" ] || method=(--method "$2")
  t0=$(now)
  "$BERTH" database clone --project "$PROJECT" --environment "$ENVIRONMENT" "$DATABASE" "$name" \
    "${method[@]}" --output json >"$answer" 2>"$out" ||
    { cat "$out" "$answer" >&2; die "berth database clone failed"; }
  t1=$(now)
  CLONE_SECONDS=$(since "$t0" "$t1")
  check_copy "berth-$PROJECT-$ENVIRONMENT-$name-db" "berth clone $name"
  read -r CLONE_METHOD CLONE_MIB < <(python3 -c \
    "import json,sys; a=json.load(open(sys.argv[1])); print(a['clone_method'], a['copied_bytes'] / 1048576)" "$answer")
  "$BERTH" database delete --project "$PROJECT" --environment "$ENVIRONMENT" "$name" --yes \
    >>"$out" 2>&1 || { cat "$out" >&2; die "deleting the clone $name failed"; }
}

# a K [timed]
method_a() {
  berth_clone "copy-a-$1" dump
  [ "${2:-}" = timed ] || return 0
  a_times+=("$CLONE_SECONDS")
  a_bytes+=("$(calc "$CLONE_MIB")")
  log "a (berth clone --method dump) run $1: ${a_times[-1]} s"
}

# d K [timed]
method_d() {
  berth_clone "copy-d-$1" physical
  [ "${2:-}" = timed ] || return 0
  d_times+=("$CLONE_SECONDS")
  d_bytes+=("$(calc "$CLONE_MIB")")
  log "d (berth clone --method physical) run $1: ${d_times[-1]} s"
}

# b K [timed]
method_b() {
  local copy="berth-bench-cw-volcopy-$1-$BENCH_RUN_ID" t0 t1 t_up
  t0=$(now)
  "$DOCKER" stop --time 60 "$SRC" >/dev/null
  "$DOCKER" volume create --label "$BENCH_LABEL=$BENCH_RUN_ID" "$copy" >/dev/null
  "$DOCKER" run --rm --label "$BENCH_LABEL=$BENCH_RUN_ID" -v "$SRC_VOLUME:/from:ro" -v "$copy:/to" \
    berth/busybox:1 cp -a /from/. /to/
  "$DOCKER" start "$SRC" >/dev/null
  plain_container "$copy" "$copy" "$SRC_USER"
  wait_pg_ready "$copy"
  t1=$(now)
  wait_pg_ready "$SRC"
  t_up=$(now)
  check_copy "$copy" "volume copy $1"
  remove_plain "$copy" "$copy"
  [ "${2:-}" = timed ] || return 0
  b_times+=("$(since "$t0" "$t1")")
  b_downtime+=("$(since "$t0" "$t_up")")
  log "b (volume copy) run $1: ${b_times[-1]} s (source down ${b_downtime[-1]} s)"
}

# c K [timed]
method_c() {
  local copy="berth-bench-cw-plain-$1-$BENCH_RUN_ID" t0 t_ready t1
  t0=$(now)
  plain_container "$copy" "$copy"
  wait_pg_ready "$copy"
  t_ready=$(now)
  "$DOCKER" exec "$PLAIN_SRC" sh -c 'exec pg_dump -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"' |
    "$DOCKER" exec -i "$copy" sh -c \
      'exec psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"' >/dev/null
  t1=$(now)
  check_copy "$copy" "pg_dump | psql $1"
  remove_plain "$copy" "$copy"
  [ "${2:-}" = timed ] || return 0
  c_times+=("$(since "$t0" "$t1")")
  c_stream+=("$(since "$t_ready" "$t1")")
  log "c (pg_dump | psql) run $1: ${c_times[-1]} s (stream ${c_stream[-1]} s)"
}

# Untimed: which method Berth uses when none is asked for (and a warm-up of it).
berth_clone copy-default
DEFAULT_METHOD=$CLONE_METHOD
log "berth database clone without --method used the $DEFAULT_METHOD method"
if [ "$WARMUP" = 1 ]; then
  log "warm-up (untimed): one run of each other method"
  method_a 0
  method_b 0
  method_c 0
fi
methods=(method_a method_b method_c method_d)
for ((k = 1; k <= RUNS; k++)); do
  for ((m = 0; m < 4; m++)); do
    "${methods[$(((k - 1 + m) % 4))]}" "$k" timed
  done
done

read -r _ a_med _ < <(stats "${a_times[@]}")
read -r _ b_med _ < <(stats "${b_times[@]}")
read -r _ c_med _ < <(stats "${c_times[@]}")
read -r _ d_med _ < <(stats "${d_times[@]}")
ratio_a=$(calc "$a_med / $c_med")
ratio_b=$(calc "$b_med / $c_med")
ratio_d=$(calc "$d_med / $c_med")
# The goal applies to the method Berth uses by default.
goal_a="-" verdict_a="-" goal_d="-" verdict_d="-"
case "$DEFAULT_METHOD" in
  dump) goal_a="<= 1.2" verdict_a=$(verdict "$ratio_a" "<=" 1.2) ;;
  physical) goal_d="<= 1.2" verdict_d=$(verdict "$ratio_d" "<=" 1.2) ;;
  *) die "berth reported an unknown clone method: $DEFAULT_METHOD" ;;
esac

table_header "clone-with-data: PostgreSQL 15, $SOURCE_MB MiB ($rows rows), $RUNS runs (seconds)"
table_stats_row "a berth clone --method dump (dump|restore)" - - - "${a_times[@]}"
table_stats_row "d berth clone --method physical (basebackup)" - - - "${d_times[@]}"
table_stats_row "b volume copy (stop, cp -a, start, ready)" - - - "${b_times[@]}"
table_stats_row "  b: source unavailable (stop until ready)" - - - "${b_downtime[@]}"
table_stats_row "c baseline (new container + pg_dump|psql)" - - - "${c_times[@]}"
table_stats_row "  c: pg_dump|psql stream only" - - - "${c_stream[@]}"
table_row "berth's default method: $DEFAULT_METHOD" - - - - -
table_row "ratio a/c (dump, medians)" - "$ratio_a" - "$goal_a" "$verdict_a"
table_row "ratio d/c (physical, medians)" - "$ratio_d" - "$goal_d" "$verdict_d"
table_row "ratio b/c (volume copy, medians)" - "$ratio_b" - "-" -
table_stats_row "  a: custom-format dump streamed (MiB)" - - - "${a_bytes[@]}"
table_stats_row "  d: base backup tar streamed (MiB)" - - - "${d_bytes[@]}"
table_row "  c: plain dump (MiB)" - "$PLAIN_DUMP_MB" - - -
host_note
