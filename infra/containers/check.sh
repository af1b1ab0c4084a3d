#!/usr/bin/env bash
# Offline checks of the container and pipeline assets (SPEC 9): Dockerfile, docker-compose.yml and its
# LocalStack init hook, .gitlab-ci.yml, .github/workflows/*.yml, Jenkinsfile, every YAML and shell file,
# and the shell embedded in the Jenkinsfile and .gitlab-ci.yml; and that the pipelines work with the
# original service's credential and variable names (jenkins-credentials, gitlab-variables).
#
#   infra/containers/check.sh [REPO_ROOT]      (or CONTAINERS_CHECK_ROOT=...; default: this checkout)
#
# Tools come from PATH (make check-infra puts .venv-infra/bin first: hadolint, checkov, check-jsonschema,
# yamllint, shellcheck, all pinned in infra/containers/requirements.txt) and from
# infra/containers/node_modules (npm-groovy-lint, pinned in package-lock.json; it needs Java 17+).
# Nothing is downloaded: every schema is vendored in check-jsonschema, checkov runs with --skip-download,
# npm-groovy-lint runs CodeNarc in-process (--noserver) on the Java found on PATH.
#
# Every check runs; the script exits 1 if any failed and names them on the last line.
# CONTAINERS_CHECKS="hadolint yamllint" runs only those (infra/containers/selftest.sh uses it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${1:-${CONTAINERS_CHECK_ROOT:-${here}/../..}}" && pwd)"
groovy_lint="${NPM_GROOVY_LINT:-${here}/node_modules/.bin/npm-groovy-lint}"
all_checks=(hadolint checkov compose-schema compose-policy gitlab-ci-schema github-workflow-schema yamllint
    shellcheck embedded-shell groovy-lint jenkins-credentials gitlab-variables)
read -r -a checks <<<"${CONTAINERS_CHECKS:-${all_checks[*]}}"

cd "${root}"
failed=()

# run NAME COMMAND...: runs one check, records a failure instead of stopping.
run() {
    local name="$1"
    shift
    echo "-- ${name}"
    if ! "$@"; then
        echo "!! ${name} failed"
        failed+=("${name}")
    fi
}

need() {
    local tool
    for tool in "$@"; do
        if ! command -v "${tool}" >/dev/null 2>&1; then
            echo "missing tool: ${tool} (run make check-infra, or put .venv-infra/bin on PATH)" >&2
            return 1
        fi
    done
}

check_hadolint() {
    need hadolint || return 1
    # Warnings fail too. DL3006 (untagged base image) and DL3007 (:latest) are raised to errors: the
    # base image must be pinned.
    hadolint --failure-threshold warning --error DL3006 --error DL3007 Dockerfile
}

check_checkov() {
    need checkov || return 1
    local output
    # BC_SKIP_MAPPING / --skip-download: no call to the Prisma Cloud API for guidelines.
    # checkov prints nothing and exits 0 for a file it cannot parse, so a run must report passed checks.
    output="$(BC_SKIP_MAPPING=TRUE checkov --framework dockerfile --file Dockerfile --skip-download \
        --quiet --compact 2>&1)" || {
        echo "${output}"
        return 1
    }
    echo "${output}"
    grep -Eq 'Passed checks: [1-9]' <<<"${output}" || {
        echo "checkov ran no check on Dockerfile (could it parse it?)"
        return 1
    }
}

check_compose_schema() {
    need check-jsonschema || return 1
    check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
}

check_compose_policy() {
    need yamllint || return 1
    # PyYAML comes with yamllint: use the interpreter of the tools' virtualenv.
    local python
    python="$(dirname "$(command -v yamllint)")/python3"
    [[ -x "${python}" ]] || python=python3
    "${python}" "${here}/compose_policy.py" "${root}"
}

check_gitlab_ci_schema() {
    need check-jsonschema || return 1
    check-jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml
}

