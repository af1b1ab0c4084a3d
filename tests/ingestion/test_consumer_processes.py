"""Consumers as real processes: two on one queue, one killed mid-file, and a database outage."""

import asyncio
import json
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from devtools.bootstrap import bootstrap_aws
from tests.aws import AWS_REGION
from tests.faults import TcpProxy
from tests.helpers import ServiceProcess
from tests.ingestion.helpers import wait_until


@pytest.fixture
def isolated_aws(moto_url: str, service_env: dict[str, str]) -> dict[str, str]:
    """A bucket, topic and queue (+ DLQ, notification) of the test's own, so no other consumer competes."""
    name = f"proc-{secrets.token_hex(4)}"
    resources = bootstrap_aws(
        moto_url, AWS_REGION, bucket=name, topic=name, queue=name, dlq=f"{name}-dlq", visibility_timeout=10
    )
    return {
        **service_env,
        **{k: v for k, v in resources.items() if k != "SQS_DLQ_URL"},
        "SQS_WAIT_TIME_SECONDS": "1",
        "SQS_VISIBILITY_TIMEOUT_SECONDS": "10",
        "SQS_BACKOFF_BASE_SECONDS": "1",
        "SQS_BACKOFF_MAX_SECONDS": "4",
        "INGEST_LEASE_SECONDS": "10",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }


def jsonl(file_number: int, rows: int) -> bytes:
    return b"".join(
        json.dumps({"file": file_number, "row": row, "pad": "x" * 40}).encode() + b"\n" for row in range(rows)
    )


async def file_statuses(db: asyncpg.Connection, bucket: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT key, status, attempts, rows_inserted FROM file_processing_log WHERE bucket = $1", bucket
    )


async def wait_for_status(
    db: asyncpg.Connection, bucket: str, status: str, deadline_seconds: float
) -> asyncpg.Record:
    """The bucket's (single) file once it has `status`."""

    async def found() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT * FROM file_processing_log WHERE bucket = $1 AND status = $2", bucket, status
        )

    return await wait_until(found, deadline_seconds=deadline_seconds)


async def test_two_consumers_ingest_each_file_and_row_exactly_once(
    isolated_aws: dict[str, str],
    spawn_service: Callable[[dict[str, str]], ServiceProcess],
    s3: Any,
    sqs: Any,
    db: asyncpg.Connection,
) -> None:
    bucket = isolated_aws["S3_BUCKET_NAME"]
    services = [spawn_service(isolated_aws) for _ in range(2)]
    for service in services:
        await service.await_healthy()
    files, rows = 40, 50
    for number in range(files):
        response = s3.put_object(Bucket=bucket, Key=f"many/{number:02d}.jsonl", Body=jsonl(number, rows))
        if number % 4 == 0:  # duplicate deliveries of the same event, as SQS may do
            sqs.send_message(
                QueueUrl=isolated_aws["SQS_QUEUE_URL"],
                MessageBody=json.dumps(
                    {
                        "source": "aws-s3-service",
                        "event": "object.uploaded",
                        "bucket": bucket,
                        "key": f"many/{number:02d}.jsonl",
                        "etag": response["ETag"],
                        "version_id": response.get("VersionId"),
                        "size": 0,
                    }
                ),
            )

    async def all_done() -> bool:
        statuses = await file_statuses(db, bucket)
        return len(statuses) == files and all(row["status"] == "completed" for row in statuses)

    await wait_until(all_done, deadline_seconds=120)
    statuses = await file_statuses(db, bucket)
    assert sorted(row["key"] for row in statuses) == [f"many/{n:02d}.jsonl" for n in range(files)]
    assert sum(row["rows_inserted"] for row in statuses) == files * rows
    stored = await db.fetch(
        "SELECT data->>'file' AS f, count(*) AS n FROM processed_data WHERE bucket = $1 GROUP BY 1", bucket
    )
    assert {int(row["f"]): row["n"] for row in stored} == {n: rows for n in range(files)}


