"""HTTP routes for operating ingestion: the processing log, on-demand ingest, retry, redrive, report."""

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from app.core.db import REQUEST_WAIT_SECONDS
from app.core.deps import AppSettings, Aws, Db, Tx
from app.core.errors import NotFound, ServiceUnavailable, problem_responses
from app.core.http import JsonBody
from app.core.security import Principal, requires
from app.ingestion import operations, repository
from app.ingestion.consumer import find_dead_letter_queue
from app.ingestion.deps import IngestorDep, Loads
from app.ingestion.schemas import (
    DailyReport,
    FileDetail,
    FilePage,
    FileRow,
    FileStatus,
    IngestAccepted,
    IngestRequest,
    LakeExport,
    RedriveResult,
    RuleCountRead,
    SourceCheckRead,
)
from app.lake import repository as lake_repository
from app.sources.router import SourceName

router = APIRouter(prefix="/ingestion", tags=["ingestion"], responses=problem_responses(401, 403))

Reader = Annotated[Principal, requires("ingestion:read")]
Writer = Annotated[Principal, requires("ingestion:write")]
FileId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_REDRIVE = 1000  # per call, so one request stays short; call again for more


@router.get(
    "/files",
    response_model=FilePage,
    summary="The processing log, newest first",
    responses=problem_responses(422),
)
async def list_files(
    _: Reader,
    db: Db,
    status: FileStatus | None = None,
    # PostgreSQL text cannot hold U+0000, so no stored key has it: refused rather than a driver error.
    key_prefix: Annotated[str | None, Query(min_length=1, max_length=1024, pattern=r"^[^\x00]+$")] = None,
    since: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FilePage:
    after = operations.decode_cursor(cursor) if cursor else None
    async with db.acquire(REQUEST_WAIT_SECONDS) as conn:
        rows = await repository.list_files(
            conn, status=status, key_prefix=key_prefix, since=since, after=after, limit=limit + 1
        )
    page, more = rows[:limit], len(rows) > limit
    return FilePage(items=page, next_cursor=operations.encode_cursor(page[-1]) if more else None)


@router.get(
    "/files/{file_id}",
    response_model=FileDetail,
    summary="One file, with its export to the lake",
    responses=problem_responses(404, 422),
)
async def get_file(_: Reader, file_id: FileId, db: Db) -> FileDetail:
    async with db.acquire(REQUEST_WAIT_SECONDS) as conn:
        row = await repository.get_file(conn, file_id)
        export = await lake_repository.status(conn, file_id) if row is not None else None
    if row is None:
        raise NotFound(f"No file with id {file_id}.")
    detail = FileDetail.model_validate(row.model_dump())
    if export is not None:
        detail.lake_export = LakeExport(
            status="exported" if export.exported_at else "pending",
            table=export.lake_table,
            queued_at=export.created_at,
            exported_at=export.exported_at,
            snapshot_id=export.snapshot_id,
            rows_exported=export.rows_exported,
            attempts=export.attempts,
            last_error=export.last_error,
        )
    return detail


@router.post(
    "/files",
    status_code=202,
    response_model=IngestAccepted,
    summary="Ingest an object now (trigger `api`); same claim and idempotency as the consumer",
    description="429 with Retry-After while this replica already loads INGEST_MAX_API_LOADS files.",
    responses=problem_responses(400, 413, 415, 422, 429, 503),
)
async def ingest_file(
    _: Writer, _json: JsonBody, body: IngestRequest, loads: Loads, settings: AppSettings
) -> IngestAccepted:
    return await operations.ingest_now(loads, body.bucket or settings.s3_bucket_name, body.key)


@router.post(
    "/files/{file_id}/retry",
    status_code=202,
    response_model=IngestAccepted,
    summary="Re-run a failed file, or a pending one (left by a transient failure or a shutdown)",
    responses=problem_responses(404, 409, 422, 429, 503),
)
async def retry_file(_: Writer, file_id: FileId, db: Db, loads: Loads) -> IngestAccepted:
    return await operations.retry(db, loads, file_id)


@router.post(
    "/dlq/redrive",
    response_model=RedriveResult,
    summary="Move dead-lettered messages back to the source queue",
    responses=problem_responses(422, 503),
)
async def redrive(
    _: Writer, aws: Aws, settings: AppSettings, limit: Annotated[int, Query(ge=1, le=MAX_REDRIVE)] = 100
) -> RedriveResult:
    source = str(settings.sqs_queue_url)
    dlq = await find_dead_letter_queue(aws.sqs, source)
    if dlq is None:
        raise ServiceUnavailable("The queue has no dead-letter queue (no RedrivePolicy).")
    return await operations.redrive(aws.sqs, source, dlq, limit)


@router.get(
    "/report", response_model=DailyReport, summary="Daily summary (UTC)", responses=problem_responses(422)
)
async def report(_: Reader, conn: Tx, day: Annotated[date | None, Query(alias="date")] = None) -> DailyReport:
    return await repository.daily_report(conn, day or datetime.now(UTC).date())


# The two routes read their body themselves (a file's bytes; a JSON array loaded as a file would be), so
# the OpenAPI document (and Swagger UI's "Try it out") is told what it may be.
_RECORDS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object"}, "description": "the records"}
            }
        },
    }
}
_SAMPLE_BODY = {
    "requestBody": {
        "required": False,
        "description": "a sample file as the source reads it (gzip too); leave it out to check `key`",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9._:-]{1,200}$",
        description="the same key answers the first result; letters, digits and ._:- only",
    ),
]


