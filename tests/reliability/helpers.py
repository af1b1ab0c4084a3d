"""What the reliability tests share: an isolated set of AWS resources, file contents, and the checks that
prove exactly-once ingestion."""

import json
import secrets
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from devtools.bootstrap import bootstrap_aws
from tests.aws import AWS_REGION, queue_depth
from tests.helpers import eventually


def isolated_env(moto_url: str, service_env: dict[str, str]) -> dict[str, str]:
    """A bucket, topic and queue (+ DLQ, notification) of the test's own, so no other consumer competes;
    short timeouts so that faults resolve within a test."""
    name = f"rel-{secrets.token_hex(4)}"
    resources = bootstrap_aws(
        moto_url, AWS_REGION, bucket=name, topic=name, queue=name, dlq=f"{name}-dlq", visibility_timeout=10
    )
    return {
        **service_env,
        **resources,
        "SQS_WAIT_TIME_SECONDS": "1",
        "SQS_VISIBILITY_TIMEOUT_SECONDS": "10",
        "SQS_HEARTBEAT_SECONDS": "3",
        "SQS_BACKOFF_BASE_SECONDS": "1",
        "SQS_BACKOFF_MAX_SECONDS": "4",
        "INGEST_LEASE_SECONDS": "10",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }


def service_env_of(env: dict[str, str]) -> dict[str, str]:
    """The environment of a service process: everything but the test-only DLQ url."""
    return {name: value for name, value in env.items() if name != "SQS_DLQ_URL"}


def jsonl(file_number: int, rows: int) -> bytes:
    return b"".join(
        json.dumps({"file": file_number, "row": row, "pad": "x" * 40}).encode() + b"\n" for row in range(rows)
    )


def put_files(s3: Any, env: dict[str, str], prefix: str, rows_by_file: dict[int, int]) -> None:
    """One JSON Lines object per file number under `prefix`, as a data owner drops them in the bucket."""
    for number, rows in rows_by_file.items():
        key = f"{prefix}/{number:02d}.jsonl"
        s3.put_object(Bucket=env["S3_BUCKET_NAME"], Key=key, Body=jsonl(number, rows))


async def file_statuses(db: asyncpg.Connection, bucket: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT key, status, attempts, rows_inserted FROM file_processing_log WHERE bucket = $1", bucket
    )


async def wait_for_status(
    db: asyncpg.Connection,
    bucket: str,
    status: str,
    timeout: float,  # noqa: ASYNC109  (eventually()'s)
) -> asyncpg.Record:
    """The first file of the bucket found with `status`, once there is one."""
    return await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM file_processing_log WHERE bucket = $1 AND status = $2", bucket, status
        ),
        timeout=timeout,
        message=f"a file of {bucket} {status}",
    )


async def wait_all_claimed(db: asyncpg.Connection, bucket: str, files: int) -> None:
    """Until the consumer has claimed each of the bucket's files: it took every message, and ingestion is
    under way, the latest claims usually still loading."""
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) >= $2 FROM file_processing_log WHERE bucket = $1", bucket, files
        ),
        timeout=60,
        message=f"all {files} files of {bucket} claimed",
    )


async def wait_all_completed(
    db: asyncpg.Connection,
    bucket: str,
    files: int,
    timeout: float,  # noqa: ASYNC109  (eventually()'s)
) -> None:
    async def all_completed() -> bool:
        statuses = await file_statuses(db, bucket)
        return len(statuses) == files and all(row["status"] == "completed" for row in statuses)

    try:
        await eventually(all_completed, timeout=timeout, message=f"all {files} files of {bucket} completed")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; statuses: {[tuple(r) for r in await file_statuses(db, bucket)]}"
        ) from None


async def assert_exactly_once(
    db: asyncpg.Connection, sqs: Any, env: dict[str, str], rows_by_file: dict[int, int]
) -> None:
    """Each file completed once with every row stored once, and nothing dead-lettered."""
    bucket = env["S3_BUCKET_NAME"]
    statuses = await file_statuses(db, bucket)
    assert len(statuses) == len(rows_by_file)
    assert {row["status"] for row in statuses} == {"completed"}
    stored = await db.fetch(
        "SELECT (data->>'file')::int AS f, count(*) AS n, count(DISTINCT data->>'row') AS d "
        "FROM processed_data WHERE bucket = $1 GROUP BY 1",
        bucket,
    )
    assert {row["f"]: (row["n"], row["d"]) for row in stored} == {
        number: (rows, rows) for number, rows in rows_by_file.items()
    }
    assert queue_depth(sqs, env["SQS_DLQ_URL"]) == 0


def errors_logged(log_path: Path) -> list[str]:
    """ERROR and CRITICAL lines of a service's JSON log (an outage is WARNING: expected, handled)."""
    return [
        line
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and json.loads(line)["level"] in ("ERROR", "CRITICAL")
    ]


async def scrape(url: str) -> dict[str, float]:
    """A service process's /metrics, as {name{labels}: value}."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"{url}/metrics")).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
