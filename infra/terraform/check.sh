#!/usr/bin/env bash
# Offline checks of terraform/ (SPEC 9), with no terraform binary, network or API key:
#   1. every .tf file parses (python-hcl2): checkov alone exits 0 on a parse error;
#   2. consistency: module arguments vs module variables, var./local./module. references, descriptions,
#      and dev/prod main.tf, outputs.tf, versions.tf identical;
#   3. checkov on every module and environment (skips are written next to the resource, with a reason);
#   4. `terraform fmt -check`, only when a terraform binary happens to be on PATH.
# Usage: infra/terraform/check.sh [REPO_ROOT]  (or TF_CHECK_ROOT=...; default: this checkout).
# Needs the tools of infra/terraform/requirements.txt on PATH (`make check-infra` does that).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${1:-${TF_CHECK_ROOT:-${here}/../..}}" && pwd)"
tf_dir="${root}/terraform"

fail() {
    echo "terraform check FAILED: $*" >&2
    exit 1
}

[[ -d "${tf_dir}" ]] || fail "no terraform/ directory under ${root}"
command -v checkov >/dev/null || fail "checkov not on PATH (pip install -r infra/terraform/requirements.txt)"
python3 -c 'import hcl2' 2>/dev/null || fail "python3 cannot import hcl2 (pip install -r infra/terraform/requirements.txt)"
# python-hcl2 and checkov's bc-python-hcl2 both install the package `hcl2`; checkov only works with its own.
python3 -c 'from hcl2 import START_LINE' 2>/dev/null \
    || fail "the installed hcl2 package is python-hcl2's, which breaks checkov; restore checkov's with:" \
        "pip install --force-reinstall --no-deps bc-python-hcl2==0.4.3"

echo "-- terraform: parse (python-hcl2)"
python3 "${here}/tfcheck.py" parse "${tf_dir}" || fail "HCL parse errors (above)"

echo "-- terraform: consistency (modules, variables, outputs, references)"
python3 "${here}/tfcheck.py" consistency "${tf_dir}" || fail "inconsistent terraform (above)"
# dev and prod differ only in variables.tf defaults and the state key: the rest must not drift apart.
for file in main.tf outputs.tf versions.tf; do
    diff -u "${tf_dir}/environments/dev/${file}" "${tf_dir}/environments/prod/${file}" \
        || fail "environments/dev/${file} and environments/prod/${file} differ"
done

echo "-- terraform: checkov"
# Offline: no SCA package scan, no update check, no platform key; parse errors count as failures.
env -u BC_API_KEY -u PRISMA_API_URL \
    CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false CKV_SKIP_PACKAGE_UPDATE_CHECK=true CKV_PARSE_ERROR_FAIL=true \
    checkov -d "${tf_dir}" --framework terraform --quiet --compact \
    --download-external-modules false --skip-download \
    || fail "checkov found problems (above)"

if command -v terraform >/dev/null; then
    echo "-- terraform: fmt -check"
    TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff "${tf_dir}" || fail "terraform fmt would change the files above"
fi

echo "terraform checks passed"
