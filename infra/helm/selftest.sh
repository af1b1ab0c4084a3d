#!/usr/bin/env bash
# Proves infra/helm/check.sh catches what it claims to: copies helm/ and infra/helm/ (node_modules linked,
# not copied) to a temporary directory, breaks the copy on purpose one way at a time, and expects check.sh
# to fail for that reason (a fragment of its output is matched); the unbroken copy must pass.
#
#   infra/helm/selftest.sh [REPO_ROOT]     (or HELM_CHECK_ROOT=REPO_ROOT; same tools on PATH as check.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "${1:-${HELM_CHECK_ROOT:-$here/../..}}" && pwd)"
[[ -d "$src/infra/helm/node_modules" ]] || { echo "selftest: run npm ci --prefix infra/helm first" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
cases=0

# A fresh copy of the repository parts the check reads, at $tmp/$1.
fresh_copy() {
    local dest="$tmp/$1"
    mkdir -p "$dest/infra/helm"
    cp -R "$src/helm" "$dest/helm"
    (cd "$src/infra/helm" && tar --exclude=./node_modules -cf - .) | (cd "$dest/infra/helm" && tar -xf -)
    ln -s "$src/infra/helm/node_modules" "$dest/infra/helm/node_modules"
}

# break_case NAME FILE EXPECTED MUTATION...: copy, run MUTATION on FILE (relative to the copy), expect
# check.sh to fail with EXPECTED in its output.
break_case() {
    local name="$1" file="$2" expected="$3"
    shift 3
    local dest="$tmp/$name"
    cases=$((cases + 1))
    fresh_copy "$name"
    cp "$dest/$file" "$tmp/$name.orig"
    "$@" "$dest/$file"
    if cmp -s "$dest/$file" "$tmp/$name.orig"; then
        echo "FAIL $name: the mutation did not change $file"
        failures=$((failures + 1))
        return
    fi
    if "$dest/infra/helm/check.sh" "$dest" >"$tmp/$name.log" 2>&1; then
        echo "FAIL $name: check.sh passed on a broken copy"
        failures=$((failures + 1))
    elif ! grep -qF -- "$expected" "$tmp/$name.log"; then
        echo "FAIL $name: check.sh failed, but its output lacks '$expected':"
        tail -n 15 "$tmp/$name.log" | sed 's/^/    /'
        failures=$((failures + 1))
    else
        echo "ok   $name: check.sh failed as expected ('$expected')"
    fi
}

# Mutations (each takes the file to change as its last argument).
unclosed_action() { printf '%s\n' '{{ .Values.replicaCount' >>"$1"; }
bad_replica_type() { sed -i 's/^replicaCount: 2$/replicaCount: two/' "$1"; }
no_readiness_probe() { sed -i '/^          readinessProbe:/,/probes.readiness.failureThreshold/d' "$1"; }
misspelled_vs_field() { sed -i 's/^      retries:/      retires:/' "$1"; }
short_grace_period() { sed -i 's/^terminationGracePeriodSeconds: 60$/terminationGracePeriodSeconds: 40/' "$1"; }
no_irsa_annotation() { sed -i '/eks.amazonaws.com\/role-arn/d' "$1"; }
host_network() { sed -i 's/^      automountServiceAccountToken: false$/&\n      hostNetwork: true/' "$1"; }
istio_always() { sed -i 's/^{{- if .Values.istio.enabled }}$/{{- if true }}/' "$1"; }
misspelled_k8s_field() { sed -i 's/^      targetPort: http$/      tragetPort: http/' "$1"; }
sources_always() {
    sed -i 's/^{{- if and .Values.migration.enabled .Values.sources }}$/{{- if .Values.migration.enabled }}/' "$1"
}
sources_hook_succeeded() {
    sed -i 's/^    helm.sh\/hook-delete-policy: before-hook-creation$/&,hook-succeeded/' "$1"
}
writable_job_root() { sed -i 's/^    readOnlyRootFilesystem: true$/    readOnlyRootFilesystem: false/' "$1"; }
original_pool_changed() { sed -i 's/^        maxConnections: 100$/        maxConnections: 150/' "$1"; }
retry_writes_on_5xx() {
    sed -i 's/^        retryOn: connect-failure,refused-stream$/        retryOn: 5xx,connect-failure,refused-stream/' "$1"
}
read_accepted() { sed -i '/istio.virtualService.read is no longer a setting/d' "$1"; }
# shellcheck disable=SC2016 # $istio is the template's variable, matched literally
no_crd_check() { sed -i 's/^{{- if $istio.requireCrds }}$/{{- if false }}/' "$1"; }
open_schema() {
    "${PYTHON:-python}" -c 'import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
schema = json.loads(path.read_text())
schema["additionalProperties"] = True
path.write_text(json.dumps(schema, indent=2))' "$1"
}

echo "-- unbroken copy"
cases=$((cases + 1))
fresh_copy pristine
if "$tmp/pristine/infra/helm/check.sh" "$tmp/pristine" >"$tmp/pristine.log" 2>&1; then
    echo "ok   pristine: check.sh passed"
else
    echo "FAIL pristine: check.sh failed on the unbroken copy:"
    tail -n 30 "$tmp/pristine.log" | sed 's/^/    /'
    failures=$((failures + 1))
fi

echo "-- broken copies"
t=helm/aws-s3-service/templates
break_case template-typo "$t/deployment.yaml" "unclosed action" unclosed_action
break_case bad-value-type helm/aws-s3-service/values-prod.yaml "got string, want integer" bad_replica_type
break_case no-readiness-probe "$t/deployment.yaml" "readinessProbe must GET /ready" no_readiness_probe
break_case istio-misspelled-field "$t/istio-virtualservice.yaml" "retires: unknown field" misspelled_vs_field
break_case short-grace-period helm/aws-s3-service/values-prod.yaml "must exceed" short_grace_period
break_case no-irsa-annotation "$t/serviceaccount.yaml" "eks.amazonaws.com/role-arn" no_irsa_annotation
break_case checkov-host-network "$t/deployment.yaml" "CKV_K8S_19" host_network
break_case istio-without-toggle "$t/istio-destinationrule.yaml" "must render no Istio object" istio_always
break_case k8s-misspelled-field "$t/service.yaml" "tragetPort" misspelled_k8s_field
break_case sources-configmap-always "$t/sources-configmap.yaml" "no sources ConfigMap expected without sources" \
    sources_always
break_case sources-configmap-deleted "$t/sources-configmap.yaml" "must not be hook-succeeded" sources_hook_succeeded
break_case job-writable-root "$t/_helpers.tpl" "migration Job container migrate: container readOnlyRootFilesystem" \
    writable_job_root
break_case schema-open helm/aws-s3-service/values.schema.json "rendering accepted --set nonexistentKey=1" open_schema
v=helm/aws-s3-service/values.yaml
break_case original-pool-default "$v" "tcp.maxConnections: 150, expected 100 (the original's default)" \
    original_pool_changed
break_case writes-retried-on-5xx "$v" "must retry only what never reached a pod" retry_writes_on_5xx
break_case read-route-accepted "$t/_helpers.tpl" "rendering accepted --set istio.virtualService.read.timeout=5s" \
    read_accepted
break_case no-istio-crd-check "$t/_helpers.tpl" "rendering accepted Istio without its APIs" no_crd_check

passed=$((cases - failures))
echo "helm selftest: ${passed} passed, ${failures} failed"
[[ "$failures" -eq 0 ]]
