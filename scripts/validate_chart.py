"""Lints and renders the Helm chart in both modes, validates every rendered
manifest strictly against the Kubernetes schema, runs `cachecar check` on
the rendered config, and checks that bad values are refused by the schema.

usage: validate_chart.py CHART OUTDIR CACHECAR_BIN KUBERNETES_VALIDATE
"""

import os
import subprocess
import sys

import helm_python as helm
import yaml

chart_dir, out_dir, cachecar, kubernetes_validate = sys.argv[1:5]

MODES = {
    "sidecar": {},
    "sidecar-redis": {
        "redis": {"enabled": True, "existingSecret": "redis", "key": "url"},
        "adminToken": {"existingSecret": "admin", "key": "token"},
        "config": {
            "cache": {"coalesce": {"across_instances": True}},
            "routes": [{"name": "docs", "match": "GET /api/documents/{*path}", "ttl": "1h"}],
            "warmup": ["GET /api/documents/index"],
        },
    },
    "standalone": {
        "mode": "standalone",
        "upstream": {"url": "http://api.default.svc.cluster.local:8000"},
        "redis": {"enabled": True, "url": "redis://redis:6379/0"},
        "adminToken": {"value": "s3cret"},
        "podDisruptionBudget": {"enabled": True},
        "autoscaling": {"enabled": True},
        "serviceMonitor": {"enabled": True},
    },
}

# Custom resources kubernetes-validate has no schema for.
CRDS = {"ServiceMonitor"}

failures = []
report = helm.lint(chart_dir, strict=True)
for m in report.get("messages", []):
    if m["severity"] >= 2:
        failures.append(f"helm lint: {m['path']}: {m['error']}")
failures += [f"helm lint: {e}" for e in report.get("errors", [])]

chart = helm.Chart.load(chart_dir)
for mode, values in MODES.items():
    chart.validate_schema(values)
    rendered = chart.render(values, name="demo", namespace="default")
    mode_dir = os.path.join(out_dir, mode)
    os.makedirs(mode_dir, exist_ok=True)
    kinds = []
    files = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        for i, doc in enumerate(yaml.safe_load_all(text)):
            if not doc:
                continue
            kinds.append(doc["kind"])
            if doc["kind"] == "ConfigMap":
                config = os.path.join(mode_dir, "cachecar.yaml")
                with open(config, "w") as f:
                    f.write(doc["data"]["cachecar.yaml"])
                env = dict(os.environ, CACHECAR_REDIS_URL="redis://redis:6379/0")
                check = subprocess.run([cachecar, "check", "--config", config],
                                       capture_output=True, text=True, env=env)
                if check.returncode != 0:
                    failures.append(f"{mode}: rendered cachecar.yaml is invalid:\n{check.stderr}")
            if doc["kind"] in CRDS:
                continue
            name = os.path.join(mode_dir, f"{os.path.basename(path)[:-5]}-{i}.yaml")
            with open(name, "w") as f:
                yaml.safe_dump(doc, f)
            files.append(name)
    result = subprocess.run([kubernetes_validate, "--strict", "--quiet", *files],
                            capture_output=True, text=True)
    if result.returncode != 0:
        failures.append(f"{mode}: kubernetes-validate:\n{result.stdout}{result.stderr}")
    print(f"{mode}: {', '.join(sorted(kinds))}")
    expected = {"ConfigMap", "Deployment", "Service"}
    if not expected <= set(kinds):
        failures.append(f"{mode}: missing {expected - set(kinds)}")

for bad in [{"mode": "bogus"}, {"replicaCount": "two"}, {"config": {"listen": "0.0.0.0:1"}},
            {"redis": {"url": "http://not-redis"}}, {"unknownKey": 1}]:
    try:
        chart.validate_schema(bad)
        failures.append(f"values.schema.json accepted {bad}")
    except helm.HelmError:
        pass

try:
    chart.render({"mode": "standalone"}, name="demo", namespace="default")
    failures.append("standalone without upstream.url rendered")
except helm.HelmError:
    pass

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
