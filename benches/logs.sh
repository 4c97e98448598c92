#!/usr/bin/env bash
# What the access log costs on the hit path: the same build with its JSON
# access log off and on (every request, to a pipe), interleaved:
#   benches/logs.sh
#   ROUNDS=5 CONNS=16 benches/logs.sh
# Installs wrk and nginx with apt-get if missing and builds the release
# binary. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/need.sh
need wrk:wrk nginx:nginx-light
cargo build --release --locked --quiet --bin cachecar
exec python3 benches/load/logs.py
