"""Recovery case: two replicas with the default settings, one killed with SIGKILL in the middle of a
300,000-record file and restarted at once; seconds from the kill to the file's `completed` (median of the
runs; target <= 45 s).

Each run has a bucket and queue of its own (a killed replica's long poll may linger in moto, and must not
take another run's messages), and the service's own defaults, including the 20 s long poll."""

import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import psutil

from bench.data import write_jsonl
from bench.report import Result, Target
from bench.stack import REGION, Infra, server
from devtools.bootstrap import bootstrap_aws
from devtools.probes import pid_loading
from devtools.servers import free_port

T = TypeVar("T")

RECORDS = 300_000
RECOVERY_TARGET = Target(max_median=45.0)  # seconds
POLL_SECONDS = 0.05
LOADING_TIMEOUT_SECONDS = 120.0
RECOVERY_TIMEOUT_SECONDS = 300.0
# Not the bench's short poll (bench/stack.py): the service's defaults, every one of them.
DEFAULTS = {"SQS_WAIT_TIME_SECONDS": "20"}


async def _until(check: Callable[[], Awaitable[T | None]], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (found := await check()) is not None:
            return found
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"{what} did not happen in {seconds:.0f} s")


async def one_run(infra: Infra, conn: asyncpg.Connection, run: int) -> dict[str, float]:
    name = f"recovery-{run}-{secrets.token_hex(3)}"
    resources = bootstrap_aws(
        infra.endpoint_url,
        REGION,
        bucket=name,
        topic=name,
        queue=name,
        dlq=f"{name}-dlq",
        visibility_timeout=30,
    )
    env = infra.env({**DEFAULTS, **{k: v for k, v in resources.items() if k != "SQS_DLQ_URL"}})
    path = infra.workdir / "recovery.jsonl"
    if not path.exists():
        write_jsonl(path, RECORDS)

    def replica(stack: contextlib.ExitStack, number: int) -> int:
        port = free_port()
        command = [sys.executable, "-m", "app", "serve", "--port", str(port)]
        return stack.enter_context(server(infra, command, env, name=f"{name}-{number}", port=port)).pid

    with contextlib.ExitStack() as stack:
        pids = [replica(stack, 0), replica(stack, 1)]
        infra.client("s3").put_object(Bucket=name, Key="big/recovery.jsonl", Body=path.read_bytes())

        async def loader() -> int | None:
            pid = await pid_loading(conn, name)
            return pid if pid in pids else None

        victim = await _until(loader, LOADING_TIMEOUT_SECONDS, "a replica loading the file")
        psutil.Process(victim).kill()
        killed = time.time()
        replica(stack, 2)  # restarted at once, as ECS or Kubernetes would

        async def completed() -> asyncpg.Record | None:
            return await conn.fetchrow(
                "SELECT EXTRACT(EPOCH FROM started_at)::float8 AS started, "
                "EXTRACT(EPOCH FROM finished_at)::float8 AS finished, attempts, rows_inserted "
                "FROM file_processing_log WHERE bucket = $1 AND status = 'completed'",
                name,
            )

        row = await _until(completed, RECOVERY_TIMEOUT_SECONDS, "the file's completion")
    stored = await conn.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT data->>'id') AS d FROM processed_data WHERE bucket = $1", name
    )
    if (row["rows_inserted"], stored["n"], stored["d"]) != (RECORDS, RECORDS, RECORDS):
        raise RuntimeError(f"recovery run {run} did not load the file exactly once: {dict(stored)}")
    return {
        "seconds": row["finished"] - killed,
        "claimed_again_after_seconds": row["started"] - killed,  # the message came back
        "load_seconds": row["finished"] - row["started"],
        "attempts": row["attempts"],
    }


async def recovery_case(infra: Infra, conn: asyncpg.Connection, runs: int) -> Result:
    measured = [await one_run(infra, conn, run) for run in range(runs)]
    return Result(
        "recovery",
        f"kill -9 mid-load -> completed ({RECORDS:,} records, 2 replicas, defaults)",
        "s",
        [m["seconds"] for m in measured],
        target=RECOVERY_TARGET,
        note="a live replica's claim recovery (INGEST_RECOVERY_INTERVAL_SECONDS 5) takes the dead claim "
        "over, then the file loads from the start; details: claimed_again_after_seconds, load_seconds "
        "(README: Recovery after a crash)",
        details={"runs": measured},
    )
