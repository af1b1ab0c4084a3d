"""Ingest one object version exactly once: name the version, claim it, stream and parse it, land its records
and its `completed` status in one transaction, or record why not. Shared by the SQS consumer, the SNS
webhook, the API and the CLI."""

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import IO, NoReturn

from botocore.exceptions import ClientError
from prometheus_client import Counter, Histogram

from app.audit.repository import AuditedObject
from app.core import db
from app.core.config import IngestSettings
from app.core.db import DATABASE_ERRORS, Connection, Database
from app.ingestion import repository
from app.ingestion.claims import Claimed, Claims, transient_database
from app.ingestion.envelopes import ObjectRef
from app.ingestion.loaders import Tally
from app.ingestion.loaders.rows import load_rows
from app.ingestion.loaders.typed import (
    QUARANTINE_CONTENT_TYPE,
    TypedFile,
    csv_options,
    load_typed,
    observe_typed,
)
from app.ingestion.loaders.users import UserChanges, load_users
from app.ingestion.outcomes import IngestOutcome, LeaseLost, PermanentFailure, Throttled, Transient
from app.ingestion.parsers import (
    CsvOptions,
    FileFormat,
    ParseError,
    RecordStream,
    detect_format,
    record_stream,
)
from app.ingestion.repository import Counts
from app.ingestion.source import NETWORK_ERRORS, Counted, ObjectSource, Opened, Progress, S3ClientFor
from app.lake import repository as lake_repository
from app.sources import repository as sources_repository
from app.sources.repository import StoredSource
from app.sources.spec import QUARANTINE_PREFIX
from app.sources.values import compile_source
from app.users.files import record_type_of
from app.users.schemas import RecordType

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 5.0
# Where records posted to the API stand in the processing log (bucket: the source's; key: this prefix, the
# source's name and the request's Idempotency-Key; ETag: POSTED_RECORDS, which no S3 object has).
POSTED_PREFIX = "api-records/"
POSTED_RECORDS = "posted-records"
NOT_FROM_S3 = (QUARANTINE_PREFIX, POSTED_PREFIX)
# A throttled file is looked at again after this many seconds (jittered, so a tenant's waiting files do
# not all come back at once).
THROTTLE_RECHECK_SECONDS = (2.0, 6.0)

ROWS_LOADED = Counter("ingest_rows_loaded_total", "Rows newly stored by ingestion", ["target"])
FILES = Counter("ingest_files_total", "Files by outcome", ["outcome"])
FILE_SECONDS = Histogram(
    "ingest_file_duration_seconds",
    "Time to ingest one file, claim to commit",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)


@dataclass(frozen=True, slots=True)
class _Target:
    file_format: FileFormat
    csv: CsvOptions
    kind: RecordType | None = None  # a users/{type}/ file: typed user records
    typed: StoredSource | None = None  # a source's file: its typed table

    @property
    def label(self) -> str:
        """The `target` of ingest_rows_loaded_total."""
        if self.typed is not None:
            return f"source:{self.typed.spec.name}"
        return "users" if self.kind else "processed_data"


