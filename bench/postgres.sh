# shellcheck shell=bash
# Owns the PostgreSQL helpers the benchmarks with databases share (sourced after lib.sh,
# never run): SQL through psql inside a container, readiness, and removing volumes by
# filter. Containers are named by the caller; READY_TIMEOUT (seconds) bounds the waits.

READY_TIMEOUT=${READY_TIMEOUT:-120}
PG_IMAGE=berth/postgres:15

# remove_volumes FILTER: every volume matching the filter.
remove_volumes() {
  local -a names=()
  mapfile -t names < <("$DOCKER" volume ls -q --filter "$1")
  [ "${#names[@]}" -eq 0 ] || "$DOCKER" volume rm -f "${names[@]}" >/dev/null
}

# pg CONTAINER SQL: runs SQL with psql inside the container as its POSTGRES_USER on its
# POSTGRES_DB, over loopback (trusted inside the container), unaligned, tuples only.
pg() {
  "$DOCKER" exec "$1" sh -c \
    'exec psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "$1"' \
    sh "$2"
}

pg_ready() { "$DOCKER" exec "$1" pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

# wait_pg_ready CONTAINER: polls pg_isready every 50 ms until it answers (or dies).
wait_pg_ready() {
  local deadline
  deadline=$(calc "$(now) + $READY_TIMEOUT")
  until pg_ready "$1"; do
    awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }' &&
      { "$DOCKER" logs --tail 20 "$1" >&2 || true; die "$1 did not answer within $READY_TIMEOUT s"; }
    sleep 0.05
  done
}

# The row count and a hash of every row: equal for equal data.
FINGERPRINT_SQL="SELECT count(*) || ' ' || sum(hashtext(id || ':' || body)::bigint) FROM items"
# fill CONTAINER FIRST LAST: the rows FIRST..LAST (the same content in every container).
fill() {
  pg "$1" "INSERT INTO items SELECT i, md5(i::text) || md5((-i)::text) FROM generate_series($2, $3) AS i"
}
settle() { pg "$1" "VACUUM (FREEZE, ANALYZE) items" && pg "$1" "CHECKPOINT"; }

# plain_container NAME VOLUME [USER] [DOCKER RUN OPTIONS...]: a plain PostgreSQL container
# on VOLUME (created here), labelled for cleanup, not published.
plain_container() {
  local user=${3:-bench}
  local -a options=("${@:4}")
  "$DOCKER" volume inspect "$2" >/dev/null 2>&1 ||
    "$DOCKER" volume create --label "$BENCH_LABEL=$BENCH_RUN_ID" "$2" >/dev/null
  "$DOCKER" run -d --label "$BENCH_LABEL=$BENCH_RUN_ID" --name "$1" \
    -e POSTGRES_USER="$user" -e POSTGRES_DB="$user" -e POSTGRES_PASSWORD="bench-$BENCH_RUN_ID" \
    -v "$2:/var/lib/postgresql/data" "${options[@]}" "$PG_IMAGE" >/dev/null
}

remove_plain() {
  "$DOCKER" rm -f "$1" >/dev/null
  "$DOCKER" volume rm "$2" >/dev/null
}
