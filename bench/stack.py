"""What every benchmark runs on: its own PostgreSQL, moto and `python -m app serve` process."""

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.core.security import mint_token
from devtools.bootstrap import EMULATOR_CREDENTIAL, bootstrap_aws
from devtools.servers import free_port, start_moto, start_postgres

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class Stack:
    base_url: str
    pid: int
    database_url: str
    endpoint_url: str
    bucket: str
    workdir: Path
    jwt_secret: str

    def token(self, *scopes: str) -> str:
        return mint_token(self.jwt_secret, subject="bench", scopes=list(scopes), ttl_seconds=3600)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found: the benchmarks need Linux /proc")


@contextlib.contextmanager
def service_stack(extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_postgres(Path(tmp) / "pg", durable=False) as pg,
        start_moto(log_path=Path(tmp) / "moto.log") as moto,
    ):
        resources = bootstrap_aws(
            moto.endpoint_url, REGION, bucket="bench-bucket", topic="bench", queue="bench", dlq="bench-dlq"
        )
        secret = secrets.token_urlsafe(48)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": pg.dsn,
            "AWS_ENDPOINT_URL": moto.endpoint_url,
            "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIAL,
            "JWT_SECRET": secret,
            "LOG_LEVEL": "WARNING",
            **{k: v for k, v in resources.items() if k != "SQS_DLQ_URL"},
            **(extra_env or {}),
        }
        port = free_port()
        log = (Path(tmp) / "service.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_healthy(base_url, server)
            yield Stack(
                base_url,
                server.pid,
                pg.dsn,
                moto.endpoint_url,
                resources["S3_BUCKET_NAME"],
                Path(tmp),
                secret,
            )
        finally:
            server.terminate()
            server.wait(60)
            log.close()


def _wait_healthy(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base_url, timeout=2) as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError("the service exited during start-up")
            with contextlib.suppress(httpx.TransportError):
                if http.get("/health").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError("the service did not become healthy in 60 s")
