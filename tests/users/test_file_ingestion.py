"""users/{type}/ files in the database: older data never replaces newer (a /users/sqs/send snapshot taken
before a PATCH, a redriven message, an older object version loaded late), typed loads only from the
service's own bucket, and audit rows that name the object a change came from."""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.ingestion.dispatcher import Dispatcher
from app.ingestion.envelopes import ObjectRef
from tests.helpers import bearer, resources, started_app, unique_id
from tests.ingestion.helpers import wait_for_file

S3_SECOND = 1.1  # S3's Last-Modified has whole seconds: versions a second apart are ordered by it


@pytest.fixture
async def sender(settings: Settings, sqs: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, str]]:
    """An API-only app whose /users/sqs/send goes to a queue of the test's own, so the test decides when
    each message is handled (and in which order)."""
    queue: str = sqs.create_queue(QueueName=f"test-order-{unique_id()}")["QueueUrl"]
    async with started_app(settings, sqs_queue_url=queue) as (app, http):
        yield app, http, queue


async def send(http: httpx.AsyncClient, sqs: Any, queue: str, user_id: str) -> str:
    """POST /users/sqs/send for the financial record; the message's body, taken off the queue."""
    response = await http.post(
        "/users/sqs/send", json={"user_id": user_id, "data_type": "financial"}, headers=bearer()
    )
    assert response.status_code == 202, response.text
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=messages[0]["ReceiptHandle"])
    return str(messages[0]["Body"])


async def handle(app: FastAPI, bucket: str, body: str) -> None:
    """What the consumer does with the message: the user file is written (then ingested on its event)."""
    opened = resources(app)
    dispatcher = Dispatcher(opened.ingestor, opened.aws.s3, bucket)
    verdict = await dispatcher.dispatch(body, message_id=secrets.token_hex(4), trigger="sqs")
    assert verdict.action == "delete", verdict


async def credit_score(db: asyncpg.Connection, user_id: str) -> Any:
    return await db.fetchval("SELECT credit_score FROM users_financial WHERE user_id = $1", user_id)


async def test_snapshot_sent_before_a_patch_does_not_undo_it(
    sender: tuple[FastAPI, httpx.AsyncClient, str], sqs: Any, bucket: str, db: asyncpg.Connection
) -> None:
    app, http, queue = sender
    user_id = unique_id()
    body = {"user_id": user_id, "account_number": "ACCT0001", "credit_score": 600}
    assert (await http.post("/users/financial", json=body, headers=bearer())).status_code == 201
    snapshot = await send(http, sqs, queue, user_id)
    patched = await http.patch(f"/users/{user_id}/financial", json={"credit_score": 700}, headers=bearer())
    assert patched.status_code == 200
    await handle(app, bucket, snapshot)  # the consumer gets to the message only now
    row = await wait_for_file(db, bucket, f"users/financial/{user_id}.json")
    assert row["status"] == "completed"
    assert (row["rows_read"], row["rows_inserted"], row["rows_skipped"]) == (1, 0, 1)
    assert await credit_score(db, user_id) == 700


async def test_redriven_old_snapshot_changes_neither_the_file_nor_the_record(
    sender: tuple[FastAPI, httpx.AsyncClient, str], s3: Any, sqs: Any, bucket: str, db: asyncpg.Connection
) -> None:
    app, http, queue = sender
    user_id = unique_id()
    key = f"users/financial/{user_id}.json"
    body = {"user_id": user_id, "account_number": "ACCT0001", "credit_score": 600}
    assert (await http.post("/users/financial", json=body, headers=bearer())).status_code == 201
    old = await send(http, sqs, queue, user_id)
    await http.patch(f"/users/{user_id}/financial", json={"credit_score": 700}, headers=bearer())
    new = await send(http, sqs, queue, user_id)
    await handle(app, bucket, new)
    first = await wait_for_file(db, bucket, key)
    await handle(app, bucket, old)  # redriven from the DLQ, or simply delivered late
    assert json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["credit_score"] == 700
    # No new version was written, so nothing else was ingested; the record keeps the PATCH.
    assert (await wait_for_file(db, bucket, key))["id"] == first["id"]
    assert await credit_score(db, user_id) == 700


@pytest.fixture(scope="module")
def own_bucket(s3: Any) -> str:
    """A versioned bucket without notifications: only what a test ingests is ingested."""
    name = f"users-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture(scope="module")
