"""What the access log costs on the hit path: two cachecars from one build
on core 0, one with its access log off, one logging every request as JSON
to a pipe (read by `cat` on core 1, as a container runtime reads stderr),
and nginx `proxy_cache` with its access log on (`buffer=64k`, to tmpfs);
interleaved rounds of the same 100 hot URLs. Started by benches/logs.sh.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cachecar_yaml, spawn_on, start_origin, stop, wait_until_up, wrk_on  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CACHECAR_BIN", os.path.join(ROOT, "target", "release", "cachecar"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "5s")
CONNS = [int(c) for c in os.environ.get("CONNS", "16 64").split()]
TARGET_CPU, LOAD_CPU = "0", "1"
ORIGIN = 18000
TARGETS = {"log off": (18080, 19090), "log on": (18081, 19091), "nginx log on": (18082, None)}

tmp = tempfile.mkdtemp(prefix="cachecar-logs-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.chmod(tmp, 0o755)


def start_nginx(procs):
    """nginx as run.py sets it up, its access log on and buffered."""
    here = os.path.dirname(os.path.abspath(__file__))
    conf = open(os.path.join(here, "nginx.conf.in")).read()
    port = TARGETS["nginx log on"][0]
    conf = conf.replace("@DIR@", tmp).replace("@ORIGIN@", str(ORIGIN)).replace("@NGINX@", str(port))
    conf = conf.replace("access_log off;", f"access_log {tmp}/access.log combined buffer=64k;")
    os.makedirs(os.path.join(tmp, "cache"), exist_ok=True)
    os.chmod(os.path.join(tmp, "cache"), 0o777)
    path = os.path.join(tmp, "nginx.conf")
    open(path, "w").write(conf)
    procs.append(spawn_on(TARGET_CPU, "nginx", "-c", path, "-e", os.path.join(tmp, "nginx-error.log")))
    wait_until_up(f"http://127.0.0.1:{port}/pass/x")
    warm(port)


def warm(port):
    for _ in range(2):
        for i in range(100):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/hit/{i}").read()


def start(name, procs):
    if name == "nginx log on":
        return start_nginx(procs)
    port, admin = TARGETS[name]
    yaml = cachecar_yaml(port, admin, ORIGIN)
    if name == "log on":
        yaml = yaml.replace("access_sample: 0.0", "access_sample: 1.0")
    path = os.path.join(tmp, f"{port}.yaml")
    open(path, "w").write(yaml)
    if name == "log on":
        reader = subprocess.Popen(["taskset", "-c", LOAD_CPU, "cat"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL)
        procs.append(reader)
        args = ["--log-format", "json", "--log-filter", "info", "run", "--config", path]
        procs.append(spawn_on(TARGET_CPU, BIN, *args, stderr=reader.stdin))
    else:
        procs.append(spawn_on(TARGET_CPU, BIN, "--log-filter", "warn", "run", "--config", path))
    wait_until_up(f"http://127.0.0.1:{admin}/readyz")
    warm(port)


def main():
    procs = [start_origin(LOAD_CPU, tmp, ORIGIN)]
    try:
        for name in TARGETS:
            start(name, procs)
        print(f"{ROUNDS} rounds of {DURATION}; cachecar (memory store, hits) on core {TARGET_CPU}, "
              f"wrk, the origin and the log reader on core {LOAD_CPU}; medians")
        for conns in CONNS:
            results = {name: [] for name in TARGETS}
            for _ in range(ROUNDS):
                for name, (port, _) in TARGETS.items():
                    results[name].append(wrk_on(LOAD_CPU, "hit.lua", port, conns, DURATION))
            medians = {}
            for name, rows in results.items():
                medians[name] = statistics.median(r for r, _ in rows)
                p99 = sorted(p for _, p in rows)[len(rows) // 2]
                print(f"  {conns:4} conns  {name:12} {medians[name]:10.0f} req/s   p99 {p99}")
            print(f"  {conns:4} conns  log on / log off: {medians['log on'] / medians['log off']:.2f}")
            print(f"  {conns:4} conns  log on / nginx log on: {medians['log on'] / medians['nginx log on']:.2f}")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{TARGETS['log on'][1]}/metrics").read().decode()
        for line in metrics.splitlines():
            if line.startswith("cachecar_log_lines_dropped_total"):
                print(f"  {line}")
    finally:
        for p in reversed(procs):
            stop(p)


if __name__ == "__main__":
    main()
