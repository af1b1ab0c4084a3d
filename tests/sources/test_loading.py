"""A source's files in its typed table: keyed upserts that change only what changed and never let an older
object version win, appends that skip rows already there, the error policies, file rules, and what the
processing log and the files API tell about it."""

import gzip
import secrets
import time
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI

from app.ingestion.envelopes import ObjectRef
from app.ingestion.loaders import typed
from app.ingestion.outcomes import IngestOutcome
from tests.helpers import bearer, eventually, resources
from tests.ingestion.helpers import metric
from tests.sources.conftest import ApplySource, source_name


@pytest.fixture(autouse=True)
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(typed, "LOAD_CHUNK_ROWS", 2)  # small files span several COPY + landing rounds


@pytest.fixture
def versioned_bucket(s3: Any) -> str:
    """A bucket that keeps versions and sends no events: only what a test ingests is loaded."""
    name = f"typed-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def people(name: str, bucket: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "tenant": "acme",
        "bucket": bucket,
        "prefix": f"{name}/",
        "format": "csv",
        "columns": [
            {"name": "id", "type": "integer", "required": True},
            {"name": "city", "type": "text", "required": True, "rules": {"enum": ["Oslo", "Lima", "Pune"]}},
            {"name": "score", "type": "numeric(5,1)", "rules": {"min": 0, "max": 100}},
        ],
        "key": ["id"],
    }
    spec.update(changes)
    return spec


def csv(*rows: str, header: str = "id,city,score") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


async def ingest(app: FastAPI, s3: Any, bucket: str, key: str, body: bytes) -> IngestOutcome:
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    ref = ObjectRef(bucket, key, put.get("VersionId"), None, None)
    return await resources(app).ingestor.ingest(ref, "cli")


async def rows(db: asyncpg.Connection, name: str, *columns: str) -> list[tuple[Any, ...]]:
    listed = ", ".join(columns)
    return [tuple(row) for row in await db.fetch(f'SELECT {listed} FROM sources."{name}" ORDER BY 1')]


async def file_row(db: asyncpg.Connection, file_id: int | None) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM file_processing_log WHERE id = $1", file_id)
    assert row is not None
    return row


async def test_a_keyed_file_inserts_then_updates_only_changed_rows(
    app: FastAPI, s3: Any, versioned_bucket: str, db: asyncpg.Connection, apply_source: ApplySource
) -> None:
    name = source_name("people")
    await apply_source(people(name, versioned_bucket))
    first = await ingest(app, s3, versioned_bucket, f"{name}/a.csv", csv("1,Oslo,10", "2,Lima,20", "3,Pune,"))
    assert (first.status, first.counts.rows_read, first.counts.rows_inserted) == ("completed", 3, 3)

    # Month to date, delivered again: 1 unchanged, 2 changed, 4 new; 2 twice in the file: the last one wins.
    second = await ingest(
        app, s3, versioned_bucket, f"{name}/a.csv", csv("1,Oslo,10", "2,Lima,25", "4,Oslo,1", "2,Lima,30")
    )
    assert second.status == "completed"
    assert (second.counts.rows_inserted, second.counts.rows_skipped) == (2, 2)
    assert await rows(db, name, "id", "city", "score::text", "_file_id", "_line") == [
        (1, "Oslo", "10.0", first.file_id, 2),  # untouched: still the first file's row
        (2, "Lima", "30.0", second.file_id, 5),
        (3, "Pune", None, first.file_id, 4),
        (4, "Oslo", "1.0", second.file_id, 4),
    ]
    logged = await file_row(db, second.file_id)
    assert (logged["source_name"], logged["source_version"]) == (name, 1)


async def test_an_older_object_version_never_overwrites_newer_rows(
    app: FastAPI, s3: Any, versioned_bucket: str, db: asyncpg.Connection, apply_source: ApplySource
) -> None:
    name = source_name("people")
    await apply_source(people(name, versioned_bucket))
    key = f"{name}/snapshot.csv"
    older = s3.put_object(Bucket=versioned_bucket, Key=key, Body=csv("1,Oslo,10", "2,Lima,20"))
    stored_at = int(time.time())
    # S3 keeps whole seconds: the newer version must be stored in a later second than the older one.
    await eventually(lambda: int(time.time()) > stored_at, message="the next second")
    newer = s3.put_object(Bucket=versioned_bucket, Key=key, Body=csv("1,Oslo,99", "2,Lima,98"))
    ingestor = resources(app).ingestor

    loaded_newer = await ingestor.ingest(
        ObjectRef(versioned_bucket, key, newer["VersionId"], None, None), "cli"
    )
    loaded_older = await ingestor.ingest(
        ObjectRef(versioned_bucket, key, older["VersionId"], None, None), "cli"
    )

    assert (loaded_newer.status, loaded_older.status) == ("completed", "completed")
    assert loaded_older.counts.rows_inserted == 0
    assert await rows(db, name, "id", "score::text") == [(1, "99.0"), (2, "98.0")]