async def owner_app(settings: Settings, own_bucket: str) -> AsyncIterator[FastAPI]:
    """A service whose own bucket (S3_BUCKET_NAME) is `own_bucket`."""
    async with started_app(settings, s3_bucket_name=own_bucket) as (app, _):
        yield app


def put_version(s3: Any, bucket: str, key: str, records: list[dict[str, Any]]) -> ObjectRef:
    body = b"".join(json.dumps(record).encode() + b"\n" for record in records)
    written = s3.put_object(Bucket=bucket, Key=key, Body=body)
    return ObjectRef(bucket, key, written["VersionId"], written["ETag"].strip('"'), len(body))


async def test_older_object_version_loaded_after_a_newer_one_changes_nothing(
    owner_app: FastAPI, s3: Any, own_bucket: str, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    key = f"users/financial/batch-{secrets.token_hex(4)}.jsonl"
    older = put_version(s3, own_bucket, key, [{"user_id": user_id, "account_number": "OLD00001"}])
    await asyncio.sleep(S3_SECOND)  # the next version gets a later Last-Modified
    newer = put_version(s3, own_bucket, key, [{"user_id": user_id, "account_number": "NEW00001"}])
    assert (await resources(owner_app).ingestor.ingest(newer, "cli")).status == "completed"
    late = await resources(owner_app).ingestor.ingest(older, "cli")
    assert (late.status, late.counts.rows_inserted, late.counts.rows_skipped) == ("completed", 0, 1)
    stored = await db.fetchval("SELECT account_number FROM users_financial WHERE user_id = $1", user_id)
    assert stored == "NEW00001"
    audited = await db.fetch(
        "SELECT actor, action, object_bucket, object_key, object_version FROM audit_log WHERE user_id = $1",
        user_id,
    )
    # One change, by the newer file, named by bucket, key and version.
    assert [tuple(row) for row in audited] == [("ingestion", "create", own_bucket, key, newer.version_id)]


async def test_a_records_own_updated_at_orders_it_but_never_past_its_file(
    owner_app: FastAPI, s3: Any, own_bucket: str, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    key = f"users/health/{secrets.token_hex(4)}.jsonl"
    # The second file was written later but holds an older snapshot; the third claims the far future.
    first = {"user_id": user_id, "blood_type": "A+", "updated_at": "2026-01-02T00:00:00+00:00"}
    second = {"user_id": user_id, "blood_type": "B+", "updated_at": "2026-01-01T00:00:00+00:00"}
    future = {"user_id": user_id, "blood_type": "O-", "updated_at": "2999-01-01T00:00:00+00:00"}
    for records in ([first], [second], [future]):
        ref = put_version(s3, own_bucket, key, records)
        assert (await resources(owner_app).ingestor.ingest(ref, "cli")).status == "completed"
    row = await db.fetchrow("SELECT blood_type, updated_at FROM users_health WHERE user_id = $1", user_id)
    assert row["blood_type"] == "O-"
    # Capped at the file's own time, so the future cannot lock the record against later files.
    assert row["updated_at"].year < 2999
    await asyncio.sleep(S3_SECOND)  # the next version gets a later Last-Modified
    later = put_version(s3, own_bucket, key, [{"user_id": user_id, "blood_type": "AB+"}])
    assert (await resources(owner_app).ingestor.ingest(later, "cli")).status == "completed"
    assert await db.fetchval("SELECT blood_type FROM users_health WHERE user_id = $1", user_id) == "AB+"


async def test_users_prefix_of_another_bucket_lands_as_plain_rows(
    app: FastAPI, s3: Any, own_bucket: str, db: asyncpg.Connection
) -> None:
    # `own_bucket` is not the session app's S3_BUCKET_NAME: a client's or an event-named bucket.
    user_id = unique_id()
    key = f"users/financial/{secrets.token_hex(4)}.jsonl"
    ref = put_version(s3, own_bucket, key, [{"user_id": user_id, "account_number": "ATTACKER01"}])
    outcome = await resources(app).ingestor.ingest(ref, "cli")
    assert (outcome.status, outcome.counts.rows_inserted) == ("completed", 1)
    assert await db.fetchval("SELECT count(*) FROM users_financial WHERE user_id = $1", user_id) == 0
    landed = await db.fetchval("SELECT count(*) FROM processed_data WHERE file_id = $1", outcome.file_id)
    assert landed == 1
