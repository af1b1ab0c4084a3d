"""HTTP routes for user records: one set of create/read/update/delete routes per record type."""

from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from app.core.db import REQUEST_WAIT_SECONDS
from app.core.deps import AppSettings, Aws, Db, Tx
from app.core.errors import problem_responses
from app.core.http import JsonBody, JsonBytes
from app.core.security import Principal, requires
from app.files.deps import JsonBudget
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
    RecordUpdate,
    SendRequest,
    SendResponse,
    UserFiles,
    UserRecords,
)

router = APIRouter(prefix="/users", tags=["users"], responses=problem_responses(401, 403))

UserIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=USER_ID_PATTERN,
        description="1-128 of A-Z a-z 0-9 . _ -",
    ),
]
Reader = Annotated[Principal, requires("users:read")]
Writer = Annotated[Principal, requires("users:write")]


def _add_record_routes(
    kind: RecordType,
    create_model: type[BaseModel],
    update_model: type[RecordUpdate],
    read_model: type[BaseModel],
) -> None:
    @router.post(
        f"/{kind}",
        status_code=201,
        response_model=read_model,
        name=f"create_{kind}",
        summary=f"Create a user's {kind} record",
        responses=problem_responses(400, 409, 413, 415, 422, 503),
    )
    async def create(principal: Writer, _json: JsonBody, body: create_model, conn: Tx) -> Any:  # type: ignore[valid-type]  # the model of this record type
        return await service.create(conn, principal, kind, body)

    @router.get(
        f"/{{user_id}}/{kind}",
        response_model=read_model,
        name=f"get_{kind}",
        summary=f"Get a user's {kind} record",
        responses=problem_responses(404, 422, 503),
    )
    async def read(principal: Reader, user_id: UserIdPath, db: Db) -> Any:
        return await service.read(db, principal, kind, user_id)

    @router.patch(
        f"/{{user_id}}/{kind}",
        response_model=read_model,
        name=f"update_{kind}",
        summary=f"Change the fields sent of a user's {kind} record",
        responses=problem_responses(400, 404, 413, 415, 422, 503),
    )
    async def update(
        principal: Writer,
        _json: JsonBody,
        user_id: UserIdPath,
        body: update_model,  # type: ignore[valid-type]  # the model of this record type
        conn: Tx,
    ) -> Any:
        return await service.update(conn, principal, kind, user_id, cast(RecordUpdate, body).changes())

    @router.delete(
        f"/{{user_id}}/{kind}",
        status_code=204,
        name=f"delete_{kind}",
        summary=f"Delete a user's {kind} record",
        responses=problem_responses(404, 422, 503),
    )
    async def delete(principal: Writer, user_id: UserIdPath, conn: Tx) -> Response:
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
    async def read_file(
        principal: Reader, user_id: UserIdPath, aws: Aws, settings: AppSettings, budget: JsonBudget, db: Db
    ) -> JsonBytes:
        # S3 first, then the audit row in a short transaction: no connection is held while S3 answers.
        stored = await service.read_file(aws, settings, budget, kind, user_id)
        if kind in AUDITED:
            async with db.transaction(REQUEST_WAIT_SECONDS) as conn:
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
async def get_user_files(
    principal: Reader, user_id: UserIdPath, aws: Aws, settings: AppSettings, budget: JsonBudget, db: Db
) -> JsonBytes:
    found = await service.read_all_files(aws, settings, budget, user_id)
    async with db.transaction(REQUEST_WAIT_SECONDS) as conn:
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
    responses=problem_responses(400, 404, 413, 415, 422, 503),
)
async def send_to_sqs(
    principal: Writer, _json: JsonBody, body: SendRequest, db: Db, aws: Aws, settings: AppSettings
) -> SendResponse:
    # Read (and audit) in one transaction, commit, then send: never announce what did not commit.
    async with db.transaction(REQUEST_WAIT_SECONDS) as conn:
        records = await service.read_for_sending(conn, principal, body.user_id, body.data_type)
    message_ids = await service.send_to_queue(aws.sqs, str(settings.sqs_queue_url), body.user_id, records)
    return SendResponse(user_id=body.user_id, message_ids=message_ids)


@router.get(
    "/{user_id}",
    response_model=UserRecords,
    summary="Get all of a user's records (null for a missing part)",
    responses=problem_responses(404, 422, 503),
)
async def get_user(principal: Reader, user_id: UserIdPath, conn: Tx) -> UserRecords:
    return await service.get_all(conn, principal, user_id)
