"""cachecar beside nginx `proxy_cache`, Varnish and nginx+srcache+Redis,
in one run (see docs/benchmarks.md). Started by benches/load.sh; all
traffic on 127.0.0.1.

Every target runs pinned to core 0; wrk, the origin, Redis and the log
reader to core 1. Each round measures, per path and connection count,
nginx, then every other target, then nginx again: a target's ratio to
nginx is to the mean of the two nginx runs around it, and the ratios the
goals name (say Redis store over srcache) are taken within one round.
Figures are medians over the rounds.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import stop  # noqa: E402
from peers import Launcher, Target  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "benches", "load")
BIN = os.environ.get("CACHECAR_BIN", os.path.join(ROOT, "target", "release", "cachecar"))
# examples/bare_hyper.rs: what hyper alone does, the reference points for
# what any hyper-based proxy can reach (REFERENCES=0 leaves them out).
HYPER_BIN = os.environ.get("HYPER_BIN", os.path.join(ROOT, "target", "release", "examples", "bare_hyper"))
REFERENCES = os.environ.get("REFERENCES", "1") != "0"
ROUNDS = int(os.environ.get("ROUNDS", "3"))
FILL_MAX_MIB = int(os.environ.get("FILL_MAX_MIB", "512"))
DURATION = os.environ.get("DURATION", "5s")
CONNS = [int(c) for c in os.environ.get("CONNS", "16 64").split()]
STORES = os.environ.get("STORES", "memory tiered redis").split()
PEERS = os.environ.get("PEERS", "varnish srcache").split()
PATHS = os.environ.get("PATHS", "hit miss pass").split()
LOGS = os.environ.get("LOGS", "1") != "0"
FILL = os.environ.get("FILL", "1") != "0"
# Unrecorded misses before the cells, on every target, so that the miss
# cells measure a cache in its steady state (grown, evicting) rather than a
# process just started growing into new memory. "0s" skips it.
GROW = os.environ.get("GROW", "5s")
TARGET_CPU, LOAD_CPU = os.environ.get("TARGET_CPU", "0"), os.environ.get("LOAD_CPU", "1")
ORIGIN, REDIS = 18000, 16399
ALL = {"hit", "miss", "pass"}
CACHED = {"hit", "miss"}
LUA = {"hit": "hit.lua", "miss": "miss.lua", "pass": "pass.lua"}

# What the project aims for, as (path, what is compared, over what, goal);
# "p99" compares 99th percentiles, where lower is better.
GOALS = [
    ("hit", "memory", "nginx", ">=", 1.3, "rps"),
    ("hit", "memory", "nginx", "<=", 1.0, "p99"),
    ("hit", "memory log", "memory", ">=", 0.9, "rps"),
    ("hit", "memory log", "nginx log", ">=", 1.2, "rps"),
    ("hit", "redis", "srcache", ">=", 2.0, "rps"),
    ("hit", "redis", "nginx", ">=", 0.8, "rps"),
    ("miss", "memory", "nginx", ">=", 2.0, "rps"),
    ("miss", "redis", "nginx", ">=", 1.3, "rps"),
    ("miss", "tiered", "nginx", ">=", 1.3, "rps"),
    ("miss", "tiered", "redis", ">=", 1.0, "rps"),
]
IDLE_RSS_GOAL_MIB = 20

tmp = tempfile.mkdtemp(prefix="cachecar-load-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.chmod(tmp, 0o755)
launch = Launcher(tmp, TARGET_CPU, LOAD_CPU, ORIGIN, REDIS)


def targets():
    """Everything measured, in the order of a round: the pairs the goals
    compare sit next to each other."""
    t = [Target("nginx", "nginx proxy_cache", 18081, ALL, lambda: launch.nginx(18081))]
    if LOGS:
        t.append(Target("nginx log", "nginx proxy_cache, log on", 18087, ALL, lambda: launch.nginx(18087, log=True)))
        t.append(Target("memory log", "cachecar memory, log on", 18088, ALL,
                        lambda: launch.cachecar(BIN, "memory", 18088, 19092, log=True), admin=19092))
    if "memory" in STORES:
        t.append(Target("memory", "cachecar memory", 18080, ALL,
                        lambda: launch.cachecar(BIN, "memory", 18080, 19090), admin=19090))
    if REFERENCES:
        t.append(Target("hyper-serve", "hyper alone, answering from memory", 18082, {"hit"},
                        lambda: launch.hyper("serve", 18082, HYPER_BIN)))
        t.append(Target("hyper-proxy", "hyper alone, bare proxy", 18083, {"miss", "pass"},
                        lambda: launch.hyper("proxy", 18083, HYPER_BIN)))
    if "varnish" in PEERS:
        t.append(Target("varnish", "Varnish", 18086, ALL, lambda: launch.varnish(18086)))
    if "srcache" in PEERS:
        t.append(Target("srcache", "nginx + srcache + Redis", 18085, CACHED, lambda: launch.srcache(18085)))
    if "redis" in STORES:
        t.append(Target("redis", "cachecar redis", 18084, CACHED,
                        lambda: launch.cachecar(BIN, "redis", 18084, 19094, db=0), admin=19094))
    if "tiered" in STORES:
        t.append(Target("tiered", "cachecar tiered", 18089, CACHED,
                        lambda: launch.cachecar(BIN, "tiered", 18089, 19093, db=1), admin=19093))
    return t


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def wrk(port, script, conns, prefix="", duration=None):
    env = dict(os.environ, MISS_PREFIX=prefix)
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration or DURATION}",
                          "--latency", "-s", os.path.join(HERE, script), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, env=env, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: port {port}: {errors.group(1)} non-2xx answers", file=sys.stderr)
    return rps, p50, p99


def warm(port):
    for _ in range(2):
        for i in range(100):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/hit/{i}").read()
        time.sleep(0.3)


def metric(admin, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def fill(rss):
    """100k stored 2 KiB entries, then a flood of unique URLs far past the
    bound: RSS against max_bytes."""
    port, admin = 18090, 19095
    p = launch.cachecar(BIN, "memory", port, admin, max_bytes=f"{FILL_MAX_MIB}MiB")
    for i in range(60):
        if metric(admin, "cachecar_memory_store_entries") >= 100_000:
            break
        wrk(port, "miss.lua", 64, f"fill{i}", "2s")
    rss["entries"] = metric(admin, "cachecar_memory_store_entries")
    rss["stored"] = metric(admin, "cachecar_memory_store_bytes")
    rss["100k entries"] = rss_kb(p.pid)
    wrk(port, "miss.lua", 64, "flood", "20s")
    rss["flood entries"] = metric(admin, "cachecar_memory_store_entries")
    rss["flood"] = rss_kb(p.pid)
    stop(p)


def measure(all_targets, rss):
    """Rounds of every cell; returns the runs per (target, path, conns)."""
    runs = {}  # (target, path, conns) -> [(rps, p50, p99)], one per round
    for rnd in range(ROUNDS):
        print(f"round {rnd + 1}/{ROUNDS}", file=sys.stderr)
        for path in PATHS:
            for conns in CONNS:
                group = [t for t in all_targets if path in t.paths]
                before = wrk(all_targets[0].port, LUA[path], conns, f"nginx{rnd}{path}{conns}a")
                for t in group[1:]:
                    runs.setdefault((t.name, path, conns), []).append(
                        wrk(t.port, LUA[path], conns, f"{t.name}{rnd}c{conns}".replace(" ", "")))
                after = wrk(all_targets[0].port, LUA[path], conns, f"nginx{rnd}{path}{conns}b")
                runs.setdefault(("nginx", path, conns), []).append(
                    tuple((a + b) / 2 for a, b in zip(before, after)))
        mem = next((t for t in all_targets if t.name == "memory"), None)
        if mem:
            rss["after run"] = max(rss.get("after run", 0), rss_kb(mem.proc.pid))
    return runs


def ratio_text(values):
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def report(all_targets, runs, rss):
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    print(f"\n{nginx_v}; {ROUNDS} rounds of {DURATION} per cell, medians; targets on core {TARGET_CPU}, "
          f"wrk, origin, Redis and log reader on core {LOAD_CPU}. Ratios: median of the per-round ratios to the "
          f"mean of the nginx runs before and after (lowest-highest round in brackets). 'hyper alone' is "
          f"examples/bare_hyper.rs: the most any hyper-based server can do on that path.\n")
    print("| path | conns | target | req/s | p50 ms | p99 ms | req/s vs nginx | p99 vs nginx |")
    print("|------|-------|--------|-------|--------|--------|----------------|--------------|")
    for path in PATHS:
        for conns in CONNS:
            base = runs[("nginx", path, conns)]
            for t in all_targets:
                rows = runs.get((t.name, path, conns))
                if not rows:
                    continue
                med = [statistics.median(r[i] for r in rows) for i in range(3)]
                q = p = ""
                if t.name != "nginx":
                    q = ratio_text([r[0] / b[0] for r, b in zip(rows, base)])
                    p = ratio_text([r[2] / b[2] for r, b in zip(rows, base)])
                print(f"| {path} | {conns} | {t.label} | {med[0]:,.0f} | {med[1]:.3f} | {med[2]:.3f} | {q} | {p} |")
    print("\nGoals (per-round ratios, median and range):\n")
    print("| path | conns | ratio | measured | goal | holds |")
    print("|------|-------|-------|----------|------|-------|")
    for path, a, b, op, goal, what in GOALS:
        for conns in CONNS:
            ra, rb = runs.get((a, path, conns)), runs.get((b, path, conns))
            if not ra or not rb:
                continue
            i = 0 if what == "rps" else 2
            values = [x[i] / y[i] for x, y in zip(ra, rb)]
            m = statistics.median(values)
            holds = "yes" if (m >= goal if op == ">=" else m <= goal) else "NO"
            name = f"{a} / {b}" + (" (p99)" if what == "p99" else "")
            print(f"| {path} | {conns} | {name} | {ratio_text(values)} | {op} {goal} | {holds} |")
    if "idle" in rss:
        idle = rss["idle"] / 1024
        print(f"\ncachecar RSS: idle {idle:.1f} MiB (goal <= {IDLE_RSS_GOAL_MIB}: "
              f"{'yes' if idle <= IDLE_RSS_GOAL_MIB else 'NO'}); after the runs (max_bytes 512 MiB) "
              f"{rss.get('after run', 0) / 1024:.1f} MiB")
    if "entries" in rss:
        print(f"cachecar RSS with {rss['entries']:,.0f} stored 2 KiB entries ({rss['stored'] / 2**20:.1f} MiB "
              f"weighed, max_bytes {FILL_MAX_MIB} MiB): {rss['100k entries'] / 1024:.1f} MiB; after a further "
              f"20 s flood of unique URLs ({rss['flood entries']:,.0f} entries kept): {rss['flood'] / 1024:.1f} MiB")
    if "log dropped" in rss:
        print(f"log lines dropped by cachecar with its log on: {rss['log dropped']:.0f}")


def main():
    for tool in ("wrk", "nginx", "redis-server", "taskset") + (("varnishd",) if "varnish" in PEERS else ()):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (benches/load.sh installs it)")
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} missing: cargo build --release")
    if REFERENCES and not os.path.exists(HYPER_BIN):
        raise SystemExit(f"{HYPER_BIN} missing: cargo build --release --example bare_hyper")
    launch.origin_server()
    launch.redis_server()
    all_targets = targets()
    rss = {}
    for t in all_targets:
        t.proc = t.start()
        if t.name == "memory":
            time.sleep(1)
            rss["idle"] = rss_kb(t.proc.pid)
    for t in all_targets:
        if "hit" in t.paths:
            warm(t.port)
        if "miss" in PATHS and "miss" in t.paths and GROW not in ("0", "0s"):
            wrk(t.port, "miss.lua", 16, f"grow{t.name}".replace(" ", ""), GROW)
    runs = measure(all_targets, rss)
    for t in all_targets:
        if t.name == "memory log":
            rss["log dropped"] = metric(t.admin, "cachecar_log_lines_dropped_total")
        if t.admin:
            stop(t.proc)
    if FILL:
        fill(rss)
    report(all_targets, runs, rss)


try:
    main()
finally:
    for p in launch.procs:
        if p.poll() is None:
            p.terminate()
    for p in launch.procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)