async def test_consumer_killed_mid_file_is_finished_by_another_after_the_lease(
    isolated_aws: dict[str, str],
    spawn_service: Callable[[dict[str, str]], ServiceProcess],
    s3: Any,
    db: asyncpg.Connection,
) -> None:
    bucket = isolated_aws["S3_BUCKET_NAME"]
    rows = 400_000
    first = spawn_service(isolated_aws)
    await first.await_healthy()
    s3.put_object(Bucket=bucket, Key="big/file.jsonl", Body=jsonl(1, rows))
    await wait_for_status(db, bucket, "processing", deadline_seconds=60)
    first.kill()
    second = spawn_service(isolated_aws)
    await second.await_healthy()
    row = await wait_for_status(db, bucket, "completed", deadline_seconds=120)
    assert row["attempts"] == 2
    assert row["rows_inserted"] == rows
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE bucket = $1", bucket) == rows


async def test_database_outage_during_ingestion_loses_nothing(
    isolated_aws: dict[str, str],
    spawn_service: Callable[[dict[str, str]], ServiceProcess],
    s3: Any,
    sqs: Any,
    db: asyncpg.Connection,
) -> None:
    bucket = isolated_aws["S3_BUCKET_NAME"]
    proxy, proxied = await TcpProxy.in_front_of(isolated_aws["DATABASE_URL"])
    service = spawn_service({**isolated_aws, "DATABASE_URL": proxied})
    try:
        await service.await_healthy()
        files = 10
        for number in range(files):
            s3.put_object(Bucket=bucket, Key=f"outage/{number}.jsonl", Body=jsonl(number, 2_000))
        await asyncio.sleep(0.5)  # let ingestion start, then take the database away mid-flight
        await proxy.cut()
        await asyncio.sleep(5)
        await proxy.restore()

        async def all_completed() -> bool:
            statuses = await file_statuses(db, bucket)
            return len(statuses) == files and all(row["status"] == "completed" for row in statuses)

        await wait_until(all_completed, deadline_seconds=120)
        assert (
            await db.fetchval("SELECT count(*) FROM processed_data WHERE bucket = $1", bucket)
            == files * 2_000
        )
        dlq = sqs.get_queue_url(QueueName=f"{bucket}-dlq")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
    finally:
        service.stop()
        await proxy.cut()


async def test_sigterm_mid_file_releases_it_and_exits_within_the_grace_period(
    isolated_aws: dict[str, str],
    spawn_service: Callable[[dict[str, str]], ServiceProcess],
    s3: Any,
    db: asyncpg.Connection,
) -> None:
    bucket = isolated_aws["S3_BUCKET_NAME"]
    rows = 400_000
    first = spawn_service({**isolated_aws, "SHUTDOWN_GRACE_SECONDS": "1"})
    await first.await_healthy()
    s3.put_object(Bucket=bucket, Key="big/term.jsonl", Body=jsonl(2, rows))
    await wait_for_status(db, bucket, "processing", deadline_seconds=60)
    started = time.monotonic()
    first.process.terminate()
    exit_code = await asyncio.to_thread(first.process.wait, 30)
    assert time.monotonic() - started < 10, "the process must exit by itself well inside the grace period"
    # uvicorn re-raises the signal once its graceful shutdown is over, so supervisors see SIGTERM.
    assert exit_code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in first.log_path.read_text()
    released = await db.fetchrow(
        "SELECT status, lease_owner FROM file_processing_log WHERE bucket = $1", bucket
    )
    assert dict(released) == {"status": "pending", "lease_owner": None}
    assert "in-flight messages released at shutdown" in first.log_path.read_text()

    second = spawn_service(isolated_aws)
    await second.await_healthy()
    row = await wait_for_status(db, bucket, "completed", deadline_seconds=120)
    assert (row["attempts"], row["rows_inserted"]) == (2, rows)
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE bucket = $1", bucket) == rows
