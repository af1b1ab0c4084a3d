"""Real service processes: bad settings, concurrent start-up and migrations, and no PII in the logs."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.core.db import MIGRATIONS_DIR
from tests.helpers import ServiceProcess, bearer, isolated_env, run_cli, unique_id


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", None),
        ("SQS_QUEUE_URL", "queue"),
        ("SNS_TOPIC_ARN", "topic"),
        ("JWT_SECRET", "short"),
        ("DB_POOL_MAX_SIZE", "many"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_setting_stops_startup_with_one_line_naming_it(
    service_env: dict[str, str], variable: str, value: str | None, tmp_path: Path
) -> None:
    env = {k: v for k, v in service_env.items() if k != variable}
    if value is not None:
        env[variable] = value
    result = run_cli(["serve", "--port", "1"], env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_uvicorn_factory_with_bad_setting_fails_with_one_line(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # What the container runs: uvicorn's own CLI with the factory.
    env = {**service_env, "SNS_TOPIC_ARN": "nope"}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--port", "1"],
        cwd=tmp_path,
        env=isolated_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if "SNS_TOPIC_ARN" in line]
    assert len(error_lines) == 1
    assert "Traceback" not in result.stderr


async def test_plain_uvicorn_app_main_app_starts_and_serves_health(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # The original service's command, as Dockerfiles, Procfiles and tutorials run it.
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}
    service = ServiceProcess(
        env,
        tmp_path / "uvicorn.log",
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"],
    )
    try:
        await service.wait_healthy()
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            assert (await http.get("/health")).json() == {"message": "ok"}
            assert (await http.get("/ready")).status_code == 200
    finally:
        service.stop()


def test_importing_app_main_reads_no_setting_and_opens_nothing(tmp_path: Path) -> None:
    # No settings at all: building the app would fail, so the import must not build it.
    result = subprocess.run(
        [sys.executable, "-c", "import app.main; print(type(app.main.create_app).__name__)"],
        cwd=tmp_path,
        env=isolated_env({}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "function"


async def test_three_instances_on_an_empty_database_apply_each_migration_once(
    service_env: dict[str, str],
    new_database: Callable[[], str],
    spawn_service: Callable[[dict[str, str]], ServiceProcess],
) -> None:
    # Their consumers are off: on another database they must not take the suite's queue messages.
    database_url = await asyncio.to_thread(new_database)  # it runs an event loop of its own
    env = {**service_env, "DATABASE_URL": database_url, "SQS_CONSUMER_ENABLED": "false"}
    services = [spawn_service(env) for _ in range(3)]
    for service in services:
        await service.wait_healthy()
    async with httpx.AsyncClient(timeout=10) as http:
        for service in services:
            assert (await http.get(f"{service.url}/ready")).status_code == 200

    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [row["version"] for row in rows] == sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))


def test_migrate_cli_applies_then_reports_up_to_date(new_database: Callable[[], str], tmp_path: Path) -> None:
    env = {"DATABASE_URL": new_database()}
    first = run_cli(["migrate"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "0001_init" in first.stdout
    second = run_cli(["migrate"], env, tmp_path)
    assert second.returncode == 0
    assert "up to date" in second.stdout


PII = {
    "email": "pii.canary@example.org",
    "phone": "+1 202 555 0199",
    "address": "742 Evergreen Terrace Canary",
    "account_number": "CANARYACCT998877",
    "condition": "canary-condition-xyz",
    "medication": "canarymedicine",
}


async def test_no_personal_data_reaches_the_logs(
    service_env: dict[str, str],
    spawn_service: Callable[[dict[str, str]], ServiceProcess],
    tmp_path: Path,
) -> None:
    service = spawn_service({**service_env, "LOG_LEVEL": "DEBUG", "SQS_CONSUMER_ENABLED": "false"})
    await service.wait_healthy()
    user_id = unique_id()
    headers = bearer()
    personal = {"user_id": user_id, "name": "Canary", "email": PII["email"], "phone": PII["phone"]}
    personal["address"] = PII["address"]
    financial = {"user_id": user_id, "account_number": PII["account_number"], "credit_score": 700}
    health = {"user_id": user_id, "conditions": [PII["condition"]], "medications": [PII["medication"]]}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as http:
        for kind, body in (("personal", personal), ("financial", financial), ("health", health)):
            assert (await http.post(f"/users/{kind}", json=body)).status_code == 201
            assert (await http.post(f"/users/{kind}", json=body)).status_code == 409
            assert (await http.get(f"/users/{user_id}/{kind}")).status_code == 200
        assert (await http.get(f"/users/{user_id}")).status_code == 200
        bad = {**personal, "user_id": unique_id(), "email": PII["email"] + " not valid"}
        assert (await http.post("/users/personal", json=bad)).status_code == 422
        patched = await http.patch(f"/users/{user_id}/financial", json={"credit_score": PII["phone"]})
        assert patched.status_code == 422
        as_text = await http.post(
            "/users/health", content=str(health), headers={"Content-Type": "text/plain"}
        )
        assert as_text.status_code == 415
    service.stop()
    log = service.log_path.read_text()
    # The requests were logged (as JSON, by route template), just without their data.
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(record.get("route") == "/users/{user_id}/financial" for record in records), log[:3000]
    for value in PII.values():
        assert value not in log, f"{value!r} leaked into the log"
