"""Instructions per request, by callgrind: the repeatable measure of what a
change costs on the request path (docs/benchmarks.md, "Method").
Started by benches/instructions.sh; all traffic on 127.0.0.1.

For each path (hit, miss, pass) cachecar runs under
`valgrind --tool=callgrind` on core 0 with the memory store, is warmed (the
100 hot URLs, then 2 s of the path), its counters are zeroed, wrk drives
the path for DURATION at 16 connections from core 1, and the total
instruction count is divided by wrk's request count. The count is the same
however busy the other core is; it moves by a few hundred between runs
(where moka's table growth falls, on the miss path). KEEP=DIR keeps the
callgrind profiles there, for `callgrind_annotate`. REFERENCES=1 also
counts hyper alone (examples/bare_hyper.rs) the same way: `serve` on the
hit path, `proxy` on the pass-through path. LOG=1 turns cachecar's JSON
access log on for every request (the writer thread's instructions count);
STORE=redis or tiered runs that store, with a Redis on the load core.
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
PATHS = os.environ.get("PATHS", "hit miss pass").split()
DURATION = os.environ.get("DURATION", "4s")
TARGET_CPU, LOAD_CPU = os.environ.get("TARGET_CPU", "0"), os.environ.get("LOAD_CPU", "1")
REFERENCES = os.environ.get("REFERENCES", "0") == "1"
LOG = os.environ.get("LOG", "0") == "1"
# The store cachecar runs with; `redis` and `tiered` get a Redis of their
# own on the load core (its instructions are not counted).
STORE = os.environ.get("STORE", "memory")
REDIS = 16398
HYPER_BIN = os.environ.get("HYPER_BIN", os.path.join(ROOT, "target", "release", "examples", "bare_hyper"))
ORIGIN, CACHECAR, ADMIN = 18100, 18180, 19190
sys.path.insert(0, HERE)
from common import BODY, cachecar_yaml, stop  # noqa: E402

tmp = tempfile.mkdtemp(prefix="cachecar-instr-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.chmod(tmp, 0o755)


def spawn(cpu, *args):
    log = open(os.path.join(tmp, "stderr.log"), "a")
    return subprocess.Popen(["taskset", "-c", cpu, *args], stdout=subprocess.DEVNULL, stderr=log)


def get(url):
    end = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except Exception:
            if time.time() > end:
                raise
            time.sleep(0.1)


def wrk(script, duration, prefix):
    env = dict(os.environ, MISS_PREFIX=prefix)
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", f"-d{duration}",
                          "-s", os.path.join(HERE, script), f"http://127.0.0.1:{CACHECAR}"],
                         capture_output=True, text=True, env=env, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers on {script}:\n{out}")
    return int(re.search(r"(\d+) requests in", out).group(1))


def origin():
    conf = open(os.path.join(HERE, "origin.conf.in")).read()
    for k, v in {"DIR": tmp, "ORIGIN": ORIGIN, "BODY": BODY}.items():
        conf = conf.replace(f"@{k}@", str(v))
    path = os.path.join(tmp, "origin.conf")
    open(path, "w").write(conf)
    return spawn(LOAD_CPU, "nginx", "-c", path, "-p", tmp)


def config():
    path = os.path.join(tmp, "cachecar.yaml")
    redis = REDIS if STORE != "memory" else None
    yaml = cachecar_yaml(CACHECAR, ADMIN, ORIGIN, store=STORE, redis=redis)
    if LOG:
        yaml = yaml.replace("access_sample: 0.0", "access_sample: 1.0")
    open(path, "w").write(yaml)
    return path


def cachecar():
    logs = ["--log-format", "json", "--log-filter", "info"] if LOG else ["--log-filter", "warn"]
    return [BIN, *logs, "run", "--config", config()], f"http://127.0.0.1:{ADMIN}/readyz"


def hyper_alone(mode):
    """examples/bare_hyper.rs on cachecar's port: `serve` or `proxy`."""
    if mode == "serve":
        body = os.path.join(tmp, "body.json")
        open(body, "w").write(BODY)
        args = [HYPER_BIN, "serve", f"127.0.0.1:{CACHECAR}", body]
    else:
        args = [HYPER_BIN, "proxy", f"127.0.0.1:{CACHECAR}", f"127.0.0.1:{ORIGIN}"]
    return args, f"http://127.0.0.1:{CACHECAR}/hit/0"


def measure(path, target):
    args, ready = target
    out = os.path.join(tmp, f"callgrind.{path}")
    p = spawn(TARGET_CPU, "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *args)
    try:
        get(ready)
        for _ in range(2):
            for i in range(100):
                get(f"http://127.0.0.1:{CACHECAR}/hit/{i}")
        wrk(f"{path}.lua", "2s", f"warm{time.time()}")
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True, capture_output=True)
        requests = wrk(f"{path}.lua", DURATION, f"run{time.time()}")
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
        dumps = [f for f in os.listdir(tmp) if f.startswith(f"callgrind.{path}.")]
        if os.environ.get("KEEP"):
            for name in dumps:
                shutil.copy(os.path.join(tmp, name), os.environ["KEEP"])
        total = 0
        for name in dumps:
            for line in open(os.path.join(tmp, name)):
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = max(total, int(line.split()[1]))
                    break
        return total // requests, requests
    finally:
        stop(p)


def main():
    for tool in ("valgrind", "callgrind_control", "wrk", "nginx", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (benches/instructions.sh installs it)")
    o = origin()
    r = None
    if STORE != "memory":
        r = spawn(LOAD_CPU, "redis-server", "--port", str(REDIS), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no")
    try:
        get(f"http://127.0.0.1:{ORIGIN}/")
        print(f"instructions per request ({BIN}, {STORE} store, wrk -c16 -d{DURATION}):")
        for path in PATHS:
            ir, n = measure(path, cachecar())
            print(f"  {path:5} {ir:>8,} ({n} requests)", flush=True)
        if REFERENCES:
            print("hyper alone (examples/bare_hyper.rs):")
            for path, mode in (("hit", "serve"), ("pass", "proxy")):
                ir, n = measure(path, hyper_alone(mode))
                print(f"  {path:5} {ir:>8,} ({n} requests, {mode})", flush=True)
    finally:
        for p in (o, r):
            if p:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
