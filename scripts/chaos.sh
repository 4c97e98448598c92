#!/usr/bin/env bash
# A chaos run: two cachecar replicas on one Redis under a mixed workload,
# with Redis frozen, restarted, out of memory and loading, a replica
# restarted during an outage, SIGTERM and reload under load. Prints, per
# scenario, requests, non-2xx, refused and failed connections, stale reads
# and p99 (docs/redis.md, "Consistency"). About three minutes.
#   scripts/chaos.sh
#   STORE=redis WORKERS=64 SCENARIOS="baseline,redis frozen" scripts/chaos.sh
# Installs redis-server with apt-get if missing; builds in release.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
cargo build --release --locked --quiet --bin cachecar --example chaos
exec target/release/examples/chaos target/release/cachecar