check_github_workflow_schema() {
    need check-jsonschema || return 1
    local workflows=() workflow
    while IFS= read -r workflow; do
        workflows+=("${workflow}")
    done < <(find .github/workflows -maxdepth 1 -type f \( -name '*.yml' -o -name '*.yaml' \) | sort)
    if ((${#workflows[@]} == 0)); then
        echo "no workflow under .github/workflows"
        return 1
    fi
    check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"
}

check_yamllint() {
    need yamllint || return 1
    yamllint --strict --config-file .yamllint.yaml .
}

# Every shell script of the repository: tracked and untracked-but-not-ignored *.sh files (or all of
# them outside a git work tree, e.g. the selftest's copy), plus .ci/run.
shell_scripts() {
    {
        if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
            git ls-files --cached --others --exclude-standard -- '*.sh'
        else
            find . -type f -name '*.sh' -not -path '*/node_modules/*' -not -path './.venv*' -not -path './.git/*'
        fi
        [[ -f .ci/run ]] && echo .ci/run
    } | sed 's#^\./##' | grep -v -e '/node_modules/' -e '^node_modules/' -e '^\.venv' | sort -u
}

check_shellcheck() {
    need shellcheck || return 1
    local scripts=() script
    while IFS= read -r script; do
        # git still lists a tracked file deleted in the work tree.
        [[ -f "${script}" ]] && scripts+=("${script}")
    done < <(shell_scripts)
    if ((${#scripts[@]} == 0)); then
        echo "no shell script found"
        return 1
    fi
    printf '   %s\n' "${scripts[@]}"
    shellcheck --external-sources -- "${scripts[@]}"
}

# The shell inside the Jenkinsfile's sh steps and the GitLab jobs' scripts, written out as /bin/sh scripts.
check_embedded_shell() {
    need shellcheck yamllint || return 1
    local python out status=0
    python="$(dirname "$(command -v yamllint)")/python3"
    [[ -x "${python}" ]] || python=python3
    out="$(mktemp -d)"
    "${python}" "${here}/embedded_shell.py" "${root}" "${out}" || status=1
    if ((status == 0)); then
        (cd "${out}" && shellcheck -- *.sh) || status=1
    fi
    rm -rf "${out}"
    return "${status}"
}

# The Python of the tools' virtualenv (PyYAML comes with yamllint), else python3.
tools_python() {
    local python
    python="$(dirname "$(command -v yamllint 2>/dev/null || echo /nonexistent/yamllint)")/python3"
    [[ -x "${python}" ]] || python=python3
    echo "${python}"
}

# The Jenkinsfile's AWS identity defaults to the original's credential id, aws-credentials
# (infra/containers/jenkins_credentials.py).
check_jenkins_credentials() {
    "$(tools_python)" "${here}/jenkins_credentials.py" "${root}"
}

# The GitLab build and deploy jobs run with only the original's AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION and ECR_REGISTRY (or OIDC), against fake aws/helm/kubectl/curl/kaniko that answer with the
# names Terraform gives; without ECR_REGISTRY they fail naming it (infra/containers/gitlab_jobs.py).
check_gitlab_variables() {
    need yamllint || return 1
    "$(tools_python)" "${here}/gitlab_jobs.py" "${root}"
}

check_groovy_lint() {
    need java node || return 1
    if [[ ! -x "${groovy_lint}" ]]; then
        echo "missing tool: ${groovy_lint} (npm ci --prefix infra/containers)" >&2
        return 1
    fi
    # --javaexecutable: use this Java, never let java-caller download one.
    "${groovy_lint}" --noserver --failon error --config "${here}" \
        --javaexecutable "$(command -v java)" --output txt --loglevel warning Jenkinsfile
}

for check in "${checks[@]}"; do
    case "${check}" in
        hadolint) run hadolint check_hadolint ;;
        checkov) run checkov check_checkov ;;
        compose-schema) run compose-schema check_compose_schema ;;
        compose-policy) run compose-policy check_compose_policy ;;
        gitlab-ci-schema) run gitlab-ci-schema check_gitlab_ci_schema ;;
        github-workflow-schema) run github-workflow-schema check_github_workflow_schema ;;
        yamllint) run yamllint check_yamllint ;;
        shellcheck) run shellcheck check_shellcheck ;;
        embedded-shell) run embedded-shell check_embedded_shell ;;
        groovy-lint) run groovy-lint check_groovy_lint ;;
        jenkins-credentials) run jenkins-credentials check_jenkins_credentials ;;
        gitlab-variables) run gitlab-variables check_gitlab_variables ;;
        *)
            echo "unknown check: ${check} (known: ${all_checks[*]})" >&2
            exit 2
            ;;
    esac
done

if ((${#failed[@]} > 0)); then
    echo "containers: FAILED: ${failed[*]}"
    exit 1
fi
echo "containers: all checks passed (${checks[*]})"
