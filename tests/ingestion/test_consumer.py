"""The consumer end to end: objects put in the bucket reach PostgreSQL through real S3 notifications,
SQS and the lifespan-started consumer; duplicates, bad files and odd messages do what they should."""

import csv
import gzip
import io
import json
import secrets
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.config import Settings
from app.ingestion.envelopes import ObjectRef
from app.ingestion.ingestor import Ingestor
from tests.aws import receive_until
from tests.helpers import bearer, eventually, resources, unique_id
from tests.ingestion.helpers import (
    eventbridge_event,
    metric,
    s3_event,
    wait_for_file,
    wait_for_metric,
    wrap_in_sns,
)

RECORDS = [
    {"id": 1, "name": "Ada", "tags": ["math", "poetry"], "address": {"city": "London", "zip": None}},
    {"id": 2, "name": "Grace", "tags": [], "address": {"city": "New York", "zip": "10001"}},
    {"id": 3, "name": 'Émilie, "du" Châtelet', "tags": ["physics"], "address": {"city": "Paris"}},
]


def as_csv(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "name", "city"])
    writer.writeheader()
    for record in records:
        writer.writerow({"id": record["id"], "name": record["name"], "city": record["address"]["city"]})
    return out.getvalue().encode()


FORMATS: dict[str, tuple[bytes, int]] = {
    ".json": (json.dumps(RECORDS).encode(), 3),
    "-single.json": (json.dumps(RECORDS[0]).encode(), 1),
    ".jsonl": (b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS), 3),
    ".ndjson": (b"\n".join(json.dumps(r).encode() for r in RECORDS), 3),
    ".csv": (as_csv(RECORDS), 3),
}


def put(s3: Any, bucket: str, key: str, body: bytes) -> dict[str, Any]:
    response: dict[str, Any] = s3.put_object(Bucket=bucket, Key=key, Body=body)
    return response


async def stored_rows(db: asyncpg.Connection, file_id: int) -> list[Any]:
    rows = await db.fetch("SELECT data FROM processed_data WHERE file_id = $1 ORDER BY record_index", file_id)
    return [json.loads(row["data"]) if isinstance(row["data"], str) else row["data"] for row in rows]


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("suffix", list(FORMATS))
async def test_each_format_lands_with_the_exact_row_count(
    app: Any, s3: Any, bucket: str, db: asyncpg.Connection, suffix: str, gzipped: bool
) -> None:
    body, expected = FORMATS[suffix]
    key = f"ingest/{secrets.token_hex(4)}{suffix}" + (".gz" if gzipped else "")
    put(s3, bucket, key, gzip.compress(body) if gzipped else body)
    row = await wait_for_file(db, bucket, key)
    assert (row["status"], row["error_code"]) == ("completed", None), row["error_message"]
    assert (row["rows_read"], row["rows_inserted"], row["rows_rejected"]) == (expected, expected, 0)
    assert row["trigger"] == "sqs"
    assert row["sha256"] and row["size_bytes"] > 0
    data = await stored_rows(db, row["id"])
    assert len(data) == expected
    if suffix in (".json", ".jsonl"):
        assert data == RECORDS  # nested structures kept as they were
    if suffix == ".csv":
        assert data[2] == {"id": "3", "name": RECORDS[2]["name"], "city": "Paris"}


async def test_key_with_space_and_unicode(app: Any, s3: Any, bucket: str, db: asyncpg.Connection) -> None:
    key = f"ingest/dossier été/{secrets.token_hex(3)} données+plus.jsonl"
    put(s3, bucket, key, b'{"a": 1}\n')
    row = await wait_for_file(db, bucket, key)
    assert row["status"] == "completed"
    assert row["rows_inserted"] == 1


async def test_same_event_twice_adds_nothing(
    app: Any, s3: Any, sqs: Any, bucket: str, aws_resources: dict[str, str], db: asyncpg.Connection
) -> None:
    key = f"ingest/{secrets.token_hex(4)}.jsonl"
    put_response = put(s3, bucket, key, b'{"a": 1}\n{"a": 2}\n')
    first = await wait_for_file(db, bucket, key)
    duplicates = metric("ingest_files_total", {"outcome": "duplicate"})
    event = s3_event(
        bucket, key, etag=put_response["ETag"], version_id=put_response.get("VersionId"), size=17
    )
    sqs.send_message(QueueUrl=aws_resources["SQS_QUEUE_URL"], MessageBody=json.dumps(event))
    await wait_for_metric("ingest_files_total", {"outcome": "duplicate"}, above=duplicates)
    after = await db.fetchrow("SELECT * FROM file_processing_log WHERE id = $1", first["id"])
    assert after["attempts"] == first["attempts"]
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE key = $1", key) == 2