@router.post(
    "/sources/{name}/records",
    tags=["sources"],
    status_code=201,
    response_model=FileRow,
    summary="Load a JSON array of records into a source, exactly once per Idempotency-Key",
    description="Validated and loaded as a file of the source would be (types, rules, on_error, key). "
    "201: loaded now; 200: the answer of an earlier request with the same key and body; 409: the key was "
    "used with another body, or that request is still running; 422: the records were rejected; 429: the "
    "tenant's max_in_flight loads are running (send it again with the same key).",
    responses=problem_responses(400, 404, 409, 413, 415, 422, 429, 503),
    openapi_extra=_RECORDS_BODY,
)
async def post_records(
    _: Writer,
    _json: JsonBody,
    name: SourceName,
    idempotency_key: IdempotencyKey,
    request: Request,
    response: Response,
    db: Db,
    ingestor: IngestorDep,
    loads: Loads,
) -> FileRow:
    body = await request.body()
    with loads.place():  # a load in this request: one of the replica's INGEST_MAX_API_LOADS, or 429
        row, loaded_now = await operations.post_records(db, ingestor, name, idempotency_key, body)
    if not loaded_now:
        response.status_code = 200
    return row


@router.post(
    "/sources/{name}/validate",
    tags=["sources"],
    response_model=SourceCheckRead,
    summary="Dry-run a sample (the body) or one of the source's objects (`key`) against the source",
    description="Rows accepted and rejected per rule, with the first offending line numbers; writes nothing. "
    "The body is the file's bytes as the source reads them (gzip too), up to MAX_REQUEST_BODY_BYTES.",
    responses=problem_responses(400, 404, 413, 422, 429, 503),
    openapi_extra=_SAMPLE_BODY,
)
async def validate_source(
    _: Reader,
    name: SourceName,
    request: Request,
    db: Db,
    ingestor: IngestorDep,
    loads: Loads,
    settings: AppSettings,
    key: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
) -> SourceCheckRead:
    sample = await request.body()
    # Reading a whole object (up to INGEST_MAX_FILE_BYTES) takes a load's place: at most
    # INGEST_MAX_API_LOADS at once on this replica, 429 beyond.
    with loads.place():
        check = await operations.validate_sample(db, ingestor, settings, name, sample=sample, key=key)
    return SourceCheckRead(
        source=check.source,
        version=check.version,
        rows_read=check.rows_read,
        rows_accepted=check.rows_accepted,
        rows_rejected=check.rows_rejected,
        rejected_by_rule=[
            RuleCountRead(rule=count.rule, rows=count.rows, first_lines=count.first_lines)
            for count in check.rejected_by_rule.values()
        ],
        file_problems=check.file_problems,
        error=check.error,
    )
