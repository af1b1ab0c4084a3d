"""Runs the GitLab build and deploy jobs (.gitlab-ci.yml) with the original service's variables only.

The original service's operators set four CI/CD variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION and ECR_REGISTRY. This check proves that they are enough for build-<env> and deploy-<env>
(dev and prod), and that OIDC (AWS_ROLE_ARN + the job's id token, no keys) works as well:

- each job's `extends` chain is resolved as GitLab does (hashes merged, everything else replaced), its
  before_script + script written out as one /bin/sh script (`set -eu`: a variable read without a default
  must be set) and run with ONLY the case's variables, GitLab's predefined CI_* variables, the job's id
  tokens and the file's and job's `variables:` (expanded as GitLab does; CI/CD variables win), plus the
  image's own environment (PATH, HOME, TMPDIR; kaniko's DOCKER_CONFIG);
- `aws`, `helm`, `kubectl`, `curl` and kaniko's `executor` on PATH are fakes (fake_main below) that
  record their argv and answer like an account where Terraform applied terraform/environments/<env>:
  the resources exist under the names Terraform gives them, and only those. They refuse calls without
  AWS credentials or a region, kubectl/helm before `aws eks update-kubeconfig`, and unknown calls;
- the recorded calls are checked: kaniko's --destination is $ECR_REGISTRY/<repository>:<short sha>; helm
  ran `upgrade --install aws-s3-service <chart dir>` in the namespace with image.repository
  $ECR_REGISTRY/<repository>, image.tag <short sha>, the environment's values file and the deploy-time
  values Terraform's resources give; the smoke test reached /health;
- negative cases: without ECR_REGISTRY each job fails with a line naming it.

The Terraform names (`<project>-<env>` and what each module derives from it) are read from terraform/,
and a table below pins the naming rules in the modules that the pipeline's defaults rely on: renaming a
resource in Terraform fails this check until .gitlab-ci.yml follows.

Offline and fast (about a second per job run). Usage: python gitlab_jobs.py REPO_ROOT
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedded_shell import commands_of  # this directory's: a job's script lines, anchors flattened

ORIGINAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "ECR_REGISTRY")
ACCOUNT = "123456789012"
REGION = "eu-west-1"  # not the file's default (us-east-1): the CI/CD variable must win
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
COMMIT_SHA = "0123456789abcdef0123456789abcdef01234567"
SHORT_SHA = COMMIT_SHA[:8]
FORWARD_PORT = "40123"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0X3BhdGg6dGVhbS9hd3MtczMtc2VydmljZSJ9.c2ln"  # noqa: S105 - a made-up id token
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/gitlab-deploy"
KEYS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
ENVIRONMENTS = {"dev": "develop", "prod": "main"}  # environment -> branch its jobs run on

# Terraform's naming rules the pipeline's defaults depend on: (file, block, regex the block must contain).
# A block is `<kind> "<label>" ... {` up to its closing brace at column 0 (or the whole file for None).
NAMING_RULES = [
    ("environments/{env}/main.tf", "locals", r'\bname\s*=\s*"\$\{var\.project\}-\$\{var\.environment\}"'),
    (
        "environments/{env}/main.tf",
        "locals",
        r'\bbucket_name\s*=\s*coalesce\(var\.bucket_name,\s*"\$\{local\.name\}-\$\{local\.account_id\}-\$\{var\.aws_region\}"\)',
    ),
    ("environments/{env}/main.tf", 'module "ecr"', r"\bname\s*=\s*local\.name\s*$"),
    ("environments/{env}/main.tf", 'module "eks"', r"\bname\s*=\s*local\.name\s*$"),
    ("environments/{env}/main.tf", 'module "irsa"', r'\bname\s*=\s*"\$\{local\.name\}-irsa"'),
    ("environments/{env}/main.tf", 'module "irsa"', r"\bnamespace\s*=\s*var\.k8s_namespace\s*$"),
    ("environments/{env}/main.tf", 'module "irsa"', r"\bservice_account\s*=\s*var\.k8s_service_account\s*$"),
    ("environments/{env}/main.tf", 'module "messaging"', r"\bname\s*=\s*local\.name\s*$"),
    ("environments/{env}/main.tf", 'module "messaging"', r"\bbucket_name\s*=\s*local\.bucket_name\s*$"),
    ("environments/{env}/main.tf", 'module "rds"', r"\bname\s*=\s*local\.name\s*$"),
    (
        "environments/{env}/main.tf",
        'resource "aws_secretsmanager_secret" "jwt"',
        r'\bname\s*=\s*"\$\{local\.name\}/jwt-secret"',
    ),
    ("modules/ecr/main.tf", 'resource "aws_ecr_repository" "this"', r"\bname\s*=\s*var\.name\s*$"),
    ("modules/eks/main.tf", 'resource "aws_eks_cluster" "this"', r"\bname\s*=\s*var\.name\s*$"),
    ("modules/irsa/main.tf", 'resource "aws_iam_role" "this"', r"\bname\s*=\s*var\.name\s*$"),
    (
        "modules/irsa/main.tf",
        'data "aws_iam_policy_document" "assume"',
        r'"system:serviceaccount:\$\{var\.namespace\}:\$\{var\.service_account\}"',
    ),
    ("modules/messaging/main.tf", 'resource "aws_s3_bucket" "this"', r"\bbucket\s*=\s*var\.bucket_name\s*$"),
    (
        "modules/messaging/main.tf",
        'resource "aws_sns_topic" "this"',
        r'\bname\s*=\s*"\$\{var\.name\}-changes"',
    ),
    (
        "modules/messaging/main.tf",
        'resource "aws_sqs_queue" "this"',
        r'\bname\s*=\s*"\$\{var\.name\}-ingest"',
    ),
    (
        "modules/rds/main.tf",
        'resource "aws_secretsmanager_secret" "database_url"',
        r'\bname\s*=\s*"\$\{var\.name\}/database-url"',
    ),
]


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- Terraform -----------------------------------------------------------------------------------


def _block(text: str, header: str) -> str | None:
    match = re.search(r"^" + re.escape(header) + r"\s*\{\n(.*?)^\}", text, re.M | re.S)
    return match.group(1) if match else None


def _variable_default(variables_tf: str, name: str) -> str | None:
    block = _block(variables_tf, f'variable "{name}"')
    match = re.search(r'^\s*default\s*=\s*"([^"]*)"\s*$', block or "", re.M)
    return match.group(1) if match else None


@dataclass
class Stack:
    """What Terraform creates for one environment, under the names it gives."""

    env: str
    project: str
    namespace: str
    service_account: str
    jwt_secret: bool  # create_jwt_secret's default

    @property
    def name(self) -> str:
        return f"{self.project}-{self.env}"

    @property
    def repository(self) -> str:
        return f"{REGISTRY}/{self.name}"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{self.name}-irsa"

    @property
    def bucket(self) -> str:
        return f"{self.name}-{ACCOUNT}-{REGION}"

    @property
    def topic_arn(self) -> str:
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:{self.name}-changes"

    @property
    def queue_url(self) -> str:
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name}-ingest"

    @property
    def secrets(self) -> dict[str, str]:
        values = {
            f"{self.name}/database-url": f"postgresql://app:pw-{self.env}@db.{self.env}.internal:5432/app?sslmode=require"
        }
        if self.jwt_secret:
            values[f"{self.name}/jwt-secret"] = f"jwt-secret-of-{self.env}-0123456789abcdef0123456789"
        return values


def read_stacks(root: Path, errors: list[str]) -> dict[str, Stack]:
    tf = root / "terraform"
    for file_pattern, header, pattern in NAMING_RULES:
        for env in ENVIRONMENTS if "{env}" in file_pattern else ["-"]:
            path = tf / file_pattern.format(env=env)
            if not path.is_file():
                errors.append(f"terraform: {path.relative_to(root)} is missing")
                continue
            block = _block(path.read_text(encoding="utf-8"), header)
            if block is None or not re.search(pattern, block, re.M):
                errors.append(
                    f"terraform naming changed: {path.relative_to(root)} {header} "
                    f"no longer matches {pattern!r}; "
                    "the GitLab jobs derive names from it (update .gitlab-ci.yml and NAMING_RULES together)"
                )
    stacks = {}
    for env in ENVIRONMENTS:
        path = tf / "environments" / env / "variables.tf"
        if not path.is_file():
            errors.append(f"terraform: {path.relative_to(root)} is missing")
            continue
        text = path.read_text(encoding="utf-8")
        values = {
            key: _variable_default(text, key)
            for key in ("project", "environment", "k8s_namespace", "k8s_service_account")
        }
        jwt = re.search(
            r"^\s*default\s*=\s*(true|false)\s*$", _block(text, 'variable "create_jwt_secret"') or "", re.M
        )
        missing = [key for key, value in values.items() if value is None] + (
            [] if jwt else ["create_jwt_secret"]
        )
        if missing:
            errors.append(
                f"terraform: no string default for {', '.join(missing)} in {path.relative_to(root)}"
            )
            continue
        if values["environment"] != env:
            errors.append(
                f"terraform: {path.relative_to(root)} defaults environment to {values['environment']!r}"
            )
        stacks[env] = Stack(
            env=env,
            project=str(values["project"]),
            namespace=str(values["k8s_namespace"]),
            service_account=str(values["k8s_service_account"]),
            jwt_secret=jwt is not None and jwt.group(1) == "true",
        )
    return stacks


# --- .gitlab-ci.yml ------------------------------------------------------------------------------


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_job(config: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The job with its `extends` chain applied (GitLab: hashes deep-merged, other values replaced)."""
    if name in seen:
        raise ValueError(f"extends loop: {' -> '.join((*seen, name))}")
    job = config.get(name)
    if not isinstance(job, dict):
        raise ValueError(f"no job {name!r} in .gitlab-ci.yml")
    parents = job.get("extends") or []
    resolved: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        resolved = _merge(resolved, resolve_job(config, parent, (*seen, name)))
    own = {key: value for key, value in job.items() if key != "extends"}
    return _merge(resolved, own)


