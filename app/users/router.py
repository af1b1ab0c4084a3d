"""HTTP routes for user records: one set of create/read/update/delete routes per record type."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel

from app.core import deps
from app.core.db import connection, transaction
from app.core.errors import problem_responses
from app.core.http import JsonBytes, require_json
from app.core.security import Principal, RequireScope, ScopeFirstRoute
from app.users import service
from app.users.schemas import (
    AUDITED,
    USER_ID_PATTERN,
    FinancialCreate,
    FinancialRead,
    FinancialUpdate,
    HealthCreate,
    HealthRead,
    HealthUpdate,
    PersonalCreate,
    PersonalRead,
    PersonalUpdate,
    RecordType,
    SendRequest,
    SendResponse,
    UserFiles,
    UserRecords,
)

router = APIRouter(
    prefix="/users", tags=["users"], responses=problem_responses(401, 403), route_class=ScopeFirstRoute
)

UserIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=USER_ID_PATTERN,
        description="1-128 of A-Z a-z 0-9 . _ -",
    ),
]
Reader = Annotated[Principal, Depends(RequireScope("users:read"))]
Writer = Annotated[Principal, Depends(RequireScope("users:write"))]


def _add_record_routes(
    kind: RecordType,
    create_model: type[BaseModel],
    update_model: type[BaseModel],
    read_model: type[BaseModel],
) -> None:
    @router.post(
        f"/{kind}",
        status_code=201,
        response_model=read_model,
        name=f"create_{kind}",
        summary=f"Create a user's {kind} record",
        dependencies=[Depends(require_json)],
        responses=problem_responses(400, 409, 413, 415, 422),
    )
    async def create(body: create_model, request: Request, principal: Writer) -> Any:  # type: ignore[valid-type]
        async with transaction(deps.pool(request)) as conn:
            return await service.create(conn, principal, kind, body)

    # An audited read and its audit row commit together; an unaudited one is a single SELECT.
    read_connection = transaction if kind in AUDITED else connection

    @router.get(
        f"/{{user_id}}/{kind}",
        response_model=read_model,
        name=f"get_{kind}",
        summary=f"Get a user's {kind} record",
        responses=problem_responses(404, 422),
    )
    async def read(user_id: UserIdPath, request: Request, principal: Reader) -> Any:
        async with read_connection(deps.pool(request)) as conn:
            return await service.get(conn, principal, kind, user_id)

    @router.patch(
        f"/{{user_id}}/{kind}",
        response_model=read_model,
        name=f"update_{kind}",
        summary=f"Change the fields sent of a user's {kind} record",
        dependencies=[Depends(require_json)],
        responses=problem_responses(400, 404, 413, 415, 422),
    )
    async def update(
        user_id: UserIdPath,
        body: update_model,  # type: ignore[valid-type]
        request: Request,
        principal: Writer,
    ) -> Any:
        async with transaction(deps.pool(request)) as conn:
            return await service.update(conn, principal, kind, user_id, body.changes())

    @router.delete(
        f"/{{user_id}}/{kind}",
        status_code=204,
        name=f"delete_{kind}",
        summary=f"Delete a user's {kind} record",
        responses=problem_responses(404, 422),
    )
    async def delete(user_id: UserIdPath, request: Request, principal: Writer) -> Response:
        async with transaction(deps.pool(request)) as conn:
            await service.delete(conn, principal, kind, user_id)
        return Response(status_code=204)


def _add_file_route(kind: RecordType) -> None:
    @router.get(
        f"/{{user_id}}/s3/{kind}",
        name=f"get_{kind}_file",
        summary=f"Read users/{kind}/{{user_id}}.json from S3",
        response_class=JsonBytes,
        responses=problem_responses(404, 422, 502, 503),
    )
    async def read_file(user_id: UserIdPath, request: Request, principal: Reader) -> JsonBytes:
        settings = deps.settings(request)
        # S3 first, then the audit row in a short transaction: no connection is held while S3 answers.
        stored = await service.read_file(
            deps.aws(request), settings, deps.json_budget(request), kind, user_id
        )
        if kind in AUDITED:
            async with transaction(deps.pool(request)) as conn:
                await service.audit_file_reads(
                    conn, principal, settings.s3_bucket_name, user_id, {kind: stored}
                )
        return JsonBytes(stored.raw)


# The record routes first: they are the most requested, and Starlette tries routes in order.
_add_record_routes(RecordType.PERSONAL, PersonalCreate, PersonalUpdate, PersonalRead)
_add_record_routes(RecordType.FINANCIAL, FinancialCreate, FinancialUpdate, FinancialRead)
_add_record_routes(RecordType.HEALTH, HealthCreate, HealthUpdate, HealthRead)
for _kind in RecordType:
    _add_file_route(_kind)


@router.get(
    "/{user_id}/s3/all",
    response_model=UserFiles,
    summary="Read the user's three S3 files (null for a missing one)",
    responses=problem_responses(404, 422, 502, 503),
)
async def get_user_files(user_id: UserIdPath, request: Request, principal: Reader) -> JsonBytes:
    settings = deps.settings(request)
    found = await service.read_all_files(deps.aws(request), settings, deps.json_budget(request), user_id)
    async with transaction(deps.pool(request)) as conn:
        await service.audit_file_reads(conn, principal, settings.s3_bucket_name, user_id, found)
    # The files are JSON already (checked by the read): joined as they are, not parsed and dumped again.
    parts = (
        f'"{kind.value}":'.encode() + (stored.raw if stored else b"null") for kind, stored in found.items()
    )
    return JsonBytes(b"{" + b",".join(parts) + b"}")


@router.post(
    "/sqs/send",
    status_code=202,
    response_model=SendResponse,
    summary="Send the user's records from the database to SQS (one message per record type)",
    dependencies=[Depends(require_json)],
    responses=problem_responses(400, 404, 413, 415, 422, 503),
)
async def send_to_sqs(body: SendRequest, request: Request, principal: Writer) -> SendResponse:
    # Read (and audit) in one transaction, commit, then send: never announce what did not commit.
    async with transaction(deps.pool(request)) as conn:
        records = await service.read_for_sending(conn, principal, body.user_id, body.data_type)
    queue_url = str(deps.settings(request).sqs_queue_url)
    message_ids = await service.send_to_queue(deps.aws(request).sqs, queue_url, body.user_id, records)
    return SendResponse(user_id=body.user_id, message_ids=message_ids)


@router.get(
    "/{user_id}",
    response_model=UserRecords,
    summary="Get all of a user's records (null for a missing part)",
    responses=problem_responses(404, 422),
)
async def get_user(user_id: UserIdPath, request: Request, principal: Reader) -> UserRecords:
    async with transaction(deps.pool(request)) as conn:
        return await service.get_all(conn, principal, user_id)
