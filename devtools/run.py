"""`make run`: local PostgreSQL and moto (unless DATABASE_URL / AWS_ENDPOINT_URL are set), AWS
resources, migrations, the example sources and a bearer token, then the API until Ctrl-C; nothing is left
running."""

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import asyncpg
from dotenv import dotenv_values

from app.core.security import SCOPES
from devtools.bootstrap import (
    DEFAULT_REGION,
    EMULATOR_CREDENTIAL,
    bootstrap_aws,
    bootstrap_lake_bucket,
    names_from_env,
)
from devtools.servers import free_port, port_is_free, start_moto, start_postgres

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_DIR = REPO_ROOT / ".dev"
EXAMPLE_SOURCES = REPO_ROOT / "examples" / "sources"
HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MOTO_PORT = 5001
ALL_SCOPES = " ".join(SCOPES)
TOKEN_TTL_S = 86400
SERVER_STOP_TIMEOUT_S = 30


class StepFailed(Exception):
    """A start-up step failed; the message is the line shown to the user."""


class _Signalled(BaseException):
    """SIGINT or SIGTERM; a BaseException so that no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum: int, frame: FrameType | None) -> None:
    raise _Signalled(signum)


def _set_signal_handlers(handler: signal.Handlers | Callable[[int, FrameType | None], None]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def main() -> int:
    _set_signal_handlers(_raise_signalled)
    with contextlib.ExitStack() as stack:
        try:
            return _run(stack)
        except _Signalled as exc:
            return 128 + exc.signum
        except Exception as exc:
            print(f"make run failed: {exc}", file=sys.stderr)
            return 1
        finally:
            # Shutting down takes a few seconds; a second Ctrl-C must not cut it short.
            _set_signal_handlers(signal.SIG_IGN)


def _run(stack: contextlib.ExitStack) -> int:
    DEV_DIR.mkdir(exist_ok=True)
    # The service reads `.env` too; its values count as set by the user.
    env = {key: value for key, value in dotenv_values(REPO_ROOT / ".env").items() if value is not None}
    env.update(os.environ)
    given = set(env)  # the user's own (shell, .env): never copied into .dev/run.env
    started: list[str] = []

    if not env.get("DATABASE_URL"):
        postgres = stack.enter_context(
            start_postgres(DEV_DIR / "postgres", _port_setting(env, "DEV_POSTGRES_PORT"))
        )
        env["DATABASE_URL"] = postgres.dsn
        started.append(f"PostgreSQL {postgres.dsn} (data in {postgres.data_dir})")
    moto_started = False
    if not env.get("AWS_ENDPOINT_URL"):
        moto_port = _port_setting(env, "DEV_MOTO_PORT")
        if moto_port is None:
            moto_port = DEFAULT_MOTO_PORT if port_is_free(DEFAULT_MOTO_PORT) else free_port()
        moto = stack.enter_context(start_moto(moto_port, DEV_DIR / "moto.log"))
        env["AWS_ENDPOINT_URL"] = moto.endpoint_url
        moto_started = True
        env.setdefault("AWS_ACCESS_KEY_ID", EMULATOR_CREDENTIAL)
        env.setdefault("AWS_SECRET_ACCESS_KEY", EMULATOR_CREDENTIAL)
        started.append(f"moto {moto.endpoint_url} (state lost on exit)")

    region = env.setdefault("AWS_REGION", DEFAULT_REGION)
    for key, value in bootstrap_aws(env["AWS_ENDPOINT_URL"], region, **names_from_env(env)).items():
        env.setdefault(key, value)
    if moto_started and not env.get("LAKE_WAREHOUSE"):
        # The lake on the emulator, in a bucket of its own (never announced to the ingestion queue), its
        # catalog in the PostgreSQL above (LAKE_CATALOG=sql, the default).
        env["LAKE_WAREHOUSE"] = f"s3://{bootstrap_lake_bucket(env['AWS_ENDPOINT_URL'], region)}/warehouse"
        env.setdefault("LAKE_EXPORT_INTERVAL_SECONDS", "2")
    env.setdefault("JWT_SECRET", _jwt_secret(DEV_DIR / "jwt_secret"))
    env.setdefault("LOG_FORMAT", "text")  # JSON logs are for machines
    # Commands in another terminal see what the service sees: `set -a; . .dev/run.env; set +a` adds what
    # make run chose (servers, resources, the dev JWT secret, the lake) to the user's own settings.
    _write_env(DEV_DIR / "run.env", {key: value for key, value in env.items() if key not in given})

    _app(env, "migrate")
    if moto_started and env.get("LAKE_WAREHOUSE"):
        asyncio.run(_forget_the_last_lake(env["DATABASE_URL"]))
    _app(env, "sources", "apply", str(EXAMPLE_SOURCES))  # billing/, roster/, events/: see the README
    token = _app(env, "token", "--scopes", ALL_SCOPES, "--ttl", str(TOKEN_TTL_S), capture=True).strip()
    if not token:
        raise StepFailed("`python -m app token` printed no token")

    port = _port_setting(env, "PORT") or DEFAULT_PORT
    base_url = f"http://{HOST}:{port}"
    lines = [
        "",
        f"API   {base_url}",
        f"Docs  {base_url}/docs",
        *(f"Local {line}" for line in started),
        *(
            [
                f"Lake  {env['LAKE_WAREHOUSE']} (Iceberg; catalog in the PostgreSQL above).",
                "      Its rows, from another terminal in this folder:",
                "      set -a; . .dev/run.env; set +a; .venv/bin/python -m app lake show --limit 5",
            ]
            if env.get("LAKE_WAREHOUSE")
            else []
        ),
        f"Token (all scopes, {TOKEN_TTL_S // 3600} h):",
        token,
        "Authorize in Swagger with this token; Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)

    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", HOST, "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        returncode = server.wait()
    except _Signalled:
        _set_signal_handlers(signal.SIG_IGN)
        returncode = _stop(server)
        if returncode in (0, -signal.SIGTERM, -signal.SIGINT):
            return 0  # stopped as asked: not an error
    # A child killed by a signal reports -signum; shells report 128 + signum.
    return returncode if returncode >= 0 else 128 - returncode


async def _forget_the_last_lake(dsn: str) -> None:
    """moto's buckets die with each `make run`, the PostgreSQL data does not: drop the SQL catalog's record
    of the lost tables and queue every loaded file again, so the new (empty) lake gets them all."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            if await conn.fetchval("SELECT to_regclass('iceberg_tables') IS NOT NULL"):
                await conn.execute("DELETE FROM iceberg_tables WHERE catalog_name = 'lake'")
                await conn.execute("DELETE FROM iceberg_namespace_properties WHERE catalog_name = 'lake'")
            await conn.execute(
                "UPDATE lake_exports SET exported_at = NULL, snapshot_id = NULL, rows_exported = NULL, "
                "attempts = 0, last_error = NULL"
            )
    finally:
        await conn.close()


