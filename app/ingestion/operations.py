"""The API's operations on ingestion (behind /ingestion and the CLI): on-demand ingest and retry of files,
the loads they start, DLQ redrive, the processing log's cursors."""

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from app.core.config import IngestSettings
from app.core.db import REQUEST_WAIT_SECONDS, Database
from app.core.errors import Conflict, DomainError, NotFound
from app.files.keys import InvalidKey, validate_key
from app.ingestion import repository
from app.ingestion.claims import Claimed
from app.ingestion.dry_run import SourceCheck, check_source_file
from app.ingestion.envelopes import ObjectRef
from app.ingestion.ingestor import Ingestor, posted_records_ref
from app.ingestion.outcomes import IngestOutcome, PermanentFailure, Transient
from app.ingestion.schemas import FileRow, IngestAccepted, RedriveResult
from app.ingestion.source import Opened
from app.messages import DEAD_LETTER_ATTRIBUTES
from app.sources import repository as sources_repository
from app.sources.repository import StoredSource
from app.sources.values import compile_source

logger = logging.getLogger(__name__)

SQS_MAX_BATCH = 10  # API limit for ReceiveMessage, SendMessageBatch and DeleteMessageBatch
REDRIVE_VISIBILITY_SECONDS = 60  # a redrive that dies mid-way leaves the rest hidden this long, then back
MAX_FILE_ID = 2**63 - 1  # file ids are bigint
LOADS_FULL_RETRY_AFTER_SECONDS = 10  # what a 429 tells clients: long enough for a small file to load


