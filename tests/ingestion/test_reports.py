"""The daily report job: the right counts for a day, JSON and an HTML page (rendered in headless Chromium)
under reports/{date}/ in S3, an SNS summary, once per day across replicas."""

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from app.core import db as database
from app.core.config import Settings
from app.ingestion.envelopes import ObjectRef
from app.ingestion.reports import (
    REPORT_LOCK_KEY,
    DailyReportJob,
    due_day,
    report_keys,
    seconds_until_next_run,
)
from tests.aws import receive_until, sns_envelope
from tests.helpers import eventually, resources, started_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A day no other test's files fall on: the test moves its files there.
REPORT_DAY = date(2001, 2, 3)
REPORT_AT = time(2, 30)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 25, 2, 29, tzinfo=UTC), date(2026, 11, 23)),  # 24th not due until 02:30
        (datetime(2026, 11, 25, 2, 30, tzinfo=UTC), date(2026, 11, 24)),
        (datetime(2026, 11, 25, 23, 59, tzinfo=UTC), date(2026, 11, 24)),
        (datetime(2026, 1, 1, 3, 0, tzinfo=UTC), date(2025, 12, 31)),
    ],
)
def test_due_day_is_the_day_before_once_its_time_has_come(now: datetime, expected: date) -> None:
    assert due_day(now, REPORT_AT) == expected


def test_next_run_is_today_at_the_time_or_tomorrow() -> None:
    assert seconds_until_next_run(datetime(2026, 11, 25, 2, 0, tzinfo=UTC), REPORT_AT) == 1800
    assert seconds_until_next_run(datetime(2026, 11, 25, 2, 30, tzinfo=UTC), REPORT_AT) == 86_400
    assert seconds_until_next_run(datetime(2026, 11, 25, 3, 30, tzinfo=UTC), REPORT_AT) == 82_800


@pytest.fixture(scope="module")
async def report_day_files(app: FastAPI, s3: Any) -> dict[str, int]:
    """Three completed files (2 + 3 + 1 rows) and two failed ones, ingested for real, then moved to
    REPORT_DAY so that no other test's file counts. In a bucket without notifications, so the consumer
    does not race the test for them."""
    bucket = f"reportday-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    files = {
        "reportday/a.jsonl": b'{"n": 1}\n{"n": 2}\n',
        "reportday/b.csv": b"n,m\n1,2\n3,4\n5,6\n",
        "reportday/c.json": b'[{"n": "<b>bold</b>"}]',
        "reportday/broken.jsonl": b'{"n": 1}\n{oops\n',
        "reportday/missing.jsonl": None,
    }
    ids = {}
    for key, body in files.items():
        if body is not None:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        outcome = await resources(app).ingestor.ingest(ObjectRef(bucket, key, None, None, None), "cli")
        ids[key] = outcome.file_id
    async with resources(app).db.acquire() as conn:
        await conn.execute(
            "UPDATE file_processing_log SET created_at = $2 WHERE id = ANY($1::bigint[])",
            list(ids.values()),
            datetime.combine(REPORT_DAY, time(12, 0), UTC),
        )
    return ids


def job(app: FastAPI, settings: Settings, now: datetime) -> DailyReportJob:
    opened = resources(app)
    return DailyReportJob(opened.db, opened.aws.s3, opened.aws.sns, settings, REPORT_AT, clock=lambda: now)


class Figures(HTMLParser):
    """The text of every element with a data-figure attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._current = dict(attrs).get("data-figure")

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.figures[self._current] = self.figures.get(self._current, "") + data

    def handle_endtag(self, tag: str) -> None:
        self._current = None


def rendered_in_chromium(page: Path, workdir: Path) -> str:
    """The DOM headless Chromium built from the page (no network: the page must stand alone)."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={workdir / 'profile'}",
            f"--screenshot={workdir / 'report.png'}",
            "--window-size=900,900",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


