"""All SQL of the lake: the outbox (`lake_exports`, migration 0007) and the rows an export reads."""

from dataclasses import dataclass
from datetime import datetime

from app.core.db import Connection

PROCESSED_DATA = "processed_data"  # the lake table of the generic landing


@dataclass(frozen=True, slots=True)
class PendingExport:
    file_id: int
    lake_table: str


@dataclass(frozen=True, slots=True)
class ExportStatus:
    lake_table: str
    created_at: datetime
    exported_at: datetime | None
    snapshot_id: int | None
    rows_exported: int | None
    attempts: int
    last_error: str | None


async def enqueue(conn: Connection, file_id: int, lake_table: str) -> None:
    """Record, in the file's load transaction, that its rows are to be exported."""
    await conn.execute(
        "INSERT INTO lake_exports (file_id, lake_table) VALUES ($1, $2) ON CONFLICT (file_id) DO NOTHING",
        file_id,
        lake_table,
    )


async def pending(conn: Connection, limit: int) -> list[PendingExport]:
    """The exports not done yet: never tried first, then by age."""
    rows = await conn.fetch(
        """
        SELECT file_id, lake_table FROM lake_exports
        WHERE exported_at IS NULL
        ORDER BY attempts, created_at, file_id  -- a file that keeps failing does not hold up the others
        LIMIT $1
        """,
        limit,
    )
    return [PendingExport(row["file_id"], row["lake_table"]) for row in rows]


async def mark_exported(conn: Connection, file_id: int, snapshot_id: int | None, rows: int | None) -> None:
    """Done: `snapshot_id` carries the file (None: the file had no rows); `rows` None when an earlier
    attempt's commit was found (the crash case)."""
    await conn.execute(
        """
        UPDATE lake_exports SET exported_at = now(), snapshot_id = $2, rows_exported = $3, last_error = NULL
        WHERE file_id = $1
        """,
        file_id,
        snapshot_id,
        rows,
    )


async def mark_failed(conn: Connection, file_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE lake_exports SET attempts = attempts + 1, last_error = $2 WHERE file_id = $1",
        file_id,
        error[:500],
    )


async def status(conn: Connection, file_id: int) -> ExportStatus | None:
    row = await conn.fetchrow(
        """
        SELECT lake_table, created_at, exported_at, snapshot_id, rows_exported, attempts, last_error
        FROM lake_exports WHERE file_id = $1
        """,
        file_id,
    )
    return None if row is None else ExportStatus(**dict(row))


async def oldest_pending_age_seconds(conn: Connection) -> float:
    """How long the oldest pending export has waited (0 when none): the lake's lag."""
    age: float | None = await conn.fetchval(
        "SELECT extract(epoch FROM now() - min(created_at)) FROM lake_exports WHERE exported_at IS NULL"
    )
    return float(age or 0.0)


@dataclass(frozen=True, slots=True)
class LandedBatch:
    """A batch of a file's processed_data rows as columns (what Arrow takes without a row object each)."""

    bucket: list[str]
    key: list[str]
    record_index: list[int]
    row_hash: list[str]
    record: list[str]  # the record as JSON text (PostgreSQL's rendering of the stored jsonb)
    loaded_at: list[datetime]

    def __len__(self) -> int:
        return len(self.record_index)


async def landed_rows(conn: Connection, file_id: int, after_index: int, limit: int) -> LandedBatch:
    """Up to `limit` of the file's processed_data rows after record `after_index`, in record order (the
    (file_id, record_index) index: each batch is one index range, whatever the file's size)."""
    rows = await conn.fetch(
        """
        SELECT bucket, key, record_index, row_hash, data::text AS data, created_at FROM processed_data
        WHERE file_id = $1 AND record_index > $2
        ORDER BY record_index
        LIMIT $3
        """,
        file_id,
        after_index,
        limit,
    )
    columns = LandedBatch(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
    )
    return columns


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int
    failing: int  # pending with at least one failed attempt
    exported: int
    oldest_pending_seconds: float


async def counts(conn: Connection) -> OutboxCounts:
    row = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE exported_at IS NULL) AS pending,
               count(*) FILTER (WHERE exported_at IS NULL AND attempts > 0) AS failing,
               count(*) FILTER (WHERE exported_at IS NOT NULL) AS exported,
               coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE exported_at IS NULL)), 0)
                   AS oldest
        FROM lake_exports
        """
    )
    if row is None:  # an aggregate always returns its row
        raise RuntimeError("no row from an aggregate")
    return OutboxCounts(row["pending"], row["failing"], row["exported"], float(row["oldest"]))


async def backfill(conn: Connection, since: datetime) -> int:
    """Queue the completed files created since `since` whose rows are in processed_data and that have no
    export yet (files loaded before the lake was turned on); how many were queued."""
    status = await conn.execute(
        """
        INSERT INTO lake_exports (file_id, lake_table)
        SELECT f.id, $2 FROM file_processing_log f
        WHERE f.status = 'completed' AND f.created_at >= $1
          AND EXISTS (SELECT 1 FROM processed_data p WHERE p.file_id = f.id)
        ORDER BY f.id
        ON CONFLICT (file_id) DO NOTHING
        """,
        since,
        PROCESSED_DATA,
    )
    return int(status.rsplit(" ", 1)[-1])
