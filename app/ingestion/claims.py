"""The exactly-once claim of an object version in the processing log, the lease that keeps it while the
file loads, and how a claim ends: completed (inside the load's transaction), failed or skipped, or released
for a later attempt."""

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator

from app.core import db
from app.core.db import DATABASE_ERRORS, Connection, Database
from app.ingestion import repository
from app.ingestion.envelopes import ObjectRef
from app.ingestion.outcomes import Claimed, IngestOutcome, PermanentFailure, Status, Transient
from app.ingestion.repository import Counts

# Identifies this process's leases; a restarted process is a new owner, so its old leases expire.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def transient_database(exc: BaseException) -> Transient:
    return Transient(f"database: {type(exc).__name__}")


class Claims:
    """Claims in file_processing_log under this worker's lease (`INGEST_LEASE_SECONDS`)."""

    def __init__(self, database: Database, lease_seconds: int) -> None:
        self._db = database
        self._lease_seconds = lease_seconds

    async def claim(self, ref: ObjectRef, trigger: str) -> Claimed | IngestOutcome:
        """Take the object version (a new one, a `pending` one, or one whose lease expired with a crashed
        worker), or say why not: duplicate (done already) or busy (another worker's live lease)."""
        try:
            async with self._db.acquire() as conn:
                claim = await repository.claim(
                    conn,
                    bucket=ref.bucket,
                    key=ref.key,
                    version_id=ref.version_id,
                    etag=ref.etag,
                    size=ref.size,
                    trigger=trigger,
                    owner=WORKER_ID,
                    lease_seconds=self._lease_seconds,
                )
                if claim is None:
                    return await self._already_known(conn, ref)
        except DATABASE_ERRORS as exc:
            if not db.is_transient(exc):
                raise
            raise transient_database(exc) from exc
        return Claimed(ref, claim.file_id, time.perf_counter())

    async def _already_known(self, conn: Connection, ref: ObjectRef) -> IngestOutcome:
        existing = await repository.find(
            conn, bucket=ref.bucket, key=ref.key, object_version=ref.version_id or ref.etag or ""
        )
        if existing is None:  # deleted between the two statements; let the message come back
            return IngestOutcome("busy", retry_after=1.0)
        if existing.status in ("completed", "failed", "skipped"):
            return IngestOutcome("duplicate", existing.file_id)
        # Another worker holds a live lease (or just released it): look again once it would expire.
        return IngestOutcome("busy", existing.file_id, retry_after=max(existing.seconds_left, 0.0) + 1.0)

    @contextlib.asynccontextmanager
    async def lease_kept(self, file_id: int) -> AsyncIterator[None]:
        """Renews the lease while a long file loads, so no one else takes it over."""
        lease = self._lease_seconds

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease / 3)
                with contextlib.suppress(*DATABASE_ERRORS):  # the next turn tries again
                    async with self._db.acquire() as conn:
                        if not await repository.renew_lease(conn, file_id, WORKER_ID, lease):
                            return

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def complete(self, conn: Connection, file_id: int, counts: Counts, warning: str | None) -> bool:
        """Mark the file completed in the load's own transaction; False if the lease was lost meanwhile."""
        return await repository.complete(conn, file_id, WORKER_ID, counts, error_message=warning)

    async def fail(self, file_id: int, failure: PermanentFailure) -> IngestOutcome:
        """Record a permanent failure (`failed`) or a deliberate skip (`skipped`)."""
        try:
            async with self._db.acquire() as conn:
                await repository.finish_without_load(
                    conn,
                    file_id,
                    WORKER_ID,
                    status=failure.status,
                    error_code=failure.code,
                    error_message=failure.message,
                    counts=failure.counts,
                )
        except DATABASE_ERRORS as exc:
            if not db.is_transient(exc):
                raise
            raise transient_database(exc) from exc
        status: Status = "skipped" if failure.status == "skipped" else "failed"
        return IngestOutcome(status, file_id, error_code=failure.code)

    async def release(self, file_id: int) -> None:
        """Give the claim back (`pending`): another attempt may take it at once. Best effort: if the
        database is down, the lease simply expires."""
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self._db.acquire() as conn:
                await repository.release(conn, file_id, WORKER_ID)
