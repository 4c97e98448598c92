#!/usr/bin/env bash
# cachecar beside nginx proxy_cache (access log off and on), Varnish and
# nginx + srcache + Redis (and hyper alone, examples/bare_hyper.rs, as the
# reference for any hyper-based server), hit / miss / pass-through, side by
# side, with the ratios the project aims for:
#   benches/load.sh                 # 3 rounds of 5 s per cell
#   ROUNDS=5 DURATION=10s benches/load.sh
#   STORES=memory PATHS="hit pass" CONNS=16 FILL=0 REFERENCES=0 GROW=0s benches/load.sh
# Installs wrk, nginx, its srcache and Lua modules, Varnish and
# redis-server with apt-get if missing, builds the release binary and the
# example, pins targets to core 0 and wrk/origin/Redis to core 1.
# See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/need.sh
need wrk:wrk nginx:nginx-light redis-server:redis-server varnishd:varnish
need_srcache
cargo build --release --locked --quiet --bin cachecar --example bare_hyper
exec python3 benches/load/run.py