class Ingestor:
    def __init__(
        self,
        database: Database,
        s3_for: S3ClientFor,
        settings: IngestSettings,
        *,
        own_bucket: str,
        lake: bool = False,
    ) -> None:
        """`own_bucket`: S3_BUCKET_NAME, the only bucket whose users/{type}/ files are typed user records.
        `lake`: LAKE_WAREHOUSE is set; a file's new processed_data rows are queued for export in its load
        transaction."""
        self._db = database
        self._lake = lake
        self._settings = settings
        self._own_bucket = own_bucket
        self.source = ObjectSource(s3_for, max_file_bytes=settings.ingest_max_file_bytes)
        self.claims = Claims(database, settings.ingest_lease_seconds)

    async def probe(self, bucket: str) -> bool:
        """Whether the database and S3 answer: the consumer waits for this after transient failures."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self._db.ping()
                await self.source.answers(bucket)
        except (*DATABASE_ERRORS, ClientError, *NETWORK_ERRORS):
            return False
        return True

    async def ingest(
        self, ref: ObjectRef, trigger: str, *, progress: Progress | None = None
    ) -> IngestOutcome:
        """Claim the object version and load it; what the consumer, the webhook and the CLI do.
        `progress(bytes_read, file_size)` is called as the file streams in (the CLI's progress bar)."""
        opened = None
        if ref.version_id is None and ref.etag is not None and not self._excluded(ref.key):
            opened = await self.source.open_naming_version(ref)
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
        return await self.load(claimed, opened=opened, progress=progress)

    def _excluded(self, key: str) -> bool:
        """Keys never loaded from S3: INGEST_EXCLUDE_PREFIXES, quarantined rows, and the log's names of
        records posted to the API (no object in the bucket may pose as those)."""
        return key.startswith(NOT_FROM_S3) or any(
            key.startswith(prefix) for prefix in self._settings.ingest_exclude_prefixes
        )

    async def claim(self, ref: ObjectRef, trigger: str, *, resolve: bool = True) -> Claimed | IngestOutcome:
        """Take the object version in the processing log, or say why not (excluded, duplicate, busy).

        `resolve=False` keeps the ref's identity as it is (a retry must claim the very row it reopened).
        """
        if self._excluded(ref.key) and not is_posted_records(ref):
            return IngestOutcome("excluded")
        if resolve:
            ref = await self.source.with_version(ref)
        try:
            return await self.claims.claim(ref, trigger)
        except Transient:
            FILES.labels("transient").inc()
            raise

    async def load(
        self, claimed: Claimed, *, opened: Opened | None = None, progress: Progress | None = None
    ) -> IngestOutcome:
        """Load a claimed file and record how it ended; Transient leaves it `pending` for a retry. The
        claim ends here, whatever happens.

        `opened`: the GET of this version, already started (see `ingest`)."""
        try:
            return await self._load_claimed(claimed, opened, progress)
        finally:
            if opened is not None:
                opened.close()
            await asyncio.shield(claimed.session.close())

    async def _load_claimed(
        self, claimed: Claimed, opened: Opened | None, progress: Progress | None
    ) -> IngestOutcome:
        ref, file_id = claimed.ref, claimed.file_id
        try:
            counts, warning = await self._load(claimed, opened, progress)
        except PermanentFailure as exc:
            outcome = await self.claims.fail(claimed, exc)
        except LeaseLost:
            outcome = IngestOutcome("busy", file_id, retry_after=float(self._settings.ingest_lease_seconds))
        except Throttled:
            await self.claims.release(claimed, counted=False)
            outcome = IngestOutcome("throttled", file_id, retry_after=throttled_wait())
        except (Transient, *NETWORK_ERRORS) as exc:
            await self._released(claimed, exc)
        except DATABASE_ERRORS as exc:
            if db.is_transient(exc):
                await self._released(claimed, exc)
            # The data broke a database rule (e.g. a value jsonb rejects): retrying will not help.
            outcome = await self.claims.fail(
                claimed,
                PermanentFailure("load_error", f"the database refused the rows ({type(exc).__name__})"),
            )
        except BaseException:
            await asyncio.shield(self.claims.release(claimed))
            raise
        else:
            outcome = IngestOutcome("completed", file_id, counts=counts, error_code=warning)
        return self._observed(outcome, ref, claimed.started)

    async def _released(self, claimed: Claimed, exc: BaseException) -> NoReturn:
        """Give the claim back and raise Transient: the file is retried later (message backoff, /retry)."""
        FILES.labels("transient").inc()
        await self.claims.release(claimed)
        if isinstance(exc, Transient):
            raise exc
        raise (
            transient_database(exc) if isinstance(exc, DATABASE_ERRORS) else Transient(type(exc).__name__)
        ) from exc

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

    async def _load(
        self, claimed: Claimed, opened: Opened | None, progress: Progress | None
    ) -> tuple[Counts, str | None]:
        """The file's records and its `completed` status, in one transaction on the claim's connection."""
        settings = self._settings
        ref, file_id, conn = claimed.ref, claimed.file_id, claimed.session.conn
        target = await self._target(conn, ref)
        typed, kind = target.typed, target.kind
        if typed is not None:
            limit = typed.spec.max_in_flight
            if limit is not None and not await claimed.session.take_tenant_slot(typed.spec.tenant, limit):
                raise Throttled
            # Kept whatever happens next: the log says which version took the file.
            await sources_repository.set_file_source(conn, file_id, typed.spec.name, typed.version)
        async with conn.transaction(), self.claims.lease_kept(file_id):
            source = self.source.checked(opened) if opened else await self.source.open(ref)
            async with source.body:
                body = source.body if progress is None else Counted(source.body, source.size, progress)
                stream = record_stream(body, target.file_format, settings, csv=target.csv)
                policy = settings.ingest_error_policy
                try:
                    if typed is not None:
                        tally = await self._load_typed(conn, stream, typed, file_id, source)
                    elif kind is None:
                        tally = await load_rows(conn, stream, file_id, ref, policy)
                        if self._lake and tally.changed:
                            await lake_repository.enqueue(conn, file_id, lake_repository.PROCESSED_DATA)
                    else:
                        obj = AuditedObject(ref.bucket, ref.key, ref.version_id or ref.etag)
                        changes = UserChanges(kind, file_id, obj, source.last_modified)
                        tally = await load_users(conn, stream, changes, policy)
                except ParseError as exc:
                    raise PermanentFailure(exc.code, exc.message) from None
            await repository.set_details(
                conn, file_id, sha256=stream.sha256, size=source.size, content_type=source.content_type
            )
            warning = _warning(tally)
            if not await self.claims.complete(claimed, tally.counts(), warning):
                raise LeaseLost
        ROWS_LOADED.labels(target.label).inc(tally.changed)
        return tally.counts(), ("rows_rejected" if warning else None)

    async def _load_typed(
        self, conn: Connection, stream: RecordStream, typed: StoredSource, file_id: int, source: Opened
    ) -> Tally:
        """A source's file into its typed table; the processing log counts its rejected rows per rule."""
        spec = typed.spec

        async def put_object(key: str, body: IO[bytes]) -> None:
            await self.source.put(source.ref.bucket, key, body, QUARANTINE_CONTENT_TYPE)

        file = TypedFile(file_id, source.last_modified, put_object)
        landed = await load_typed(conn, stream, compile_source(spec), file)
        await sources_repository.set_rejected_by_rule(conn, file_id, dict(landed.tally.by_rule))
        observe_typed(spec.name, landed)
        return landed.tally

    async def _target(self, conn: Connection, ref: ObjectRef) -> "_Target":
        """Where a file's records go and how it is read: records posted for a source; a users/{type}/ file
        of the service's bucket; a file of a source (longest prefix); else processed_data."""
        if is_posted_records(ref):
            typed = await sources_repository.get(conn, posted_source(ref))
            if typed is None:
                raise PermanentFailure("source_missing", "the source was deleted before its records loaded")
            return _Target(FileFormat.JSON, CsvOptions(), typed=typed)
        kind = self._user_file_kind(ref)
        typed = None if kind else await sources_repository.match(conn, ref.bucket, ref.key)
        if typed is not None:
            return _Target(FileFormat(typed.spec.format), csv_options(typed.spec), typed=typed)
        try:
            return _Target(detect_format(ref.key), CsvOptions(), kind=kind)
        except ParseError as exc:
            raise PermanentFailure(exc.code, exc.message, status="skipped") from None

    def _user_file_kind(self, ref: ObjectRef) -> RecordType | None:
        """The record type a file's records are upserted as: only for users/{type}/ keys of the service's
        own bucket, never of a client's (cross-account) or an event-named bucket."""
        if ref.bucket != self._own_bucket:
            return None
        return record_type_of(ref.key)


def posted_records_ref(bucket: str, source: str, idempotency_key: str, size: int) -> ObjectRef:
    return ObjectRef(bucket, f"{POSTED_PREFIX}{source}/{idempotency_key}", None, POSTED_RECORDS, size)


def is_posted_records(ref: ObjectRef) -> bool:
    return ref.key.startswith(POSTED_PREFIX) and ref.etag == POSTED_RECORDS and ref.version_id is None


def posted_source(ref: ObjectRef) -> str:
    return ref.key.removeprefix(POSTED_PREFIX).split("/", 1)[0]


def throttled_wait() -> float:
    return random.uniform(*THROTTLE_RECHECK_SECONDS)  # noqa: S311  (jitter, not a secret)


def _warning(tally: Tally) -> str | None:
    """The first reasons records were rejected (under skip_rows), for the processing log."""
    return "; ".join(tally.errors) if tally.errors else None
