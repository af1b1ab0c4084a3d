"""Helpers shared by the tests: tokens, ids, problem+json checks and a real service process."""

import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from app.core.config import Settings
from app.core.security import SCOPES, mint_token
from devtools.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
TEST_JWT_SECRET = "test-secret-" + "x" * 40
ALL_SCOPES = list(SCOPES)


def api_only(settings: Settings) -> Settings:
    """Settings for an extra app in a test: no consumer, so only the session app consumes the queue."""
    return settings.model_copy(update={"sqs_consumer_enabled": False})


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

    def wait_healthy(self, deadline_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"service not healthy in {deadline_seconds}s:\n{self.log_path.read_text()}")

    async def await_healthy(self, deadline_seconds: float = 60.0) -> None:
        """wait_healthy() for async tests whose event loop must keep running (e.g. a proxy in it)."""
        deadline = time.monotonic() + deadline_seconds
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"service exited early:\n{self.log_path.read_text()}")
                try:
                    if (await http.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"service not healthy in {deadline_seconds}s:\n{self.log_path.read_text()}")

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
