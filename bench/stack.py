"""What every benchmark runs on: its own PostgreSQL and moto, and server processes started per case
(`python -m app serve`, or a floor app served the same way) whose memory and CPU it reads."""

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil

from app.core.security import mint_token
from devtools.bootstrap import EMULATOR_CREDENTIAL, bootstrap_aws
from devtools.servers import free_port, start_moto, start_postgres

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REGION = "us-east-1"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0
# The consumers' long poll here, not the service's 20 s default: moto keeps serving a receive whose client
# has gone, and one left by a stopped consumer would take the next case's messages out of sight for the
# visibility timeout (30 s). A short poll ends soon after its consumer, and costs nothing on a busy queue:
# a receive returns as soon as a message is there.
SQS_WAIT_SECONDS = 2


@dataclass(frozen=True, slots=True)
class Infra:
    """PostgreSQL, moto and the AWS resources the service uses, shared by every case of a run."""

    database_url: str
    endpoint_url: str
    resources: Mapping[str, str]  # S3_BUCKET_NAME, SNS_TOPIC_ARN, SQS_QUEUE_URL, SQS_DLQ_URL
    workdir: Path
    jwt_secret: str

    @property
    def bucket(self) -> str:
        return self.resources["S3_BUCKET_NAME"]

    @property
    def queue_url(self) -> str:
        return self.resources["SQS_QUEUE_URL"]

    def token(self, *scopes: str) -> str:
        return mint_token(self.jwt_secret, subject="bench", scopes=list(scopes), ttl_seconds=3600)

    def client(self, name: str) -> Any:
        """A boto3 client of the emulator."""
        return boto3.client(
            name,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=EMULATOR_CREDENTIAL,
            aws_secret_access_key=EMULATOR_CREDENTIAL,
        )

    def empty_queue(self) -> None:
        """Delete every message of the ingestion queue, so no case inherits an earlier case's events.
        (Not PurgeQueue: SQS, and moto, allow one a minute.)"""
        sqs = self.client("sqs")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while queue_depth(sqs, self.queue_url):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "the ingestion queue still holds messages in flight (a consumer took them and did not "
                    "delete them: look for `busy` in the previous service's log)"
                )
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if messages:
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                ]
                sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            else:
                time.sleep(0.1)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by PostgreSQL (the postmaster and its live backends) and by moto."""
        pid = int((self.workdir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])
        port = self.endpoint_url.rsplit(":", 1)[1]
        moto = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if "moto.server" in (p.info["cmdline"] or []) and port in (p.info["cmdline"] or [])
        )
        return {"postgres": _tree_cpu_seconds(psutil.Process(pid)), "moto": _tree_cpu_seconds(moto)}

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The service's environment: these servers, the bench secret, and `extra` on top."""
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": self.database_url,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIAL,
            "AWS_REGION": REGION,
            "JWT_SECRET": self.jwt_secret,
            "LOG_LEVEL": "WARNING",
            "SQS_WAIT_TIME_SECONDS": str(SQS_WAIT_SECONDS),
            **{k: v for k, v in self.resources.items() if k != "SQS_DLQ_URL"},
            **(extra or {}),
        }


@dataclass(frozen=True, slots=True)
class Server:
    """A running server process (and its workers, for uvicorn --workers)."""

    base_url: str
    pid: int

    def processes(self) -> list[psutil.Process]:
        parent = psutil.Process(self.pid)
        return [parent, *parent.children(recursive=True)]

    def peak_rss_bytes(self) -> int:
        """Peak resident set size since start (or the last reset), summed over the processes."""
        return sum(peak_rss_bytes(p.pid) for p in self.processes())

    def rss_bytes(self) -> int:
        return sum(p.memory_info().rss for p in self.processes())

    def reset_peak_rss(self) -> None:
        for process in self.processes():
            reset_peak_rss(process.pid)

    def cpu_seconds(self) -> float:
        return _tree_cpu_seconds(psutil.Process(self.pid))

    def cpu_seconds_by_process(self) -> list[float]:
        """Per process (the supervisor first, then each worker): shows how evenly workers share the load."""
        return [_tree_cpu_seconds(process, children=False) for process in self.processes()]


def _tree_cpu_seconds(parent: psutil.Process, *, children: bool = True) -> float:
    total = 0.0
    for process in [parent, *(parent.children(recursive=True) if children else [])]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages on the queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found: the benchmarks need Linux /proc")


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0: `5` in clear_refs), so one process can
    report the peak of each run."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextlib.contextmanager
def infrastructure() -> Iterator[Infra]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        start_postgres(Path(tmp) / "pg", durable=False) as pg,
        start_moto(log_path=Path(tmp) / "moto.log") as moto,
    ):
        resources = bootstrap_aws(
            moto.endpoint_url, REGION, bucket="bench-bucket", topic="bench", queue="bench", dlq="bench-dlq"
        )
        yield Infra(pg.dsn, moto.endpoint_url, resources, Path(tmp), secrets.token_urlsafe(48))


@contextlib.contextmanager
def server(
    infra: Infra, command: Sequence[str], env: Mapping[str, str], *, name: str, port: int
) -> Iterator[Server]:
    """Run `command` (which listens on 127.0.0.1:`port`) until the block ends; its output goes to
    `{workdir}/{name}.log`. Healthy once GET /health answers 200."""
    log_path = infra.workdir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command), cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_healthy(base_url, process, log_path)
            yield Server(base_url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def service(
    infra: Infra, extra_env: Mapping[str, str] | None = None, *, workers: int = 1, tuned: bool = True
) -> Iterator[Server]:
    """The service as deployed: `python -m app serve --workers N` (uvicorn with `perf.server_options()`, the
    app in `perf.tuned`). With `tuned=False`, the same server and options around `create_app()` alone (the
    API case's `--untuned` experiment). It starts on an empty queue: a service must not pick up the events
    of an earlier case's objects."""
    infra.empty_queue()
    port = free_port()
    if tuned:
        command = [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", str(workers)]
    else:
        command = serve_command("app.main:create_app", port, workers)
    try:
        with server(infra, command, infra.env(extra_env), name=f"service-{port}", port=port) as running:
            yield running
    finally:
        abandoned_polls_ended()


def abandoned_polls_ended() -> None:
    """Wait out the long polls a stopped consumer may have left in moto."""
    time.sleep(SQS_WAIT_SECONDS + 1)


def serve_command(factory: str, port: int, workers: int) -> list[str]:
    """`factory` served as `python -m app serve` serves the service (bench/serve.py)."""
    return [sys.executable, "-m", "bench.serve", factory, "--port", str(port), "--workers", str(workers)]


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with httpx.Client(base_url=base_url, timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError("the server exited during start-up:\n" + "\n".join(tail))
            with contextlib.suppress(httpx.TransportError):
                if http.get("/health").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"the server did not become healthy in {START_TIMEOUT_SECONDS:.0f} s")
