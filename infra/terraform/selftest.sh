#!/usr/bin/env bash
# Proves infra/terraform/check.sh catches what it claims to: copies terraform/ and infra/terraform/ to a
# temporary directory, breaks one thing at a time and expects check.sh to fail with the matching
# message; the unbroken copy must pass. Usage: infra/terraform/selftest.sh [REPO_ROOT]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${1:-${TF_CHECK_ROOT:-${here}/../..}}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
failures=0

# fresh_copy: a pristine copy of what check.sh reads, in ${work}/copy.
fresh_copy() {
    rm -rf "${work}/copy"
    mkdir -p "${work}/copy/infra"
    cp -R "${root}/terraform" "${work}/copy/terraform"
    cp -R "${root}/infra/terraform" "${work}/copy/infra/terraform"
}

# edit FILE OLD NEW: replace the one occurrence of OLD (a regular expression, multi-line) in FILE.
# Fails loudly when OLD does not match exactly once, so a stale case cannot pass vacuously.
edit() {
    python3 - "${work}/copy/$1" "$2" "$3" <<'PY'
import re
import sys

path, old, new = sys.argv[1:]
with open(path, encoding="utf-8") as handle:
    text = handle.read()
found = len(re.findall(old, text, flags=re.MULTILINE | re.DOTALL))
if found != 1:
    sys.exit(f"selftest setup: {old!r} matches {found} times in {path}, expected 1")
with open(path, "w", encoding="utf-8") as handle:
    handle.write(re.sub(old, new, text, flags=re.MULTILINE | re.DOTALL))
PY
}

# expect_failure NAME PATTERN: check.sh on the copy must exit non-zero and print PATTERN.
expect_failure() {
    local name="$1" pattern="$2" status=0
    bash "${work}/copy/infra/terraform/check.sh" "${work}/copy" >"${work}/out.txt" 2>&1 || status=$?
    if [[ ${status} -ne 0 ]] && grep -qE -- "${pattern}" "${work}/out.txt"; then
        echo "ok   ${name}: check.sh failed (exit ${status}) with /${pattern}/"
    else
        echo "FAIL ${name}: expected a failure matching /${pattern}/, got exit ${status}:" >&2
        tail -n 30 "${work}/out.txt" >&2
        failures=$((failures + 1))
    fi
}

echo "-- selftest: the unbroken copy passes"
fresh_copy
if bash "${work}/copy/infra/terraform/check.sh" "${work}/copy" >"${work}/out.txt" 2>&1; then
    echo "ok   unbroken copy passes"
else
    echo "FAIL unbroken copy: check.sh failed:" >&2
    tail -n 40 "${work}/out.txt" >&2
    failures=$((failures + 1))
fi

echo "-- selftest: broken copies fail"
fresh_copy
edit terraform/modules/messaging/main.tf 'bucket_key_enabled = true' 'bucket_key_enabled = = true'
expect_failure "syntax typo in a .tf file" 'PARSE ERROR .*modules/messaging/main\.tf'

fresh_copy
edit terraform/modules/messaging/variables.tf '^variable "force_destroy" \{.*?^\}\n' ''
expect_failure "variable removed from a module the env passes" \
    "module 'messaging' passes 'force_destroy', which modules/messaging does not declare"

fresh_copy
edit terraform/environments/dev/main.tf '^  bucket_name += local\.bucket_name\n' ''
expect_failure "env misses a required module variable" \
    "environments/dev: module 'messaging' does not pass 'bucket_name'"

fresh_copy
edit terraform/environments/prod/outputs.tf 'module\.messaging\.queue_url' 'module.messaging.queue_uri'
expect_failure "reference to a module output that does not exist" "has no output 'queue_uri'"

fresh_copy
edit terraform/modules/ecs/main.tf 'var\.log_retention_days' 'var.log_retention_day'
expect_failure "reference to an undeclared variable" 'var\.log_retention_day is not declared in modules/ecs'

fresh_copy
edit terraform/modules/alb/variables.tf \
    '(variable "idle_timeout" \{\n)  description = "[^"]*"\n' '\1'
expect_failure "variable without a description" "modules/alb: variable 'idle_timeout' has no description"

fresh_copy
edit terraform/environments/prod/main.tf 'max_receive_count += 5' 'max_receive_count          = 10'
expect_failure "dev and prod main.tf drift apart" 'environments/dev/main.tf and environments/prod/main.tf differ'

fresh_copy
edit terraform/modules/messaging/main.tf \
    '^resource "aws_s3_bucket_server_side_encryption_configuration" "this" \{.*?^\}\n' ''
expect_failure "S3 bucket without encryption (checkov)" 'CKV_AWS_145'

fresh_copy
edit terraform/modules/messaging/main.tf 'status = "Enabled"\n  \}\n\}' 'status = "Suspended"\n  }\n}'
expect_failure "S3 bucket versioning suspended (checkov)" 'CKV_AWS_21'

fresh_copy
edit terraform/modules/lake/main.tf '(sid = "GlueTables".*?)resources = \[[^\]]*\]' '\1resources = ["*"]'
expect_failure "lake policy's Glue statement on every resource (checkov)" 'CKV_AWS_356'

if [[ ${failures} -ne 0 ]]; then
    echo "terraform selftest FAILED: ${failures} case(s)" >&2
    exit 1
fi
echo "terraform selftest passed"
