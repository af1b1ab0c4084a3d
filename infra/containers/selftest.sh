#!/usr/bin/env bash
# Proves that infra/containers/check.sh catches what it is meant to: copies the container and pipeline
# files to a temporary directory, checks the untouched copy (must pass), then breaks one thing at a time
# and expects the named check(s) to fail. Run by `make check-infra` after the checks (INFRA_SELFTEST=1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
check="${here}/check.sh"
# terraform/ and the chart: the GitLab jobs' defaults are Terraform's names (gitlab-variables).
files=(
    Dockerfile .dockerignore docker-compose.yml deploy/localstack/init-aws.sh Jenkinsfile .gitlab-ci.yml
    .github/workflows/ci.yml .yamllint.yaml .ci/run terraform helm/aws-s3-service
)

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
pristine="${work}/pristine"
case_dir="${work}/case"
mkdir -p "${pristine}"
(cd "${repo}" && tar -cf - "${files[@]}") | (cd "${pristine}" && tar -xf -)

failures=0

fail() {
    echo "SELFTEST FAILED: $*"
    failures=$((failures + 1))
}

# fresh: a new copy of the pristine files in ${case_dir}.
fresh() {
    rm -rf "${case_dir}"
    cp -a "${pristine}" "${case_dir}"
}

# mutate FILE PATTERN REPLACEMENT: re.sub (re.MULTILINE) on a file of the copy, in place (its mode
# is kept); a pattern that matches nothing is a bug in this script.
mutate() {
    python3 - "${case_dir}/$1" "$2" "$3" <<'PY' || exit 2
import re
import sys

path, pattern, replacement = sys.argv[1:]
with open(path, encoding="utf-8") as handle:
    text = handle.read()
changed, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
if count == 0:
    sys.exit(f"selftest bug: {pattern!r} matches nothing in {path}")
with open(path, "w", encoding="utf-8") as handle:
    handle.write(changed)
PY
}

# expect_failure CASE "CHECKS": check.sh restricted to CHECKS must exit non-zero, naming each of them.
expect_failure() {
    local name="$1" checks="$2" log="${work}/$1.log" expected
    if CONTAINERS_CHECKS="${checks}" "${check}" "${case_dir}" >"${log}" 2>&1; then
        fail "${name}: check.sh passed, expected ${checks} to fail"
        sed 's/^/    /' "${log}"
        return
    fi
    for expected in ${checks}; do
        if ! grep -Eq "^containers: FAILED: (.* )?${expected}( |$)" "${log}"; then
            fail "${name}: ${expected} did not fail"
            sed 's/^/    /' "${log}"
            return
        fi
    done
    echo "ok   ${name}: ${checks} failed as expected"
}

echo "== untouched copy passes every check"
fresh
if "${check}" "${case_dir}" >"${work}/pristine.log" 2>&1; then
    echo "ok   untouched copy"
else
    fail "the untouched copy does not pass"
    sed 's/^/    /' "${work}/pristine.log"
fi

echo "== broken copies fail"
fresh
mutate Dockerfile '^FROM python:\S+ AS base$' 'FROM python:latest AS base'
expect_failure dockerfile-latest-base "hadolint checkov"

fresh
mutate Dockerfile '^FROM python:\S+ AS base$' 'FROM python AS base'
expect_failure dockerfile-untagged-base "hadolint"

fresh
mutate Dockerfile '(?s)^HEALTHCHECK .*?CMD \[[^\n]*\n' ''
expect_failure dockerfile-no-healthcheck "checkov"

fresh
mutate .gitlab-ci.yml '^(lint:\n(?:  .*\n)*?)  stage: lint$' '\1  stages: lint'
expect_failure gitlab-ci-misspelled-key "gitlab-ci-schema"

fresh
mutate .gitlab-ci.yml '^      when: manual$' '      when: sometimes'
expect_failure gitlab-ci-bad-when "gitlab-ci-schema"

fresh
mutate docker-compose.yml '^(    stop_grace_period: .*)$' '\1\n    restart_policy: always'
expect_failure compose-invalid-key "compose-schema"

fresh
mutate docker-compose.yml '^(  app:\n(?:    .*\n|\n)*?)    read_only: true$' '\1    read_only: false'
expect_failure compose-writable-root "compose-policy"

fresh
mutate docker-compose.yml '^    image: localstack/localstack:.*$' '    image: localstack/localstack:latest'
expect_failure compose-latest-image "compose-policy"

fresh
chmod -x "${case_dir}/deploy/localstack/init-aws.sh"
expect_failure compose-init-hook-not-executable "compose-policy"

fresh
mutate .github/workflows/ci.yml '^    runs-on: ' '    runs_on: '
expect_failure github-workflow-bad-key "github-workflow-schema"

fresh
mutate docker-compose.yml '^(      POSTGRES_DB: .*)$' '\1\n      POSTGRES_DB: other'
expect_failure yaml-duplicate-key "yamllint"

fresh
mutate Jenkinsfile '\n\}\s*\Z' '\n'
expect_failure jenkinsfile-syntax-error "groovy-lint"

fresh
cat >"${case_dir}/deploy/unquoted.sh" <<'EOF'
#!/usr/bin/env bash
target=$1
rm -rf $target/cache
EOF
expect_failure shell-unquoted-variable "shellcheck"

fresh
# shellcheck disable=SC2016 # a literal $: the unquoted expansion goes into the copy of .ci/run
mutate .ci/run '\Z' 'ls $CI_RUN_DIR\n'
expect_failure ci-run-unquoted-variable "shellcheck"

fresh
# shellcheck disable=SC2016 # literal $: the broken copy gets the unquoted expansion
mutate Jenkinsfile 'docker push "\$ECR_REPOSITORY_URL:\$IMAGE_TAG"$' 'docker push $ECR_REPOSITORY_URL:$IMAGE_TAG'
expect_failure jenkinsfile-sh-unquoted-variable "embedded-shell"

fresh
# shellcheck disable=SC2016 # as above
mutate .gitlab-ci.yml '^    - make lint$' '    - make lint $LINT_ARGS'
expect_failure gitlab-script-unquoted-variable "embedded-shell"

fresh
mutate Jenkinsfile "defaultValue: 'aws-credentials'" "defaultValue: 'aws-s3-service-aws-{env}'"
expect_failure jenkins-aws-credentials-default "jenkins-credentials"

fresh
# shellcheck disable=SC2016 # a literal ${params.ENV}: Groovy, in the broken copy
mutate Jenkinsfile 'aws\(credentialsId: awsCredentialsId\(\),' 'aws(credentialsId: "aws-s3-service-aws-${params.ENV}",'
expect_failure jenkins-aws-credentials-hard-wired "jenkins-credentials"

fresh
# shellcheck disable=SC2016 # literal $: a deploy job that requires GATEWAY_URL again
mutate .gitlab-ci.yml '^(\.deploy:\n(?:  .*\n)*?  script:\n)' '\1    - test -n "${GATEWAY_URL:-}" || { echo "GATEWAY_URL is not set"; exit 1; }\n'
expect_failure gitlab-deploy-requires-gateway-url "gitlab-variables"

fresh
# shellcheck disable=SC2016 # literal ${var.name}: Terraform renames the queue the deploy job looks up
mutate terraform/modules/messaging/main.tf '"\$\{var\.name\}-ingest"' '"${var.name}-files"'
expect_failure terraform-queue-renamed "gitlab-variables"

if ((failures > 0)); then
    echo "containers selftest: ${failures} failure(s)"
    exit 1
fi
echo "containers selftest: passed"
