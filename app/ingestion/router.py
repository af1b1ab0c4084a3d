"""HTTP routes for operating ingestion: the processing log, on-demand ingest, retry, redrive, report."""

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from app.core import deps
from app.core.db import connection, transaction
from app.core.errors import NotFound, ServiceUnavailable, problem_responses
from app.core.http import require_json
from app.core.security import Principal, RequireScope, ScopeFirstRoute
from app.ingestion import repository, service
from app.ingestion.consumer import find_dead_letter_queue
from app.ingestion.schemas import (
    DailyReport,
    FilePage,
    FileRow,
    FileStatus,
    IngestAccepted,
    IngestRequest,
    RedriveResult,
)

router = APIRouter(
    prefix="/ingestion",
    tags=["ingestion"],
    responses=problem_responses(401, 403),
    route_class=ScopeFirstRoute,
)

Reader = Annotated[Principal, Depends(RequireScope("ingestion:read"))]
Writer = Annotated[Principal, Depends(RequireScope("ingestion:write"))]
FileId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_REDRIVE = 1000  # per call, so one request stays short; call again for more


@router.get(
    "/files",
    response_model=FilePage,
    summary="The processing log, newest first",
    responses=problem_responses(422),
)
async def list_files(
    request: Request,
    _: Reader,
    status: FileStatus | None = None,
    # PostgreSQL text cannot hold U+0000, so no stored key has it: refused rather than a driver error.
    key_prefix: Annotated[str | None, Query(min_length=1, max_length=1024, pattern=r"^[^\x00]+$")] = None,
    since: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FilePage:
    after = service.decode_cursor(cursor) if cursor else None
    async with connection(deps.pool(request)) as conn:
        rows = await repository.list_files(
            conn, status=status, key_prefix=key_prefix, since=since, after=after, limit=limit + 1
        )
    page, more = rows[:limit], len(rows) > limit
    return FilePage(items=page, next_cursor=service.encode_cursor(page[-1]) if more else None)


@router.get(
    "/files/{file_id}", response_model=FileRow, summary="One file", responses=problem_responses(404, 422)
)
async def get_file(file_id: FileId, request: Request, _: Reader) -> FileRow:
    async with connection(deps.pool(request)) as conn:
        row = await repository.get_file(conn, file_id)
    if row is None:
        raise NotFound(f"No file with id {file_id}.")
    return row


@router.post(
    "/files",
    status_code=202,
    response_model=IngestAccepted,
    summary="Ingest an object now (trigger `api`); same claim and idempotency as the consumer",
    description="429 with Retry-After while this replica already loads INGEST_MAX_API_LOADS files.",
    dependencies=[Depends(require_json)],
    responses=problem_responses(400, 413, 415, 422, 429, 503),
)
async def ingest_file(body: IngestRequest, request: Request, _: Writer) -> IngestAccepted:
    return await service.ingest_now(
        deps.background_loads(request), body.bucket or deps.settings(request).s3_bucket_name, body.key
    )


@router.post(
    "/files/{file_id}/retry",
    status_code=202,
    response_model=IngestAccepted,
    summary="Re-run a failed file, or a pending one (left by a transient failure or a shutdown)",
    responses=problem_responses(404, 409, 422, 429, 503),
)
async def retry_file(file_id: FileId, request: Request, _: Writer) -> IngestAccepted:
    return await service.retry(deps.pool(request), deps.background_loads(request), file_id)


@router.post(
    "/dlq/redrive",
    response_model=RedriveResult,
    summary="Move dead-lettered messages back to the source queue",
    responses=problem_responses(422, 503),
)
async def redrive(
    request: Request, _: Writer, limit: Annotated[int, Query(ge=1, le=MAX_REDRIVE)] = 100
) -> RedriveResult:
    source = str(deps.settings(request).sqs_queue_url)
    sqs = deps.aws(request).sqs
    dlq = await find_dead_letter_queue(sqs, source)
    if dlq is None:
        raise ServiceUnavailable("The queue has no dead-letter queue (no RedrivePolicy).")
    return await service.redrive(sqs, source, dlq, limit)


@router.get(
    "/report", response_model=DailyReport, summary="Daily summary (UTC)", responses=problem_responses(422)
)
async def report(
    request: Request, _: Reader, day: Annotated[date | None, Query(alias="date")] = None
) -> DailyReport:
    async with transaction(deps.pool(request)) as conn:
        return await repository.daily_report(conn, day or datetime.now(UTC).date())