async def test_report_for_a_day_with_completed_and_failed_files(
    app: FastAPI,
    settings: Settings,
    report_day_files: dict[str, int],
    s3: Any,
    sqs: Any,
    bucket: str,
    notifications_queue: str,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    published = await job(app, settings, datetime(2001, 2, 4, 3, 0, tzinfo=UTC)).run_due()

    assert published is not None
    report = published.report
    assert report.date == REPORT_DAY
    assert report.files == 5
    assert report.files_by_status == {"completed": 3, "failed": 2}
    assert report.failures_by_error_code == {"parse_error": 1, "object_missing": 1}
    assert (report.rows_read, report.rows_inserted) == (6, 6)  # a file that fails to parse counts no row
    assert report.p50_duration_seconds is not None
    assert report.p95_duration_seconds >= report.p50_duration_seconds

    json_key, html_key = report_keys(REPORT_DAY)
    assert (json_key, html_key) == (
        "reports/2001-02-03/ingestion-report.json",
        "reports/2001-02-03/ingestion-report.html",
    )
    stored = json.loads(s3.get_object(Bucket=bucket, Key=json_key)["Body"].read())
    assert stored == json.loads(report.model_dump_json())
    page = s3.get_object(Bucket=bucket, Key=html_key)
    assert page["ContentType"] == "text/html; charset=utf-8"
    (tmp_path / "report.html").write_bytes(page["Body"].read())

    if CHROMIUM is None:
        message = "chromium is not installed: `make browser` installs Debian's package"
        if os.environ.get("REQUIRE_CHROMIUM"):  # CI: the page must be checked
            pytest.fail(message)
        pytest.skip(message)
    parser = Figures()
    parser.feed(await asyncio.to_thread(rendered_in_chromium, tmp_path / "report.html", tmp_path))
    assert parser.figures["files"] == "5"
    assert parser.figures["rows_inserted"] == "6"
    assert parser.figures["status.completed"] == "3"
    assert parser.figures["status.failed"] == "2"
    assert parser.figures["failure.parse_error"] == "1"
    assert parser.figures["failure.object_missing"] == "1"
    assert parser.figures["p50_duration"].endswith(" s")
    assert (tmp_path / "report.png").stat().st_size > 10_000  # a page was painted, not a blank error

    summary = await receive_until(
        sqs,
        notifications_queue,
        lambda message: '"event": "report.daily", "date": "2001-02-03"' in sns_envelope(message)["Message"],
    )
    envelope = sns_envelope(summary)
    assert envelope["Subject"] == "Ingestion report 2001-02-03"
    assert json.loads(envelope["Message"]) == {
        "source": "aws-s3-service",
        "event": "report.daily",
        "date": "2001-02-03",
        "bucket": bucket,
        "json_key": json_key,
        "html_key": html_key,
        "files": 5,
        "files_by_status": {"completed": 3, "failed": 2},
        "rows_inserted": 6,
        "failures_by_error_code": {"parse_error": 1, "object_missing": 1},
    }
    recorded = await db.fetchrow("SELECT * FROM daily_reports WHERE report_date = $1", REPORT_DAY)
    assert recorded["sns_message_id"] == published.message_id

    # Written once: the same day's next turn (this replica or another) does nothing.
    assert await job(app, settings, datetime(2001, 2, 4, 9, 0, tzinfo=UTC)).run_due() is None
    assert (
        await db.fetchval("SELECT generated_at FROM daily_reports WHERE report_date = $1", REPORT_DAY)
        == (recorded["generated_at"])
    )


async def test_a_replica_does_not_write_while_another_one_is_writing(
    app: FastAPI, settings: Settings, s3: Any, bucket: str
) -> None:
    other_replica = await database.open_database(settings)
    try:
        async with other_replica.exclusive(REPORT_LOCK_KEY) as writing:
            assert writing
            assert await job(app, settings, datetime(1999, 6, 2, 3, 0, tzinfo=UTC)).run_due() is None
        json_key, _ = report_keys(date(1999, 6, 1))
        assert s3.list_objects_v2(Bucket=bucket, Prefix=json_key)["KeyCount"] == 0
    finally:
        await other_replica.close()


async def test_job_started_by_the_service_writes_the_due_report(
    db: asyncpg.Connection, s3: Any, bucket: str, settings: Settings
) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    await db.execute("DELETE FROM daily_reports WHERE report_date = $1", yesterday)
    started = datetime.now(UTC)
    async with started_app(settings, report_daily_at_utc=time(0, 0)):

        async def written() -> Any:
            return await db.fetchval(
                "SELECT generated_at FROM daily_reports WHERE report_date = $1 AND generated_at >= $2",
                yesterday,
                started,
            )

        await eventually(written)
    json_key, _ = report_keys(yesterday)
    stored = json.loads(s3.get_object(Bucket=bucket, Key=json_key)["Body"].read())
    assert stored["date"] == yesterday.isoformat()
