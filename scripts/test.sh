#!/usr/bin/env bash
# The whole test suite: formatting, lints, docs, unit, integration and
# benchmark-smoke tests. Installs redis-server with apt-get if it is missing
# (the Redis store's tests start their own server on a free loopback port).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "test.sh: redis-server not found; installing it with apt-get" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
echo "== cargo test"
cargo test --all-targets --locked
echo "== deployment files (Dockerfile, compose, Helm chart)"
scripts/validate-deploy.sh target/debug/cachecar
