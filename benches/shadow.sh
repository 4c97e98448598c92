#!/usr/bin/env bash
# What shadow mode costs: a route in `mode: shadow` (would-be hits,
# forwarded and compared) against a plain pass-through, interleaved:
#   benches/shadow.sh
#   ROUNDS=5 DURATION=10s CONNS=64 benches/shadow.sh
# Installs wrk and nginx with apt-get if missing and builds the release
# binary. See docs/invalidation.md, "Shadow mode".
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/need.sh
need wrk:wrk nginx:nginx-light
cargo build --release --locked --quiet --bin cachecar
exec python3 benches/load/shadow.py
