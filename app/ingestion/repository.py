"""All SQL for file_processing_log and processed_data: claims and leases, the staged load, outcomes."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import cast

import asyncpg

from app.core.db import Connection
from app.ingestion.schemas import DailyReport, FileRow, SourceDay

STAGING_TABLE = "ingest_staging"
# A file's load streams from S3 for as long as the file takes; DB_COMMAND_TIMEOUT_SECONDS is for requests.
LOAD_TIMEOUT_SECONDS = 6 * 3600


@dataclass(frozen=True, slots=True)
class Claim:
    file_id: int
    attempts: int
    # Whether the claiming session took the file's claim lock (file_claim_lock_key): it does, unless a
    # worker that is alive but stuck still holds it after its lease ran out (then the lease is all).
    locked: bool


@dataclass(frozen=True, slots=True)
class ExistingFile:
    file_id: int
    status: str
    seconds_left: float  # until the lease expires; <= 0 when there is none


@dataclass(frozen=True, slots=True)
class Counts:
    rows_read: int = 0
    rows_inserted: int = 0
    rows_skipped: int = 0
    rows_rejected: int = 0


async def claim(
    conn: Connection,
    *,
    bucket: str,
    key: str,
    version_id: str | None,
    etag: str | None,
    size: int | None,
    trigger: str,
    owner: str,
    lease_seconds: int,
) -> Claim | None:
    """Insert the object version as `processing` under our lease, or take over a pending one, one whose
    claiming session has ended (a crashed worker: its claim lock is gone) or one whose lease expired (a
    stuck worker). The same statement takes the file's claim lock for this session, so no one sees the
    claim without its lock. None when another state holds it."""
    row = await conn.fetchrow(
        """
        INSERT INTO file_processing_log AS log
            (bucket, key, version_id, etag, size_bytes, status, attempts,
             lease_owner, lease_expires_at, trigger, started_at)
        VALUES ($1, $2, $3, $4, $5, 'processing', 1,
                $6, now() + make_interval(secs => $7), $8, now())
        ON CONFLICT (bucket, key, object_version) DO UPDATE
            SET status = 'processing',
                attempts = log.attempts + 1,
                lease_owner = EXCLUDED.lease_owner,
                lease_expires_at = EXCLUDED.lease_expires_at,
                started_at = now(),
                finished_at = NULL
            WHERE log.status = 'pending'
               OR (log.status = 'processing'
                   AND (log.lease_expires_at < now() OR NOT file_claim_alive(log.id)))
        RETURNING id, attempts, pg_try_advisory_lock(file_claim_lock_key(id)) AS locked
        """,
        bucket,
        key,
        version_id,
        etag,
        size,
        owner,
        float(lease_seconds),
        trigger,
    )
    return Claim(row["id"], row["attempts"], row["locked"]) if row else None


async def unlock_claim(conn: Connection, file_id: int) -> None:
    """Let go of the file's claim lock (the session keeps running: it goes back to the pool)."""
    await conn.execute("SELECT pg_advisory_unlock(file_claim_lock_key($1))", file_id)


async def find(conn: Connection, *, bucket: str, key: str, object_version: str) -> ExistingFile | None:
    row = await conn.fetchrow(
        """
        SELECT id, status,
               COALESCE(EXTRACT(EPOCH FROM lease_expires_at - now()), 0)::float8 AS seconds_left
        FROM file_processing_log
        WHERE bucket = $1 AND key = $2 AND object_version = $3
        """,
        bucket,
        key,
        object_version,
    )
    if row is None:
        return None
    return ExistingFile(row["id"], row["status"], row["seconds_left"])


async def renew_lease(conn: Connection, file_id: int, owner: str, lease_seconds: int) -> bool:
    renewed = await conn.fetchval(
        """
        UPDATE file_processing_log SET lease_expires_at = now() + make_interval(secs => $3)
        WHERE id = $1 AND lease_owner = $2 AND status = 'processing'
        RETURNING id
        """,
        file_id,
        owner,
        float(lease_seconds),
    )
    return renewed is not None


