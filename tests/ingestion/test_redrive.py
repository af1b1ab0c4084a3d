"""DLQ redrive that dies half-way: between sending a batch back and deleting it from the DLQ. Messages are
duplicated at most, never lost, and the duplicates change nothing (ingestion is idempotent)."""

import json
import secrets
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from app.ingestion.operations import redrive
from tests.aws import queue_depth
from tests.helpers import eventually, resources, started_app
from tests.ingestion.helpers import s3_event, wait_for_file

OBJECTS = 3


class DiesBeforeDelete:
    """An SQS client whose process dies right after a batch was sent back, before it is deleted."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    async def delete_message_batch(self, **_: Any) -> Any:
        raise ConnectionResetError("the redrive process died")


@pytest.fixture
def queues(sqs: Any) -> tuple[str, str]:
    """A source queue and its DLQ of the test's own, so no other test's messages are moved."""
    name = f"redrive-{secrets.token_hex(4)}"
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    source = sqs.create_queue(
        QueueName=name,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})},
    )["QueueUrl"]
    return source, dlq


async def test_redrive_interrupted_between_send_and_delete_duplicates_but_never_loses(
    app: FastAPI,
    s3: Any,
    sqs: Any,
    quiet_bucket: str,
    queues: tuple[str, str],
    db: asyncpg.Connection,
) -> None:
    source, dlq = queues
    keys = [f"dead/{n}.jsonl" for n in range(OBJECTS)]
    for key in keys:
        body = f'{{"key": "{key}"}}\n{{"n": 2}}\n'.encode()
        put = s3.put_object(Bucket=quiet_bucket, Key=key, Body=body)
        event = s3_event(quiet_bucket, key, etag=put["ETag"], version_id=None, size=len(body))
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(event))

    with pytest.raises(ConnectionResetError):
        await redrive(DiesBeforeDelete(resources(app).aws.sqs), source, dlq, 10, visibility_seconds=1)

    # The batch reached the source queue, and is still in the DLQ: duplicated, not lost.
    assert queue_depth(sqs, source) == OBJECTS
    await eventually(lambda: queue_depth(sqs, dlq) == OBJECTS)

    # Once the batch is visible in the DLQ again, the next redrive moves it.
    async def moved_again() -> bool:
        result = await redrive(resources(app).aws.sqs, source, dlq, 10)
        return result.moved > 0

    await eventually(moved_again)
    assert queue_depth(sqs, dlq) == 0
    assert queue_depth(sqs, source) == 2 * OBJECTS
    await check_processed_once(app, source, sqs, db, quiet_bucket, keys)


async def check_processed_once(
    app: FastAPI, source: str, sqs: Any, db: asyncpg.Connection, bucket: str, keys: list[str]
) -> None:
    # A duplicate that arrives while its twin loads is `busy` and looks again once the lease would
    # expire: a short lease keeps that wait short.
    async with started_app(
        resources(app).settings,
        sqs_consumer_enabled=True,
        sqs_queue_url=source,
        sqs_wait_time_seconds=1,
        ingest_lease_seconds=10,
    ):
        for key in keys:
            row = await wait_for_file(db, bucket, key)
            assert (row["status"], row["rows_inserted"]) == ("completed", 2)
        # The duplicates were acknowledged.
        await eventually(lambda: queue_depth(sqs, source) == 0, timeout=60)
    files = await db.fetchval("SELECT count(*) FROM file_processing_log WHERE bucket = $1", bucket)
    rows = await db.fetchval("SELECT count(*) FROM processed_data WHERE bucket = $1", bucket)
    assert (files, rows) == (OBJECTS, 2 * OBJECTS)
