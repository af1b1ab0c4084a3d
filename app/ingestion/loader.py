"""Ingest one S3 object version exactly once: claim it, stream and parse it, and commit its rows together
with its `completed` status in one transaction."""

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NoReturn

import aiohttp
import asyncpg
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from app.audit import repository as audit
from app.audit.repository import AuditAction, AuditedObject
from app.core import aws, db
from app.core.config import Settings
from app.core.cross_account import RoleAssumptionDenied
from app.core.db import DATABASE_ERRORS, Connection
from app.core.errors import BackingServiceDown
from app.ingestion import repository
from app.ingestion.envelopes import ObjectRef
from app.ingestion.parsers import ParseError, Record, RecordStream, detect_format
from app.ingestion.repository import Counts
from app.users import repository as users_repository
from app.users.files import as_of, record_type_of
from app.users.schemas import AUDITED, FILE_RECORD_MODELS, RecordType

logger = logging.getLogger(__name__)

# Identifies this process's leases; a restarted process is a new owner, so its old leases expire.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
PROBE_TIMEOUT_SECONDS = 5.0
MAX_REPORTED_ERRORS = 5  # rejected-record reasons kept in the processing log
JSONB_NUL = b"\\u0000"  # PostgreSQL's jsonb cannot store U+0000
# Records per COPY + INSERT round of a file's load: big enough that statements are few, small enough
# that the last round (which nothing overlaps) is short and the chunk held in memory is a few MB.
LOAD_CHUNK_ROWS = 20_000

ROWS_LOADED = Counter("ingest_rows_loaded_total", "Rows newly stored by ingestion", ["target"])
FILES = Counter("ingest_files_total", "Files by outcome", ["outcome"])
FILE_SECONDS = Histogram(
    "ingest_file_duration_seconds",
    "Time to ingest one file, claim to commit",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)

Status = Literal["completed", "failed", "skipped", "duplicate", "busy", "excluded"]


class Transient(BackingServiceDown):
    """A failure worth retrying later (a dependency is down or throttling); the claim is released."""


class _Permanent(Exception):
    def __init__(
        self, code: str, message: str, *, status: str = "failed", counts: Counts | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.counts = counts or Counts()


class _LeaseLost(Exception):
    pass


class Counted:
    """A byte source that reports how much of it was read."""

    def __init__(self, source: Any, size: int, progress: Callable[[int, int], None]) -> None:
        self._source = source
        self._size = size
        self._progress = progress
        self._read = 0

    async def read(self, n: int = -1) -> bytes:
        chunk: bytes = await self._source.read(n)
        self._read += len(chunk)
        self._progress(self._read, self._size)
        return chunk


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    status: Status
    file_id: int | None = None
    retry_after: float | None = None  # for `busy`: when the current holder's lease runs out
    counts: Counts = field(default_factory=Counts)
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class _Opened:
    """A GET already under way, and the object version its response names."""

    ref: ObjectRef
    response: Any

    def close(self) -> None:
        self.response["Body"].close()


@dataclass(frozen=True, slots=True)
class Claimed:
    """An object version this worker holds the lease on, ready to load."""

    ref: ObjectRef
    file_id: int
    started: float  # perf_counter at the claim


@dataclass(slots=True)
class _Tally:
    read: int = 0
    rejected: int = 0
    changed: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, reason: str, policy: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(reason)
        if policy == "reject_file":
            raise _Permanent("validation_error", f"record rejected: {reason}", counts=self.counts())

    def counts(self) -> Counts:
        valid = self.read - self.rejected
        return Counts(self.read, self.changed, valid - self.changed, self.rejected)


def _validation_reason(line: int, exc: ValidationError) -> str:
    # Field names and rule messages only: the rejected values may be personal data.
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'record'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )
    return f"line {line}: {problems}"


def _s3_failure(exc: ClientError) -> Exception:
    code = aws.error_code(exc)
    if aws.is_transient(exc):
        return Transient(f"S3 {code}")
    if code in {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}:
        return _Permanent("object_missing", "the object (version) no longer exists in S3")
    if code in {"PreconditionFailed", "412"}:
        return _Permanent("superseded", "the object was replaced after the event", status="skipped")
    if isinstance(exc, RoleAssumptionDenied):
        return _Permanent("access_denied", f"STS denied assuming {exc.role_arn} to read the bucket")
    if code in {"AccessDenied", "403"}:
        return _Permanent("access_denied", "S3 denied reading the object")
    return _Permanent("s3_error", f"S3 refused the read ({code})")