class LoadsFull(DomainError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    slug = "too-many-loads"
    retry_after_seconds = LOADS_FULL_RETRY_AFTER_SECONDS

    def __init__(self) -> None:
        super().__init__("As many files as this replica loads at once are loading; retry shortly.")


class InvalidCursor(DomainError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "invalid-cursor"

    def __init__(self) -> None:
        super().__init__("The cursor is not one this API returned.", field="cursor", location="query")


def encode_cursor(row: FileRow) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a cursor names; InvalidCursor (422) for anything encode_cursor cannot have made,
    including ids beyond bigint, which would otherwise reach the database."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, file_id = raw.split("|")
        when, number = datetime.fromisoformat(created), int(file_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidCursor from None
    if when.tzinfo is None or not 1 <= number <= MAX_FILE_ID:
        raise InvalidCursor
    return when, number


class BackgroundLoads:
    """Loads started by the API and the SNS webhook: at most `limit` at once on this replica (LoadsFull
    beyond), each holding a pooled connection; strong references, failures logged, cancelled (and their
    claims released) at shutdown. The consumer has its own bound, SQS_MAX_IN_FLIGHT."""

    def __init__(self, ingestor: Ingestor, limit: int) -> None:
        self._ingestor = ingestor
        self._limit = limit
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        """One of the `limit` places, for as long as the block runs; LoadsFull when none is free."""
        if self._busy >= self._limit:
            raise LoadsFull
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    async def claim_and_start(self, ref: ObjectRef, *, resolve: bool = True) -> IngestAccepted:
        """Claim the object version for trigger `api` and load it in the background, in a place taken
        before the claim (so a full replica refuses without touching the processing log)."""
        with self.place():
            claimed = await self._ingestor.claim(ref, "api", resolve=resolve)
            if isinstance(claimed, IngestOutcome):
                return IngestAccepted(file_id=claimed.file_id, status=claimed.status)
            self._busy += 1  # handed over to the load's task, given back when it is done
        task = asyncio.create_task(self._run(claimed))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return IngestAccepted(file_id=claimed.file_id, status="accepted")

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._busy -= 1

    async def _run(self, claimed: Claimed) -> None:
        try:
            outcome = await self._ingestor.load(claimed)
            # Its tenant's slots are all taken: the file waits here, in this load's place, until one is free.
            while outcome.status == "throttled":
                await asyncio.sleep(outcome.retry_after or 1.0)
                again = await self._ingestor.claim(claimed.ref, "api", resolve=False)
                outcome = again if isinstance(again, IngestOutcome) else await self._ingestor.load(again)
        except Transient as exc:
            # The claim was released (`pending`): POST /ingestion/files/{id}/retry or a later event takes it.
            logger.warning(
                "api ingest hit a transient failure", extra={"file_id": claimed.file_id, "reason": str(exc)}
            )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def ingest_now(loads: BackgroundLoads, bucket: str, key: str) -> IngestAccepted:
    # A Transient failure (database or S3 down) is a BackingServiceDown: the client gets a 503.
    return await loads.claim_and_start(ObjectRef(bucket, validate_key(key, "body"), None, None, None))


async def retry(database: Database, loads: BackgroundLoads, file_id: int) -> IngestAccepted:
    """Load a `failed` file again, a `pending` one (released by a transient failure or a shutdown), or a
    `processing` one whose worker died: either may have no message left to bring it back."""
    async with database.acquire(REQUEST_WAIT_SECONDS) as conn:
        reopened = await repository.reopen_for_retry(conn, file_id)
        if reopened is None:
            existing = await repository.get_file(conn, file_id)
            if existing is None:
                raise NotFound(f"No file with id {file_id}.")
            raise Conflict(
                f"File {file_id} is {existing.status}; only failed or pending files, or files whose "
                "worker died while loading them, can be retried."
            )
    ref = ObjectRef(reopened.bucket, reopened.key, reopened.version_id, reopened.etag, reopened.size_bytes)
    return await loads.claim_and_start(ref, resolve=False)


async def redrive(
    sqs: Any,
    source_url: str,
    dlq_url: str,
    limit: int,
    *,
    visibility_seconds: int = REDRIVE_VISIBILITY_SECONDS,
    on_batch: Callable[[int], None] | None = None,
) -> RedriveResult:
    """Move up to `limit` messages from the DLQ back to the source queue.

    Each batch is sent before it is deleted, so a call that dies half-way duplicates messages at most
    (harmless: ingestion is idempotent) and never loses one: the batch it held reappears in the DLQ
    after `visibility_seconds`. `on_batch(n)` is told of each batch handled (the CLI's progress).
    """
    moved = failed = 0
    while moved + failed < limit:
        response = await sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(SQS_MAX_BATCH, limit - moved - failed),
            WaitTimeSeconds=0,
            VisibilityTimeout=visibility_seconds,
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        entries = [
            {
                "Id": str(position),
                "MessageBody": message["Body"],
                "MessageAttributes": {
                    name: {
                        key: value for key, value in attribute.items() if key in ("DataType", "StringValue")
                    }
                    for name, attribute in message.get("MessageAttributes", {}).items()
                    if name not in DEAD_LETTER_ATTRIBUTES
                },
            }
            for position, message in enumerate(messages)
        ]
        sent = await sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
        succeeded = [messages[int(entry["Id"])] for entry in sent.get("Successful", [])]
        failed += len(sent.get("Failed", []))
        if succeeded:
            await sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[
                    {"Id": str(position), "ReceiptHandle": message["ReceiptHandle"]}
                    for position, message in enumerate(succeeded)
                ],
            )
        moved += len(succeeded)
        if on_batch is not None:
            on_batch(len(messages))
    return RedriveResult(moved=moved, failed=failed)


class _Sample:
    """A request's body as the parsers read a file: a ByteSource (and, as an S3 body is, a context)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._at + n
        chunk = bytes(self._data[self._at : end])
        self._at += len(chunk)
        return chunk

    def close(self) -> None:
        self._data.release()

    async def __aenter__(self) -> "_Sample":
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()


async def source_in_force(db: Database, name: str) -> StoredSource:
    async with db.acquire(REQUEST_WAIT_SECONDS) as conn:
        stored = await sources_repository.get(conn, name)
    if stored is None:
        raise NotFound(f"No source named {name}.")
    return stored


async def validate_sample(
    db: Database, ingestor: Ingestor, settings: IngestSettings, name: str, *, sample: bytes, key: str | None
) -> SourceCheck:
    """Check a sample (the request's body) or an object of the source (`key`) against the source: rows
    accepted and rejected per rule; writes nothing."""
    stored = await source_in_force(db, name)
    if key is None:
        if not sample:
            raise DomainError("Send a sample file in the body, or name one of the source's objects in `key`.")
        return await check_source_file(_Sample(sample), compile_source(stored.spec), stored.version, settings)
    validate_key(key, "query")
    if not stored.spec.matches(key):
        raise InvalidKey(
            f"The key is not one of source {name}'s files (prefix {stored.spec.prefix!r}, glob "
            f"{stored.spec.glob!r}).",
            field="key",
            location="query",
        )
    return await check_object(ingestor, stored, stored.spec.bucket or "", key, settings)


async def check_object(
    ingestor: Ingestor, stored: StoredSource, bucket: str, key: str, settings: IngestSettings
) -> SourceCheck:
    """A dry run of one S3 object against the source, read as ingestion reads it (the bucket's client,
    the file limits). NotFound, or CannotRead with S3's reason."""
    try:
        opened = await ingestor.source.open(ObjectRef(bucket, key, None, None, None))
    except PermanentFailure as exc:
        if exc.code == "object_missing":
            raise NotFound(f"No object at key '{key}'.") from None
        raise CannotRead(f"{exc.code}: {exc.message}") from None
    async with opened.body:
        return await check_source_file(opened.body, compile_source(stored.spec), stored.version, settings)


class CannotRead(DomainError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "cannot-read-object"


class RecordsRejected(DomainError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "records-rejected"


class IdempotencyConflict(Conflict):
    pass


class TenantBusy(DomainError):
    status = HTTPStatus.TOO_MANY_REQUESTS
    slug = "tenant-busy"
    retry_after_seconds = 5


async def post_records(
    db: Database, ingestor: Ingestor, name: str, idempotency_key: str, body: bytes
) -> tuple[FileRow, bool]:
    """Load a JSON array of records into a source, through the file path (the same types, rules, policy,
    claim and processing log), exactly once per Idempotency-Key: (the log's row, whether it was loaded
    now). A request repeated with the same key answers the first result; with another body, 409."""
    stored = await source_in_force(db, name)
    digest = hashlib.sha256(body).hexdigest()
    ref = posted_records_ref(stored.spec.bucket or "", name, idempotency_key, len(body))
    claimed = await ingestor.claim(ref, "api", resolve=False)
    if isinstance(claimed, IngestOutcome):
        if claimed.status == "busy":
            raise IdempotencyConflict(
                "A request with this Idempotency-Key is being processed.",
                field="Idempotency-Key",
                location="header",
            )
        loaded_now = False
    else:
        async with db.acquire(
            REQUEST_WAIT_SECONDS
        ) as conn:  # kept even if the load fails: replays compare it
            await repository.set_details(
                conn, claimed.file_id, sha256=digest, size=len(body), content_type="application/json"
            )
        response = {
            "Body": _Sample(body),
            "ContentLength": len(body),
            "LastModified": datetime.now(UTC),  # records posted now are the newest data of their keys
            "ContentType": "application/json",
        }
        outcome = await ingestor.load(claimed, opened=Opened(ref, response))
        if outcome.status == "throttled":
            raise TenantBusy(
                f"Tenant {stored.spec.tenant} has {stored.spec.max_in_flight} loads running; send the "
                "request again with the same Idempotency-Key."
            )
        loaded_now = True
    async with db.acquire(REQUEST_WAIT_SECONDS) as conn:
        row = await repository.get_file(conn, claimed.file_id or 0)
    if row is None:
        raise NotFound(f"No file for Idempotency-Key {idempotency_key}.")
    if row.sha256 != digest:
        raise IdempotencyConflict(
            "This Idempotency-Key was used with another body.", field="Idempotency-Key", location="header"
        )
    if row.status == "failed":
        raise RecordsRejected(f"{row.error_code}: {row.error_message}")
    return row, loaded_now
