"""How a file is read and loaded: one GET per file, and chunks that overlap parsing with inserting
(the chunking must change nothing a user can see; small chunks make small files span many of them)."""

import json
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from app.ingestion.envelopes import ObjectRef
from app.ingestion.ingestor import Ingestor
from app.ingestion.loaders import rows
from tests.helpers import resources


@pytest.fixture(autouse=True)
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows, "LOAD_CHUNK_ROWS", 3)


def lines(*records: object) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


async def stored(db: asyncpg.Connection, bucket: str, key: str) -> list[Any]:
    rows = await db.fetch(
        "SELECT data->>'n' AS n FROM processed_data WHERE bucket = $1 AND key = $2 ORDER BY record_index",
        bucket,
        key,
    )
    return [row["n"] for row in rows]


async def test_duplicates_across_chunks_are_stored_once(
    app: FastAPI, s3: Any, quiet_bucket: str, db: asyncpg.Connection
) -> None:
    records = [{"n": n % 4} for n in range(11)]  # 0 1 2 3 0 1 2 3 0 1 2: four distinct, over four chunks
    s3.put_object(Bucket=quiet_bucket, Key="chunks/dups.jsonl", Body=lines(*records))

    outcome = await resources(app).ingestor.ingest(
        ObjectRef(quiet_bucket, "chunks/dups.jsonl", None, None, None), "cli"
    )

    assert outcome.status == "completed"
    assert (outcome.counts.rows_read, outcome.counts.rows_inserted, outcome.counts.rows_skipped) == (11, 4, 7)
    assert await stored(db, quiet_bucket, "chunks/dups.jsonl") == ["0", "1", "2", "3"]


async def test_a_bad_record_in_a_late_chunk_rolls_back_the_earlier_chunks(
    app: FastAPI, s3: Any, quiet_bucket: str, db: asyncpg.Connection
) -> None:
    body = lines(*({"n": n} for n in range(8))) + b"[1, 2]\n" + lines({"n": 9})  # line 9: not an object
    s3.put_object(Bucket=quiet_bucket, Key="chunks/bad.jsonl", Body=body)

    outcome = await resources(app).ingestor.ingest(
        ObjectRef(quiet_bucket, "chunks/bad.jsonl", None, None, None), "cli"
    )

    assert (outcome.status, outcome.error_code) == ("failed", "validation_error")
    assert await stored(db, quiet_bucket, "chunks/bad.jsonl") == []


async def test_skip_rows_loads_the_good_records_of_every_chunk(
    app: FastAPI, s3: Any, quiet_bucket: str, db: asyncpg.Connection
) -> None:
    body = b"".join(b"[0]\n" if n % 4 == 3 else json.dumps({"n": n}).encode() + b"\n" for n in range(12))
    s3.put_object(Bucket=quiet_bucket, Key="chunks/skip.jsonl", Body=body)
    opened = resources(app)
    lenient = Ingestor(
        opened.db,
        lambda _bucket: opened.aws.s3,
        opened.settings.model_copy(update={"ingest_error_policy": "skip_rows"}),
        own_bucket=opened.settings.s3_bucket_name,
    )

    outcome = await lenient.ingest(ObjectRef(quiet_bucket, "chunks/skip.jsonl", None, None, None), "cli")

    assert outcome.status == "completed"
    assert (outcome.counts.rows_inserted, outcome.counts.rows_rejected) == (9, 3)
    assert await stored(db, quiet_bucket, "chunks/skip.jsonl") == [str(n) for n in range(12) if n % 4 != 3]


async def test_an_event_without_a_version_id_costs_one_get_and_no_head(
    app: FastAPI, s3: Any, quiet_bucket: str, db: asyncpg.Connection
) -> None:
    put = s3.put_object(Bucket=quiet_bucket, Key="calls/one.jsonl", Body=lines({"n": 1}))
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    events = resources(app).aws.s3.meta.events
    events.register("before-call.s3", record, unique_id="count-s3-calls")
    try:
        ref = ObjectRef(quiet_bucket, "calls/one.jsonl", None, put["ETag"].strip('"'), None)
        outcome = await resources(app).ingestor.ingest(ref, "sqs")
    finally:
        events.unregister("before-call.s3", unique_id="count-s3-calls")

    assert outcome.status == "completed"
    assert calls == ["GetObject"]
    row = await db.fetchrow("SELECT version_id FROM file_processing_log WHERE id = $1", outcome.file_id)
    assert row["version_id"] is None  # an unversioned bucket: the ETag names the object
