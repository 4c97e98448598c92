#!/usr/bin/env bash
# Resident memory under a flood of unique URLs with mixed body sizes:
#   benches/memory.sh
#   CONNS="16 64 256 1000" MAX_MIB=64 DURATION=30s benches/memory.sh
# Installs wrk and nginx (the origin) with apt-get if missing; builds the
# release binary unless CACHECAR_BIN names one. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -n "${CACHECAR_BIN:-}" ] || cargo build --release --locked --quiet --bin cachecar
exec python3 benches/load/memory.py
