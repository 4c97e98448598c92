#!/usr/bin/env bash
# The whole test suite: formatting, lints, the layering and size check, the
# dependency policy, docs, unit, integration and benchmark-smoke tests, and
# the deployment files. Installs what is missing: redis-server with apt-get
# (the Redis store's tests start their own server on a free loopback port),
# prometheus with apt-get (promtool checks the alert rules), cargo-deny with
# cargo install.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "test.sh: redis-server not found; installing it with apt-get" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

if ! command -v promtool >/dev/null 2>&1; then
  echo "test.sh: promtool not found; installing prometheus with apt-get" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null
fi

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "test.sh: cargo-deny not found; installing it with cargo install" >&2
  cargo install cargo-deny --locked --quiet
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== layers, file and function sizes, citations (scripts/check-structure.py)"
python3 scripts/check-structure.py
echo "== cargo deny check licenses bans sources"
cargo deny --locked check --hide-inclusion-graph licenses bans sources
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
echo "== cargo test"
cargo test --all-targets --locked
echo "== deployment files (Dockerfile, compose, Helm chart)"
scripts/validate-deploy.sh target/debug/cachecar
