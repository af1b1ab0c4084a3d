"""Consumers as real processes: several on one queue with duplicate deliveries, kill -9 at random points,
and SIGTERM in the middle of a large file."""

import asyncio
import json
import random
import signal
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import asyncpg
import pytest

from tests.helpers import ServiceProcess, eventually
from tests.ingestion.helpers import wrap_in_sns
from tests.reliability.helpers import (
    assert_exactly_once,
    isolated_env,
    jsonl,
    put_files,
    service_env_of,
    wait_all_completed,
    wait_for_status,
)

Spawn = Callable[[dict[str, str]], ServiceProcess]


@pytest.fixture
def env(moto_url: str, service_env: dict[str, str]) -> dict[str, str]:
    return isolated_env(moto_url, service_env)


def service_notification(env: dict[str, str], key: str, put: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "aws-s3-service",
        "event": "object.uploaded",
        "bucket": env["S3_BUCKET_NAME"],
        "key": key,
        "etag": put["ETag"],
        "version_id": put.get("VersionId"),
        "size": 0,
    }


async def loading_in(db: asyncpg.Connection, bucket: str, service: ServiceProcess) -> bool:
    """Whether the service process holds a lease: a file of the bucket is loading in it now."""
    owner = f"%:{service.process.pid}:%"  # lease owners are host:pid:nonce
    return bool(
        await db.fetchval(
            "SELECT count(*) FROM file_processing_log "
            "WHERE bucket = $1 AND status = 'processing' AND lease_owner LIKE $2",
            bucket,
            owner,
        )
    )


@pytest.mark.parametrize("instances", [2, 3])
async def test_several_consumers_with_duplicate_deliveries_ingest_exactly_once(
    instances: int, env: dict[str, str], spawn_service: Spawn, s3: Any, sqs: Any, db: asyncpg.Connection
) -> None:
    services = [spawn_service(service_env_of(env)) for _ in range(instances)]
    for service in services:
        await service.wait_healthy()
    files, rows = 30, 50
    for number in range(files):
        key = f"many/{number:02d}.jsonl"
        put = s3.put_object(Bucket=env["S3_BUCKET_NAME"], Key=key, Body=jsonl(number, rows))
        # Besides the S3 event: the same object announced again, directly and through SNS, as
        # at-least-once delivery and a second notification path would.
        notification = service_notification(env, key, put)
        sqs.send_message(QueueUrl=env["SQS_QUEUE_URL"], MessageBody=json.dumps(notification))
        if number % 3 == 0:
            wrapped = wrap_in_sns(notification, env["SNS_TOPIC_ARN"])
            sqs.send_message(QueueUrl=env["SQS_QUEUE_URL"], MessageBody=json.dumps(wrapped))

    await wait_all_completed(db, env["S3_BUCKET_NAME"], files, timeout=120)
    await assert_exactly_once(db, sqs, env, dict.fromkeys(range(files), rows))


async def test_kill_9_at_random_points_loses_nothing_and_loads_nothing_twice(
    env: dict[str, str], spawn_service: Spawn, s3: Any, sqs: Any, db: asyncpg.Connection
) -> None:
    seed = random.randrange(1_000_000)  # noqa: S311  (a schedule, not a secret)
    rng = random.Random(seed)  # noqa: S311
    print(f"kill schedule seed: {seed}")  # noqa: T201  (to replay a failure)
    rows_by_file = {number: rng.choice([10, 2_000, 40_000, 40_000]) for number in range(24)}
    service = spawn_service(service_env_of(env))
    await service.wait_healthy()
    put_files(s3, env, "kill", rows_by_file)

    # Even rounds kill while a file is being loaded (mid-COPY, or just after its commit, before the
    # delete); odd rounds at a random moment after start-up (often before any claim).
    for round_number in range(6):
        if round_number % 2 == 0:
            await eventually(partial(loading_in, db, env["S3_BUCKET_NAME"], service), timeout=60)
            await asyncio.sleep(rng.uniform(0, 0.3))
        else:
            await asyncio.sleep(rng.uniform(0, 1.5))
        service.kill()
        service = spawn_service(service_env_of(env))
        await service.wait_healthy()

    await wait_all_completed(db, env["S3_BUCKET_NAME"], len(rows_by_file), timeout=180)
    await assert_exactly_once(db, sqs, env, rows_by_file)
    processing = await db.fetchval(
        "SELECT count(*) FROM file_processing_log WHERE bucket = $1 AND status = 'processing'",
        env["S3_BUCKET_NAME"],
    )
    assert processing == 0
    attempts = await db.fetchval(
        "SELECT max(attempts) FROM file_processing_log WHERE bucket = $1", env["S3_BUCKET_NAME"]
    )
    assert attempts >= 2, "no kill interrupted a load: the test did not test anything"


async def test_consumer_killed_mid_file_is_finished_by_another_after_the_lease(
    env: dict[str, str], spawn_service: Spawn, s3: Any, db: asyncpg.Connection
) -> None:
    bucket = env["S3_BUCKET_NAME"]
    rows = 400_000
    first = spawn_service(service_env_of(env))
    await first.wait_healthy()
    s3.put_object(Bucket=bucket, Key="big/file.jsonl", Body=jsonl(1, rows))
    await wait_for_status(db, bucket, "processing", timeout=60)
    first.kill()
    second = spawn_service(service_env_of(env))
    await second.wait_healthy()
    row = await wait_for_status(db, bucket, "completed", timeout=120)
    assert row["attempts"] == 2
    assert row["rows_inserted"] == rows
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE bucket = $1", bucket) == rows


async def test_sigterm_mid_file_releases_it_and_exits_within_the_grace_period(
    env: dict[str, str], spawn_service: Spawn, s3: Any, db: asyncpg.Connection
) -> None:
    bucket = env["S3_BUCKET_NAME"]
    rows = 400_000
    first = spawn_service({**service_env_of(env), "SHUTDOWN_GRACE_SECONDS": "1"})
    await first.wait_healthy()
    s3.put_object(Bucket=bucket, Key="big/term.jsonl", Body=jsonl(2, rows))
    await wait_for_status(db, bucket, "processing", timeout=60)
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

    second = spawn_service(service_env_of(env))
    await second.wait_healthy()
    row = await wait_for_status(db, bucket, "completed", timeout=120)
    assert (row["attempts"], row["rows_inserted"]) == (2, rows)
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE bucket = $1", bucket) == rows
