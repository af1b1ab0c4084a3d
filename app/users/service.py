"""User record operations: existence rules and the audit trail around the repository."""

from typing import Any

from asgi_correlation_id import correlation_id
from pydantic import BaseModel

from app.audit import repository as audit
from app.audit.repository import AuditAction
from app.core.db import Connection
from app.core.errors import Conflict, NotFound
from app.core.security import Principal
from app.users import repository
from app.users.schemas import RecordType, UserRecords

AUDITED = frozenset({RecordType.FINANCIAL, RecordType.HEALTH})


class UserRecordNotFound(NotFound):
    def __init__(self, kind: RecordType | None, user_id: str) -> None:
        what = f"{kind} record" if kind else "records"
        super().__init__(f"User '{user_id}' has no {what}.")


class RecordAlreadyExists(Conflict):
    def __init__(self, kind: RecordType, user_id: str) -> None:
        super().__init__(f"User '{user_id}' already has a {kind} record; use PATCH to change it.")


async def _audit(
    conn: Connection, principal: Principal, action: AuditAction, kind: RecordType, user_id: str
) -> None:
    if kind in AUDITED:
        await audit.record(
            conn,
            actor=principal.subject,
            action=action,
            record_type=kind.value,
            user_id=user_id,
            request_id=correlation_id.get(),
        )


async def create(conn: Connection, principal: Principal, kind: RecordType, data: BaseModel) -> Any:
    values = data.model_dump(exclude={"user_id"})
    user_id: str = data.user_id  # type: ignore[attr-defined]
    created = await repository.insert(conn, kind, user_id, values)
    if created is None:
        raise RecordAlreadyExists(kind, user_id)
    await _audit(conn, principal, AuditAction.CREATE, kind, user_id)
    return created


async def get(conn: Connection, principal: Principal, kind: RecordType, user_id: str) -> Any:
    found = await repository.get(conn, kind, user_id)
    if found is None:
        raise UserRecordNotFound(kind, user_id)
    await _audit(conn, principal, AuditAction.READ, kind, user_id)
    return found


async def update(
    conn: Connection, principal: Principal, kind: RecordType, user_id: str, changes: dict[str, Any]
) -> Any:
    updated = await repository.update(conn, kind, user_id, changes)
    if updated is None:
        raise UserRecordNotFound(kind, user_id)
    await _audit(conn, principal, AuditAction.UPDATE, kind, user_id)
    return updated


async def delete(conn: Connection, principal: Principal, kind: RecordType, user_id: str) -> None:
    if not await repository.delete(conn, kind, user_id):
        raise UserRecordNotFound(kind, user_id)
    await _audit(conn, principal, AuditAction.DELETE, kind, user_id)


async def get_all(conn: Connection, principal: Principal, user_id: str) -> UserRecords:
    parts = {kind: await repository.get(conn, kind, user_id) for kind in RecordType}
    if all(part is None for part in parts.values()):
        raise UserRecordNotFound(None, user_id)
    for kind, part in parts.items():
        if part is not None:
            await _audit(conn, principal, AuditAction.READ, kind, user_id)
    return UserRecords(user_id=user_id, **{kind.value: part for kind, part in parts.items()})
