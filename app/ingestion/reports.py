"""The daily ingestion report (SPEC 5/7): JSON and a readable HTML page under `reports/{date}/` in
S3_BUCKET_NAME, and a summary on SNS_TOPIC_ARN.

With REPORT_DAILY_AT_UTC=HH:MM every replica runs the job, and each day's report is written once: the
writer holds an advisory lock and records the day in `daily_reports` after the upload and the publish
succeed. A replica that dies half-way leaves no record, so the next turn (on any replica) writes it again.
The report for day D is due at D+1 HH:MM (the day is over); a service that was down then writes it
when it comes back.
"""

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from app.core.config import Settings
from app.core.db import REQUEST_WAIT_SECONDS, Database
from app.core.jobs import BackgroundJob
from app.ingestion import repository
from app.ingestion.schemas import DailyReport
from app.messages import DailyReportNotification

if TYPE_CHECKING:  # the stub packages are dev dependencies, absent from the runtime image
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sns import SNSClient

logger = logging.getLogger(__name__)

REPORT_LOCK_KEY = 7_301_843_564  # one report writer at a time across replicas
REPORTS_PREFIX = "reports/"  # excluded from ingestion by INGEST_EXCLUDE_PREFIXES' default
RETRY_AFTER_FAILURE_SECONDS = 300.0
MAX_SLEEP_SECONDS = 3600.0  # wake at least hourly, so a clock change cannot skip a day


@dataclass(frozen=True, slots=True)
class PublishedReport:
    report: DailyReport
    json_key: str
    html_key: str
    message_id: str


def report_keys(day: date) -> tuple[str, str]:
    base = f"{REPORTS_PREFIX}{day.isoformat()}/ingestion-report"
    return f"{base}.json", f"{base}.html"


def due_day(now: datetime, at: time) -> date:
    """The latest day whose report is due at `now`: day D is due at D+1 `at` (UTC)."""
    return (now - timedelta(hours=at.hour, minutes=at.minute)).date() - timedelta(days=1)


def seconds_until_next_run(now: datetime, at: time) -> float:
    today = datetime.combine(now.date(), at, UTC)
    next_run = today if today > now else today + timedelta(days=1)
    return (next_run - now).total_seconds()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _rows(cells: list[tuple[str, str, object]]) -> str:
    """Table rows of (figure id, label, value); every value is escaped."""
    return "\n".join(
        f'<tr><th scope="row">{html.escape(label)}</th>'
        f'<td data-figure="{html.escape(figure)}">{html.escape(str(value))}</td></tr>'
        for figure, label, value in cells
    )


def render_html(report: DailyReport) -> str:
    """A standalone, readable page (no script, no external resource) with the report's figures."""
    summary = _rows(
        [
            ("files", "Files", report.files),
            ("rows_read", "Rows read", report.rows_read),
            ("rows_inserted", "Rows inserted", report.rows_inserted),
            ("rows_rejected", "Rows rejected", report.rows_rejected),
            ("p50_duration", "Duration p50 (completed files)", _seconds(report.p50_duration_seconds)),
            ("p95_duration", "Duration p95 (completed files)", _seconds(report.p95_duration_seconds)),
        ]
    )
    statuses = _rows([(f"status.{name}", name, n) for name, n in sorted(report.files_by_status.items())])
    failures = _rows(
        [(f"failure.{code}", code, n) for code, n in sorted(report.failures_by_error_code.items())]
    )
    sources = "\n".join(
        f'<tr><th scope="row">{html.escape(source.source)}</th>'
        + "".join(
            f'<td data-figure="source.{html.escape(source.source)}.{name}">{value}</td>'
            for name, value in (
                ("files", source.files),
                ("files_failed", source.files_failed),
                ("rows_inserted", source.rows_inserted),
                ("rows_rejected", source.rows_rejected),
            )
        )
        + "</tr>"
        for source in report.sources
    )
    day = html.escape(report.date.isoformat())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ingestion report {day}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 42rem; color: #1d1d1f; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.1rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .4rem .6rem; text-align: left; }}
td {{ text-align: right; font-variant-numeric: tabular-nums; }}
.empty {{ color: #666; }}
</style>
</head>
<body>
<h1>Ingestion report for <time datetime="{day}">{day}</time> (UTC)</h1>
<p>Files whose processing started that day, by how they ended.</p>
<h2>Summary</h2>
<table id="summary">
{summary}
</table>
<h2>Files by status</h2>
<table id="statuses">
{statuses or '<tr><td class="empty">No files.</td></tr>'}
</table>
<h2>Failures by error code</h2>
<table id="failures">
{failures or '<tr><td class="empty">No failures.</td></tr>'}
</table>
<h2>Sources</h2>
<table id="sources">
<tr><th>Source</th><th>Files</th><th>Failed</th><th>Rows landed</th><th>Rows rejected</th></tr>
{sources or '<tr><td class="empty">No files of a source.</td></tr>'}
</table>
</body>
</html>
"""


async def publish(
    database: Database, s3: "S3Client", sns: "SNSClient", settings: Settings, day: date
) -> PublishedReport:
    """Write the day's report to S3 (JSON + HTML), announce it on SNS, and record that it was written."""
    async with database.acquire(REQUEST_WAIT_SECONDS) as conn:
        report = await repository.daily_report(conn, day)
    json_key, html_key = report_keys(day)
    bucket = settings.s3_bucket_name
    await s3.put_object(
        Bucket=bucket,
        Key=json_key,
        Body=report.model_dump_json(indent=2).encode(),
        ContentType="application/json",
    )
    await s3.put_object(
        Bucket=bucket, Key=html_key, Body=render_html(report).encode(), ContentType="text/html; charset=utf-8"
    )
    summary = DailyReportNotification(
        date=day.isoformat(),
        bucket=bucket,
        json_key=json_key,
        html_key=html_key,
        files=report.files,
        files_by_status=report.files_by_status,
        rows_inserted=report.rows_inserted,
        failures_by_error_code=report.failures_by_error_code,
    )
    response = await sns.publish(
        TopicArn=settings.sns_topic_arn,
        Subject=summary.subject(),
        Message=summary.body(),
        MessageAttributes=summary.attributes(),
    )
    async with database.acquire(REQUEST_WAIT_SECONDS) as conn:
        await repository.record_report(
            conn, day, json_key=json_key, html_key=html_key, message_id=response["MessageId"]
        )
    logger.info("daily report written", extra={"date": day.isoformat(), "key": json_key})
    return PublishedReport(report, json_key, html_key, response["MessageId"])


class DailyReportJob(BackgroundJob):
    """Writes the report of the day that is due, once across replicas, and sleeps until the next one."""

    name = "daily report"
    retry_after_failure_seconds = RETRY_AFTER_FAILURE_SECONDS

    def __init__(
        self,
        database: Database,
        s3: "S3Client",
        sns: "SNSClient",
        settings: Settings,
        at: time,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self._db = database
        self._s3 = s3
        self._sns = sns
        self._settings = settings
        self._at = at
        self._clock = clock

    async def run_due(self) -> PublishedReport | None:
        """Write the due day's report unless it exists or another replica is writing it right now."""
        day = due_day(self._clock(), self._at)
        async with self._db.exclusive(REPORT_LOCK_KEY) as mine:
            if not mine:
                return None
            async with self._db.acquire(REQUEST_WAIT_SECONDS) as conn:
                if await repository.report_recorded(conn, day):
                    return None
            return await publish(self._db, self._s3, self._sns, self._settings, day)

    async def turn(self) -> float:
        await self.run_due()
        return min(seconds_until_next_run(self._clock(), self._at), MAX_SLEEP_SECONDS)
