"""A tenant's `max_in_flight`, enforced in PostgreSQL across replicas (the events example: 2): with two
service processes on one queue, at most that many of the tenant's files load at once, another tenant's
files keep flowing, and a throttled file waits (as a fresh message, so the waits never count toward the
dead-letter queue) and is never failed for it."""

import secrets
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import yaml

from app.ingestion.consumer import throttle_delay
from devtools.bootstrap import bootstrap_aws
from examples.sources import generate
from tests.aws import AWS_REGION
from tests.helpers import bearer, eventually
from tests.reliability.helpers import service_env_of
from tests.reliability.test_processes import Spawn
from tests.sources.conftest import admin, source_name

FILES = 5
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sources"


def events_example(name: str, bucket: str) -> dict[str, Any]:
    """examples/sources/events.yaml (tenant shop-analytics, max_in_flight 2) under a name and bucket of
    this test's own."""
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / "events.yaml").read_text())
    return {**spec, "name": name, "bucket": bucket, "prefix": f"{name}/"}


def calm_source(name: str, bucket: str) -> dict[str, Any]:
    return {
        "name": name,
        "tenant": "calm-tenant",
        "bucket": bucket,
        "prefix": f"{name}/",
        "format": "jsonl",
        "columns": [{"name": "n", "type": "integer", "from": "/n", "required": True}],
        "key": ["n"],
    }


async def statuses(db: asyncpg.Connection, bucket: str, prefix: str) -> list[str]:
    rows = await db.fetch(
        "SELECT status FROM file_processing_log WHERE bucket = $1 AND starts_with(key, $2) ORDER BY key",
        bucket,
        prefix,
    )
    return [row["status"] for row in rows]


async def test_a_tenant_loads_at_most_its_limit_across_two_processes_and_others_keep_flowing(
    moto_url: str,
    service_env: dict[str, str],
    spawn_service: Spawn,
    s3: Any,
    sqs: Any,
    db: asyncpg.Connection,
    client: httpx.AsyncClient,
) -> None:
    name = f"tenants-{secrets.token_hex(4)}"
    # maxReceiveCount 2: a throttled message that merely came back again and again would be dead-lettered.
    env = {
        **service_env,
        **bootstrap_aws(
            moto_url, AWS_REGION, bucket=name, topic=name, queue=name, dlq=f"{name}-dlq", max_receive_count=2
        ),
        "SQS_WAIT_TIME_SECONDS": "1",
    }
    busy, calm = source_name("events"), source_name("calm")
    busy_spec = events_example(busy, name)
    limit = busy_spec["max_in_flight"]
    assert limit == 2
    for spec in (busy_spec, calm_source(calm, name)):
        response = await client.put(f"/ingestion/sources/{spec['name']}", json=spec, headers=admin())
        assert response.status_code == 200, response.text
    replicas = [spawn_service(service_env_of(env)) for _ in range(2)]
    for replica in replicas:
        await replica.wait_healthy()

    # The busy tenant's loads are held at their landing statement (its table locked), slots taken.
    holder = await asyncpg.connect(env["DATABASE_URL"])
    hold = holder.transaction()
    await hold.start()
    await holder.execute(f'LOCK TABLE sources."{busy}" IN EXCLUSIVE MODE')
    try:
        for number in range(FILES):
            body = generate.events_jsonl(10, first=number * 10)
            s3.put_object(Bucket=name, Key=f"{busy}/{number}.jsonl", Body=body)

        async def limit_reached() -> list[str] | None:
            found = await statuses(db, name, f"{busy}/")
            return found if len(found) == FILES and found.count("processing") == limit else None

        await eventually(limit_reached, message=f"{limit} of the busy tenant's files loading")
        s3.put_object(Bucket=name, Key=f"{calm}/0.jsonl", Body=b'{"n": 1}\n')
        await eventually(
            lambda: statuses_are(db, name, f"{calm}/", ["completed"]), message="the calm tenant's file loaded"
        )
        # Still the limit, after the other files have been throttled and come back at least once.
        throttled = await eventually(
            lambda: db.fetchval(
                "SELECT count(*) FROM file_processing_log WHERE bucket = $1 AND starts_with(key, $2) "
                "AND status = 'pending'",
                name,
                f"{busy}/",
            ),
            message="throttled files back to pending",
        )
        assert throttled >= 1
        # Back on the queue as a fresh, delayed message (not the same one hidden again: its receive count
        # would grow to the dead-letter queue's maxReceiveCount while the tenant stays busy).
        await eventually(
            lambda: int(
                sqs.get_queue_attributes(QueueUrl=env["SQS_QUEUE_URL"], AttributeNames=["All"])[
                    "Attributes"
                ].get("ApproximateNumberOfMessagesDelayed", "0")
            ),
            message="a throttled file's message requeued with a delay",
        )
        assert (await statuses(db, name, f"{busy}/")).count("processing") == limit
    finally:
        await hold.rollback()
        await holder.close()

    await eventually(
        lambda: statuses_are(db, name, f"{busy}/", ["completed"] * FILES),
        timeout=60,
        message="every throttled file loaded",
    )
    assert await db.fetchval(f'SELECT count(*) FROM sources."{busy}"') == FILES * 10
    dead = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert dead == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    # A throttled attempt is not counted: each file was loaded by one attempt.
    attempts = await db.fetch(
        "SELECT attempts FROM file_processing_log WHERE bucket = $1 AND starts_with(key, $2)",
        name,
        f"{busy}/",
    )
    assert [row["attempts"] for row in attempts] == [1] * FILES


