"""Where a path's time goes: user and system CPU per request of each target
on core 0, how busy that core was, and the p99 latency, one target at a
time (so nothing else is measured on the core). A core near 1.00 means the path is bound by the
target's own CPU; well below, by waiting (round trips). Started by
benches/cpu.sh; all traffic on 127.0.0.1; see docs/benchmarks.md.
"""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import stop  # noqa: E402
from peers import Launcher  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "benches", "load")
BIN = os.environ.get("CACHECAR_BIN", os.path.join(ROOT, "target", "release", "cachecar"))
TARGETS = os.environ.get("TARGETS", "nginx memory tiered redis srcache").split()
PATHS = os.environ.get("PATHS", "hit miss").split()
CONNS = [int(c) for c in os.environ.get("CONNS", "16 64").split()]
# wrk's duration per row, in seconds ("5" or "5s").
SECONDS = int(os.environ.get("DURATION", "5").rstrip("s"))
TICK = os.sysconf("SC_CLK_TCK")

tmp = tempfile.mkdtemp(prefix="cachecar-cpu-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.chmod(tmp, 0o755)
launch = Launcher(tmp, "0", "1", 18000, 16399)


def processes(p):
    """`p` and its children (nginx's worker, Varnish's child)."""
    out = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    return [p.pid] + [int(x) for x in out]


def cpu(pids):
    """User and system seconds of every thread of `pids`."""
    user = system = 0
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            fields = open(f"/proc/{pid}/task/{task}/stat").read().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]), system + int(fields[12])
    return user / TICK, system / TICK


def start(name):
    if name == "nginx":
        return 18081, launch.nginx(18081)
    if name == "srcache":
        return 18085, launch.srcache(18085)
    if name == "varnish":
        return 18086, launch.varnish(18086)
    port = {"memory": 18080, "redis": 18084, "tiered": 18089}[name]
    db = {"redis": 0, "tiered": 1}.get(name, 0)
    return port, launch.cachecar(BIN, name, port, port + 1010, db=db)


def to_ms(text):
    """wrk's latency text (`349.00us`, `1.2ms`, `1.01s`) in milliseconds."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(text)


def measure(name, port, pids, path, conns):
    before = cpu(pids)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{SECONDS}s", "--latency",
                          "-s", os.path.join(HERE, f"{path}.lua"), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True, timeout=SECONDS + 60,
                         env=dict(os.environ, MISS_PREFIX=f"{name}{time.time()}")).stdout
    after = cpu(pids)
    requests = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
    p99 = to_ms(next(line for line in out.splitlines() if line.strip().startswith("99%")).split()[1])
    user, system = after[0] - before[0], after[1] - before[1]
    print(f"| {path} | {conns} | {name} | {requests / SECONDS:,.0f} | {p99:.3f} | {user / requests * 1e6:.1f} | "
          f"{system / requests * 1e6:.1f} | {(user + system) / SECONDS:.2f} |", flush=True)


def main():
    launch.origin_server()
    launch.redis_server()
    started = {}
    for name in TARGETS:
        port, p = start(name)
        time.sleep(0.5)
        started[name] = (port, processes(p))
        for _ in range(2):
            for i in range(100):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/hit/{i}").read()
            time.sleep(0.3)
    print(f"{SECONDS} s of wrk per row, one target at a time on core 0; CPU per request from /proc\n")
    print("| path | conns | target | req/s | p99 ms | user µs/req | system µs/req | core 0 busy |")
    print("|------|-------|--------|-------|--------|-------------|---------------|-------------|")
    for path in PATHS:
        for conns in CONNS:
            for name, (port, pids) in started.items():
                measure(name, port, pids, path, conns)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in launch.procs:
            stop(p, timeout=5)
        subprocess.run(["rm", "-rf", tmp])