async def set_details(
    conn: Connection, file_id: int, *, sha256: str, size: int, content_type: str | None
) -> None:
    await conn.execute(
        "UPDATE file_processing_log SET sha256 = $2, size_bytes = $3, content_type = $4 WHERE id = $1",
        file_id,
        sha256,
        size,
        content_type,
    )


async def create_staging(conn: Connection) -> None:
    await conn.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} "
        "(record_index BIGINT NOT NULL, row_hash TEXT NOT NULL, data JSONB NOT NULL) ON COMMIT DELETE ROWS"
    )


async def copy_to_staging(conn: Connection, rows: Iterable[tuple[int, str, bytes]], *, replace: bool) -> None:
    """COPY (record_index, row_hash, canonical JSON) rows into the staging table; `replace` empties it
    first (it is empty at the start of each transaction: ON COMMIT DELETE ROWS)."""
    if replace:
        await conn.execute(f"TRUNCATE {STAGING_TABLE}")
    await conn.copy_records_to_table(
        STAGING_TABLE,
        records=rows,
        columns=["record_index", "row_hash", "data"],
        timeout=LOAD_TIMEOUT_SECONDS,
    )


async def insert_from_staging(conn: Connection, *, file_id: int, bucket: str, key: str) -> int:
    """Move staged rows into processed_data; rows already seen under this key are skipped."""
    status = await conn.execute(
        f"""
        INSERT INTO processed_data (file_id, bucket, key, record_index, row_hash, data)
        SELECT $1, $2, $3, record_index, row_hash, data FROM {STAGING_TABLE}
        ON CONFLICT (bucket, key, row_hash) DO NOTHING
        """,  # noqa: S608
        file_id,
        bucket,
        key,
        timeout=LOAD_TIMEOUT_SECONDS,
    )
    return int(status.rsplit(" ", 1)[-1])


async def complete(
    conn: Connection, file_id: int, owner: str, counts: Counts, *, error_message: str | None = None
) -> bool:
    """Mark our file completed; False if the lease was lost (the caller must roll back)."""
    done = await conn.fetchval(
        """
        UPDATE file_processing_log
        SET status = 'completed', rows_read = $3, rows_inserted = $4, rows_skipped = $5,
            rows_rejected = $6, error_code = CASE WHEN $7::text IS NULL THEN NULL ELSE 'rows_rejected' END,
            error_message = $7, lease_owner = NULL, lease_expires_at = NULL, finished_at = clock_timestamp()
        WHERE id = $1 AND lease_owner = $2 AND status = 'processing'
        RETURNING id
        """,
        file_id,
        owner,
        counts.rows_read,
        counts.rows_inserted,
        counts.rows_skipped,
        counts.rows_rejected,
        error_message,
    )
    return done is not None


async def finish_without_load(
    conn: Connection,
    file_id: int,
    owner: str,
    *,
    status: str,
    error_code: str,
    error_message: str,
    counts: Counts,
) -> None:
    """Record a permanent failure (`failed`) or a deliberate skip (`skipped`) of our file."""
    await conn.execute(
        """
        UPDATE file_processing_log
        SET status = $3, error_code = $4, error_message = $5, rows_read = $6, rows_rejected = $7,
            lease_owner = NULL, lease_expires_at = NULL, finished_at = clock_timestamp()
        WHERE id = $1 AND lease_owner = $2 AND status = 'processing'
        """,
        file_id,
        owner,
        status,
        error_code,
        error_message,
        counts.rows_read,
        counts.rows_rejected,
    )


async def release(conn: Connection, file_id: int, owner: str, *, counted: bool = True) -> None:
    """Give a claim back (transient failure, shutdown): another attempt may take it at once. An attempt
    that never started (`counted=False`: its tenant had no free slot) is not counted."""
    await conn.execute(
        """
        UPDATE file_processing_log
        SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
            attempts = attempts - CASE WHEN $3 THEN 0 ELSE 1 END
        WHERE id = $1 AND lease_owner = $2 AND status = 'processing'
        """,
        file_id,
        owner,
        counted,
    )


