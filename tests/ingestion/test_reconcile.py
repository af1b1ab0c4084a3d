"""The reconcile sweep: objects dropped without any event are ingested once, by one replica at a time."""

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from app.core import db as database
from app.core.config import Settings
from app.ingestion import repository
from app.ingestion.claims import WORKER_ID, Claimed
from app.ingestion.envelopes import ObjectRef
from app.ingestion.reconcile import RECONCILE_LOCK_KEY, SweepBusy
from tests.helpers import resources, started_app
from tests.ingestion.helpers import metric, wait_for_file, wait_for_metric


def jsonl(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


async def log_rows(db_conn: asyncpg.Connection, bucket: str) -> list[asyncpg.Record]:
    return await db_conn.fetch(
        "SELECT key, status, trigger, rows_inserted FROM file_processing_log WHERE bucket = $1 ORDER BY key",
        bucket,
    )


async def test_sweep_ingests_unseen_objects_under_the_prefix_once(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    s3.put_object(Bucket=quiet_bucket, Key="drop/a.jsonl", Body=jsonl({"n": 1}, {"n": 2}))
    s3.put_object(Bucket=quiet_bucket, Key="drop/deeper/b.csv", Body=b"n,m\n1,2\n")
    s3.put_object(Bucket=quiet_bucket, Key="elsewhere/c.jsonl", Body=jsonl({"n": 3}))
    s3.put_object(Bucket=quiet_bucket, Key="drop/reports/", Body=b"")  # a console "folder"
    reconciler = resources(app).reconciler

    first = await reconciler.sweep([(quiet_bucket, "drop/")], min_age_seconds=0)

    assert first.listed == 2
    assert dict(first.outcomes) == {"completed": 2}
    assert [tuple(row) for row in await log_rows(db, quiet_bucket)] == [
        ("drop/a.jsonl", "completed", "reconcile", 2),
        ("drop/deeper/b.csv", "completed", "reconcile", 1),
    ]

    # Nothing new: the next sweep lists the same objects and ingests none of them.
    second = await reconciler.sweep([(quiet_bucket, "drop/")], min_age_seconds=0)
    assert (second.listed, second.unseen) == (2, 0)

    # A replaced object is a new version the log has not seen.
    s3.put_object(Bucket=quiet_bucket, Key="drop/a.jsonl", Body=jsonl({"n": 1}, {"n": 2}, {"n": 9}))
    third = await reconciler.sweep([(quiet_bucket, "drop/")], min_age_seconds=0)
    assert dict(third.outcomes) == {"completed": 1}
    rows = await db.fetch(
        "SELECT rows_inserted FROM file_processing_log WHERE bucket = $1 AND key = $2 ORDER BY id",
        quiet_bucket,
        "drop/a.jsonl",
    )
    assert [row["rows_inserted"] for row in rows] == [2, 1]  # only the new record is loaded


async def test_sweep_leaves_young_objects_to_their_event(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    s3.put_object(Bucket=quiet_bucket, Key="young/a.jsonl", Body=jsonl({"n": 1}))

    result = await resources(app).reconciler.sweep([(quiet_bucket, "young/")], min_age_seconds=3600)

    assert (result.listed, result.unseen) == (0, 0)
    assert await log_rows(db, quiet_bucket) == []


async def test_sweep_skips_excluded_prefixes(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    s3.put_object(Bucket=quiet_bucket, Key="reports/2026-01-01/ingestion-report.json", Body=b"{}")

    result = await resources(app).reconciler.sweep([(quiet_bucket, "")], min_age_seconds=0)

    assert result.unseen == 0
    assert await log_rows(db, quiet_bucket) == []


async def test_sweep_finishes_a_released_claim_that_no_message_will_bring_back(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    s3.put_object(Bucket=quiet_bucket, Key="cut/a.jsonl", Body=jsonl({"n": 1}))
    claimed = await resources(app).ingestor.claim(
        ObjectRef(quiet_bucket, "cut/a.jsonl", None, None, None), "api"
    )
    assert isinstance(claimed, Claimed)
    async with resources(app).db.acquire() as conn:  # what a shutdown mid-load leaves behind
        await repository.release(conn, claimed.file_id, WORKER_ID)
    await claimed.session.close()

    result = await resources(app).reconciler.sweep([(quiet_bucket, "cut/")], min_age_seconds=0)

    assert dict(result.outcomes) == {"completed": 1}
    row = await db.fetchrow(
        "SELECT id, status, attempts FROM file_processing_log WHERE bucket = $1", quiet_bucket
    )
    assert (row["id"], row["status"], row["attempts"]) == (claimed.file_id, "completed", 2)


async def test_one_sweep_at_a_time_across_replicas(
    app: FastAPI, settings: Settings, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    s3.put_object(Bucket=quiet_bucket, Key="busy/a.jsonl", Body=jsonl({"n": 1}))
    other_replica = await database.open_database(settings)
    try:
        async with other_replica.exclusive(RECONCILE_LOCK_KEY) as held:
            assert held
            with pytest.raises(SweepBusy):
                await resources(app).reconciler.sweep([(quiet_bucket, "busy/")], min_age_seconds=0)
            assert await log_rows(db, quiet_bucket) == []
        # Once the other replica's sweep is over, this one runs.
        result = await resources(app).reconciler.sweep([(quiet_bucket, "busy/")], min_age_seconds=0)
        assert dict(result.outcomes) == {"completed": 1}
    finally:
        await other_replica.close()


@pytest.fixture
async def sweeping_app(settings: Settings, quiet_bucket: str) -> AsyncIterator[FastAPI]:
    """A replica whose background sweep lists the quiet bucket every second."""
    async with started_app(
        settings,
        reconcile_interval_seconds=1,
        reconcile_prefixes=[f"s3://{quiet_bucket}/loop/"],
        reconcile_min_age_seconds=0,
    ) as (application, _):
        yield application


async def test_background_sweep_picks_up_an_object_dropped_without_any_event(
    sweeping_app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    s3.put_object(Bucket=quiet_bucket, Key="loop/lost-event.jsonl", Body=jsonl({"n": 1}, {"n": 2}))

    row = await wait_for_file(db, quiet_bucket, "loop/lost-event.jsonl")

    assert (row["status"], row["trigger"], row["rows_inserted"]) == ("completed", "reconcile", 2)


async def test_background_sweep_outlives_a_failing_turn(settings: Settings) -> None:
    failed_before = metric("reconcile_sweeps_total", {"result": "failed"})
    async with started_app(
        settings, reconcile_interval_seconds=1, reconcile_prefixes=["s3://no-such-bucket-here/"]
    ):
        # NoSuchBucket on every turn: the loop logs it and keeps going, a turn a second.
        await wait_for_metric("reconcile_sweeps_total", {"result": "failed"}, above=failed_before + 1)


async def test_sweep_skips_objects_whose_keys_the_service_refuses(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    # As an event naming them is dead-lettered: a control character in a key reaches terminals and logs.
    # DEL, which S3 lists (XML carries it) but the API refuses, as it does every control character.
    s3.put_object(Bucket=quiet_bucket, Key="drop/rub\x7fout.jsonl", Body=jsonl({"n": 1}))
    s3.put_object(Bucket=quiet_bucket, Key="drop/fine.jsonl", Body=jsonl({"n": 2}))
    refused = metric("reconcile_objects_total", {"outcome": "invalid_key"})
    result = await resources(app).reconciler.sweep([(quiet_bucket, "drop/")], min_age_seconds=0)
    assert dict(result.outcomes) == {"completed": 1}
    assert [row["key"] for row in await log_rows(db, quiet_bucket)] == ["drop/fine.jsonl"]
    assert metric("reconcile_objects_total", {"outcome": "invalid_key"}) == refused + 1
