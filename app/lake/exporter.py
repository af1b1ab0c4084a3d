"""The lake exporter: appends each pending file's rows to its Iceberg table, exactly once.

A load writes its outbox row (`lake_exports`) in its own transaction. The exporter, one at a time across
replicas (an advisory lock), takes the oldest pending files; for each it commits one Iceberg transaction
whose snapshots carry the file id in their summary (`aws-s3-service.file-id`), then marks the outbox row.
A crash between the two leaves the row pending: the next turn finds the file id in the table's snapshots
and only marks it, so no row is appended twice. A commit that conflicts with another writer is checked
the same way before it is tried again. pyiceberg does blocking I/O: its calls run in worker threads.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa
from prometheus_client import Counter, Gauge
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from app.core.config import Settings
from app.core.db import Database
from app.core.jobs import BackgroundJob
from app.lake import repository
from app.lake.catalog import PROCESSED_DATA_SCHEMA, lake_table, open_catalog
from app.lake.compaction import Compacted, compact

logger = logging.getLogger(__name__)

EXPORT_LOCK_KEY = 7_301_843_566  # one exporter at a time across replicas
FILE_ID_PROPERTY = "aws-s3-service.file-id"
PENDING_PER_TURN = 100
COMMIT_ATTEMPTS = 3

EXPORTED_ROWS = Counter("lake_exported_rows_total", "Rows appended to the lake's Iceberg tables", ["table"])
EXPORTS = Counter("lake_exports_total", "Files exported to the lake, by outcome", ["outcome"])
LAG_SECONDS = Gauge("lake_export_lag_seconds", "Age of the oldest loaded file not yet in the lake")
ARROW_SCHEMA = PROCESSED_DATA_SCHEMA.as_arrow()


def committed_snapshot(table: Table, file_id: int, since: datetime) -> int | None:
    """The id of a snapshot of `table` that carries `file_id`, or None if the file is not in the table.

    The snapshots' summaries answer while they are kept; when the table no longer has every snapshot
    since `since` (the outbox row's creation: older ones were expired), a scan filtered on the file id
    answers instead (it plans only data files whose file_id range holds it).
    """
    snapshots = table.metadata.snapshots
    for snapshot in reversed(snapshots):
        if snapshot.summary is not None and snapshot.summary.get(FILE_ID_PROPERTY) == str(file_id):
            return snapshot.snapshot_id
    oldest_kept_ms = min((s.timestamp_ms for s in snapshots), default=None)
    if oldest_kept_ms is None or oldest_kept_ms <= since.timestamp() * 1000:
        return None  # every snapshot since the file was loaded is here, and none carries it
    scan = table.scan(row_filter=f"file_id == {int(file_id)}", selected_fields=("file_id",), limit=1)
    current = table.current_snapshot()
    return current.snapshot_id if current is not None and scan.to_arrow().num_rows else None


def _arrow(file_id: int, rows: repository.LandedBatch) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "file_id": [file_id] * len(rows),
            "bucket": rows.bucket,
            "key": rows.key,
            "record_index": rows.record_index,
            "row_hash": rows.row_hash,
            "record": rows.record,
            "loaded_at": rows.loaded_at,
        },
        schema=ARROW_SCHEMA,
    )


class LakeExporter(BackgroundJob):
    name = "lake exporter"
    retry_after_failure_seconds = 30.0

    def __init__(self, database: Database, settings: Settings, catalog: Catalog | None = None) -> None:
        super().__init__()
        self._db = database
        self._settings = settings
        self._catalog = catalog
        self._tables: dict[str, Table] = {}
        self._compacted_at = time.monotonic()  # the first compaction one interval after start

    async def turn(self) -> float:
        await self.export_pending()
        interval = self._settings.lake_compact_interval_seconds
        if interval and time.monotonic() - self._compacted_at >= interval:
            await self.compact_now()
        return self._settings.lake_export_interval_seconds

    async def compact_now(self) -> list[Compacted]:
        """Compact every lake table (under the exporter's lock: no export commits meanwhile); nothing while
        another replica holds the lock."""
        results = []
        async with self._db.exclusive(EXPORT_LOCK_KEY) as mine:
            if not mine:
                return []
            retain = timedelta(hours=self._settings.lake_snapshot_retention_hours)
            for name in (repository.PROCESSED_DATA,):
                table = await self._table(name)
                result = await asyncio.to_thread(compact, table, retain=retain)
                self._tables.pop(name, None)  # reloaded at next use
                logger.info(
                    "lake table compacted",
                    extra={
                        "table": name,
                        "files_before": result.files_before,
                        "files_after": result.files_after,
                    },
                )
                results.append(result)
        self._compacted_at = time.monotonic()
        return results

    async def export_pending(self) -> int:
        """Export the oldest pending files (at most PENDING_PER_TURN); how many were exported. Nothing
        while another replica's exporter holds the lock."""
        done = 0
        async with self._db.acquire() as conn:  # every replica reports the lag, not only the lock's holder
            LAG_SECONDS.set(await repository.oldest_pending_age_seconds(conn))
        async with self._db.exclusive(EXPORT_LOCK_KEY) as mine:
            if not mine:
                return 0
            async with self._db.acquire() as conn:
                pending = await repository.pending(conn, PENDING_PER_TURN)
            for export in pending:
                try:
                    await self._export(export)
                except Exception as exc:  # this file's export failed (S3, the catalog, its data)
                    EXPORTS.labels("failed").inc()
                    logger.warning(
                        "lake export failed", extra={"file_id": export.file_id, "reason": type(exc).__name__}
                    )
                    # If the database is away this raises too, ending the turn: it is tried again later.
                    async with self._db.acquire() as conn:
                        await repository.mark_failed(conn, export.file_id, type(exc).__name__)
                    continue
                done += 1
        return done

    async def _table(self, name: str) -> Table:
        if self._catalog is None:
            self._catalog = await asyncio.to_thread(open_catalog, self._settings)
        catalog = self._catalog
        table = self._tables.get(name)
        if table is None:
            table = await asyncio.to_thread(lake_table, catalog, self._settings.lake_namespace, name)
            self._tables[name] = table
        else:
            await asyncio.to_thread(table.refresh)
        return table

    async def _export(self, export: repository.PendingExport) -> None:
        file_id = export.file_id
        async with self._db.acquire() as conn:
            state = await repository.status(conn, file_id)
        if state is None or state.exported_at is not None:
            return
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            table = await self._table(export.lake_table)
            found = await asyncio.to_thread(committed_snapshot, table, file_id, state.created_at)
            if found is not None:  # committed before a crash, or by a conflicting writer
                await self._mark(file_id, found, None, export.lake_table)
                return
            try:
                snapshot_id, rows = await self._append(table, file_id)
            except CommitFailedException:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                continue  # refreshed and checked again
            await self._mark(file_id, snapshot_id, rows, export.lake_table)
            return

    async def _append(self, table: Table, file_id: int) -> tuple[int | None, int]:
        """The file's rows, in batches of LAKE_EXPORT_BATCH_ROWS (one Parquet file each), as one Iceberg
        transaction: (the last snapshot's id, rows); (None, 0) for a file without rows."""
        transaction = table.transaction()
        after, total = -1, 0
        properties = {FILE_ID_PROPERTY: str(file_id)}
        while True:
            async with self._db.acquire() as conn:
                batch_rows = self._settings.lake_export_batch_rows
                rows = await repository.landed_rows(conn, file_id, after, batch_rows)
            if not rows:
                break
            batch = _arrow(file_id, rows)
            await asyncio.to_thread(transaction.append, batch, snapshot_properties=properties)
            after, total = rows.record_index[-1], total + len(rows)
            del rows, batch
        if total == 0:
            return None, 0
        committed = await asyncio.to_thread(transaction.commit_transaction)
        snapshot = committed.current_snapshot()
        return (snapshot.snapshot_id if snapshot is not None else None), total

    async def _mark(self, file_id: int, snapshot_id: int | None, rows: int | None, table: str) -> None:
        async with self._db.acquire() as conn:
            await repository.mark_exported(conn, file_id, snapshot_id, rows)
        if rows is None:
            EXPORTS.labels("already_in_lake").inc()
        else:
            EXPORTS.labels("exported").inc()
            EXPORTED_ROWS.labels(table).inc(rows)


@dataclass(frozen=True, slots=True)
class TableState:
    name: str
    snapshots: int
    current_snapshot_id: int | None
    records: int
    data_files: int


def describe(catalog: Catalog, namespace: str) -> list[TableState]:
    """The lake's tables as the catalog has them now (`python -m app lake status`)."""
    states = []
    for identifier in catalog.list_tables(namespace):
        table = catalog.load_table(identifier)
        current = table.current_snapshot()
        summary = current.summary if current is not None else None
        states.append(
            TableState(
                name=".".join(identifier),
                snapshots=len(table.metadata.snapshots),
                current_snapshot_id=current.snapshot_id if current is not None else None,
                records=int(summary.get("total-records", 0) or 0) if summary is not None else 0,
                data_files=int(summary.get("total-data-files", 0) or 0) if summary is not None else 0,
            )
        )
    return states


def show(
    catalog: Catalog, namespace: str, name: str, file_id: int | None, limit: int
) -> list[dict[str, object]]:
    """Up to `limit` rows of a table's current snapshot (`python -m app lake show`)."""
    table = catalog.load_table((namespace, name))
    row_filter = f"file_id == {int(file_id)}" if file_id is not None else "true"
    rows: list[dict[str, object]] = table.scan(row_filter=row_filter, limit=limit).to_arrow().to_pylist()
    return rows