async def test_without_a_key_rows_append_and_a_row_already_there_is_skipped(
    app: FastAPI, s3: Any, versioned_bucket: str, db: asyncpg.Connection, apply_source: ApplySource
) -> None:
    name = source_name("people")
    await apply_source(people(name, versioned_bucket, key=[]))
    await ingest(app, s3, versioned_bucket, f"{name}/1.csv", csv("1,Oslo,10", "1,Oslo,10", "2,Lima,20"))
    again = await ingest(app, s3, versioned_bucket, f"{name}/2.csv", csv("2,Lima,20", "3,Pune,30"))
    assert (again.counts.rows_inserted, again.counts.rows_skipped) == (1, 1)
    assert await rows(db, name, "id") == [(1,), (2,), (3,)]


async def test_reject_file_lands_nothing_and_names_the_line_and_rule(
    app: FastAPI, s3: Any, versioned_bucket: str, db: asyncpg.Connection, apply_source: ApplySource
) -> None:
    name = source_name("people")
    await apply_source(people(name, versioned_bucket))
    outcome = await ingest(
        app, s3, versioned_bucket, f"{name}/a.csv", csv("1,Oslo,10", "2,Lima,20", "3,Paris,101", "4,Oslo,1")
    )
    assert (outcome.status, outcome.error_code) == ("failed", "validation_error")
    logged = await file_row(db, outcome.file_id)
    assert logged["error_message"] == "record rejected: line 4: city: enum, score: max"
    assert "Paris" not in logged["error_message"]
    assert (logged["source_name"], logged["source_version"]) == (name, 1)
    assert await rows(db, name, "id") == []  # the rows of earlier chunks were rolled back


async def test_skip_rows_lands_the_good_rows_and_counts_rejections_per_rule(
    app: FastAPI,
    s3: Any,
    versioned_bucket: str,
    db: asyncpg.Connection,
    apply_source: ApplySource,
    client: httpx.AsyncClient,
) -> None:
    name = source_name("people")
    await apply_source(people(name, versioned_bucket, on_error="skip_rows"))
    body = csv("1,Oslo,10", "2,Paris,20", "x,Lima,1", "3,Rome,-1", "4,Pune", "5,Pune,5")
    outcome = await ingest(app, s3, versioned_bucket, f"{name}/a.csv", body)
    assert (outcome.status, outcome.counts.rows_inserted, outcome.counts.rows_rejected) == ("completed", 2, 4)
    assert await rows(db, name, "id") == [(1,), (5,)]

    # Metrics label the source and the rule kind (a bounded set), never a column or a value.
    assert metric("ingest_rows_rejected_total", {"source": name, "rule": "enum"}) == 2
    assert metric("ingest_rows_total", {"source": name, "outcome": "inserted"}) == 2
    assert metric("ingest_rows_total", {"source": name, "outcome": "rejected"}) == 4
    shown = await client.get(f"/ingestion/files/{outcome.file_id}", headers=bearer(["ingestion:read"]))
    assert shown.json()["source_name"] == name and shown.json()["source_version"] == 1
    assert shown.json()["rejected_by_rule"] == {
        "city: enum": 2,
        "id: type": 1,
        "score: min": 1,
        "record: shape": 1,  # line 6 has two fields, the header three
    }


async def test_quarantine_writes_the_bad_rows_with_their_reasons_and_lands_the_good_ones(
    app: FastAPI, s3: Any, versioned_bucket: str, db: asyncpg.Connection, apply_source: ApplySource
) -> None:
    name = source_name("people")
    await apply_source(people(name, versioned_bucket, on_error="quarantine"))
    outcome = await ingest(
        app, s3, versioned_bucket, f"{name}/a.csv", csv("1,Oslo,10", "2,Paris,20", "3,Lima,x")
    )
    assert (outcome.status, outcome.counts.rows_inserted, outcome.counts.rows_rejected) == ("completed", 1, 2)
    assert await rows(db, name, "id") == [(1,)]

    day = (await file_row(db, outcome.file_id))["created_at"].date().isoformat()
    key = f"quarantine/{name}/{day}/{outcome.file_id}.jsonl"
    quarantined = [
        orjson.loads(line)
        for line in s3.get_object(Bucket=versioned_bucket, Key=key)["Body"].read().splitlines()
    ]
    assert quarantined == [
        {"line": 3, "rules": ["city: enum"], "record": {"id": "2", "city": "Paris", "score": "20"}},
        {"line": 4, "rules": ["score: type"], "record": {"id": "3", "city": "Lima", "score": "x"}},
    ]


