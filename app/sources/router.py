"""HTTP routes of sources: read them (ingestion:read), put and delete them (ingestion:admin)."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from app.core.db import REQUEST_WAIT_SECONDS
from app.core.deps import AppSettings, Db, Tx
from app.core.errors import NotFound, problem_responses
from app.core.http import JsonBody
from app.core.security import Principal, requires
from app.sources import repository, service
from app.sources.spec import NAME_PATTERN, SourceSpec
from app.sources.values import SourceError

router = APIRouter(prefix="/ingestion/sources", tags=["sources"], responses=problem_responses(401, 403))

Reader = Annotated[Principal, requires("ingestion:read")]
Admin = Annotated[Principal, requires("ingestion:admin")]
SourceName = Annotated[str, Path(pattern=NAME_PATTERN, description="the source's name")]


class SourceRead(BaseModel):
    name: str
    version: int
    updated_at: datetime
    spec: dict[str, Any] = Field(description="the source as applied (its bucket filled in)")


class AppliedRead(BaseModel):
    name: str
    version: int
    action: str = Field(description="created, changed or unchanged")
    ddl: list[str] = Field(description="the statements run on the source's table")


def _read(stored: repository.StoredSource) -> SourceRead:
    return SourceRead(
        name=stored.spec.name, version=stored.version, updated_at=stored.updated_at, spec=stored.spec.stored()
    )


@router.get("", response_model=list[SourceRead], summary="The sources in force, by name")
async def list_sources(_: Reader, db: Db) -> list[SourceRead]:
    async with db.acquire(REQUEST_WAIT_SECONDS) as conn:
        return [_read(stored) for stored in await repository.list_sources(conn)]


@router.get("/{name}", response_model=SourceRead, summary="One source", responses=problem_responses(404, 422))
async def get_source(_: Reader, name: SourceName, db: Db) -> SourceRead:
    async with db.acquire(REQUEST_WAIT_SECONDS) as conn:
        stored = await repository.get(conn, name)
    if stored is None:
        raise NotFound(f"No source named {name}.")
    return _read(stored)


@router.put(
    "/{name}",
    response_model=AppliedRead,
    summary="Create or change a source (its table is created or altered); idempotent",
    responses=problem_responses(400, 413, 415, 422, 503),
)
async def put_source(
    _: Admin, _json: JsonBody, name: SourceName, spec: SourceSpec, conn: Tx, settings: AppSettings
) -> AppliedRead:
    if spec.name != name:
        raise SourceError(f"the body names source {spec.name}, the path {name}", field="name")
    applied = await service.apply(conn, spec, default_bucket=settings.s3_bucket_name)
    return AppliedRead(name=applied.name, version=applied.version, action=applied.action, ddl=applied.ddl)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Stop routing files to a source (its table and rows stay)",
    responses=problem_responses(404, 422, 503),
)
async def delete_source(_: Admin, name: SourceName, conn: Tx) -> Response:
    if not await service.delete(conn, name):
        raise NotFound(f"No source named {name}.")
    return Response(status_code=204)
