#!/usr/bin/env bash
# Offline infrastructure checks (SPEC 9), run by `make check-infra` with the tools of .venv-infra on PATH.
# Each area owns infra/<area>/: its pinned tools (requirements.txt, package.json + lock), check.sh (the
# checks) and selftest.sh (breaks a copy of the repo on purpose and expects check.sh to fail).
set -euo pipefail
cd "$(dirname "$0")/.."
areas=(terraform helm containers)
for area in "${areas[@]}"; do
    echo "== check: ${area}"
    "infra/${area}/check.sh"
done
if [[ "${INFRA_SELFTEST:-1}" == "1" ]]; then
    for area in "${areas[@]}"; do
        echo "== selftest: ${area}"
        "infra/${area}/selftest.sh"
    done
fi
echo "infrastructure checks passed"
