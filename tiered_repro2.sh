#!/bin/bash
store=${1:-tiered}; GAP=${GAP:-5}
BIN=${BIN:-/work/main/target/release/cachecar}
L=/work/main/benches/load
redis-cli -p 16399 flushall >/dev/null
taskset -c 0 $BIN --log-filter warn run --config /tmp/lb/$store.yaml > /tmp/lb/cc.log 2>&1 &
CC=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:19090/readyz >/dev/null && break; sleep 0.1; done
for r in 1 2; do for i in $(seq 0 99); do curl -s -o /dev/null http://127.0.0.1:18080/hit/$i; done; sleep 0.3; done
w() { MISS_PREFIX=$RANDOM taskset -c 1 wrk -t1 -c$1 -d$2 --latency -s $L/$3 http://127.0.0.1:18080 | awk -v t="$4" '/Requests\/sec/{r=$2} / 50%/{p50=$2} / 99%/{p99=$2} /Latency  /{max=$4} END{printf "%-10s rps %8s p50 %8s p99 %8s max %8s\n", t, r, p50, p99, max}'; }
sleep $GAP; w 16 5s hit.lua hit16
sleep $GAP; w 16 5s miss.lua miss16
sleep $GAP; for i in 1 2 3 4 5; do w 64 1s hit.lua hit64-$i; done
kill $CC; wait $CC 2>/dev/null