# What `.dev/run.env` keeps: the service's settings, not the rest of the shell's environment.
_SERVICE_SETTING = re.compile(r"^(AWS_|DATABASE_URL$|S3_|SNS_|SQS_|JWT_|LAKE_|INGEST_|LOG_)")


def _write_env(path: Path, env: dict[str, str]) -> None:
    lines = [
        f"{key}={shlex.quote(value)}" for key, value in sorted(env.items()) if _SERVICE_SETTING.match(key)
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # holds the dev JWT secret


def _port_setting(env: dict[str, str], name: str) -> int | None:
    value = env.get(name)
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StepFailed(f"{name} must be a TCP port number, got {value!r}")
    return int(value)


def _jwt_secret(path: Path) -> str:
    """The development signing secret, kept in `path` so that tokens survive restarts."""
    if path.exists() and (secret := path.read_text().strip()):
        return secret
    secret = secrets.token_urlsafe(48)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(secret + "\n")
    return secret


def _app(env: dict[str, str], *args: str, capture: bool = False) -> str:
    """Run `python -m app ARGS` to completion; return its stdout when captured."""
    result = subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StepFailed(f"`python -m app {args[0]}` failed with exit code {result.returncode}")
    return result.stdout or ""


def _stop(server: subprocess.Popen[bytes]) -> int:
    if server.poll() is None:
        server.terminate()
        try:
            return server.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
    return server.wait()


if __name__ == "__main__":
    sys.exit(main())