def job_script(config: dict[str, Any], job: dict[str, Any]) -> str:
    default = config.get("default") or {}
    before = job["before_script"] if "before_script" in job else default.get("before_script")
    return "\n".join(commands_of(before) + commands_of(job.get("script"))) + "\n"


_VARIABLE_REF = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(value: str, env: dict[str, str]) -> str:
    return _VARIABLE_REF.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _yaml_variables(section: Any) -> dict[str, str]:
    out = {}
    for key, value in (section or {}).items():
        if isinstance(value, dict):  # {value: ..., description: ...}
            value = value.get("value", "")
        out[str(key)] = "" if value is None else str(value)
    return out


def job_environment(
    config: dict[str, Any],
    job: dict[str, Any],
    name: str,
    env_name: str,
    given: dict[str, str],
    image_env: dict[str, str],
    root: Path,
) -> dict[str, str]:
    branch = ENVIRONMENTS[env_name]
    predefined = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PROJECT_DIR": str(root),
        "CI_PROJECT_ID": "4242",
        "CI_PROJECT_PATH": "team/aws-s3-service",
        "CI_PROJECT_URL": "https://gitlab.example.com/team/aws-s3-service",
        "CI_PIPELINE_ID": "777",
        "CI_PIPELINE_SOURCE": "push",
        "CI_JOB_ID": "9001",
        "CI_JOB_NAME": name,
        "CI_JOB_STAGE": str(job.get("stage", "")),
        "CI_COMMIT_SHA": COMMIT_SHA,
        "CI_COMMIT_SHORT_SHA": SHORT_SHA,
        "CI_COMMIT_BRANCH": branch,
        "CI_COMMIT_REF_NAME": branch,
        "CI_COMMIT_REF_SLUG": branch,
        "CI_ENVIRONMENT_NAME": env_name,
    }
    from_yaml = {**_yaml_variables(config.get("variables")), **_yaml_variables(job.get("variables"))}
    tokens = {str(token): ID_TOKEN for token in (job.get("id_tokens") or {})}
    env = {**image_env, **predefined, **from_yaml, **tokens, **given}
    # GitLab expands the yaml variables (nested references too), with the CI/CD variables winning.
    for _ in range(5):
        for key in from_yaml:
            if key not in given:
                env[key] = _expand(from_yaml[key], env)
    return env


# --- the fakes -----------------------------------------------------------------------------------


def _opt(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def _fail(message: str, code: int) -> int:
    sys.stderr.write(message + "\n")
    return code


def _credentials_ok() -> str | None:
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return None
    token_file = os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE", "")
    if os.environ.get("AWS_ROLE_ARN") and token_file:
        try:
            if Path(token_file).read_text(encoding="utf-8") == ID_TOKEN:
                return None
        except OSError:
            pass
        return f"web identity token file {token_file!r} does not hold the job's id token"
    return 'Unable to locate credentials. You can configure credentials by running "aws configure".'


def _fake_aws(world: dict[str, Any], state: Path, argv: list[str]) -> int:
    problem = _credentials_ok()
    if problem:
        return _fail(problem, 253)
    region = _opt(argv, "--region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        return _fail(
            'You must specify a region. You can also configure your region by running "aws configure".', 253
        )
    if region != REGION:
        return _fail(f"fake aws: region {region}, but the account's stack is in {REGION}", 254)
    call = argv[:2]
    if call == ["eks", "update-kubeconfig"]:
        name = _opt(argv, "--name")
        if name not in world["clusters"]:
            return _fail(
                "An error occurred (ResourceNotFoundException) when calling the DescribeCluster operation: "
                f"No cluster found for name: {name}.",
                254,
            )
        (state / "kubeconfig").write_text(str(name), encoding="utf-8")
        say(f"Added new context arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{name} to /root/.kube/config")
        return 0
    if call == ["iam", "get-role"]:
        name = _opt(argv, "--role-name")
        if name not in world["roles"]:
            return _fail(
                "An error occurred (NoSuchEntity) when calling the GetRole operation: "
                f"The role with name {name} cannot be found.",
                254,
            )
        say(
            f"arn:aws:iam::{ACCOUNT}:role/{name}"
            if _opt(argv, "--query") == "Role.Arn"
            else json.dumps({"Role": {"RoleName": name}})
        )
        return 0
    if call == ["s3api", "head-bucket"]:
        if _opt(argv, "--bucket") not in world["buckets"]:
            return _fail("An error occurred (404) when calling the HeadBucket operation: Not Found", 254)
        say(json.dumps({"BucketRegion": REGION, "AccessPointAlias": False}))
        return 0
    if call == ["sns", "get-topic-attributes"]:
        arn = _opt(argv, "--topic-arn")
        if arn not in world["topics"]:
            return _fail(
                "An error occurred (NotFound) when calling the GetTopicAttributes operation: "
                "Topic does not exist",
                254,
            )
        say(
            str(arn)
            if _opt(argv, "--query") == "Attributes.TopicArn"
            else json.dumps({"Attributes": {"TopicArn": arn}})
        )
        return 0
    if call == ["sqs", "get-queue-url"]:
        name = _opt(argv, "--queue-name")
        if name not in world["queues"]:
            return _fail(
                "An error occurred (AWS.SimpleQueueService.NonExistentQueue) when calling the GetQueueUrl "
                "operation: The specified queue does not exist.",
                254,
            )
        url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        say(url if _opt(argv, "--query") == "QueueUrl" else json.dumps({"QueueUrl": url}))
        return 0
    if call == ["secretsmanager", "get-secret-value"]:
        secret_id = _opt(argv, "--secret-id")
        if secret_id not in world["secrets"]:
            return _fail(
                "An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation: "
                "Secrets Manager can't find the specified secret.",
                254,
            )
        value = world["secrets"][secret_id]
        say(value if _opt(argv, "--query") == "SecretString" else json.dumps({"SecretString": value}))
        return 0
    if call == ["sts", "get-caller-identity"]:
        say(ACCOUNT if _opt(argv, "--query") == "Account" else json.dumps({"Account": ACCOUNT}))
        return 0
    return _fail(f"fake aws: unexpected call: aws {' '.join(argv)}", 2)


def _needs_kubeconfig(world: dict[str, Any], state: Path, tool: str) -> str | None:
    kubeconfig = state / "kubeconfig"
    if not kubeconfig.is_file():
        return f"{tool}: no kubeconfig (the job must run aws eks update-kubeconfig first)"
    return None


def _fake_kubectl(world: dict[str, Any], state: Path, argv: list[str], details: dict[str, Any]) -> int:
    problem = _needs_kubeconfig(world, state, "kubectl")
    if problem:
        return _fail(problem, 1)
    namespace = _opt(argv, "--namespace") or _opt(argv, "-n") or "default"
    secrets_file = state / "k8s-secrets.json"
    secrets = (
        json.loads(secrets_file.read_text(encoding="utf-8"))
        if secrets_file.is_file()
        else world["k8s_secrets"]
    )
    if argv[:2] == ["get", "secret"]:
        if f"{namespace}/{argv[2]}" not in secrets:
            return _fail(f'Error from server (NotFound): secrets "{argv[2]}" not found', 1)
        say(f"secret/{argv[2]}")
        return 0
    if argv[:2] == ["create", "namespace"] and "--dry-run=client" in argv:
        say(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {argv[2]}\nspec: {{}}\nstatus: {{}}")
        return 0
    if argv[:1] == ["apply"] and _opt(argv, "--filename") == "-":
        manifest = sys.stdin.read()
        details["stdin"] = manifest
        match = re.search(r"^kind: Namespace\n(?:.*\n)*?  name: (\S+)", manifest, re.M)
        if not match:
            return _fail("error: no objects passed to apply", 1)
        say(f"namespace/{match.group(1)} created")
        return 0
    if argv[:3] == ["create", "secret", "generic"]:
        data: dict[str, str] = {}
        for arg in argv:
            if arg.startswith("--from-file="):
                source = Path(arg[len("--from-file=") :])
                files = sorted(source.iterdir()) if source.is_dir() else [source]
                data.update({path.name: path.read_text(encoding="utf-8") for path in files if path.is_file()})
        details["secret_data"] = data
        key = f"{namespace}/{argv[3]}"
        if key in secrets:
            return _fail(f'error: failed to create secret secrets "{argv[3]}" already exists', 1)
        secrets[key] = sorted(data)
        secrets_file.write_text(json.dumps(secrets), encoding="utf-8")
        say(f"secret/{argv[3]} created")
        return 0
    if argv[:2] == ["get", "deployment"] and _opt(argv, "--output") == "name":
        say(f"deployment.apps/{world['release']}")
        return 0
    if argv[:2] == ["rollout", "status"]:
        say(f'deployment "{argv[2].split("/")[-1]}" successfully rolled out')
        return 0
    if argv[:1] == ["port-forward"]:

        def stopped(signum: int, frame: Any) -> None:
            (state / "port-forward.stopped").write_text(str(signum), encoding="utf-8")
            sys.exit(0)

        signal.signal(signal.SIGTERM, stopped)
        signal.signal(signal.SIGINT, stopped)
        (state / "port-forward.pid").write_text(str(os.getpid()), encoding="utf-8")
        say(
            f"Forwarding from 127.0.0.1:{FORWARD_PORT} -> 8000\nForwarding from [::1]:{FORWARD_PORT} -> 8000",
        )
        time.sleep(60)  # until the job stops it
        return 0
    return _fail(f"fake kubectl: unexpected call: kubectl {' '.join(argv)}", 2)


def _fake_helm(world: dict[str, Any], state: Path, argv: list[str], details: dict[str, Any]) -> int:
    problem = _needs_kubeconfig(world, state, "helm")
    if problem:
        return _fail("Error: Kubernetes cluster unreachable: " + problem, 1)
    if argv[:2] != ["upgrade", "--install"]:
        return _fail(f"fake helm: unexpected call: helm {' '.join(argv)}", 2)
    files = {}
    for index, arg in enumerate(argv):
        if arg in ("-f", "--values") and index + 1 < len(argv):
            path = Path(argv[index + 1])
            if not path.is_file():
                return _fail(f"Error: open {path}: no such file or directory", 1)
            files[str(path)] = path.read_text(encoding="utf-8")
    details["values_files"] = files
    say(f'Release "{argv[2]}" has been upgraded. Happy Helming!')
    return 0


def _fake_curl(world: dict[str, Any], argv: list[str]) -> int:
    url = argv[-1]
    if url not in world["health_urls"]:
        return _fail(f"curl: (7) Failed to connect to {url}", 7)
    sys.stdout.write('{"status":"ok"}')
    return 0


def _fake_executor(argv: list[str]) -> int:
    destination = _opt(argv, "--destination") or ""
    registry = destination.split("/", 1)[0]
    config = Path(os.environ.get("DOCKER_CONFIG", "/kaniko/.docker")) / "config.json"
    try:
        helpers = json.loads(config.read_text(encoding="utf-8")).get("credHelpers", {})
    except (OSError, ValueError) as error:
        return _fail(f"error checking push permissions: no docker config ({error})", 1)
    if helpers.get(registry) != "ecr-login":
        return _fail(
            f"error checking push permissions: no ecr-login credential helper for {registry} in {config}", 1
        )
    problem = _credentials_ok()
    if problem:
        return _fail(f"error checking push permissions -- ecr-login: {problem}", 1)
    say(f"INFO[0042] Pushed {destination}")
    return 0


def fake_main(argv: list[str]) -> int:
    tool, state = argv[0], Path(argv[1])
    args = argv[2:]
    world = json.loads((state / "world.json").read_text(encoding="utf-8"))
    call: dict[str, Any] = {
        "id": os.getpid(),
        "tool": tool,
        "argv": args,
        "env": {
            key: value
            for key, value in os.environ.items()
            if key.startswith("AWS_") or key == "DOCKER_CONFIG"
        },
    }
    token_file = os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")
    if token_file and Path(token_file).is_file():
        call["web_identity_token"] = Path(token_file).read_text(encoding="utf-8")
    with (state / "calls.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(call) + "\n")  # before running: port-forward never returns
    details: dict[str, Any] = {}  # what the call read: values files, a Secret's data, stdin
    if tool == "aws":
        code = _fake_aws(world, state, args)
    elif tool == "kubectl":
        code = _fake_kubectl(world, state, args, details)
    elif tool == "helm":
        code = _fake_helm(world, state, args, details)
    elif tool == "curl":
        code = _fake_curl(world, args)
    elif tool == "executor":
        code = _fake_executor(args)
    else:
        code = _fail(f"fake: unknown tool {tool}", 2)
    if details:
        with (state / "calls.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps({"details_of": call["id"], **details}) + "\n")
    return code


# --- running a job -------------------------------------------------------------------------------


@dataclass
class Run:
    job: str
    code: int
    output: str
    project_dir: str
    calls: list[dict[str, Any]] = field(default_factory=list)

    def of(self, tool: str) -> list[dict[str, Any]]:
        """The calls of one tool, in order, each with what it read."""
        calls = {call["id"]: dict(call) for call in self.calls if call.get("tool") == tool}
        for details in self.calls:
            if details.get("details_of") in calls:
                calls[details["details_of"]].update({k: v for k, v in details.items() if k != "details_of"})
        return list(calls.values())


def world_for(stack: Stack, release: str, gateway: str | None, k8s_secrets: list[str]) -> dict[str, Any]:
    return {
        "clusters": [stack.name],
        "roles": [f"{stack.name}-irsa"],
        "buckets": [stack.bucket],
        "topics": [stack.topic_arn],
        "queues": [f"{stack.name}-ingest"],
        "secrets": stack.secrets,
        "k8s_secrets": {key: ["DATABASE_URL"] for key in k8s_secrets},
        "release": release,
        "health_urls": [f"http://127.0.0.1:{FORWARD_PORT}/health"]
        + ([gateway.rstrip("/") + "/health"] if gateway else []),
    }


def run_job(
    root: Path, config: dict[str, Any], name: str, env_name: str, given: dict[str, str], world: dict[str, Any]
) -> Run:
    job = resolve_job(config, name)
    work = Path(tempfile.mkdtemp(prefix=f"gitlab-{name}-"))
    try:
        state, fakebin, home, tmp = work / "state", work / "bin", work / "home", work / "tmp"
        for directory in (state, fakebin, home, tmp):
            directory.mkdir()
        (state / "world.json").write_text(json.dumps(world), encoding="utf-8")
        # Imported rather than run as a script, so that Python compiles this file once, not per call.
        fake = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import gitlab_jobs; "
        )
        fake += "sys.exit(gitlab_jobs.fake_main(sys.argv[1:]))"
        for tool in ("aws", "helm", "kubectl", "curl", "executor"):
            wrapper = fakebin / tool
            wrapper.write_text(
                f'#!/bin/sh\nexec "{sys.executable}" -c "{fake}" {tool} "{state}" "$@"\n', encoding="utf-8"
            )
            wrapper.chmod(0o755)
        image_env = {"PATH": f"{fakebin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp)}
        image = job.get("image")
        image_name = image.get("name") if isinstance(image, dict) else image
        if "kaniko" in _expand(str(image_name or ""), _yaml_variables(config.get("variables"))):
            image_env["DOCKER_CONFIG"] = str(work / "kaniko" / ".docker") + "/"
        env = job_environment(config, job, name, env_name, given, image_env, root)
        script = work / "job.sh"
        script.write_text(
            f"#!/bin/sh\n# .gitlab-ci.yml, job {name}\nset -eu\n{job_script(config, job)}", encoding="utf-8"
        )
        try:
            done = subprocess.run(  # noqa: S603 - /bin/sh on the script written just above
                ["/bin/sh", str(script)],
                cwd=root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
                check=False,
            )
            code, output = done.returncode, done.stdout
        except subprocess.TimeoutExpired as timeout:
            partial = timeout.stdout or ""
            if isinstance(partial, bytes):
                partial = partial.decode("utf-8", "replace")
            code, output = -1, f"{partial}\n(timed out after 120 s)"
        pid_file = state / "port-forward.pid"
        if pid_file.is_file():  # the job must stop its port-forward
            deadline = time.monotonic() + 3
            while not (state / "port-forward.stopped").is_file() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not (state / "port-forward.stopped").is_file():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_file.read_text(encoding="utf-8")), signal.SIGKILL)
                output += "\n(the job left kubectl port-forward running)"
                code = code or -2
        calls_file = state / "calls.jsonl"
        calls = (
            [json.loads(line) for line in calls_file.read_text(encoding="utf-8").splitlines()]
            if calls_file.is_file()
            else []
        )
        return Run(job=name, code=code, output=output, project_dir=str(root), calls=calls)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- the cases -----------------------------------------------------------------------------------


class Case:
    def __init__(self, title: str, run: Run) -> None:
        self.title = title
        self.run = run
        self.problems: list[str] = []

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.problems.append(message)

    def report(self) -> bool:
        if not self.problems:
            say(f"ok   {self.title}")
            return True
        say(f"FAIL {self.title}")
        for problem in self.problems:
            say(f"     - {problem}")
        say("     job output:")
        say("\n".join("       | " + line for line in self.run.output.rstrip().splitlines()))
        return False


def check_build(case: Case, stack: Stack) -> None:
    run = case.run
    case.expect(run.code == 0, f"{run.job} exited {run.code}")
    executors = run.of("executor")
    case.expect(len(executors) == 1, f"kaniko's executor ran {len(executors)} times, expected once")
    for call in executors:
        argv = call["argv"]
        case.expect(
            _opt(argv, "--destination") == f"{stack.repository}:{SHORT_SHA}",
            f"--destination {_opt(argv, '--destination')!r}, expected {stack.repository}:{SHORT_SHA}",
        )
        case.expect(
            _opt(argv, "--context") == case.run.project_dir,
            f"--context {_opt(argv, '--context')!r}, expected $CI_PROJECT_DIR",
        )


def check_deploy(
    case: Case,
    stack: Stack,
    chart_dir: str,
    release: str,
    namespace: str,
    gateway: str | None,
    secret_created: bool,
) -> None:
    run = case.run
    case.expect(run.code == 0, f"{run.job} exited {run.code}")
    kubeconfigs = [c["argv"] for c in run.of("aws") if c["argv"][:2] == ["eks", "update-kubeconfig"]]
    case.expect(
        any(_opt(argv, "--name") == stack.name for argv in kubeconfigs),
        f"no aws eks update-kubeconfig --name {stack.name}: {kubeconfigs}",
    )
    helms = run.of("helm")
    case.expect(len(helms) == 1, f"helm ran {len(helms)} times, expected once")
    for call in helms:
        argv = call["argv"]
        case.expect(
            argv[:4] == ["upgrade", "--install", release, chart_dir],
            f"helm {' '.join(argv[:4])}, expected helm upgrade --install {release} {chart_dir}",
        )
        case.expect(
            _opt(argv, "--namespace") == namespace,
            f"helm --namespace {_opt(argv, '--namespace')!r}, expected {namespace!r}",
        )
        sets = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--set"]
        for expected in (f"image.repository={stack.repository}", f"image.tag={SHORT_SHA}"):
            case.expect(expected in sets, f"helm has no --set {expected} (it has {sets})")
        case.expect("--wait" in argv and "--atomic" in argv, "helm without --wait --atomic")
        files = call.get("values_files", {})
        env_values = f"{chart_dir}/values-{stack.env}.yaml"
        case.expect(env_values in files, f"helm without -f {env_values} (it has {sorted(files)})")
        derived = [_parse_values(text) for path, text in files.items() if path != env_values]
        expected_values = {
            ("serviceAccount", "roleArn"): stack.role_arn,
            ("existingSecret",): "aws-s3-service-env",
            ("config", "AWS_REGION"): REGION,
            ("config", "S3_BUCKET_NAME"): stack.bucket,
            ("config", "SNS_TOPIC_ARN"): stack.topic_arn,
            ("config", "SQS_QUEUE_URL"): stack.queue_url,
        }
        for keys, value in expected_values.items():
            found = [_dig(values, keys) for values in derived]
            case.expect(value in found, f"deploy-time value {'.'.join(keys)} is {found}, expected {value!r}")
    secrets = [c for c in run.of("kubectl") if c["argv"][:3] == ["create", "secret", "generic"]]
    if secret_created:
        case.expect(len(secrets) == 1, f"kubectl create secret ran {len(secrets)} times, expected once")
        for call in secrets:
            case.expect(
                call["argv"][3] == "aws-s3-service-env" and _opt(call["argv"], "--namespace") == namespace,
                f"Secret created as {call['argv'][3]} in {_opt(call['argv'], '--namespace')}",
            )
            data = call.get("secret_data", {})
            want = {"DATABASE_URL": stack.secrets[f"{stack.name}/database-url"]}
            if stack.jwt_secret:
                want["JWT_SECRET"] = stack.secrets[f"{stack.name}/jwt-secret"]
            case.expect(
                data == want,
                f"the Secret's data is {sorted(data)}, expected {sorted(want)} with Secrets Manager's values",
            )
    else:
        case.expect(not secrets, "the existing Secret was created again")
    forwards = [c["argv"] for c in run.of("kubectl") if c["argv"][:1] == ["port-forward"]]
    curls = [c["argv"][-1] for c in run.of("curl")]
    if gateway:
        case.expect(not forwards, "kubectl port-forward although GATEWAY_URL is set")
        case.expect(
            curls[-1:] == [gateway.rstrip("/") + "/health"], f"curl {curls}, expected {gateway}/health"
        )
    else:
        case.expect(
            any(_opt(argv, "--namespace") == namespace and f"service/{release}" in argv for argv in forwards),
            f"no kubectl port-forward to service/{release} in {namespace}: {forwards}",
        )
        case.expect(
            curls[-1:] == [f"http://127.0.0.1:{FORWARD_PORT}/health"],
            f"curl {curls}, expected the forwarded port's /health",
        )


def _parse_values(text: str) -> dict[str, Any]:
    import yaml

    loaded = yaml.safe_load(text)
    return loaded if isinstance(loaded, dict) else {}


def _dig(values: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(values, dict):
            return None
        values = values.get(key)
    return values


def check_missing(case: Case, variable: str, tool: str) -> None:
    run = case.run
    case.expect(run.code != 0, f"{run.job} exited 0 without {variable}")
    lines = [line for line in run.output.splitlines() if variable in line and "not set" in line]
    case.expect(bool(lines), f"no output line names {variable} as not set")
    case.expect(not run.of(tool), f"{tool} ran without {variable}")


def check_credentials(case: Case, oidc: bool) -> None:
    for call in case.run.of("aws") + case.run.of("executor"):
        env = call["env"]
        if oidc:
            case.expect(
                env.get("AWS_ROLE_ARN") == ROLE_ARN and call.get("web_identity_token") == ID_TOKEN,
                f"{call['tool']} did not get AWS_ROLE_ARN + the id token file",
            )
            case.expect(
                "AWS_ACCESS_KEY_ID" not in env,
                f"{call['tool']} still saw AWS_ACCESS_KEY_ID (keys win over the role in the AWS SDKs)",
            )
        else:
            case.expect(
                env.get("AWS_ACCESS_KEY_ID") == KEYS["AWS_ACCESS_KEY_ID"],
                f"{call['tool']} did not get AWS_ACCESS_KEY_ID",
            )


def main(argv: list[str]) -> int:
    import yaml

    root = Path(argv[1]).resolve()
    errors: list[str] = []
    stacks = read_stacks(root, errors)
    config = yaml.safe_load((root / ".gitlab-ci.yml").read_text(encoding="utf-8")) or {}
    variables = _yaml_variables(config.get("variables"))
    chart_dir = variables.get("CHART_DIR", "")
    release = variables.get("HELM_RELEASE", "")
    namespace_default = variables.get("K8S_NAMESPACE", "")
    for env, stack in stacks.items():
        if namespace_default != stack.namespace:
            errors.append(
                f".gitlab-ci.yml K8S_NAMESPACE {namespace_default!r} is not terraform/environments/{env}'s "
                f"k8s_namespace {stack.namespace!r} (the namespace the IRSA role trusts)"
            )
        if release != stack.service_account:
            errors.append(
                f".gitlab-ci.yml HELM_RELEASE {release!r} (the chart's service account) is not "
                f"terraform/environments/{env}'s k8s_service_account {stack.service_account!r}"
            )
        if not (root / chart_dir / f"values-{env}.yaml").is_file():
            errors.append(f"{chart_dir}/values-{env}.yaml (CHART_DIR) does not exist")
    for error in errors:
        say(f"FAIL {error}")
    if len(stacks) != len(ENVIRONMENTS):
        return 1

    original = {**KEYS, "AWS_REGION": REGION, "ECR_REGISTRY": REGISTRY}
    oidc = {"AWS_ROLE_ARN": ROLE_ARN, "AWS_REGION": REGION, "ECR_REGISTRY": REGISTRY}
    ok = not errors
    say(f"-- with only {', '.join(ORIGINAL_VARIABLES)} (AWS_REGION={REGION}, ECR_REGISTRY={REGISTRY})")
    for env, stack in stacks.items():
        # dev: Terraform's defaults create the JWT secret, the job creates the Kubernetes Secret; prod: the
        # operator's Secret (docs/deploy-helm.md) is already in the namespace.
        existing = [] if env == "dev" else [f"{stack.namespace}/aws-s3-service-env"]
        world = world_for(stack, release, None, existing)
        case = Case(f"build-{env}", run_job(root, config, f"build-{env}", env, original, world))
        check_build(case, stack)
        check_credentials(case, oidc=False)
        ok = case.report() and ok
        case = Case(f"deploy-{env}", run_job(root, config, f"deploy-{env}", env, original, world))
        check_deploy(case, stack, chart_dir, release, stack.namespace, None, secret_created=not existing)
        check_credentials(case, oidc=False)
        ok = case.report() and ok

    dev = stacks["dev"]
    say("-- GitLab OIDC: AWS_ROLE_ARN + the id token, no keys (the recommended setup)")
    world = world_for(dev, release, None, [])
    for name, check in (("build-dev", "build"), ("deploy-dev", "deploy")):
        case = Case(f"{name} with OIDC", run_job(root, config, name, "dev", oidc, world))
        if check == "build":
            check_build(case, dev)
        else:
            check_deploy(case, dev, chart_dir, release, dev.namespace, None, secret_created=True)
        check_credentials(case, oidc=True)
        ok = case.report() and ok
    case = Case(
        "deploy-dev with OIDC and stale keys: the role wins",
        run_job(root, config, "deploy-dev", "dev", {**original, "AWS_ROLE_ARN": ROLE_ARN}, world),
    )
    check_deploy(case, dev, chart_dir, release, dev.namespace, None, secret_created=True)
    check_credentials(case, oidc=True)
    ok = case.report() and ok

    say("-- optional variables")
    custom = Stack(
        env="dev",
        project=dev.project,
        namespace="team-a",
        service_account=dev.service_account,
        jwt_secret=True,
    )
    world = world_for(custom, release, None, [])
    case = Case(
        "deploy-dev with K8S_NAMESPACE=team-a",
        run_job(root, config, "deploy-dev", "dev", {**original, "K8S_NAMESPACE": "team-a"}, world),
    )
    check_deploy(case, custom, chart_dir, release, "team-a", None, secret_created=True)
    ok = case.report() and ok
    gateway = "https://aws-s3-service.example.com/"
    prod = stacks["prod"]
    world = world_for(prod, release, gateway, [f"{prod.namespace}/aws-s3-service-env"])
    case = Case(
        "deploy-prod with GATEWAY_URL",
        run_job(root, config, "deploy-prod", "prod", {**original, "GATEWAY_URL": gateway}, world),
    )
    check_deploy(case, prod, chart_dir, release, prod.namespace, gateway, secret_created=False)
    ok = case.report() and ok

    say("-- a missing variable fails with a line naming it")
    without_registry = {key: value for key, value in original.items() if key != "ECR_REGISTRY"}
    world = world_for(dev, release, None, [])
    for name, tool in (("build-dev", "executor"), ("deploy-dev", "helm")):
        case = Case(
            f"{name} without ECR_REGISTRY", run_job(root, config, name, "dev", without_registry, world)
        )
        check_missing(case, "ECR_REGISTRY", tool)
        ok = case.report() and ok

    say("gitlab jobs: " + ("the original's variables are enough" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
