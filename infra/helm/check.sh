#!/usr/bin/env bash
# Offline checks of the Helm chart helm/aws-s3-service (SPEC 9). No network, no helm binary, no cluster.
#
#   infra/helm/check.sh [REPO_ROOT]        (or HELM_CHECK_ROOT=REPO_ROOT; default: this checkout)
#
# Needs on PATH the tools of infra/helm/requirements.txt (python with helm-python-sdk, kubernetes-validate,
# checkov: `make check-infra` puts .venv-infra/bin first) and node, with `npm ci --prefix infra/helm` done.
#
# 1. helm lint (Helm's own linter, strict) with the values of every render below.
# 2. Render (helm template through helm-python-sdk, values.schema.json enforced, with --api-versions for
#    Istio's APIs as a cluster with Istio serves them): the chart's defaults (Istio on, as in the service
#    this one replaces); the defaults with that service's README Istio overrides (original-istio-values.yaml);
#    dev as its README deploys it (values.yaml + values-dev.yaml + --set image.tag=abc123) and under another
#    release name; prod; prod with istio.enabled=false; prod with Istio's JWT policies; prod and dev with
#    two sources (sources-values.yaml); prod with the lake on (config.LAKE_*, as from Terraform's outputs).
# 3. kubernetes-validate --strict on every non-Istio object, for Kubernetes $KUBE_VERSION.
# 4. Istio objects against @kubernetes-models/istio (validate-istio.mjs; unknown fields rejected).
# 5. assert_rendered.py: probes, security context, resources = the values file's, IRSA annotation, the
#    shutdown timings, HPA/PDB/migration wiring, the pods' labels (app.kubernetes.io/name=aws-s3-service
#    whatever the release name) and image, Istio objects present exactly when istio.enabled and carrying
#    the values' VirtualService timeout/retries, DestinationRule pool and Gateway servers (plus, hard-coded,
#    the original service's defaults for the defaults render and its README's numbers for the overrides),
#    the sources ConfigMap exactly when sources are set and the Job migrating, then applying them
#    (hardened, hooks in order); without sources, the single migrate container.
# 6. Values the chart must refuse (schema and template checks) make rendering fail, for the right reason;
#    so does Istio on a cluster without Istio's APIs (no --api-versions), unless istio.requireCrds=false.
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
jwt_sets="istio.requestAuthentication.enabled=true,istio.authorizationPolicy.enabled=true"
jwt_sets+=",config.JWT_JWKS_URL=https://idp.example.com/.well-known/jwks.json"
# The lake on, with what Terraform's lake_warehouse and lake_glue_database outputs look like.
lake_sets="config.LAKE_WAREHOUSE=s3://aws-s3-service-prod-lake-123456789012-us-east-1/warehouse"
lake_sets+=",config.LAKE_NAMESPACE=aws_s3_service_prod,config.LAKE_EXPORT_INTERVAL_SECONDS=5"
# `helm template` knows no cluster: these stand for one with Istio 1.22+ (the APIs the chart renders).
istio_apis=(--api-versions networking.istio.io/v1 --api-versions security.istio.io/v1)

# name | the chart's values files (-f, in order) | --set | Istio objects expected | extra values file in
# infra/helm | release name (default aws-s3-service) | assert_rendered.py --expect (the original service's
# numbers, hard-coded there). Every render gets ci-deploy-values.yaml after the chart's files.
renders=(
    "defaults|values.yaml||on|||original-defaults"
    "original-istio|values.yaml||on|original-istio-values.yaml||original-readme"
    "dev|values.yaml values-dev.yaml|image.tag=abc123|on"
    "dev-other-release|values.yaml values-dev.yaml|image.tag=abc123|on||files-api"
    "prod|values-prod.yaml||on"
    "prod-no-istio|values-prod.yaml|istio.enabled=false|off"
    "prod-istio-jwt|values-prod.yaml|$jwt_sets|on"
    "prod-sources|values-prod.yaml||on|sources-values.yaml"
    "dev-sources|values-dev.yaml|istio.enabled=false|off|sources-values.yaml"
    "prod-lake|values-prod.yaml|$lake_sets|on"
)

