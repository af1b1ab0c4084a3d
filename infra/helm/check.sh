#!/usr/bin/env bash
# Offline checks of the Helm chart helm/aws-s3-service (SPEC 9). No network, no helm binary, no cluster.
#
#   infra/helm/check.sh [REPO_ROOT]        (or HELM_CHECK_ROOT=REPO_ROOT; default: this checkout)
#
# Needs on PATH the tools of infra/helm/requirements.txt (python with helm-python-sdk, kubernetes-validate,
# checkov: `make check-infra` puts .venv-infra/bin first) and node, with `npm ci --prefix infra/helm` done.
#
# 1. helm lint (Helm's own linter, strict) with the dev and prod values, and prod with Istio on.
# 2. Render (helm template through helm-python-sdk, values.schema.json enforced) for dev, prod, prod with
#    istio.enabled=true, prod with Istio and its JWT policies, and prod and dev with two sources
#    (sources-values.yaml).
# 3. kubernetes-validate --strict on every non-Istio object, for Kubernetes $KUBE_VERSION.
# 4. Istio objects against @kubernetes-models/istio (validate-istio.mjs; unknown fields rejected).
# 5. assert_rendered.py: probes, security context, resources = the values file's, IRSA annotation, the
#    shutdown timings, HPA/PDB/migration wiring, Istio objects present exactly when istio.enabled, the
#    sources ConfigMap exactly when sources are set and the Job migrating, then applying them (hardened,
#    hooks in order); without sources, the single migrate container.
# 6. Values the chart must refuse (schema and template checks) make rendering fail, for the right reason.
# 7. checkov on all rendered manifests (skips: checkov.io/skipN annotations in the templates, each with
#    its reason).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${1:-${HELM_CHECK_ROOT:-$here/../..}}" && pwd)"
chart="$root/helm/aws-s3-service"
tools="$root/infra/helm"
kube_version="${KUBE_VERSION:-1.31.0}"
python="${PYTHON:-python}"

fail() {
    echo "helm check: $*" >&2
    exit 1
}

command -v "$python" >/dev/null || fail "$python not found (run through make check-infra, or put .venv-infra/bin on PATH)"
"$python" -c 'import helm_python' 2>/dev/null || fail "helm-python-sdk is not installed for $python (infra/helm/requirements.txt)"
command -v kubernetes-validate >/dev/null || fail "kubernetes-validate not on PATH (infra/helm/requirements.txt)"
command -v checkov >/dev/null || fail "checkov not on PATH (infra/helm/requirements.txt)"
command -v node >/dev/null || fail "node not on PATH"
[[ -d "$tools/node_modules/@kubernetes-models/istio" ]] || fail "run: npm ci --prefix infra/helm"
[[ -f "$chart/Chart.yaml" ]] || fail "no chart at $chart"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# What a real deploy passes from the Terraform outputs and the secret store (docs/deploy-helm.md).
deploy_values="$tools/ci-deploy-values.yaml"
jwt_sets="istio.enabled=true,istio.requestAuthentication.enabled=true,istio.authorizationPolicy.enabled=true"
jwt_sets+=",config.JWT_JWKS_URL=https://idp.example.com/.well-known/jwks.json"

# name | values file | --set | Istio objects expected | extra values file in infra/helm (optional)
renders=(
    "dev|values-dev.yaml||off"
    "prod|values-prod.yaml||off"
    "prod-istio|values-prod.yaml|istio.enabled=true|on"
    "prod-istio-jwt|values-prod.yaml|$jwt_sets|on"
    "prod-sources|values-prod.yaml||off|sources-values.yaml"
    "dev-sources|values-dev.yaml||off|sources-values.yaml"
)

echo "-- helm lint"
for entry in "${renders[@]}"; do
    IFS='|' read -r name file sets _ extra <<<"$entry"
    args=(-f "$chart/$file" -f "$deploy_values")
    [[ -n "$extra" ]] && args+=(-f "$tools/$extra")
    [[ -n "$sets" ]] && args+=(--set "$sets")
    "$python" "$tools/helmtool.py" lint "$chart" "${args[@]}" --kube-version "v$kube_version" \
        || fail "helm lint failed ($name)"
