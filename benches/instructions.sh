#!/usr/bin/env bash
# Instructions per request on the hit, miss and pass-through paths, counted
# by callgrind: the repeatable measure to compare two builds with.
#   benches/instructions.sh
#   CACHECAR_BIN=/path/to/other/cachecar PATHS="hit miss" benches/instructions.sh
#   REFERENCES=1 benches/instructions.sh   # also hyper alone (examples/bare_hyper.rs)
#   LOG=1 PATHS=hit benches/instructions.sh # with the access log on
#   STORE=redis benches/instructions.sh     # the Redis store (Redis on the load core)
# Installs valgrind, wrk, nginx (the origin) and redis-server with apt-get
# if missing; builds the release binary unless CACHECAR_BIN names one.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/need.sh
need valgrind:valgrind wrk:wrk nginx:nginx-light redis-server:redis-server
[ -n "${CACHECAR_BIN:-}" ] || cargo build --release --locked --quiet --bin cachecar
[ "${REFERENCES:-0}" != 1 ] || cargo build --release --locked --quiet --example bare_hyper
exec python3 benches/load/instructions.py
