"""The targets of the load comparison (run.py) and how each is started:
nginx `proxy_cache` with its access log off and on, Varnish, nginx keeping
its cache in Redis (srcache + lua-resty-redis), hyper alone, and cachecar
in each store mode, with its access log off and on."""

import os
import subprocess
import time

from common import BODY, cachecar_yaml, wait_until_up

HERE = os.path.dirname(os.path.abspath(__file__))


class Target:
    """One server under test: where it listens, which paths it is measured
    on, and how it starts. `admin` is cachecar's admin port."""

    def __init__(self, name, label, port, paths, start, admin=None):
        self.name, self.label, self.port, self.paths = name, label, port, paths
        self.start, self.admin = start, admin
        self.proc = None


class Launcher:
    """Renders configs into `tmp` and starts processes pinned to a core."""

    def __init__(self, tmp, target_cpu, load_cpu, origin, redis):
        self.tmp, self.target_cpu, self.load_cpu = tmp, target_cpu, load_cpu
        self.origin, self.redis = origin, redis
        self.procs = []

    def spawn(self, cpu, *args, stderr=None):
        log = stderr or open(os.path.join(self.tmp, "stderr.log"), "a")
        p = subprocess.Popen(["taskset", "-c", cpu, *args], stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(p)
        return p

    def render(self, name, out_dir=None, **subst):
        text = open(os.path.join(HERE, name)).read()
        for k, v in subst.items():
            text = text.replace(f"@{k}@", str(v))
        out_dir = out_dir or self.tmp
        os.makedirs(out_dir, exist_ok=True)
        out = os.path.join(out_dir, name.replace(".in", ""))
        open(out, "w").write(text)
        return out

    def origin_server(self):
        conf = self.render("origin.conf.in", DIR=self.tmp, ORIGIN=self.origin, BODY=BODY)
        self.spawn(self.load_cpu, "nginx", "-c", conf, "-e", os.path.join(self.tmp, "origin-error.log"))
        wait_until_up(f"http://127.0.0.1:{self.origin}/x")

    def redis_server(self):
        self.spawn(self.load_cpu, "redis-server", "--port", str(self.redis), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--maxmemory", "2gb", "--maxmemory-policy", "allkeys-lru")
        end = time.time() + 10
        while subprocess.run(["redis-cli", "-p", str(self.redis), "ping"], capture_output=True).returncode:
            if time.time() > end:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)

    def nginx(self, port, log=False):
        """nginx as a competent operator sets it up (nginx.conf.in); with
        `log`, its access log on, buffered (`buffer=64k`) to tmpfs."""
        d = os.path.join(self.tmp, f"nginx-{port}")
        os.makedirs(os.path.join(d, "cache"), exist_ok=True)
        os.chmod(d, 0o755)
        # nginx workers run unprivileged.
        os.chmod(os.path.join(d, "cache"), 0o777)
        conf = self.render("nginx.conf.in", d, DIR=d, ORIGIN=self.origin, NGINX=port)
        if log:
            text = open(conf).read().replace("access_log off;", f"access_log {d}/access.log combined buffer=64k;")
            open(conf, "w").write(text)
        p = self.spawn(self.target_cpu, "nginx", "-c", conf, "-e", os.path.join(d, "error.log"))
        wait_until_up(f"http://127.0.0.1:{port}/pass/x")
        return p

    def srcache(self, port):
        d = os.path.join(self.tmp, f"srcache-{port}")
        conf = self.render("srcache.conf.in", d, DIR=d, ORIGIN=self.origin, PORT=port, REDIS=self.redis)
        p = self.spawn(self.target_cpu, "nginx", "-c", conf, "-e", os.path.join(d, "error.log"))
        wait_until_up(f"http://127.0.0.1:{port}/pass/x")
        return p

    def varnish(self, port):
        d = os.path.join(self.tmp, f"varnish-{port}")
        vcl = self.render("varnish.vcl.in", d, ORIGIN=self.origin)
        os.chmod(d, 0o755)
        p = self.spawn(self.target_cpu, "varnishd", "-F", "-f", vcl, "-a", f"127.0.0.1:{port}",
                       "-n", os.path.join(d, "work"), "-s", "malloc,512m")
        wait_until_up(f"http://127.0.0.1:{port}/pass/x", timeout=30)
        return p

    def hyper(self, mode, port, binary):
        if mode == "serve":
            body = os.path.join(self.tmp, "body.json")
            open(body, "w").write(BODY)
            p = self.spawn(self.target_cpu, binary, "serve", f"127.0.0.1:{port}", body)
        else:
            p = self.spawn(self.target_cpu, binary, "proxy", f"127.0.0.1:{port}", f"127.0.0.1:{self.origin}")
        wait_until_up(f"http://127.0.0.1:{port}/pass/x")
        return p

    def cachecar(self, binary, store, port, admin, db=0, log=False, max_bytes="512MiB"):
        """cachecar in `store` mode; with `log`, every request logged as a
        JSON line to stderr, a pipe read by `cat` on the load core, as a
        container runtime reads it."""
        redis = self.redis if store != "memory" else None
        yaml = cachecar_yaml(port, admin, self.origin, store, max_bytes, redis, db)
        if log:
            yaml = yaml.replace("access_sample: 0.0", "access_sample: 1.0")
        path = os.path.join(self.tmp, f"cachecar-{port}.yaml")
        open(path, "w").write(yaml)
        if log:
            reader = subprocess.Popen(["taskset", "-c", self.load_cpu, "cat"], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL)
            self.procs.append(reader)
            args = ["--log-format", "json", "--log-filter", "info", "run", "--config", path]
            p = self.spawn(self.target_cpu, binary, *args, stderr=reader.stdin)
        else:
            p = self.spawn(self.target_cpu, binary, "--log-filter", "warn", "run", "--config", path)
        wait_until_up(f"http://127.0.0.1:{admin}/readyz")
        return p