echo "-- helm lint"
# helm lint takes no --api-versions (nor does Helm's CLI) and only logs a template's `fail`: with
# istio.requireCrds off, its output is not littered with the missing-CRDs line (renders check that below).
for entry in "${renders[@]}"; do
    IFS='|' read -r name files sets _ extra _ _ <<<"$entry"
    args=()
    for file in $files; do args+=(-f "$chart/$file"); done
    args+=(-f "$deploy_values")
    [[ -n "$extra" ]] && args+=(-f "$tools/$extra")
    [[ -n "$sets" ]] && args+=(--set "$sets")
    "$python" "$tools/helmtool.py" lint "$chart" "${args[@]}" --set istio.requireCrds=false \
        --kube-version "v$kube_version" || fail "helm lint failed ($name)"
done

echo "-- render"
for entry in "${renders[@]}"; do
    IFS='|' read -r name files sets _ extra release _ <<<"$entry"
    args=()
    for file in $files; do args+=(-f "$chart/$file"); done
    args+=(-f "$deploy_values")
    [[ -n "$extra" ]] && args+=(-f "$tools/$extra")
    [[ -n "$sets" ]] && args+=(--set "$sets")
    "$python" "$tools/helmtool.py" template "$chart" "${args[@]}" "${istio_apis[@]}" \
        --kube-version "v$kube_version" --name "${release:-aws-s3-service}" --out "$work/render/$name" \
        || fail "rendering failed ($name)"
done

