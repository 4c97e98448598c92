#!/usr/bin/env bash
# Resident memory under a flood of unique URLs with mixed body sizes:
#   benches/memory.sh
#   CONNS="16 64 256 1000" MAX_MIB=64 DURATION=30s benches/memory.sh
# Installs wrk and nginx (the origin) with apt-get if missing; builds the
# release binary unless CACHECAR_BIN names one. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/need.sh
need wrk:wrk nginx:nginx-light
[ -n "${CACHECAR_BIN:-}" ] || cargo build --release --locked --quiet --bin cachecar
exec python3 benches/load/memory.py
