"""Resident memory under a flood of unique URLs with bodies of 256 B to
64 KiB, at several connection counts (docs/benchmarks.md, "Memory").
Started by benches/memory.sh; all traffic on 127.0.0.1.

For each CONNS value a fresh cachecar (release build, memory store of
MAX_BYTES) runs unpinned, as a sidecar does; wrk floods it for DURATION from
core 1; the origin is nginx serving nine files of 256 B to 64 KiB. Printed:
idle RSS, peak RSS (VmHWM), the store's own count of its bytes, and peak
RSS against the goal of 1.5 x max_bytes + 30 MiB.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "benches", "load")
BIN = os.environ.get("CACHECAR_BIN", os.path.join(ROOT, "target", "release", "cachecar"))
CONNS = [int(c) for c in os.environ.get("CONNS", "16 64 256").split()]
DURATION = os.environ.get("DURATION", "20s")
MAX_MIB = int(os.environ.get("MAX_MIB", "32"))
ORIGIN, CACHECAR, ADMIN = 18500, 18580, 19590
sys.path.insert(0, HERE)
from common import stop  # noqa: E402

tmp = tempfile.mkdtemp(prefix="cachecar-memory-")
os.chmod(tmp, 0o755)  # nginx's workers read the files as another user


def origin():
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    for i in range(9):
        with open(os.path.join(www, f"size{i}.bin"), "wb") as f:
            f.write(b"x" * (256 << i))
    conf = os.path.join(tmp, "origin.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {tmp}/origin.pid;
error_log {tmp}/origin-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{ORIGIN} backlog=4096;
    root {www};
    location ~ "^/s(\\d)/" {{
      add_header Cache-Control "max-age=3600";
      default_type application/octet-stream;
      rewrite "^/s(\\d)/.*$" /size$1.bin break;
    }}
  }}
}}
""")
    return subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", conf, "-p", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cachecar():
    conf = os.path.join(tmp, "cachecar.yaml")
    with open(conf, "w") as f:
        f.write(f"""listen: 127.0.0.1:{CACHECAR}
upstream: {{ url: "http://127.0.0.1:{ORIGIN}", timeout: 10s }}
admin: {{ listen: 127.0.0.1:{ADMIN} }}
shutdown: {{ drain_delay: 0s, grace_period: 2s }}
log: {{ access_sample: 0.0, slow_request: 0s }}
reload: {{ watch: false, poll_interval: 0s }}
cache: {{ store: memory, memory: {{ max_bytes: {MAX_MIB}MiB }} }}
routes:
  - {{ name: flood, match: "GET /{{*p}}", ttl: 1h }}
""")
    return subprocess.Popen([BIN, "--log-filter", "warn", "run", "--config", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def get(url):
    end = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except Exception:
            if time.time() > end:
                raise
            time.sleep(0.1)


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1])
    raise SystemExit(f"no {field} for {pid}")


def measure(conns):
    p = cachecar()
    try:
        get(f"http://127.0.0.1:{ADMIN}/readyz")
        idle = status_kib(p.pid, "VmRSS:")
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{DURATION}",
                              "-s", os.path.join(HERE, "flood.lua"), f"http://127.0.0.1:{CACHECAR}"],
                             capture_output=True, text=True, check=True,
                             env=dict(os.environ, MISS_PREFIX=str(time.time()))).stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        peak = status_kib(p.pid, "VmHWM:")
        metrics = get(f"http://127.0.0.1:{ADMIN}/metrics")
        stored = float(re.search(r"^cachecar_memory_store_bytes (\S+)", metrics, re.M).group(1))
        goal = 1.5 * MAX_MIB + 30
        print(f"| {conns} | {rate:,.0f} | {idle / 1024:.1f} | {peak / 1024:.1f} | {stored / 2**20:.1f} "
              f"| {peak / 1024 / goal:.2f} |", flush=True)
    finally:
        stop(p)


def main():
    for tool in ("wrk", "nginx", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (benches/memory.sh installs it)")
    o = origin()
    try:
        get(f"http://127.0.0.1:{ORIGIN}/s0/x")
        print(f"max_bytes {MAX_MIB} MiB, wrk {DURATION} per row, bodies 256 B to 64 KiB; "
              f"goal: peak RSS <= 1.5 x max_bytes + 30 MiB = {1.5 * MAX_MIB + 30:.0f} MiB\n")
        print("| connections | req/s | idle RSS MiB | peak RSS MiB | store MiB | peak / goal |")
        print("|---|---|---|---|---|---|")
        for conns in CONNS:
            measure(conns)
    finally:
        o.send_signal(signal.SIGTERM)
        o.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
