"""Lints and renders the Helm chart with the real Helm engine in every way
it is adopted: (a) all-in-one (the chart deploys app and cachecar), (b) an
existing app chart with cachecar as a dependency (examples/helm/
app-with-cachecar), (c) standalone in front of a Service. Every rendered
manifest is validated strictly against the Kubernetes schema, `cachecar
check` runs on each rendered config, and what matters is asserted: the app
container carries only its own settings, the admin port is never on a
LoadBalancer or NodePort Service, `global` values are accepted, and bad
values are refused by the schema.

usage: validate_chart.py CHART OUTDIR CACHECAR_BIN KUBERNETES_VALIDATE
"""

import os
import shutil
import subprocess
import sys
import tempfile

import helm_python as helm
import yaml

chart_dir, out_dir, cachecar, kubernetes_validate = sys.argv[1:5]
example_dir = os.path.join(os.path.dirname(chart_dir), "..", "examples", "helm", "app-with-cachecar")

APP_SETTINGS = {
    "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}},
    "envFrom": [{"secretRef": {"name": "app-secrets"}}],
    "securityContext": {"runAsUser": 1000},
    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
}

MODES = {
    "sidecar": {"global": {"imageRegistry": "registry.example.com"}},
    "sidecar-redis": {
        "redis": {"enabled": True, "existingSecret": "redis", "key": "url"},
        "adminToken": {"existingSecret": "admin", "key": "token"},
        "config": {
            "upstream": {"idle_timeout": "30s"},
            "cache": {"coalesce": {"across_instances": True}, "redis": {"pool_size": 4}},
            "routes": [{"name": "docs", "match": "GET /api/documents/{*path}", "ttl": "1h"}],
            "warmup": ["GET /api/documents/index"],
        },
    },
    "sidecar-native-lb": {
        "service": {"type": "LoadBalancer"},
        "sidecar": {"native": True},
        "app": APP_SETTINGS,
        "extraVolumes": [{"name": "data", "emptyDir": {}}],
        "extraEnv": [{"name": "CACHECAR_HASH_KEY", "valueFrom": {"secretKeyRef": {"name": "hash", "key": "key"}}}],
        "serviceAccount": {"create": True},
        "priorityClassName": "high",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "cachecar"}}}],
    },
    "standalone": {
        "mode": "standalone",
        "service": {"type": "NodePort"},
        "upstream": {"url": "http://api.default.svc.cluster.local:8000"},
        "redis": {"enabled": True, "url": "redis://redis:6379/0"},
        "adminToken": {"value": "s3cret"},
        "podDisruptionBudget": {"enabled": True},
        "autoscaling": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
}

# Custom resources kubernetes-validate has no schema for.
CRDS = {"ServiceMonitor", "PrometheusRule"}

failures = []


def validate(name, rendered):
    """Writes, validates and checks the rendered manifests; returns them."""
    mode_dir = os.path.join(out_dir, name)
    os.makedirs(mode_dir, exist_ok=True)
    docs, files = [], []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        for i, doc in enumerate(yaml.safe_load_all(text)):
            if not doc:
                continue
            docs.append(doc)
            if doc["kind"] == "ConfigMap" and "cachecar.yaml" in doc.get("data", {}):
                config = os.path.join(mode_dir, "cachecar.yaml")
                with open(config, "w") as f:
                    f.write(doc["data"]["cachecar.yaml"])
                env = dict(os.environ, CACHECAR_REDIS_URL="redis://redis:6379/0")
                check = subprocess.run([cachecar, "check", "--config", config],
                                       capture_output=True, text=True, env=env)
                if check.returncode != 0:
                    failures.append(f"{name}: rendered cachecar.yaml is invalid:\n{check.stderr}")
            if doc["kind"] in CRDS:
                continue
            file = os.path.join(mode_dir, f"{os.path.basename(path)[:-5]}-{i}.yaml")
            with open(file, "w") as f:
                yaml.safe_dump(doc, f)
            files.append(file)
    result = subprocess.run([kubernetes_validate, "--strict", "--quiet", *files],
                            capture_output=True, text=True)
    if result.returncode != 0:
        failures.append(f"{name}: kubernetes-validate:\n{result.stdout}{result.stderr}")
    print(f"{name}: {', '.join(sorted(d['kind'] for d in docs))}")
    return docs


def expect(name, ok, what):
    if not ok:
        failures.append(f"{name}: {what}")


def pod(docs):
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    return deployments[0]["spec"]["template"]["spec"] if len(deployments) == 1 else None


def container(spec, name):
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == name:
            return c
    return None


def admin_never_external(name, docs):
    for svc in (d for d in docs if d["kind"] == "Service"):
        external = svc["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort")
        ports = {p.get("targetPort") for p in svc["spec"]["ports"]}
        expect(name, not (external and "admin" in ports),
               f"Service {svc['metadata']['name']} ({svc['spec'].get('type')}) publishes the admin port")