async def take_tenant_slot(conn: Connection, tenant: str, slots: int) -> int | None:
    """One of the tenant's `slots` load slots for this session (a session-level advisory lock on the
    two-key pair (hash of the tenant, slot): apart from the files' one-key claim locks), or None when all
    are held by live sessions, across every replica. The first free slot is taken and no other."""
    slot: int | None = await conn.fetchval(
        """
        SELECT slot FROM generate_series(0, $2 - 1) AS slot
        WHERE pg_try_advisory_lock(hashtext('tenant:' || $1), slot)
        LIMIT 1
        """,
        tenant,
        slots,
    )
    return slot


async def free_tenant_slot(conn: Connection, tenant: str, slot: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock(hashtext('tenant:' || $1), $2)", tenant, slot)


async def unseen_versions(conn: Connection, bucket: str, versions: list[tuple[str, str]]) -> list[int]:
    """The positions in `versions` ((key, object version) pairs of `bucket`) that the log has not seen, or
    has only as `pending` (a released claim) or as a `processing` claim whose worker died: either may have
    no message left to bring it back."""
    rows = await conn.fetch(
        """
        SELECT t.position - 1 AS position
        FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(key, version, position)
        WHERE NOT EXISTS (
            SELECT 1 FROM file_processing_log AS log
            WHERE log.bucket = $1 AND log.key = t.key AND log.object_version = t.version
              AND (log.status IN ('completed', 'failed', 'skipped')
                   OR (log.status = 'processing' AND file_claim_alive(log.id)))
        )
        ORDER BY t.position
        """,
        bucket,
        [key for key, _ in versions],
        [version for _, version in versions],
    )
    return [int(row["position"]) for row in rows]


_FILE_COLUMNS = """
    id, bucket, key, version_id, etag, sha256, size_bytes, content_type, status, attempts,
    rows_read, rows_inserted, rows_skipped, rows_rejected, error_code, error_message, trigger,
    created_at, started_at, finished_at,
    EXTRACT(EPOCH FROM finished_at - started_at)::float8 AS duration_seconds,
    source_name, source_version, COALESCE(rejected_by_rule, '{}'::jsonb) AS rejected_by_rule
"""


async def list_files(
    conn: Connection,
    *,
    status: str | None,
    key_prefix: str | None,
    since: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[FileRow]:
    """Newest first; `after` is the (created_at, id) of the last row of the previous page."""
    rows = await conn.fetch(
        f"""
        SELECT {_FILE_COLUMNS} FROM file_processing_log
        WHERE ($1::text IS NULL OR status = $1)
          AND ($2::text IS NULL OR starts_with(key, $2))
          AND ($3::timestamptz IS NULL OR created_at >= $3)
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
        ORDER BY created_at DESC, id DESC
        LIMIT $6
        """,  # noqa: S608
        status,
        key_prefix,
        since,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [FileRow.model_validate(dict(row)) for row in rows]


async def get_file(conn: Connection, file_id: int) -> FileRow | None:
    row = await conn.fetchrow(f"SELECT {_FILE_COLUMNS} FROM file_processing_log WHERE id = $1", file_id)  # noqa: S608
    return FileRow.model_validate(dict(row)) if row else None


async def dead_claims(conn: Connection, limit: int) -> list[FileRow]:
    """`processing` files whose claiming session has ended (their worker died), oldest first."""
    rows = await conn.fetch(
        f"""
        SELECT {_FILE_COLUMNS} FROM file_processing_log
        WHERE status = 'processing' AND NOT file_claim_alive(id)
        ORDER BY id
        LIMIT $1
        """,  # noqa: S608
        limit,
    )
    return [FileRow.model_validate(dict(row)) for row in rows]


async def reopen_for_retry(conn: Connection, file_id: int) -> FileRow | None:
    """Put a failed file, one left pending, or one whose claim died with its worker, in `pending` so it can
    be claimed again; None for other states."""
    row = await conn.fetchrow(
        f"""
        UPDATE file_processing_log
        SET status = 'pending', error_code = NULL, error_message = NULL, finished_at = NULL
        WHERE id = $1
          AND (status IN ('failed', 'pending')
               OR (status = 'processing' AND (lease_expires_at < now() OR NOT file_claim_alive(id))))
        RETURNING {_FILE_COLUMNS}
        """,  # noqa: S608
        file_id,
    )
    return FileRow.model_validate(dict(row)) if row else None


async def daily_report(conn: Connection, day: date) -> DailyReport:
    """Files created on `day` (UTC): counts by status, rows, failures by code, duration percentiles."""
    window = (datetime.combine(day, time.min, UTC), datetime.combine(day, time.min, UTC) + timedelta(days=1))
    row = await conn.fetchrow(
        """
        SELECT count(*) AS files,
               COALESCE(sum(rows_read), 0) AS rows_read,
               COALESCE(sum(rows_inserted), 0) AS rows_inserted,
               COALESCE(sum(rows_rejected), 0) AS rows_rejected,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at))
                   FILTER (WHERE status = 'completed') AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at))
                   FILTER (WHERE status = 'completed') AS p95
        FROM file_processing_log WHERE created_at >= $1 AND created_at < $2
        """,
        *window,
    )
    totals = cast(asyncpg.Record, row)  # an aggregate without GROUP BY returns one row, even over no files
    by_status = await conn.fetch(
        "SELECT status, count(*) AS n FROM file_processing_log "
        "WHERE created_at >= $1 AND created_at < $2 GROUP BY status",
        *window,
    )
    failures = await conn.fetch(
        "SELECT error_code, count(*) AS n FROM file_processing_log "
        "WHERE created_at >= $1 AND created_at < $2 AND status = 'failed' GROUP BY error_code",
        *window,
    )
    sources = await conn.fetch(
        """
        SELECT source_name, count(*) AS files, count(*) FILTER (WHERE status = 'failed') AS failed,
               sum(rows_read) AS rows_read, sum(rows_inserted) AS rows_inserted,
               sum(rows_rejected) AS rows_rejected,
               (SELECT COALESCE(jsonb_object_agg(rule, total), '{}'::jsonb) FROM (
                    SELECT rule, sum(n::bigint) AS total
                    FROM file_processing_log AS f, jsonb_each_text(f.rejected_by_rule) AS r(rule, n)
                    WHERE f.source_name = log.source_name AND f.created_at >= $1 AND f.created_at < $2
                    GROUP BY rule
               ) AS rules) AS rejected_by_rule
        FROM file_processing_log AS log
        WHERE created_at >= $1 AND created_at < $2 AND source_name IS NOT NULL
        GROUP BY source_name ORDER BY source_name
        """,
        *window,
    )
    return DailyReport(
        date=day,
        files=totals["files"],
        files_by_status={row["status"]: row["n"] for row in by_status},
        rows_read=totals["rows_read"],
        rows_inserted=totals["rows_inserted"],
        rows_rejected=totals["rows_rejected"],
        failures_by_error_code={row["error_code"] or "unknown": row["n"] for row in failures},
        p50_duration_seconds=totals["p50"],
        p95_duration_seconds=totals["p95"],
        sources=[
            SourceDay(
                source=row["source_name"],
                files=row["files"],
                files_failed=row["failed"],
                rows_read=row["rows_read"],
                rows_inserted=row["rows_inserted"],
                rows_rejected=row["rows_rejected"],
                rejected_by_rule=row["rejected_by_rule"],
            )
            for row in sources
        ],
    )


async def report_recorded(conn: Connection, day: date) -> bool:
    return bool(await conn.fetchval("SELECT true FROM daily_reports WHERE report_date = $1", day))


async def record_report(
    conn: Connection, day: date, *, json_key: str, html_key: str, message_id: str
) -> None:
    """Note that the day's report was written and announced (again, for a republished day)."""
    await conn.execute(
        """
        INSERT INTO daily_reports (report_date, json_key, html_key, sns_message_id)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (report_date) DO UPDATE
            SET json_key = EXCLUDED.json_key, html_key = EXCLUDED.html_key,
                sns_message_id = EXCLUDED.sns_message_id, generated_at = now()
        """,
        day,
        json_key,
        html_key,
        message_id,
    )