done

echo "-- render"
for entry in "${renders[@]}"; do
    IFS='|' read -r name file sets _ extra <<<"$entry"
    args=(-f "$chart/$file" -f "$deploy_values")
    [[ -n "$extra" ]] && args+=(-f "$tools/$extra")
    [[ -n "$sets" ]] && args+=(--set "$sets")
    "$python" "$tools/helmtool.py" template "$chart" "${args[@]}" --out "$work/render/$name" \
        || fail "rendering failed ($name)"
done

echo "-- kubernetes-validate --strict (Kubernetes $kube_version)"
kubernetes-validate --strict --quiet -k "$kube_version" "$work"/render/*/k8s/*.yaml \
    || fail "kubernetes-validate rejected a manifest"

echo "-- Istio objects (@kubernetes-models/istio)"
for entry in "${renders[@]}"; do
    IFS='|' read -r name _ _ istio _ <<<"$entry"
    if [[ "$istio" == "on" ]]; then
        node "$tools/validate-istio.mjs" "$work/render/$name/istio" || fail "invalid Istio object ($name)"
    fi
done

echo "-- assertions"
for entry in "${renders[@]}"; do
    IFS='|' read -r name file _ istio extra <<<"$entry"
    args=(-f "$chart/values.yaml" -f "$chart/$file" -f "$deploy_values")
    [[ -n "$extra" ]] && args+=(-f "$tools/$extra")
    "$python" "$tools/assert_rendered.py" "$work/render/$name" --istio "$istio" "${args[@]}" \
        || fail "assertions failed ($name)"
done

echo "-- values the chart must refuse"
# One source, enough for the schema (the app validates the rest).
source="sources.billing.tenant=acme,sources.billing.prefix=billing/,sources.billing.format=csv"
source+=",sources.billing.columns[0].name=id"
# --set value | a fragment of the expected error
refused=(
    'replicaCount=two|/replicaCount'
    'nonexistentKey=1|nonexistentKey'
    'resources.limits.cpu=lots|/resources/limits/cpu'
    'resources.requests.memory=512MB|/resources/requests/memory'
    'config.LOG_LEVEL=verbose|/config/LOG_LEVEL'
    'config.SQS_QUEUE_URL=|config.SQS_QUEUE_URL is required'
    'config.JWT_JWKS_URL=https://idp.example.com/jwks,config.JWT_AUDIENCE=|config.JWT_ISSUER and config.JWT_AUDIENCE are required'
    'config.SHUTDOWN_GRACE_SECONDS=45|terminationGracePeriodSeconds (60) must exceed'
    'serviceAccount.roleArn=|serviceAccount.roleArn is required'
    'istio.enabled=true,istio.sidecar.terminationDrainSeconds=5|terminationDrainSeconds (5)'
    'istio.enabled=true,istio.virtualService.read.retries.retryOn=5xx;oops|/istio/virtualService/read/retries/retryOn'
    "${source//sources.billing./sources.Billing.}|invalid propertyName 'Billing'"
    "${source%,*}|missing property 'columns'"
    "$source,sources.billing.name=other|sources.billing: its name is its key"
    "$source,migration.enabled=false|sources need migration.enabled"
)
for entry in "${refused[@]}"; do
    sets="${entry%|*}"
    expected="${entry##*|}"
    if "$python" "$tools/helmtool.py" template "$chart" -f "$chart/values-prod.yaml" -f "$deploy_values" \
        --set "$sets" --out "$work/refused" >"$work/refused.log" 2>&1; then
        fail "rendering accepted --set $sets"
    fi
    grep -qF -- "$expected" "$work/refused.log" \
        || { cat "$work/refused.log" >&2; fail "--set $sets failed, but not with '$expected'"; }
    echo "refused as expected: --set $sets"
done

echo "-- checkov (kubernetes)"
checkov -d "$work/render" --framework kubernetes --quiet --compact --skip-download \
    || fail "checkov found problems in the rendered manifests"

echo "helm checks passed"
