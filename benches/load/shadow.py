"""What shadow mode costs (docs/invalidation.md, "Shadow mode"): one
cachecar, an nginx origin, and wrk, interleaved rounds of the same 100 hot
URLs through a route in `mode: shadow` (every request a would-be hit,
forwarded and compared) and through no route (a plain pass-through, the
floor any request to the app costs). Started by benches/shadow.sh.
"""

import os
import statistics
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import spawn_on, start_origin, stop, wait_until_up, wrk_on  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "cachecar")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "5s")
CONNS = int(os.environ.get("CONNS", "16"))
TARGET_CPU, LOAD_CPU = "0", "1"
ORIGIN, PROXY, ADMIN = 18000, 18080, 19090

tmp = tempfile.mkdtemp(prefix="cachecar-shadow-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.chmod(tmp, 0o755)


def main():
    config = os.path.join(tmp, "cachecar.yaml")
    open(config, "w").write(f"""listen: 127.0.0.1:{PROXY}
upstream: {{ url: "http://127.0.0.1:{ORIGIN}", timeout: 10s }}
admin: {{ listen: 127.0.0.1:{ADMIN} }}
shutdown: {{ drain_delay: 0s, grace_period: 2s }}
log: {{ access_sample: 0.0, slow_request: 0s }}
reload: {{ watch: false, poll_interval: 0s }}
routes:
  - {{ name: hit, match: "GET /hit/{{*p}}", ttl: 1h, mode: shadow }}
""")
    procs = [start_origin(LOAD_CPU, tmp, ORIGIN)]
    procs.append(spawn_on(TARGET_CPU, BIN, "--log-filter", "warn", "run", "--config", config))
    try:
        wait_until_up(f"http://127.0.0.1:{ADMIN}/readyz")
        for i in range(100):
            urllib.request.urlopen(f"http://127.0.0.1:{PROXY}/hit/{i}").read()
        results = {"shadow": [], "pass": []}
        for _ in range(ROUNDS):
            results["shadow"].append(wrk_on(LOAD_CPU, "hit.lua", PROXY, CONNS, DURATION))
            results["pass"].append(wrk_on(LOAD_CPU, "pass.lua", PROXY, CONNS, DURATION))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics").read().decode()
        compared = [l for l in metrics.splitlines() if l.startswith("cachecar_shadow_requests_total")]
        print(f"{ROUNDS} rounds of {DURATION}, {CONNS} connections, 2 KiB JSON; cachecar on core {TARGET_CPU}, "
              f"wrk and the origin on core {LOAD_CPU}; medians")
        for name, rows in results.items():
            rps = statistics.median(r for r, _ in rows)
            print(f"  {name:7} {rps:10.0f} req/s   p99 {sorted(p for _, p in rows)[len(rows) // 2]}")
        shadow = statistics.median(r for r, _ in results["shadow"])
        passed = statistics.median(r for r, _ in results["pass"])
        print(f"  shadow / pass-through: {shadow / passed:.2f}")
        for line in compared:
            print(f"  {line}")
    finally:
        for p in reversed(procs):
            stop(p)


if __name__ == "__main__":
    main()
