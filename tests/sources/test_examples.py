"""The shipped examples (examples/sources/), end to end as a data owner uses them: the source applied, a
file dropped in the bucket, the S3 event through the queue to the consumer, rows in the typed table."""

import gzip
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import yaml

from app.ingestion.reports import render_html
from app.ingestion.schemas import DailyReport
from examples.sources import generate
from tests.helpers import bearer
from tests.ingestion.helpers import metric, wait_for_file, wait_for_metric
from tests.sources.conftest import ApplySource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sources"


async def apply_example(apply_source: ApplySource, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return await apply_source(spec)


async def test_billing_export_lands_typed_and_a_redelivered_month_updates_changed_rows_only(
    apply_source: ApplySource, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    await apply_example(apply_source, "billing")
    key = "billing/2026/11/cur-2026-11.csv.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=generate.billing_csv_gz(2_000))
    first = await wait_for_file(db, bucket, key)
    assert (first["status"], first["rows_read"], first["rows_inserted"]) == ("completed", 2_000, 2_000)
    assert (first["source_name"], first["source_version"]) == ("billing", 1)

    s3.put_object(Bucket=bucket, Key=key, Body=generate.billing_csv_gz(2_000, revision=1))
    second = await eventually_newer(db, bucket, key, first["id"])
    assert (second["status"], second["rows_inserted"], second["rows_skipped"]) == ("completed", 200, 1_800)

    row = await db.fetchrow(
        """
        SELECT count(*) AS rows, count(DISTINCT _file_id) AS files, sum(unblended_cost) AS cost,
               min(resource_tags->>'user:team') AS team, min(usage_start) AS start
        FROM sources.billing
        """
    )
    expected = sum(float(line[8]) for line in generate.billing_rows(2_000, revision=1))
    assert (row["rows"], row["files"]) == (2_000, 2)
    assert abs(float(row["cost"]) - expected) < 1e-6
    assert row["team"] in generate.TEAMS and row["start"].isoformat() == "2026-11-01T00:00:00+00:00"


async def test_roster_quarantines_bad_rows_with_reasons_and_lands_the_rest(
    apply_source: ApplySource, s3: Any, bucket: str, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    await apply_example(apply_source, "roster")
    key = "roster/metro-pd/2026-11.csv"
    excluded_before = metric("ingest_files_total", {"outcome": "excluded"})
    s3.put_object(Bucket=bucket, Key=key, Body=generate.roster_csv(200, bad_every=25))
    done = await wait_for_file(db, bucket, key)
    assert (done["status"], done["rows_inserted"], done["rows_rejected"]) == ("completed", 192, 8)
    assert orjson.loads(done["rejected_by_rule"]) == {
        "badge_id: regex": 2,
        "rank: enum": 2,
        "hire_date: max": 2,
        "first_name: not_blank": 2,
    }
    day = done["created_at"].date().isoformat()
    quarantined = s3.get_object(Bucket=bucket, Key=f"quarantine/roster/{day}/{done['id']}.jsonl")
    entries = [orjson.loads(line) for line in quarantined["Body"].read().splitlines()]
    assert [entry["line"] for entry in entries] == [26, 51, 76, 101, 126, 151, 176, 201]
    assert entries[1]["rules"] == ["rank: enum"] and entries[1]["record"]["rank"] == "Admiral"
    # The quarantine object's own S3 event reaches the consumer, which leaves it alone.
    await wait_for_metric("ingest_files_total", {"outcome": "excluded"}, excluded_before)
    assert (
        await db.fetchval("SELECT count(*) FROM file_processing_log WHERE starts_with(key, 'quarantine/')")
        == 0
    )
    assert await db.fetchval("SELECT count(*) FROM sources.roster WHERE active IS NOT NULL") == 192

    # The daily report has a section per source.
    report = await client.get("/ingestion/report", params={"date": day}, headers=bearer(["ingestion:read"]))
    roster = next(section for section in report.json()["sources"] if section["source"] == "roster")
    assert roster["rows_rejected"] >= 8 and roster["rejected_by_rule"]["rank: enum"] >= 2
    assert 'data-figure="source.roster.rows_rejected"' in render_html(
        DailyReport.model_validate(report.json())
    )


async def test_events_are_picked_from_json_and_a_repeated_event_lands_once(
    apply_source: ApplySource, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    await apply_example(apply_source, "events")
    s3.put_object(Bucket=bucket, Key="events/shop/0001.jsonl", Body=generate.events_jsonl(1_000))
    s3.put_object(
        Bucket=bucket,
        Key="events/shop/0002.jsonl.gz",
        Body=gzip.compress(generate.events_jsonl(1_000, first=500)),
    )
    first = await wait_for_file(db, bucket, "events/shop/0001.jsonl")
    second = await wait_for_file(db, bucket, "events/shop/0002.jsonl.gz")
    assert first["rows_inserted"] + second["rows_inserted"] == 1_500  # 500 events were in both files
    row = await db.fetchrow("SELECT count(*), count(DISTINCT event_id), max(app_version) FROM sources.events")
    assert tuple(row) == (1_500, 1_500, "3.4.1")
    checkout = await db.fetchrow(
        "SELECT amount, properties FROM sources.events WHERE event_type = 'checkout' LIMIT 1"
    )
    assert checkout["amount"] is not None and '"amount"' in checkout["properties"]


async def eventually_newer(db: asyncpg.Connection, bucket: str, key: str, after_id: int) -> asyncpg.Record:
    from tests.helpers import eventually

    async def newer() -> asyncpg.Record | None:
        return await db.fetchrow(
            """
            SELECT * FROM file_processing_log
            WHERE bucket = $1 AND key = $2 AND id > $3 AND status IN ('completed', 'failed', 'skipped')
            """,
            bucket,
            key,
            after_id,
        )

    return await eventually(newer, message=f"a newer version of {key} loaded")