class Ingestor:
    """Ingests object versions; shared by the SQS consumer, the SNS webhook, the API and the CLI."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        s3_for: Callable[[str], Any],
        settings: Settings,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """`progress(bytes_read, file_size)` is called as a file streams in (the CLI's progress bar)."""
        self._pool = pool
        self._s3_for = s3_for
        self._settings = settings
        self._progress = progress

    async def probe(self, bucket: str) -> bool:
        """Whether the database and S3 answer: the consumer waits for this after transient failures."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self._pool.fetchval("SELECT 1")
                await self._s3_for(bucket).head_bucket(Bucket=bucket)
        except (*DATABASE_ERRORS, ClientError, BotoCoreError, aiohttp.ClientError):
            return False
        return True

    async def ingest(self, ref: ObjectRef, trigger: str) -> IngestOutcome:
        """Claim the object version and load it; what the consumer and the CLI do.

        An event that names no version (S3's for an unversioned bucket; moto's always) is resolved by
        starting the GET: its response names the version, and that same response is loaded, so the
        object is asked for once, not twice (HEAD, then GET).
        """
        opened = None
        if ref.version_id is None and ref.etag is not None and not self._excluded(ref.key):
            opened = await self._get_naming_version(ref)
            if opened is not None:
                ref = opened.ref
        try:
            claimed = await self.claim(ref, trigger, resolve=opened is None)
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        if isinstance(claimed, IngestOutcome):
            if opened is not None:
                opened.close()
            return self._observed(claimed, ref, None)
        return await self.load(claimed, opened=opened)

    def _excluded(self, key: str) -> bool:
        return any(key.startswith(prefix) for prefix in self._settings.ingest_exclude_prefixes)

    async def _get_naming_version(self, ref: ObjectRef) -> _Opened | None:
        """The GET of the version the event's ETag names, with the version id it reports; None when the
        object was replaced, removed or cannot be read (the usual path then finds out and records why)."""
        try:
            response = await self._s3_for(ref.bucket).get_object(
                Bucket=ref.bucket, Key=ref.key, IfMatch=f'"{ref.etag}"'
            )
        except ClientError as exc:
            failure = _s3_failure(exc)
            if isinstance(failure, Transient):
                raise failure from None
            return None
        except (BotoCoreError, aiohttp.ClientError) as exc:
            raise Transient(type(exc).__name__) from exc
        return _Opened(_versioned(ref, response.get("VersionId"), ref.etag), response)

    async def claim(self, ref: ObjectRef, trigger: str, *, resolve: bool = True) -> Claimed | IngestOutcome:
        """Take the object version in the processing log, or say why not (excluded, duplicate, busy).

        `resolve=False` keeps the ref's identity as it is (a retry must claim the very row it reopened).
        """
        if self._excluded(ref.key):
            return IngestOutcome("excluded")
        if resolve:
            ref = await self._with_version(ref)
        try:
            async with self._pool.acquire() as conn:
                claim = await repository.claim(
                    conn,
                    bucket=ref.bucket,
                    key=ref.key,
                    version_id=ref.version_id,
                    etag=ref.etag,
                    size=ref.size,
                    trigger=trigger,
                    owner=WORKER_ID,
                    lease_seconds=self._settings.ingest_lease_seconds,
                )
                if claim is None:
                    return await self._already_known(conn, ref)
        except DATABASE_ERRORS as exc:
            if not db.is_transient(exc):
                raise
            FILES.labels("transient").inc()
            raise Transient(f"database: {type(exc).__name__}") from exc
        return Claimed(ref, claim.file_id, time.perf_counter())

    async def load(self, claimed: Claimed, *, opened: _Opened | None = None) -> IngestOutcome:
        """Load a claimed file and record how it ended; Transient leaves it `pending` for a retry.

        `opened`: the GET of this version, already started (see `ingest`)."""
        try:
            return await self._load_claimed(claimed, opened)
        finally:
            if opened is not None:
                opened.close()

    async def _load_claimed(self, claimed: Claimed, opened: _Opened | None) -> IngestOutcome:
        ref, file_id = claimed.ref, claimed.file_id
        try:
            counts, warning = await self._load(file_id, ref, opened)
        except _Permanent as exc:
            outcome = await self._record_failure(file_id, exc)
        except _LeaseLost:
            outcome = IngestOutcome("busy", file_id, retry_after=float(self._settings.ingest_lease_seconds))
        except (Transient, aiohttp.ClientError, BotoCoreError) as exc:
            await self._released(file_id, exc)
        except DATABASE_ERRORS as exc:
            if db.is_transient(exc):
                await self._released(file_id, exc)  # raises Transient
            # The data broke a database rule (e.g. a value jsonb rejects): retrying will not help.
            outcome = await self._record_failure(
                file_id, _Permanent("load_error", f"the database refused the rows ({type(exc).__name__})")
            )
        except BaseException:
            await asyncio.shield(self._release(file_id))
            raise
        else:
            outcome = IngestOutcome("completed", file_id, counts=counts, error_code=warning)
        return self._observed(outcome, ref, claimed.started)

    async def _released(self, file_id: int, exc: Exception) -> NoReturn:
        """Give the claim back and raise Transient: the file is retried later (message backoff, /retry)."""
        FILES.labels("transient").inc()
        await self._release(file_id)
        if isinstance(exc, Transient):
            raise exc
        raise Transient(type(exc).__name__) from exc

    def _observed(self, outcome: IngestOutcome, ref: ObjectRef, started: float | None) -> IngestOutcome:
        FILES.labels(outcome.status).inc()
        if started is not None and outcome.status in ("completed", "failed", "skipped"):
            FILE_SECONDS.observe(time.perf_counter() - started)
            logger.info(
                "file %s",
                outcome.status,
                extra={
                    "bucket": ref.bucket,
                    "key": ref.key,
                    "file_id": outcome.file_id,
                    "error_code": outcome.error_code,
                    "rows_read": outcome.counts.rows_read,
                    "rows_inserted": outcome.counts.rows_inserted,
                },
            )
        return outcome

    async def _with_version(self, ref: ObjectRef) -> ObjectRef:
        """The ref with its version id, when the bucket keeps versions and the event did not say.

        Every source must name an object version the same way, or one version could be logged twice
        (an S3 event without a versionId, and the service's own notification with one).
        """
        if ref.version_id is not None:
            return ref
        s3 = self._s3_for(ref.bucket)
        try:
            head = await s3.head_object(Bucket=ref.bucket, Key=ref.key)
            etag = head["ETag"].strip('"')
            if ref.etag in (None, etag):
                return _versioned(ref, head.get("VersionId"), etag)
            # Replaced since the event: find the version the event was about among the older ones.
            listing = await s3.list_object_versions(Bucket=ref.bucket, Prefix=ref.key)
        except ClientError as exc:
            failure = _s3_failure(exc)
            if isinstance(failure, Transient):
                raise failure from None
            return ref  # the read that follows records why (missing, denied...)
        except (BotoCoreError, aiohttp.ClientError) as exc:
            raise Transient(type(exc).__name__) from exc
        for version in listing.get("Versions", []):
            if version["Key"] == ref.key and version["ETag"].strip('"') == ref.etag:
                return _versioned(ref, version.get("VersionId"), ref.etag)
        return ref

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

    async def _load(self, file_id: int, ref: ObjectRef, opened: _Opened | None) -> tuple[Counts, str | None]:
        settings = self._settings
        try:
            file_format = detect_format(ref.key)
        except ParseError as exc:
            raise _Permanent(exc.code, exc.message, status="skipped") from None
        async with (
            self._pool.acquire() as conn,
            self._lease_kept(file_id),
            conn.transaction(),
        ):
            response = self._checked(opened.response if opened else await self._get(ref))
            body, size = response["Body"], int(response["ContentLength"])
            async with body:
                try:
                    stream = RecordStream(
                        body if self._progress is None else Counted(body, size, self._progress),
                        file_format,
                        max_bytes=settings.ingest_max_file_bytes,
                        max_decompressed_bytes=settings.ingest_max_decompressed_bytes,
                        max_records=settings.ingest_max_records,
                        max_record_bytes=settings.ingest_max_record_bytes,
                    )
                    kind = self._user_file_kind(ref)
                    if kind is None:
                        tally = await self._load_rows(conn, stream, file_id, ref)
                    else:
                        obj = AuditedObject(ref.bucket, ref.key, ref.version_id or ref.etag)
                        changes = _UserChanges(kind, file_id, obj, response["LastModified"])
                        tally = await self._load_users(conn, stream, changes)
                except ParseError as exc:
                    raise _Permanent(exc.code, exc.message) from None
            await repository.set_details(
                conn, file_id, sha256=stream.sha256, size=size, content_type=response.get("ContentType")
            )
            warning = "; ".join(tally.errors) if tally.errors else None
            if not await repository.complete(conn, file_id, WORKER_ID, tally.counts(), error_message=warning):
                raise _LeaseLost
        ROWS_LOADED.labels("users" if kind else "processed_data").inc(tally.changed)
        return tally.counts(), ("rows_rejected" if warning else None)

    async def _get(self, ref: ObjectRef) -> Any:
        params: dict[str, str] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version_id:
            params["VersionId"] = ref.version_id
        elif ref.etag:
            params["IfMatch"] = f'"{ref.etag}"'
        try:
            return await self._s3_for(ref.bucket).get_object(**params)
        except ClientError as exc:
            raise _s3_failure(exc) from None

    def _checked(self, response: Any) -> Any:
        size = int(response["ContentLength"])
        if size > self._settings.ingest_max_file_bytes:
            response["Body"].close()
            raise _Permanent(
                "file_too_large",
                f"{size} bytes is over INGEST_MAX_FILE_BYTES ({self._settings.ingest_max_file_bytes})",
            )
        return response

    def _user_file_kind(self, ref: ObjectRef) -> RecordType | None:
        """The record type a file's records are upserted as: only for users/{type}/ keys of the service's
        own bucket, never of a client's (cross-account) or an event-named bucket."""
        if ref.bucket != self._settings.s3_bucket_name:
            return None
        return record_type_of(ref.key)

    async def _load_rows(
        self, conn: Connection, stream: RecordStream, file_id: int, ref: ObjectRef
    ) -> _Tally:
        """Stream the records into processed_data in chunks, overlapping the two halves of the work.

        While PostgreSQL inserts chunk k (INSERT ... SELECT ... ON CONFLICT, the expensive part: index
        upkeep), this process streams and parses chunk k+1 from S3; then chunk k+1 is COPY'd into the
        emptied staging table and its INSERT starts. Everything stays in the file's one transaction.
        """
        tally = _Tally()
        policy = self._settings.ingest_error_policy
        inserting: asyncio.Task[int] | None = None

        async def flush(chunk: list[tuple[int, str, bytes]]) -> asyncio.Task[int]:
            if inserting is not None:
                tally.changed += await inserting
            await repository.copy_to_staging(conn, chunk, replace=inserting is not None)
            task = asyncio.create_task(
                repository.insert_from_staging(conn, file_id=file_id, bucket=ref.bucket, key=ref.key)
            )
            # Let the task send its INSERT now: the parser may not yield again until the next chunk
            # is parsed (the S3 stream's data is often already buffered), and then nothing overlaps.
            await asyncio.sleep(0)
            return task

        await repository.create_staging(conn)
        chunk: list[tuple[int, str, bytes]] = []
        try:
            async for batch in stream.batches():
                for record in batch:
                    tally.read += 1
                    reason = _record_problem(record)
                    if reason is not None:
                        tally.reject(reason, policy)
                        continue
                    chunk.append((record.index, record.row_hash, record.canonical))  # type: ignore[arg-type]
                if len(chunk) >= LOAD_CHUNK_ROWS:
                    inserting = await flush(chunk)
                    chunk = []
            if chunk or inserting is None:
                inserting = await flush(chunk)
            tally.changed += await inserting
            inserting = None
        finally:
            if inserting is not None:  # failing mid-file: let the connection finish before the rollback
                with contextlib.suppress(Exception):
                    await inserting
        return tally

    async def _load_users(self, conn: Connection, stream: RecordStream, changes: "_UserChanges") -> _Tally:
        """Upsert each valid record, unless the row holds newer data than the record (see `as_of`)."""
        tally = _Tally()
        policy = self._settings.ingest_error_policy
        model = FILE_RECORD_MODELS[changes.kind]
        stale = 0
        async for batch in stream.batches():
            for record in batch:
                tally.read += 1
                if record.error is not None or record.data is None:
                    tally.reject(record.error or f"line {record.line}: not a record", policy)
                    continue
                try:
                    user = model.model_validate(record.data)
                except ValidationError as exc:
                    tally.reject(_validation_reason(record.line, exc), policy)
                    continue
                values = user.model_dump(exclude={"user_id", "updated_at"})
                record_time = as_of(getattr(user, "updated_at", None), changes.last_modified)
                action = await users_repository.upsert_as_of(
                    conn, changes.kind, user.user_id, values, record_time
                )
                if action == "stale":
                    stale += 1
                if action in ("create", "update"):
                    tally.changed += 1
                    await changes.audit(conn, user.user_id, AuditAction(action))
        if stale:
            # Counted as skipped; no values logged, only how many were older than what is stored.
            logger.info("older user records left alone", extra={"file_id": changes.file_id, "records": stale})
        return tally

    @contextlib.asynccontextmanager
    async def _lease_kept(self, file_id: int) -> AsyncIterator[None]:
        """Renews our lease while a long file loads, so no one else takes it over."""
        lease = self._settings.ingest_lease_seconds

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease / 3)
                with contextlib.suppress(*DATABASE_ERRORS):  # the next turn tries again
                    async with self._pool.acquire() as conn:
                        if not await repository.renew_lease(conn, file_id, WORKER_ID, lease):
                            return

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _record_failure(self, file_id: int, exc: _Permanent) -> IngestOutcome:
        try:
            async with self._pool.acquire() as conn:
                await repository.finish_without_load(
                    conn,
                    file_id,
                    WORKER_ID,
                    status=exc.status,
                    error_code=exc.code,
                    error_message=exc.message,
                    counts=exc.counts,
                )
        except DATABASE_ERRORS as db_exc:
            if not db.is_transient(db_exc):
                raise
            raise Transient(f"database: {type(db_exc).__name__}") from db_exc
        status: Status = "skipped" if exc.status == "skipped" else "failed"
        return IngestOutcome(status, file_id, error_code=exc.code)

    async def _release(self, file_id: int) -> None:
        # Best effort: if the database is down the lease simply expires.
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self._pool.acquire() as conn:
                await repository.release(conn, file_id, WORKER_ID)


@dataclass(frozen=True, slots=True)
class _UserChanges:
    """Where a users/{type}/ file's records come from: what their order and audit rows need."""

    kind: RecordType
    file_id: int
    obj: AuditedObject
    last_modified: datetime  # when S3 stored the object version: no record in it is newer

    async def audit(self, conn: Connection, user_id: str, action: AuditAction) -> None:
        if self.kind in AUDITED:
            await audit.record(
                conn,
                actor="ingestion",
                action=action,
                record_type=self.kind.value,
                user_id=user_id,
                request_id=f"file:{self.file_id}",
                obj=self.obj,
            )


def _versioned(ref: ObjectRef, version_id: str | None, etag: str | None) -> ObjectRef:
    # An unversioned bucket reports the version id "null": the ETag then names the object.
    version = version_id if version_id and version_id != "null" else None
    return ObjectRef(ref.bucket, ref.key, version, etag, ref.size)


def _record_problem(record: Record) -> str | None:
    if record.error is not None:
        return record.error
    if record.canonical is None or JSONB_NUL in record.canonical:
        return f"line {record.line}: contains U+0000, which PostgreSQL's jsonb cannot store"
    return None


@dataclass(slots=True)
class DryRun:
    """What ingesting a file would do, without writing anything."""

    records: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    sha256: str = ""


async def dry_run(source: Any, key: str, settings: Settings) -> DryRun:
    """Parse and validate a file as ingestion would (same parser, schemas and rules); raises ParseError."""
    stream = RecordStream(
        source,
        detect_format(key),
        max_bytes=settings.ingest_max_file_bytes,
        max_decompressed_bytes=settings.ingest_max_decompressed_bytes,
        max_records=settings.ingest_max_records,
        max_record_bytes=settings.ingest_max_record_bytes,
    )
    kind = record_type_of(key)
    result = DryRun()
    async for batch in stream.batches():
        for record in batch:
            result.records += 1
            reason = _record_problem(record)
            if reason is None and kind is not None:
                try:
                    FILE_RECORD_MODELS[kind].model_validate(record.data)
                except ValidationError as exc:
                    reason = _validation_reason(record.line, exc)
            if reason is not None:
                result.rejected += 1
                if len(result.errors) < MAX_REPORTED_ERRORS:
                    result.errors.append(reason)
    result.sha256 = stream.sha256
    return result
