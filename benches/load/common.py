"""What run.py (the load comparison) and instructions.py (callgrind
counts) share: the origin's body and cachecar's config."""

import json
import signal
import subprocess

# The origin's answer: 2 KiB of JSON.
BODY = json.dumps({"id": 1, "items": [{"n": i, "text": "x" * 20} for i in range(60)]})[:2048]
BODY = BODY + " " * (2048 - len(BODY))


def cachecar_yaml(listen, admin, origin, store="memory", max_bytes="512MiB", redis=None):
    """cachecar in front of the origin on 127.0.0.1: no access log, no
    reloads, a `hit` and a `miss` route cached for an hour."""
    redis_section = f"\n  redis: {{ url: \"redis://127.0.0.1:{redis}/0\" }}" if redis else ""
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
