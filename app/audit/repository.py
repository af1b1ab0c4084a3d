"""All SQL for the audit_log table."""

from enum import StrEnum

from app.core.db import Connection


class AuditAction(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


async def record(
    conn: Connection,
    *,
    actor: str,
    action: AuditAction,
    record_type: str,
    user_id: str,
    request_id: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, record_type, user_id, request_id) VALUES ($1, $2, $3, $4, $5)",
        actor,
        action.value,
        record_type,
        user_id,
        request_id,
    )
