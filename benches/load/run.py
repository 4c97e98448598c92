"""cachecar vs nginx proxy_cache, side by side in one run (see
docs/benchmarks.md). Started by benches/load.sh; all traffic on 127.0.0.1.

Targets run pinned to core 0; wrk, the origin and Redis to core 1. Each
figure is the median over interleaved rounds; ratios are against nginx in
the same run.
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
PATHS = os.environ.get("PATHS", "hit miss pass").split()
FILL = os.environ.get("FILL", "1") != "0"
# Unrecorded misses before the cells, on every target, so that the miss
# cells measure a cache in its steady state (grown, evicting) rather than a
# process just started growing into new memory. "0s" skips it.
GROW = os.environ.get("GROW", "5s")
TARGET_CPU, LOAD_CPU = os.environ.get("TARGET_CPU", "0"), os.environ.get("LOAD_CPU", "1")
ORIGIN, NGINX, CACHECAR, ADMIN, REDIS = 18000, 18081, 18080, 19090, 16399
HYPER_SERVE, HYPER_PROXY = 18082, 18083
# Which reference is measured beside which path, and how it is labelled.
REFERENCE_FOR = {"hit": "hyper-serve", "miss": "hyper-proxy", "pass": "hyper-proxy"}
LABELS = {
    "nginx": "nginx",
    "hyper-serve": "hyper alone, answering from memory",
    "hyper-proxy": "hyper alone, bare proxy",
}

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BODY, cachecar_yaml, stop  # noqa: E402

# tmpfs when there is one: nginx's cache then costs no disk I/O either.
tmp = tempfile.mkdtemp(prefix="cachecar-load-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.chmod(tmp, 0o755)
procs = []


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def spawn(cpu, *args, **kw):
    p = subprocess.Popen(["taskset", "-c", cpu, *args], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(tmp, "stderr.log"), "a"), **kw)
    procs.append(p)
    return p


def wait_http(url, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def render(name, **subst):
    text = open(os.path.join(HERE, name)).read()
    for k, v in subst.items():
        text = text.replace(f"@{k}@", str(v))
    out = os.path.join(tmp, name.replace(".in", ""))
    open(out, "w").write(text)
    return out


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def wrk(port, script, conns, prefix=""):
    env = dict(os.environ, MISS_PREFIX=prefix)
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{DURATION}",
                          "--latency", "-s", os.path.join(HERE, script), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, env=env, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: {errors.group(1)} non-2xx answers", file=sys.stderr)
    return rps, p50, p99


def warm(port):
    for i in range(100):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hit/{i}").read()
    time.sleep(0.3)
    for i in range(100):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hit/{i}").read()


def grow(port, tag):
    if "miss" in PATHS and GROW not in ("0", "0s"):
        subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", f"-d{GROW}", "-s",
                        os.path.join(HERE, "miss.lua"), f"http://127.0.0.1:{port}"],
                       capture_output=True, env=dict(os.environ, MISS_PREFIX=f"grow{tag}"), check=True)


def cachecar_config(store, max_bytes="512MiB"):
    path = os.path.join(tmp, f"cachecar-{store}.yaml")
    redis = REDIS if store != "memory" else None
    open(path, "w").write(cachecar_yaml(CACHECAR, ADMIN, ORIGIN, store, max_bytes, redis))
    return path


def start_cachecar(store, max_bytes="512MiB"):
    p = spawn(TARGET_CPU, BIN, "--log-filter", "warn", "run", "--config", cachecar_config(store, max_bytes))
    wait_http(f"http://127.0.0.1:{ADMIN}/readyz")
    return p


def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def fill(rss):
    """100k stored 2 KiB entries, then a flood of unique URLs far past the
    bound: RSS against max_bytes."""
    global DURATION
    run_duration = DURATION
    p = start_cachecar("memory", f"{FILL_MAX_MIB}MiB")
    DURATION = "2s"
    for i in range(60):
        if metric("cachecar_memory_store_entries") >= 100_000:
            break
        wrk(CACHECAR, "miss.lua", 64, f"fill{i}")
    rss["entries"] = metric("cachecar_memory_store_entries")
    rss["stored"] = metric("cachecar_memory_store_bytes")
    rss["100k entries"] = rss_kb(p.pid)
    DURATION = "20s"
    wrk(CACHECAR, "miss.lua", 64, "flood")
    rss["flood entries"] = metric("cachecar_memory_store_entries")
    rss["flood"] = rss_kb(p.pid)
    stop(p)
    DURATION = run_duration


def main():
    for tool in ("wrk", "nginx", "redis-server", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (benches/load.sh installs it)")
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} missing: cargo build --release")
    if REFERENCES and not os.path.exists(HYPER_BIN):
        raise SystemExit(f"{HYPER_BIN} missing: cargo build --release --example bare_hyper")
    nginx_bin = shutil.which("nginx")
    os.makedirs(os.path.join(tmp, "cache"), exist_ok=True)
    # nginx workers run unprivileged.
    os.chmod(os.path.join(tmp, "cache"), 0o777)
    spawn(LOAD_CPU, nginx_bin, "-c", render("origin.conf.in", DIR=tmp, ORIGIN=ORIGIN, BODY=BODY), "-e", os.path.join(tmp, "origin-error.log"))
    spawn(TARGET_CPU, nginx_bin, "-c", render("nginx.conf.in", DIR=tmp, ORIGIN=ORIGIN, NGINX=NGINX), "-e", os.path.join(tmp, "nginx-error.log"))
    spawn(LOAD_CPU, "redis-server", "--port", str(REDIS), "--bind", "127.0.0.1", "--save", "",
          "--appendonly", "no", "--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru")
    refs = {}
    if REFERENCES:
        body = os.path.join(tmp, "body.json")
        open(body, "w").write(BODY)
        spawn(TARGET_CPU, HYPER_BIN, "serve", f"127.0.0.1:{HYPER_SERVE}", body)
        spawn(TARGET_CPU, HYPER_BIN, "proxy", f"127.0.0.1:{HYPER_PROXY}", f"127.0.0.1:{ORIGIN}")
        refs = {"hyper-serve": HYPER_SERVE, "hyper-proxy": HYPER_PROXY}
    wait_http(f"http://127.0.0.1:{ORIGIN}/x")
    wait_http(f"http://127.0.0.1:{NGINX}/pass/x")
    for port in refs.values():
        wait_http(f"http://127.0.0.1:{port}/pass/x")
    time.sleep(0.3)
    warm(NGINX)
    grow(NGINX, "nginx")

    results = {}  # (target, path, conns) -> [(rps, p50, p99)]
    ratios = {}  # (store, path, conns) -> [(req/s ratio, p99 ratio)] paired per cell
    rss = {}

    def record(target, path, conns, value):
        results.setdefault((target, path, conns), []).append(value)

    # Each cachecar cell is measured right after the same cell on nginx, and
    # compared with it: this VM's speed drifts by tens of percent over
    # minutes, and a ratio of two measurements taken seconds apart is far
    # steadier than a ratio of medians taken minutes apart.
    lua = {"hit": "hit.lua", "miss": "miss.lua", "pass": "pass.lua"}
    for rnd in range(ROUNDS):
        print(f"round {rnd + 1}/{ROUNDS}", file=sys.stderr)
        for conns in CONNS:
            for path in PATHS if refs else []:
                ref = REFERENCE_FOR[path]
                tag = f"{ref}{rnd}c{conns}"
                base = wrk(NGINX, lua[path], conns, f"n{tag}")
                mine = wrk(refs[ref], lua[path], conns, tag)
                record("nginx", path, conns, base)
                record(ref, path, conns, mine)
                ratios.setdefault((ref, path, conns), []).append(
                    (mine[0] / base[0], mine[2] / base[2]))
        for store in STORES:
            p = start_cachecar(store)
            if store == "memory" and rnd == 0:
                rss["idle"] = rss_kb(p.pid)
            warm(CACHECAR)
            grow(CACHECAR, f"{store}{rnd}")
            for conns in CONNS:
                for path in PATHS:
                    if path == "pass" and store != "memory":
                        continue
                    tag = f"{store}{rnd}c{conns}"
                    base = wrk(NGINX, lua[path], conns, f"n{tag}")
                    mine = wrk(CACHECAR, lua[path], conns, tag)
                    record("nginx", path, conns, base)
                    record(store, path, conns, mine)
                    ratios.setdefault((store, path, conns), []).append(
                        (mine[0] / base[0], mine[2] / base[2]))
            if store == "memory":
                rss["after run"] = max(rss.get("after run", 0), rss_kb(p.pid))
            stop(p)

    run_duration = DURATION
    if FILL:
        fill(rss)

    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in results.items()}
    print(f"\ncachecar vs nginx {subprocess.run([nginx_bin, '-v'], capture_output=True, text=True).stderr.strip()}, "
          f"{ROUNDS} rounds of {run_duration} per cell, medians; targets on core {TARGET_CPU}, wrk/origin/redis on "
          f"core {LOAD_CPU}. Ratios: median of the per-round ratios to the nginx cell measured just before "
          f"(lowest-highest round in brackets). 'hyper alone' is examples/bare_hyper.rs: the most any "
          f"hyper-based server can do on that path.\n")
    print("| path | conns | target | req/s | p50 ms | p99 ms | req/s vs nginx | p99 vs nginx |")
    print("|------|-------|--------|-------|--------|--------|----------------|--------------|")
    for path in ("hit", "miss", "pass"):
        for conns in CONNS:
            for target in ["nginx", REFERENCE_FOR[path]] + STORES:
                v = med.get((target, path, conns))
                if not v:
                    continue
                ratio = p99r = ""
                if target != "nginx":
                    rs = ratios[(target, path, conns)]
                    q, l = [r[0] for r in rs], [r[1] for r in rs]
                    ratio = f"{statistics.median(q):.2f}x ({min(q):.2f}-{max(q):.2f})"
                    p99r = f"{statistics.median(l):.2f}x ({min(l):.2f}-{max(l):.2f})"
                label = LABELS.get(target, f"cachecar {target}")
                print(f"| {path} | {conns} | {label} | {v[0]:,.0f} | {v[1]:.3f} | {v[2]:.3f} | {ratio} | {p99r} |")
    if "idle" in rss and "after run" in rss:
        print(f"\ncachecar RSS: idle {rss['idle'] / 1024:.1f} MiB; after the runs (max_bytes 512 MiB) "
              f"{rss['after run'] / 1024:.1f} MiB")
    if FILL:
        print(f"cachecar RSS with {rss['entries']:,.0f} stored 2 KiB entries ({rss['stored'] / 2**20:.1f} MiB "
              f"weighed, max_bytes {FILL_MAX_MIB} MiB): {rss['100k entries'] / 1024:.1f} MiB; after a further "
              f"20 s flood of unique URLs ({rss['flood entries']:,.0f} entries kept): {rss['flood'] / 1024:.1f} MiB")


try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)
