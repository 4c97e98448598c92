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
. benches/need.sh
need wrk:wrk nginx:nginx-light redis-server:redis-server varnishd:varnish
# nginx + srcache + lua-resty-redis (benches/load/srcache.conf.in): modules,
# not tools, so looked for by file.
if [ ! -e /usr/lib/nginx/modules/ngx_http_srcache_filter_module.so ] || [ ! -e /usr/share/lua/5.1/nginx/redis.lua ]; then
  [ "$(id -u)" -eq 0 ] && sudo="" || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libnginx-mod-http-lua libnginx-mod-http-ndk \
    libnginx-mod-http-srcache-filter libnginx-mod-http-set-misc lua-nginx-redis >/dev/null
fi
cargo build --release --locked --quiet --bin cachecar --example bare_hyper
exec python3 benches/load/run.py
