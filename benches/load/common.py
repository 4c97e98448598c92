"""What run.py (the load comparison) and instructions.py (callgrind
counts) share: the origin's body and cachecar's config."""

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

# The origin's answer: 2 KiB of JSON.
BODY = json.dumps({"id": 1, "items": [{"n": i, "text": "x" * 20} for i in range(60)]})[:2048]
BODY = BODY + " " * (2048 - len(BODY))


def cachecar_yaml(listen, admin, origin, store="memory", max_bytes="512MiB", redis=None, db=0):
    """cachecar in front of the origin on 127.0.0.1: no access log, no
    reloads, a `hit` and a `miss` route cached for an hour."""
    redis_section = f"\n  redis: {{ url: \"redis://127.0.0.1:{redis}/{db}\" }}" if redis else ""
    return f"""listen: 127.0.0.1:{listen}
upstream: {{ url: "http://127.0.0.1:{origin}", timeout: 10s }}
admin: {{ listen: 127.0.0.1:{admin} }}
shutdown: {{ drain_delay: 0s, grace_period: 2s }}
log: {{ access_sample: 0.0, slow_request: 0s }}
reload: {{ watch: false, poll_interval: 0s }}
cache:
  store: {store}
  memory: {{ max_bytes: {max_bytes} }}{redis_section}
routes:
  - {{ name: hit, match: "GET /hit/{{*p}}", ttl: 1h }}
  - {{ name: miss, match: "GET /miss/{{*p}}", ttl: 1h }}
"""


def stop(p, timeout=30):
    """SIGTERM, then SIGKILL if `p` is still there after `timeout` s."""
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def spawn_on(cpu, *args, stderr=subprocess.DEVNULL):
    """`args` pinned to `cpu`, its output dropped (or stderr to `stderr`)."""
    return subprocess.Popen(["taskset", "-c", cpu, *args], stdout=subprocess.DEVNULL, stderr=stderr)


def wait_until_up(url, timeout=10.0):
    """Polls `url` until it answers."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url).read()
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


def wrk_on(cpu, script, port, conns, duration):
    """req/s and the p99 text of one wrk run of `script` against `port`."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(["taskset", "-c", cpu, "wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency",
                          "-s", os.path.join(here, script), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
    return rps, p99


def start_origin(cpu, tmp, port):
    """The nginx origin of origin.conf.in on `port`."""
    here = os.path.dirname(os.path.abspath(__file__))
    conf = open(os.path.join(here, "origin.conf.in")).read()
    conf = conf.replace("@DIR@", tmp).replace("@ORIGIN@", str(port)).replace("@BODY@", BODY)
    path = os.path.join(tmp, "origin.conf")
    open(path, "w").write(conf)
    origin = spawn_on(cpu, "nginx", "-c", path, "-e", os.path.join(tmp, "origin-error.log"))
    wait_until_up(f"http://127.0.0.1:{port}/")
    return origin
