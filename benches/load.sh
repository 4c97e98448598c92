#!/usr/bin/env bash
# cachecar vs nginx proxy_cache (and hyper alone, examples/bare_hyper.rs,
# as the reference for any hyper-based server), hit / miss / pass-through,
# side by side:
#   benches/load.sh                 # 3 rounds of 5 s per cell
#   ROUNDS=5 DURATION=10s benches/load.sh
#   STORES=memory PATHS="hit pass" CONNS=16 FILL=0 REFERENCES=0 GROW=0s benches/load.sh
# Installs wrk and nginx with apt-get if missing, builds the release binary
# and the example, pins targets to core 0 and wrk/origin/Redis to core 1.
# See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked --quiet --bin cachecar --example bare_hyper
exec python3 benches/load/run.py
