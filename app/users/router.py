"""HTTP routes for user records: one set of create/read/update/delete routes per record type."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel

from app.core.db import DbConn
from app.core.errors import problem_responses
from app.core.http import require_json
from app.core.security import Principal, requires
from app.users import service
from app.users.schemas import (
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
Reader = Annotated[Principal, Depends(requires("users:read"))]
Writer = Annotated[Principal, Depends(requires("users:write"))]


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
        responses=problem_responses(409, 415, 422),
    )
    async def create(body: create_model, conn: DbConn, principal: Writer) -> Any:  # type: ignore[valid-type]
        return await service.create(conn, principal, kind, body)

    @router.get(
        f"/{{user_id}}/{kind}",
        response_model=read_model,
        name=f"get_{kind}",
        summary=f"Get a user's {kind} record",
        responses=problem_responses(404, 422),
    )
    async def read(user_id: UserIdPath, conn: DbConn, principal: Reader) -> Any:
        return await service.get(conn, principal, kind, user_id)

    @router.patch(
        f"/{{user_id}}/{kind}",
        response_model=read_model,
        name=f"update_{kind}",
        summary=f"Change the fields sent of a user's {kind} record",
        dependencies=[Depends(require_json)],
        responses=problem_responses(404, 415, 422),
    )
    async def update(
        user_id: UserIdPath,
        body: update_model,  # type: ignore[valid-type]
        conn: DbConn,
        principal: Writer,
    ) -> Any:
        return await service.update(conn, principal, kind, user_id, body.changes())

    @router.delete(
        f"/{{user_id}}/{kind}",
        status_code=204,
        name=f"delete_{kind}",
        summary=f"Delete a user's {kind} record",
        responses=problem_responses(404, 422),
    )
    async def delete(user_id: UserIdPath, conn: DbConn, principal: Writer) -> Response:
        await service.delete(conn, principal, kind, user_id)
        return Response(status_code=204)


_add_record_routes(RecordType.PERSONAL, PersonalCreate, PersonalUpdate, PersonalRead)
_add_record_routes(RecordType.FINANCIAL, FinancialCreate, FinancialUpdate, FinancialRead)
_add_record_routes(RecordType.HEALTH, HealthCreate, HealthUpdate, HealthRead)


@router.get(
    "/{user_id}",
    response_model=UserRecords,
    summary="Get all of a user's records (null for a missing part)",
    responses=problem_responses(404, 422),
)
async def get_user(user_id: UserIdPath, conn: DbConn, principal: Reader) -> UserRecords:
    return await service.get_all(conn, principal, user_id)