@pytest.mark.parametrize(
    ("file_rules", "body", "message"),
    [
        ({"min_rows": 3}, csv("1,Oslo,1", "2,Lima,2"), "2 rows, the source needs at least 3"),
        (
            {"max_rejected_share": 0.25},
            csv("1,Oslo,1", "2,Nope,2"),
            "1 of 2 rows rejected, more than the source allows (25%)",
        ),
        (
            {"expected_columns": ["id", "city", "country"]},
            csv("1,Oslo,1"),
            "the header lacks the expected columns country",
        ),
    ],
)
async def test_a_file_rule_fails_the_whole_file(
    app: FastAPI,
    s3: Any,
    versioned_bucket: str,
    db: asyncpg.Connection,
    apply_source: ApplySource,
    file_rules: dict[str, Any],
    body: bytes,
    message: str,
) -> None:
    name = source_name("people")
    await apply_source(people(name, versioned_bucket, on_error="skip_rows", file_rules=file_rules))
    outcome = await ingest(app, s3, versioned_bucket, f"{name}/a.csv", body)
    assert (outcome.status, outcome.error_code) == ("failed", "file_rule")
    assert (await file_row(db, outcome.file_id))["error_message"] == message
    assert await rows(db, name, "id") == []


async def test_csv_dialect_options_and_gzip(
    app: FastAPI, s3: Any, versioned_bucket: str, db: asyncpg.Connection, apply_source: ApplySource
) -> None:
    name = source_name("people")
    dialect = {
        "delimiter": ";",
        "header": False,
        "column_order": ["id", "city", "score"],
        "encoding": "latin-1",
        "null_strings": ["-"],
        "decimal_separator": ",",
    }
    spec = people(name, versioned_bucket, csv=dialect)
    spec["columns"][1]["rules"] = {"enum": ["Tromsø", "Lima"]}
    await apply_source(spec)
    body = gzip.compress("1;Tromsø;12,5\n2;Lima;-\n".encode("latin-1"))
    outcome = await ingest(app, s3, versioned_bucket, f"{name}/a.txt.gz", body)  # the source says the format
    assert outcome.status == "completed", outcome
    assert await rows(db, name, "id", "city", "score::text") == [(1, "Tromsø", "12.5"), (2, "Lima", None)]


async def test_json_lines_fields_are_picked_with_pointers(
    app: FastAPI, s3: Any, versioned_bucket: str, db: asyncpg.Connection, apply_source: ApplySource
) -> None:
    name = source_name("events")
    spec = {
        "name": name,
        "tenant": "acme",
        "bucket": versioned_bucket,
        "prefix": f"{name}/",
        "format": "jsonl",
        "columns": [
            {"name": "id", "type": "text", "from": "/id", "required": True},
            {"name": "version", "type": "text", "from": "/ctx/app/version"},
            {"name": "props", "type": "jsonb", "from": "/props"},
        ],
        "key": ["id"],
    }
    await apply_source(spec)
    body = b'{"id": "a", "ctx": {"app": {"version": "1.2"}}, "props": {"n": 1}}\n{"id": "b"}\n'
    outcome = await ingest(app, s3, versioned_bucket, f"{name}/e.jsonl", body)
    assert outcome.status == "completed"
    assert await rows(db, name, "id", "version", "props") == [("a", "1.2", '{"n": 1}'), ("b", None, None)]


async def test_a_file_outside_every_source_still_lands_in_processed_data(
    app: FastAPI, s3: Any, versioned_bucket: str, db: asyncpg.Connection, apply_source: ApplySource
) -> None:
    name = source_name("people")
    await apply_source(people(name, versioned_bucket, glob="*.csv"))
    outcome = await ingest(
        app, s3, versioned_bucket, f"{name}/notes.jsonl", b'{"a": 1}\n'
    )  # glob does not match
    assert outcome.status == "completed"
    assert (await file_row(db, outcome.file_id))["source_name"] is None
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE file_id = $1", outcome.file_id) == 1