def app_keeps_its_own(name, spec, native):
    app, cc = container(spec, "app"), container(spec, "cachecar")
    expect(name, app is not None and cc is not None, "app and cachecar containers")
    if not (app and cc):
        return
    own = app.get("securityContext", {})
    expect(name, not own.get("readOnlyRootFilesystem") and own.get("runAsUser") != 65532,
           f"the app got cachecar's hardening: {own}")
    expect(name, "runAsUser" not in spec.get("securityContext", {}),
           "the pod's securityContext sets a user for every container")
    expect(name, cc["securityContext"].get("readOnlyRootFilesystem") is True, "cachecar is hardened")
    if native:
        expect(name, container({"containers": spec.get("initContainers", [])}, "cachecar") is not None
               and cc.get("restartPolicy") == "Always", "cachecar is a native sidecar")
    else:
        expect(name, "sleep" in app.get("lifecycle", {}).get("preStop", {}),
               "the app outlives cachecar's drain (preStop)")


report = helm.lint(chart_dir, strict=True)
for m in report.get("messages", []):
    if m["severity"] >= 2:
        failures.append(f"helm lint: {m['path']}: {m['error']}")
failures += [f"helm lint: {e}" for e in report.get("errors", [])]

chart = helm.Chart.load(chart_dir)
for mode, values in MODES.items():
    chart.validate_schema(values)
    docs = validate(mode, chart.render(values, name="demo", namespace="default"))
    admin_never_external(mode, docs)
    kinds = {d["kind"] for d in docs}
    expect(mode, {"ConfigMap", "Deployment", "Service"} <= kinds, f"missing kinds in {kinds}")
    spec = pod(docs)
    if values.get("mode", "sidecar") == "sidecar" and spec:
        app_keeps_its_own(mode, spec, values.get("sidecar", {}).get("native", False))
    if mode == "sidecar-native-lb" and spec:
        app = container(spec, "app")
        for key in APP_SETTINGS:
            expect(mode, key in app, f"the app's own {key} is missing")
        expect(mode, spec.get("priorityClassName") == "high" and spec.get("topologySpreadConstraints"),
               "priorityClassName and topologySpreadConstraints")
        expect(mode, "ServiceAccount" in kinds and spec.get("serviceAccountName"), "the service account")
        expect(mode, any(e["name"] == "CACHECAR_HASH_KEY" for e in container(spec, "cachecar")["env"]),
               "cachecar's extra env")
    if mode == "standalone":
        rules = [d for d in docs if d["kind"] == "PrometheusRule"]
        shipped = yaml.safe_load(open(os.path.join(chart_dir, "files", "cachecar-rules.yml")))
        expect(mode, len(rules) == 1 and rules[0]["spec"] == shipped, "the PrometheusRule carries the rules file")
    if mode == "sidecar-redis":
        config = yaml.safe_load(open(os.path.join(out_dir, mode, "cachecar.yaml")))
        expect(mode, config["upstream"].get("idle_timeout") == "30s"
               and config["cache"]["redis"].get("pool_size") == 4
               and config["cache"]["redis"]["url"] == "${CACHECAR_REDIS_URL}",
               f"config keys pass through, the chart's own win: {config}")

# (b) The example app chart, with this chart as a dependency, built by Helm.
with tempfile.TemporaryDirectory() as tmp:
    parent = os.path.join(tmp, "examples", "helm", "app-with-cachecar")
    shutil.copytree(example_dir, parent)
    shutil.copytree(chart_dir, os.path.join(tmp, "helm", "cachecar"))
    helm.dependency_update(parent)
    docs = validate("dependency", helm.Chart.load(parent).render({}, name="shop", namespace="default"))
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    expect("dependency", len(deployments) == 1, f"one Deployment, the app's: {len(deployments)}")
    spec = pod(docs)
    if spec:
        app, cc = container(spec, "app"), container(spec, "cachecar")
        expect("dependency", cc and cc["image"].endswith("cachecar:0.1.0"), f"cachecar's image: {cc}")
        expect("dependency", app and "securityContext" not in app and app["image"].endswith(":0.1.0"),
               "the app container is the app's own")
        names = {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
        configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
        expect("dependency", names <= configmaps, f"the volume names the subchart's ConfigMap: {names} {configmaps}")
    admin_never_external("dependency", docs)

for bad in [{"mode": "bogus"}, {"replicaCount": "two"}, {"config": {"listen": "0.0.0.0:1"}},
            {"redis": {"url": "http://not-redis"}}, {"unknownKey": 1}]:
    try:
        chart.validate_schema(bad)
        failures.append(f"values.schema.json accepted {bad}")
    except helm.HelmError:
        pass

for bad in [{"mode": "standalone"}, {"serviceMonitor": {"enabled": True}, "adminService": {"enabled": False}}]:
    try:
        chart.render(bad, name="demo", namespace="default")
        failures.append(f"rendered {bad}")
    except helm.HelmError:
        pass

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
