#!/usr/bin/env bash
#! The quick start: on a fresh Debian machine (as root) installs what is missing (Docker
#! engine, base images), builds Berth, starts `berth server` in the background (PID file
#! and log in the data dir), deploys the bundled example application from this repository
#! and curls its URL. Running it again reuses the running server and redeploys.
#!
#! Environment: BERTH_DATA_DIR, BERTH_LISTEN, BERTH_PROXY_LISTEN (server settings, see
#! `berth server --help`), BERTH_CARGO_PROFILE (release by default; the test suite passes
#! `dev` to reuse its build).
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"
log() { printf '==> %s\n' "$*" >&2; }

./scripts/setup-host.sh
./scripts/build-base-images.sh

profile=${BERTH_CARGO_PROFILE:-release}
log "building berth ($profile profile)"
cargo build --locked --profile "$profile" -p berth
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
case "$profile" in dev) profile_dir=debug ;; *) profile_dir=$profile ;; esac
berth="$target_dir/$profile_dir/berth"

export BERTH_DATA_DIR=${BERTH_DATA_DIR:-/var/lib/berth}
export BERTH_LISTEN=${BERTH_LISTEN:-127.0.0.1:8080}
export BERTH_PROXY_LISTEN=${BERTH_PROXY_LISTEN:-127.0.0.1:8000}
export BERTH_URL="http://$BERTH_LISTEN"
mkdir -p "$BERTH_DATA_DIR"

server_answers() { curl -fsS -m 2 "$BERTH_URL/api/v1/health" >/dev/null 2>&1; }
if server_answers; then
  log "a Berth server already answers on $BERTH_URL"
else
  log "starting berth server (log: $BERTH_DATA_DIR/server.log)"
  # The example is deployed from this checkout, a local repository: allow local paths.
  setsid "$berth" server --allow-local-repositories >>"$BERTH_DATA_DIR/server.log" 2>&1 </dev/null &
  for _ in $(seq 1 100); do server_answers && break; sleep 0.2; done
  server_answers || { tail -n 30 "$BERTH_DATA_DIR/server.log" >&2; echo "berth server did not start" >&2; exit 1; }
fi
export BERTH_TOKEN
BERTH_TOKEN=$(cat "$BERTH_DATA_DIR/admin.token")

# Deploy exactly the checked-out commit: push it to a bare repository in the data dir, so
# a detached HEAD or a differently named branch works too and the checkout is untouched.
source_repo="$BERTH_DATA_DIR/quickstart-source.git"
[ -d "$source_repo" ] || git init --quiet --bare "$source_repo"
git push --quiet --force "$source_repo" HEAD:refs/heads/main

project=example environment=production application=hello
# The example's spec file creates (or, run again, leaves unchanged) the project, its
# environment and the application; ${BERTH_DATA_DIR} in it points at the bare repository.
"$berth" apply -f examples/hello/berth.toml
"$berth" deploy --project "$project" --environment "$environment" --wait

url=$("$berth" application show --project "$project" --environment "$environment" "$application" --output json \
  | sed -n 's/.*"url": *"\([^"]*\)".*/\1/p' | head -n 1)
log "curl $url"
curl -fsS -m 10 "$url"
echo
echo "The example is deployed at $url"
echo "Stop Berth with: scripts/stop.sh (applications keep their containers until deleted)"
