#!/usr/bin/env bash
#! Installs and starts what Berth needs on a fresh Debian machine: the Docker engine
#! (Debian's docker.io, dockerd started in the background when no daemon answers) and
#! the Debian tools the base images and tests use. Idempotent: safe to run again.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host.sh must run as root (it installs Debian packages and starts dockerd)" >&2
  exit 1
fi

# Packages: the engine, busybox for the offline base image, git (server-side clones and
# test fixtures), and the real servers the tests run on loopback.
packages=(docker.io busybox-static git ca-certificates curl openssh-server openssh-client docker-registry apache2-utils)
if [ "${BERTH_SETUP_TEST_TOOLS:-0}" = "1" ]; then
  packages+=(wrk python3 python3-venv)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The docker.io client lives in /usr/bin; a newer client may shadow it in /usr/local/bin.
DOCKER=/usr/bin/docker
if ! "$DOCKER" version >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/berth-dockerd.log)"
  # setsid: the daemon must outlive this script and the shell that ran it.
  setsid dockerd --host unix:///var/run/docker.sock >/var/log/berth-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    if "$DOCKER" version >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  if ! "$DOCKER" version >/dev/null 2>&1; then
    echo "dockerd did not answer within 60 s; see /var/log/berth-dockerd.log" >&2
    exit 1
  fi
fi
log "Docker engine ready ($("$DOCKER" version --format '{{.Server.Version}}'), API $("$DOCKER" version --format '{{.Server.APIVersion}}'))"

# Test tools from PyPI: moto, a local S3-compatible server that the backup-store tests
# start on loopback. Installed into its own virtual environment; skipped when it is
# already there and imports.
if [ "${BERTH_SETUP_TEST_TOOLS:-0}" = "1" ]; then
  MOTO=/opt/berth-test-tools/moto
  if ! { [ -x "$MOTO/bin/moto_server" ] && "$MOTO/bin/python" -c 'import moto.server, boto3' 2>/dev/null; }; then
    log "installing moto, a local S3-compatible server for the tests, into $MOTO"
    # A half-made environment (an interrupted install) fails the check: start over.
    rm -rf "$MOTO"
    python3 -m venv "$MOTO"
    "$MOTO/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
  fi
  log "moto ready ($("$MOTO/bin/python" -c 'import moto; print(moto.__version__)'))"
fi