async def test_same_content_uploaded_twice_adds_no_rows(
    app: Any, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    key = f"ingest/{secrets.token_hex(4)}.jsonl"
    body = b'{"a": 1}\n{"a": 2}\n'
    put(s3, bucket, key, body)
    first = await wait_for_file(db, bucket, key)
    put(s3, bucket, key, body + b'{"a": 3}\n')
    second = await eventually(
        lambda: db.fetchrow(
            "SELECT * FROM file_processing_log WHERE key = $1 AND id > $2 AND status = 'completed'",
            key,
            first["id"],
        )
    )
    assert (second["rows_read"], second["rows_inserted"], second["rows_skipped"]) == (3, 1, 2)
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE key = $1", key) == 3


@pytest.mark.parametrize("wrapping", ["sns", "raw-sns", "eventbridge", "eventbridge-via-sns"])
async def test_other_event_shapes_are_ingested(
    app: Any,
    s3: Any,
    sqs: Any,
    bucket: str,
    aws_resources: dict[str, str],
    db: asyncpg.Connection,
    wrapping: str,
) -> None:
    # Put into a prefix-free key of another bucket, so no real S3 notification races the test's own.
    other = f"other-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=other)
    key = f"shapes/{wrapping} {secrets.token_hex(3)}.jsonl"
    put_response = put(s3, other, key, b'{"shape": 1}\n')
    fields = {"etag": put_response["ETag"], "version_id": put_response.get("VersionId"), "size": 13}
    topic = aws_resources["SNS_TOPIC_ARN"]
    body: dict[str, Any] = {
        "sns": wrap_in_sns(s3_event(other, key, **fields), topic),
        "raw-sns": s3_event(other, key, **fields),
        "eventbridge": eventbridge_event(other, key, **fields),
        "eventbridge-via-sns": wrap_in_sns(eventbridge_event(other, key, **fields), topic),
    }[wrapping]
    sqs.send_message(QueueUrl=aws_resources["SQS_QUEUE_URL"], MessageBody=json.dumps(body))
    row = await wait_for_file(db, other, key)
    assert row["status"] == "completed"
    assert row["rows_inserted"] == 1


async def test_s3_test_event_is_acknowledged_not_dead_lettered(
    app: Any, sqs: Any, aws_resources: dict[str, str], bucket: str
) -> None:
    acknowledged = metric("consumer_messages_total", {"kind": "TestEvent", "verdict": "delete"})
    dead = metric("consumer_dead_lettered_total")
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-23T12:00:00Z", "Bucket": bucket}
    sqs.send_message(QueueUrl=aws_resources["SQS_QUEUE_URL"], MessageBody=json.dumps(body))
    await wait_for_metric("consumer_messages_total", {"kind": "TestEvent", "verdict": "delete"}, acknowledged)
    assert metric("consumer_dead_lettered_total") == dead


async def test_garbage_reaches_the_dead_letter_queue_with_its_reason(
    app: Any, sqs: Any, aws_resources: dict[str, str]
) -> None:
    canary = f"garbage-{unique_id()}"
    sqs.send_message(QueueUrl=aws_resources["SQS_QUEUE_URL"], MessageBody=f"{{not json {canary}")
    message = await receive_until(sqs, aws_resources["SQS_DLQ_URL"], lambda m: canary in m["Body"])
    reason = message["MessageAttributes"]["dead_letter_reason"]["StringValue"]
    assert reason
    assert canary not in reason


async def test_malformed_file_fails_with_parse_error_and_line(
    app: Any, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    key = f"ingest/{secrets.token_hex(4)}.jsonl"
    put(s3, bucket, key, b'{"a": 1}\n{"a": 2}\n{"a": \n{"a": 4}\n')
    row = await wait_for_file(db, bucket, key)
    assert (row["status"], row["error_code"]) == ("failed", "parse_error")
    assert "line 3" in row["error_message"]
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE file_id = $1", row["id"]) == 0


async def test_missing_object_ends_failed(
    app: Any, sqs: Any, bucket: str, aws_resources: dict[str, str], db: asyncpg.Connection
) -> None:
    key = f"ingest/{secrets.token_hex(4)}-gone.json"
    event = s3_event(bucket, key, etag="0123456789abcdef0123456789abcdef", version_id="v-gone", size=10)
    sqs.send_message(QueueUrl=aws_resources["SQS_QUEUE_URL"], MessageBody=json.dumps(event))
    row = await wait_for_file(db, bucket, key)
    assert (row["status"], row["error_code"]) == ("failed", "object_missing")
    assert row["lease_owner"] is None


async def test_unsupported_file_type_is_skipped(
    app: Any, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    key = f"ingest/{secrets.token_hex(4)}.txt"
    put(s3, bucket, key, b"hello")
    row = await wait_for_file(db, bucket, key)
    assert (row["status"], row["error_code"]) == ("skipped", "unsupported_format")


async def test_users_personal_file_upserts_and_a_bad_row_fails_it_by_default(
    app: Any, s3: Any, bucket: str, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    good, bad = unique_id(), unique_id()
    key = f"users/personal/{secrets.token_hex(4)}.jsonl"
    lines = [
        {"user_id": good, "name": "Good", "email": "good@example.com"},
        {"user_id": bad, "name": "Bad", "email": "not-an-email"},
    ]
    put(s3, bucket, key, b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    row = await wait_for_file(db, bucket, key)
    assert (row["status"], row["error_code"]) == ("failed", "validation_error")
    assert "line 2" in row["error_message"] and "email" in row["error_message"]
    assert "not-an-email" not in row["error_message"]
    assert (await client.get(f"/users/{good}/personal", headers=bearer())).status_code == 404

    fixed = [lines[0], {**lines[1], "email": "bad@example.com"}]
    put(s3, bucket, key, b"".join(json.dumps(line).encode() + b"\n" for line in fixed))
    await eventually(
        lambda: db.fetchval("SELECT 1 FROM file_processing_log WHERE key = $1 AND status = 'completed'", key)
    )
    personal = await client.get(f"/users/{good}/personal", headers=bearer())
    assert personal.json()["email"] == "good@example.com"


async def test_skip_rows_policy_loads_good_users_and_reports_bad_rows(
    app: Any, settings: Settings, s3: Any, db: asyncpg.Connection
) -> None:
    # A bucket without notifications: only this test's ingestor sees the file.
    quiet = f"quiet-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=quiet)
    good, bad = unique_id(), unique_id()
    key = f"users/financial/{secrets.token_hex(4)}.csv"
    body = (
        "user_id,account_number,credit_score,annual_income\n"
        f"{good},ACCT-1234,720,55000.50\n"
        f"{bad},ACCT-9999,9000,1\n"
    ).encode()
    response = put(s3, quiet, key, body)
    skipping = Ingestor(
        resources(app).db,
        lambda _bucket: resources(app).aws.s3,
        settings.model_copy(update={"ingest_error_policy": "skip_rows"}),
        own_bucket=quiet,  # users/ files are typed only in the service's own bucket
    )
    ref = ObjectRef(quiet, key, response.get("VersionId"), response["ETag"].strip('"'), len(body))
    outcome = await skipping.ingest(ref, "api")
    assert outcome.status == "completed"
    row = await db.fetchrow("SELECT * FROM file_processing_log WHERE id = $1", outcome.file_id)
    assert (row["rows_read"], row["rows_inserted"], row["rows_rejected"]) == (2, 1, 1)
    assert row["error_code"] == "rows_rejected"
    assert "line 3" in row["error_message"] and "credit_score" in row["error_message"]
    stored = await db.fetchrow("SELECT * FROM users_financial WHERE user_id = $1", good)
    assert stored["credit_score"] == 720
    assert await db.fetchval("SELECT count(*) FROM users_financial WHERE user_id = $1", bad) == 0
    assert await db.fetchval("SELECT actor FROM audit_log WHERE user_id = $1", good) == "ingestion"
    again = await skipping.ingest(ref, "api")
    assert (again.status, again.file_id) == ("duplicate", outcome.file_id)


async def test_user_records_message_writes_the_user_file(
    app: Any, client: httpx.AsyncClient, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    body = {"user_id": user_id, "blood_type": "B+", "allergies": ["latex"]}
    assert (await client.post("/users/health", json=body, headers=bearer())).status_code == 201
    sent = await client.post(
        "/users/sqs/send", json={"user_id": user_id, "data_type": "health"}, headers=bearer()
    )
    assert sent.status_code == 202
    key = f"users/health/{user_id}.json"

    def written() -> Any:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None

    document = await eventually(written)
    assert document["blood_type"] == "B+" and document["allergies"] == ["latex"]
    assert "created_at" not in document
    # The file's own event brings it back to the database unchanged: ingestion of an identical record.
    row = await wait_for_file(db, bucket, key)
    assert row["status"] == "completed"
