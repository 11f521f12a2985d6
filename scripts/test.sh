#!/usr/bin/env bash
#! The whole test suite, from a fresh Debian machine (as root): installs and starts what
#! the tests need (Docker engine, base images, Git/SSH/registry servers' packages), then
#! runs `cargo fmt --check`, clippy with `-D warnings`, and every test with the test
#! runner's summary. `.ci/run` runs exactly this.
set -euo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"
log() { printf '==> %s\n' "$*" >&2; }

BERTH_SETUP_TEST_TOOLS=1 ./scripts/setup-host.sh
./scripts/build-base-images.sh --with-databases
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi
