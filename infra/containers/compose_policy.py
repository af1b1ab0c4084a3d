"""What docker-compose.yml must do beyond being valid compose-spec (infra/containers/check.sh).

The JSON schema accepts a file that names an undefined service in depends_on, runs the app on a writable
root filesystem or pulls `latest`; this checks the project's own rules (SPEC 8 and 9):

- every service's image is pinned (a tag other than latest, or a digest), or it is built here;
- depends_on names defined services, each with a condition;
- the app: read-only root filesystem with a tmpfs /tmp, a stop grace period, waits for postgres and
  localstack to be healthy and for a one-shot step to complete;
- postgres and localstack have healthchecks; the LocalStack init hook is mounted into ready.d and exists
  (executable) in the repository.

Usage: python compose_policy.py REPO_ROOT  (exit 1 and one line per problem when a rule is broken)
"""

import os
import sys
from pathlib import Path
from typing import Any

import yaml

INIT_HOOK_DIR = "/etc/localstack/init/ready.d/"


def _image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    # "host:port/name" has a colon but no tag.
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def _problems(compose: dict[str, Any], root: Path) -> list[str]:
    services: dict[str, Any] = compose.get("services") or {}
    problems: list[str] = []
    for name, service in services.items():
        image = service.get("image")
        if image is None and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        elif image is not None and "build" not in service and not _image_pinned(str(image)):
            problems.append(f"{name}: image {image!r} is not pinned to a tag other than latest or a digest")
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            problems.append(f"{name}: depends_on must be a mapping with a condition for each service")
            depends_on = {dependency: {} for dependency in depends_on}
        for dependency, spec in depends_on.items():
            if dependency not in services:
                problems.append(f"{name}: depends_on names undefined service {dependency!r}")
            if not (spec or {}).get("condition"):
                problems.append(f"{name}: depends_on {dependency!r} has no condition")

    missing = [name for name in ("app", "postgres", "localstack") if name not in services]
    if missing:
        return [*problems, *(f"service {name!r} is missing" for name in missing)]

    app = services["app"]
    if app.get("read_only") is not True:
        problems.append("app: read_only must be true (read-only root filesystem)")
    if not any(str(entry).split(":", 1)[0] == "/tmp" for entry in app.get("tmpfs") or []):  # noqa: S108
        problems.append("app: needs a tmpfs on /tmp (its only writable path)")
    if not app.get("stop_grace_period"):
        problems.append("app: stop_grace_period must be set (above uvicorn's graceful timeout)")
    conditions = {dep: (spec or {}).get("condition") for dep, spec in (app.get("depends_on") or {}).items()}
    for dependency in ("postgres", "localstack"):
        if conditions.get(dependency) != "service_healthy":
            problems.append(f"app: must wait for {dependency} with condition service_healthy")
    if "service_completed_successfully" not in conditions.values():
        problems.append("app: must wait for a one-shot step (condition service_completed_successfully)")

    for name in ("postgres", "localstack"):
        healthcheck = services[name].get("healthcheck") or {}
        if not healthcheck.get("test") or healthcheck.get("disable"):
            problems.append(f"{name}: needs a healthcheck")

    hooks = [
        str(volume).split(":")[:2]
        for volume in services["localstack"].get("volumes") or []
        if isinstance(volume, str) and INIT_HOOK_DIR in volume
    ]
    if not hooks:
        problems.append(f"localstack: no init hook mounted into {INIT_HOOK_DIR}")
    for source, _target in hooks:
        path = root / source
        if not path.is_file():
            problems.append(f"localstack: init hook {source} does not exist")
        elif not os.access(path, os.X_OK):
            problems.append(f"localstack: init hook {source} is not executable (LocalStack skips it)")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else ".")
    with (root / "docker-compose.yml").open(encoding="utf-8") as handle:
        compose = yaml.safe_load(handle)
    problems = _problems(compose, root)
    for problem in problems:
        sys.stderr.write(f"docker-compose.yml: {problem}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
