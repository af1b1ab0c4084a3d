"""The exactly-once claim of an object version in the processing log, and how it ends: completed (inside
the load's transaction), failed or skipped, or released for a later attempt.

A claim is alive while the database session that made it is: that session holds the file's claim lock
(an advisory lock, migration 0005) from the claim statement to the end of the load, and PostgreSQL drops
it the moment the session ends, so the file of a worker that was killed can be claimed again at once. The
lease (`INGEST_LEASE_SECONDS`, renewed while the file loads) remains for a worker that is alive but stuck.
"""

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg

from app.core import db
from app.core.db import DATABASE_ERRORS, Connection, Database
from app.ingestion import repository
from app.ingestion.envelopes import ObjectRef
from app.ingestion.outcomes import IngestOutcome, PermanentFailure, Status, Transient
from app.ingestion.repository import Counts

# Identifies this process's leases; a restarted process is a new owner, so its old leases expire.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
# A message of a file another worker holds comes back this soon: that worker may die any moment, and the
# claim is free the moment it does.
BUSY_RECHECK_SECONDS = 30.0


def transient_database(exc: BaseException) -> Transient:
    return Transient(f"database: {type(exc).__name__}")


class ClaimSession:
    """The pooled connection whose session holds a claim: the claim lives as long as it does."""

    def __init__(self, conn: Connection, file_id: int, *, locked: bool, held: AsyncExitStack) -> None:
        self.conn = conn
        self._file_id = file_id
        self._locked = locked
        self._held = held  # gives the connection back to the pool
        self._closed = False
        self._slot: tuple[str, int] | None = None  # the tenant load slot this session holds, if any

    async def take_tenant_slot(self, tenant: str, slots: int) -> bool:
        """Hold one of the tenant's `slots` load slots for as long as the claim lives; False if none is
        free. Like the claim lock, a slot is a session-level lock: a dead worker's slot is free at once."""
        slot = await repository.take_tenant_slot(self.conn, tenant, slots)
        if slot is None:
            return False
        self._slot = (tenant, slot)
        return True

    async def close(self) -> None:
        """Let go of the claim lock (and the tenant slot) and give the connection back (which rolls back
        whatever transaction a cut load left open on it). Once; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._locked or self._slot:
            try:
                if self._slot:
                    await repository.free_tenant_slot(self.conn, *self._slot)
                if self._locked:
                    await repository.unlock_claim(self.conn, self._file_id)
            except DATABASE_ERRORS:
                # Never back to the pool still holding the lock: the claim would look alive for ever. (A
                # connection that was lost is already out of the pool, and its session, lock and all, gone.)
                with contextlib.suppress(asyncpg.InterfaceError):
                    self.conn.terminate()
        await self._held.aclose()


@dataclass(frozen=True, slots=True)
class Claimed:
    """An object version this worker holds, ready to load; `session.close()` ends the claim's life."""

    ref: ObjectRef
    file_id: int
    started: float  # perf_counter at the claim
    session: ClaimSession


class Claims:
    """Claims in file_processing_log under this worker's lease (`INGEST_LEASE_SECONDS`)."""

    def __init__(self, database: Database, lease_seconds: int) -> None:
        self._db = database
        self._lease_seconds = lease_seconds

    async def claim(self, ref: ObjectRef, trigger: str) -> Claimed | IngestOutcome:
        """Take the object version (a new one, a `pending` one, or one whose worker died), or say why not:
        duplicate (done already) or busy (another worker's live claim). A Claimed keeps its connection."""
        held = AsyncExitStack()
        try:
            conn = await held.enter_async_context(self._db.acquire())
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
            session = ClaimSession(conn, claim.file_id, locked=claim.locked, held=held.pop_all())
        except DATABASE_ERRORS as exc:
            if not db.is_transient(exc):
                raise
            raise transient_database(exc) from exc
        finally:
            await held.aclose()  # empty once the session has taken the connection
        return Claimed(ref, claim.file_id, time.perf_counter(), session)

    async def _already_known(self, conn: Connection, ref: ObjectRef) -> IngestOutcome:
        existing = await repository.find(
            conn, bucket=ref.bucket, key=ref.key, object_version=ref.version_id or ref.etag or ""
        )
        if existing is None:  # deleted between the two statements; let the message come back
            return IngestOutcome("busy", retry_after=1.0)
        if existing.status in ("completed", "failed", "skipped"):
            return IngestOutcome("duplicate", existing.file_id)
        # Another worker holds a live claim (or just released it): look again soon, or when its lease ends.
        retry_after = min(max(existing.seconds_left, 0.0) + 1.0, BUSY_RECHECK_SECONDS)
        return IngestOutcome("busy", existing.file_id, retry_after=retry_after)

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

    async def complete(self, claimed: Claimed, counts: Counts, warning: str | None) -> bool:
        """Mark the file completed in the load's own transaction (on the claim's connection); False if the
        lease was lost meanwhile."""
        conn = claimed.session.conn
        return await repository.complete(conn, claimed.file_id, WORKER_ID, counts, error_message=warning)

    async def fail(self, claimed: Claimed, failure: PermanentFailure) -> IngestOutcome:
        """Record a permanent failure (`failed`) or a deliberate skip (`skipped`); the claim ends."""
        try:
            async with self._ended(claimed) as conn:
                await repository.finish_without_load(
                    conn,
                    claimed.file_id,
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
        return IngestOutcome(status, claimed.file_id, error_code=failure.code)

    async def release(self, claimed: Claimed, *, counted: bool = True) -> None:
        """Give the claim back (`pending`): another attempt may take it at once. Best effort: if the
        database is down, the claim died with its session anyway. `counted=False`: the attempt never
        started (its tenant had no free slot)."""
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self._ended(claimed) as conn:
                await repository.release(conn, claimed.file_id, WORKER_ID, counted=counted)

    @contextlib.asynccontextmanager
    async def _ended(self, claimed: Claimed) -> AsyncIterator[Connection]:
        """A connection to write how a claim ended on, once its session is closed: a load cut short may
        have left the claim's own connection in a transaction that will never commit (or still cancelling
        a query, or lost). The write checks that this worker still owns the claim (another may take it
        over in between, which then is theirs)."""
        await claimed.session.close()
        async with self._db.acquire() as conn:
            yield conn
