#!/usr/bin/env bash
#! Owns the benchmark entry point: builds the release binary (unless BENCH_NO_BUILD=1),
#! checks the prerequisites, then runs the named benchmarks (all when none is named), one
#! after the other, each with its own Berth server, data directory and loopback ports. Each
#! prints its table; a summary of the PASS/MISS lines and of any benchmark that failed to
#! run comes last. Exit status: 0 when every benchmark ran (MISS lines do not change it),
#! 1 when one could not run.
#!
#!   bench/run.sh                       all: zero-downtime deploy-overhead redeploy-unchanged memory
#!                                      clone-with-data preview
#!   bench/run.sh deploy-overhead       one
#!   BENCH_RUNS=9 bench/run.sh deploy-overhead redeploy-unchanged
#!
#! Not part of CI: the benchmarks take minutes, load the machine and need the Docker
#! engine, wrk and berth/busybox:1 (scripts/setup-host.sh, scripts/build-base-images.sh);
#! clone-with-data and preview need berth/postgres:15 (build-base-images.sh --with-databases).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
ALL=(zero-downtime deploy-overhead redeploy-unchanged memory clone-with-data preview)

usage() {
  sed -n 's/^#! \{0,1\}//p' "$0"
  echo
  echo "Benchmarks: ${ALL[*]} (see bench/README.md)"
}

names=()
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    zero-downtime | deploy-overhead | redeploy-unchanged | memory | clone-with-data | preview) names+=("$arg") ;;
    *) usage >&2; echo "run.sh: unknown benchmark: $arg" >&2; exit 2 ;;
  esac
done
[ "${#names[@]}" -gt 0 ] || names=("${ALL[@]}")

if [ "${BENCH_NO_BUILD:-0}" != 1 ] && [ -z "${BENCH_BERTH:-}" ]; then
  echo "==> cargo build --release -p berth" >&2
  (cd "$REPO_ROOT" && cargo build --release -p berth)
fi

export BENCH_RUN_ID=${BENCH_RUN_ID:-$(date +%Y%m%d%H%M%S)-$$}
results=$(mktemp "${TMPDIR:-/tmp}/berth-bench-results.XXXXXX")
trap 'rm -f "$results"' EXIT
failed=()
for name in "${names[@]}"; do
  echo
  echo "######## $name ########"
  if "$BENCH_DIR/$name.sh" | tee -a "$results"; then :; else failed+=("$name"); fi
done

echo
echo "######## summary ########"
grep -E ' (PASS|MISS)$' "$results" || true
if [ "${#failed[@]}" -gt 0 ]; then
  echo "benchmarks that did not complete: ${failed[*]}"
  exit 1
fi