echo "-- kubernetes-validate --strict (Kubernetes $kube_version)"
kubernetes-validate --strict --quiet -k "$kube_version" "$work"/render/*/k8s/*.yaml \
    || fail "kubernetes-validate rejected a manifest"

echo "-- Istio objects (@kubernetes-models/istio)"
for entry in "${renders[@]}"; do
    IFS='|' read -r name _ _ istio _ _ _ <<<"$entry"
    if [[ "$istio" == "on" ]]; then
        node "$tools/validate-istio.mjs" "$work/render/$name/istio" || fail "invalid Istio object ($name)"
    fi
done

echo "-- assertions"
for entry in "${renders[@]}"; do
    IFS='|' read -r name files sets istio extra release expect <<<"$entry"
    args=(-f "$chart/values.yaml")
    for file in $files; do args+=(-f "$chart/$file"); done
    args+=(-f "$deploy_values")
    [[ -n "$extra" ]] && args+=(-f "$tools/$extra")
    [[ -n "$sets" ]] && args+=(--set "$sets")
    [[ -n "$expect" ]] && args+=(--expect "$expect")
    "$python" "$tools/assert_rendered.py" "$work/render/$name" --istio "$istio" "${args[@]}" \
        --release "${release:-aws-s3-service}" || fail "assertions failed ($name)"
done

echo "-- the lake's settings in the ConfigMap"
# Off by default (its empty keys are left out, so the service's defaults apply); on, as Terraform's outputs
# set it, with values-prod.yaml's LAKE_CATALOG=glue.
"$python" - "$work/render" <<'PY' || fail "the lake's settings are not rendered as expected"
import sys
from pathlib import Path

import yaml

root = Path(sys.argv[1])
expected = {
    "defaults": {"LAKE_EXPORT_INTERVAL_SECONDS": "10"},
    "prod-lake": {
        "LAKE_WAREHOUSE": "s3://aws-s3-service-prod-lake-123456789012-us-east-1/warehouse",
        "LAKE_CATALOG": "glue",
        "LAKE_NAMESPACE": "aws_s3_service_prod",
        "LAKE_EXPORT_INTERVAL_SECONDS": "5",
    },
}
failed = False
for render, wanted in expected.items():
    (path,) = (root / render / "k8s").glob("*-configmap-aws-s3-service.yaml")
    data = yaml.safe_load(path.read_text())["data"]
    got = {key: value for key, value in data.items() if key.startswith("LAKE_")}
    if got != wanted:
        print(f"{render}: the ConfigMap's LAKE_* settings are {got}, expected {wanted}")
        failed = True
    else:
        print(f"{render}: LAKE_* settings as expected")
sys.exit(1 if failed else 0)
PY

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
    'config.LAKE_CATALOG=hive|/config/LAKE_CATALOG'
    'config.LAKE_WAREHOUSE=my-bucket/warehouse|/config/LAKE_WAREHOUSE'
    'config.LAKE_NAMESPACE=aws-s3-service|/config/LAKE_NAMESPACE'
    'serviceAccount.roleArn=|serviceAccount.roleArn is required'
    'istio.sidecar.terminationDrainSeconds=5|terminationDrainSeconds (5)'
    'istio.virtualService.retries.retryOn=5xx;oops|/istio/virtualService/retries/retryOn'
    'istio.virtualService.timeout=10|/istio/virtualService/timeout'
    'istio.virtualService.read.timeout=5s|read is no longer a setting: use istio.virtualService.timeout and'
    'istio.gateway.tls.enabled=true,istio.gateway.tls.credentialName=|istio.gateway.tls.credentialName is required'
    "${source//sources.billing./sources.Billing.}|invalid propertyName 'Billing'"
    "${source%,*}|missing property 'columns'"
    "$source,sources.billing.name=other|sources.billing: its name is its key"
    "$source,migration.enabled=false|sources need migration.enabled"
)
for entry in "${refused[@]}"; do
    sets="${entry%|*}"
    expected="${entry##*|}"
    if "$python" "$tools/helmtool.py" template "$chart" -f "$chart/values-prod.yaml" -f "$deploy_values" \
        --set "$sets" "${istio_apis[@]}" --out "$work/refused" >"$work/refused.log" 2>&1; then
        fail "rendering accepted --set $sets"
    fi
    grep -qF -- "$expected" "$work/refused.log" \
        || { cat "$work/refused.log" >&2; fail "--set $sets failed, but not with '$expected'"; }
    echo "refused as expected: --set $sets"
done

# A cluster without Istio's APIs (as a `helm install` there sees it): one line naming the missing APIs.
no_crds="istio.enabled is true but this cluster has no Istio CRDs"
# --set | --api-versions given | the expected line's fragment
missing_apis=(
    "istio.requireCrds=true||$no_crds (networking.istio.io/v1, security.istio.io/v1): install Istio"
    "istio.requireCrds=true|networking.istio.io/v1|$no_crds (security.istio.io/v1): install Istio"
    "istio.peerAuthentication.enabled=false||$no_crds (networking.istio.io/v1): install Istio"
)
for entry in "${missing_apis[@]}"; do
    IFS='|' read -r sets apis expected <<<"$entry"
    args=(--set "$sets")
    [[ -n "$apis" ]] && args+=(--api-versions "$apis")
    if "$python" "$tools/helmtool.py" template "$chart" -f "$chart/values-prod.yaml" -f "$deploy_values" \
        "${args[@]}" --out "$work/refused" >"$work/refused.log" 2>&1; then
        fail "rendering accepted Istio without its APIs (${args[*]})"
    fi
    grep -qF -- "$expected" "$work/refused.log" \
        || { cat "$work/refused.log" >&2; fail "Istio without APIs (${args[*]}) failed, not with '$expected'"; }
    grep -qF -- "or set --set istio.enabled=false" "$work/refused.log" \
        || { cat "$work/refused.log" >&2; fail "the missing-CRDs message must say how to turn Istio off"; }
    echo "refused as expected: Istio without its APIs (${args[*]})"
done
# ... but Istio off needs none, and istio.requireCrds=false (GitOps renderers without the cluster's APIs)
# renders the Istio objects all the same.
for sets in istio.enabled=false istio.requireCrds=false; do
    "$python" "$tools/helmtool.py" template "$chart" -f "$chart/values-prod.yaml" -f "$deploy_values" \
        --set "$sets" --out "$work/accepted-$sets" >"$work/accepted.log" 2>&1 \
        || { cat "$work/accepted.log" >&2; fail "rendering without Istio's APIs refused --set $sets"; }
    echo "accepted as expected without Istio's APIs: --set $sets"
done
[[ -n "$(ls "$work/accepted-istio.requireCrds=false/istio")" ]] \
    || fail "istio.requireCrds=false rendered no Istio object"
rm -rf "$work/accepted-"*

echo "-- checkov (kubernetes)"
checkov -d "$work/render" --framework kubernetes --quiet --compact --skip-download \
    || fail "checkov found problems in the rendered manifests"

echo "helm checks passed"
