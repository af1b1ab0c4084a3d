"""Helpers shared by the tests: waiting for a state, a started app and its client, tokens, ids,
problem+json checks and a real service process."""

import asyncio
import inspect
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx
from fastapi import FastAPI

from app.core.config import Settings
from app.core.security import SCOPES, mint_token
from app.main import create_app
from app.resources import Resources
from devtools.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
TEST_JWT_SECRET = "test-secret-" + "x" * 40
ALL_SCOPES = list(SCOPES)


T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str | None = ...,
) -> T: ...
@overload
async def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str | None = ...,
) -> T: ...
async def eventually(
    check: Callable[[], Any],
    *,
    # The deadline of the poll, reported with the last value: asyncio.timeout() would report neither.
    timeout: float = 30.0,  # noqa: ASYNC109
    interval: float = 0.1,
    message: str | None = None,
) -> Any:
    """The first truthy value of `check()` (sync or async), asked every `interval` seconds.

    After `timeout` seconds, AssertionError naming `message` (what was waited for) and the last value. An
    exception raised by `check` is not retried: it ends the wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(check, "__name__", "the check")
            raise AssertionError(f"waited {timeout}s for {what} (last value: {value!r})")
        await asyncio.sleep(interval)


def api_only(settings: Settings) -> Settings:
    """Settings for an extra app in a test: no consumer, so only the session app consumes the queue."""
    return settings.model_copy(update={"sqs_consumer_enabled": False})


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that calls `app` in process; a crash is answered 500 problem+json, as a real client sees
    it, not raised into the test."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@asynccontextmanager
async def started_app(settings: Settings, **changes: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app of the test's own on `settings` with `changes`, through its lifespan, and a client of it.

    API only (api_only()) unless `changes` turn the consumer on.
    """
    assert changes.keys() <= Settings.model_fields.keys(), f"not settings: {changes.keys()}"
    app = create_app(api_only(settings).model_copy(update=changes))
    async with app.router.lifespan_context(app), client_of(app) as http:
        yield app, http


def resources(app: FastAPI) -> Resources:
    """What the lifespan of a started app opened (app/resources.py), typed."""
    opened = app.state.resources
    assert isinstance(opened, Resources)
    return opened


def make_token(scopes: list[str] | None = None, *, subject: str = "tester", ttl: int = 300) -> str:
    return mint_token(
        TEST_JWT_SECRET,
        subject=subject,
        scopes=ALL_SCOPES if scopes is None else scopes,
        ttl_seconds=ttl,
    )


def bearer(scopes: list[str] | None = None, *, subject: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(scopes, subject=subject)}"}


def unique_id(prefix: str = "u") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def isolated_env(env: dict[str, str]) -> dict[str, str]:
    """The test process's environment without service settings, plus `env` and the app on the path.

    Commands run from a temporary directory so a developer's `.env` in the repo is not read.
    """
    keep = {k: v for k, v in os.environ.items() if not k.endswith(("_URL", "_ARN", "_NAME", "SECRET"))}
    return {**keep, "PYTHONPATH": str(ROOT), **env}


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=isolated_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


class ServiceProcess:
    """`python -m app serve` in a subprocess, for what only a real process shows."""

    def __init__(self, env: dict[str, str], log_path: Path, command: list[str] | None = None) -> None:
        """`command`: what starts it instead of `python -m app serve` (the port is appended)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*(command or [sys.executable, "-m", "app", "serve"]), "--port", str(self.port)],
            cwd=log_path.parent,
            env=isolated_env(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109  (eventually()'s)
        """Until /health answers 200; the event loop keeps running meanwhile (e.g. a proxy in it)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as http:

            async def healthy() -> bool:
                if self.process.poll() is not None:
                    raise AssertionError("service exited early")
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                await eventually(healthy, timeout=timeout, message="a healthy service")
            except AssertionError as exc:
                raise AssertionError(f"{exc}:\n{self.log_path.read_text()}") from None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crashed host or an OOM kill."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """Assert the response is RFC 9457 problem+json and return its body."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == response.status_code
    assert {"type", "title", "status", "detail"} <= body.keys()
    return body