async def statuses_are(db: asyncpg.Connection, bucket: str, prefix: str, expected: list[str]) -> bool:
    return await statuses(db, bucket, prefix) == expected


def test_a_throttled_file_waits_longer_each_time_up_to_a_minute() -> None:
    assert [throttle_delay(times, 3.0) for times in (1, 2, 3, 4, 5, 6, 50)] == [3, 6, 12, 24, 48, 60, 60]


async def test_a_throttled_api_load_waits_in_its_place_and_posted_records_get_429(
    s3: Any, db: asyncpg.Connection, client: httpx.AsyncClient, settings: Any
) -> None:
    bucket = f"tenant-api-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    name, tenant = source_name("calm"), f"t-{secrets.token_hex(4)}"
    spec = {**calm_source(name, bucket), "tenant": tenant, "max_in_flight": 1}
    assert (await client.put(f"/ingestion/sources/{name}", json=spec, headers=admin())).status_code == 200
    s3.put_object(Bucket=bucket, Key=f"{name}/a.jsonl", Body=b'{"n": 1}\n')
    writer = bearer(["ingestion:write"])

    # Another replica's load holds the tenant's only slot.
    holder = await asyncpg.connect(str(settings.database_url))
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtext('tenant:' || $1), 0)", tenant)
        started = await client.post(
            "/ingestion/files", json={"bucket": bucket, "key": f"{name}/a.jsonl"}, headers=writer
        )
        assert started.status_code == 202 and started.json()["status"] == "accepted"
        file_id = started.json()["file_id"]
        await eventually(
            lambda: db.fetchval("SELECT status = 'pending' FROM file_processing_log WHERE id = $1", file_id),
            message="the throttled file given back",
        )
        posted = await client.post(
            f"/ingestion/sources/{name}/records", json=[{"n": 2}], headers={**writer, "Idempotency-Key": "t1"}
        )
        assert posted.status_code == 429 and "retry-after" in posted.headers
    finally:
        await holder.close()  # the slot is free once its session ends

    # The API's load tries again by itself; the records are loaded when sent again with the same key.
    await eventually(
        lambda: db.fetchval("SELECT status = 'completed' FROM file_processing_log WHERE id = $1", file_id),
        message="the API load finished once the slot was free",
    )
    again = await client.post(
        f"/ingestion/sources/{name}/records", json=[{"n": 2}], headers={**writer, "Idempotency-Key": "t1"}
    )
    assert again.status_code == 201, again.text
    assert await db.fetchval(f'SELECT array_agg(n ORDER BY n) FROM sources."{name}"') == [1, 2]
    assert await db.fetchval("SELECT attempts FROM file_processing_log WHERE id = $1", file_id) == 1
