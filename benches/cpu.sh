#!/usr/bin/env bash
# CPU per request of each target on the hit and miss paths, one target at a
# time on core 0: what bounds a path (docs/benchmarks.md, "What bounds each
# path"):
#   benches/cpu.sh
#   TARGETS="memory redis" PATHS=miss CONNS=16 DURATION=10s benches/cpu.sh
# Installs wrk, nginx with the srcache modules, Varnish and redis-server
# with apt-get if missing (as benches/load.sh) and builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/need.sh
need wrk:wrk nginx:nginx-light redis-server:redis-server varnishd:varnish
need_srcache
cargo build --release --locked --quiet --bin cachecar
exec python3 benches/load/cpu.py
