"""All SQL for the audit_log table."""

from dataclasses import dataclass
from enum import StrEnum

from app.core.db import Connection

ANY_USER = "*"  # the user_id of an audited object that is not one user's file (a batch of records)


class AuditAction(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class AuditedObject:
    """The S3 object version an audited read or change went through."""

    bucket: str
    key: str
    version: str | None  # the version id, else the ETag


async def record(
    conn: Connection,
    *,
    actor: str,
    action: AuditAction,
    record_type: str,
    user_id: str,
    request_id: str | None,
    obj: AuditedObject | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO audit_log
            (actor, action, record_type, user_id, request_id, object_bucket, object_key, object_version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        actor,
        action.value,
        record_type,
        user_id,
        request_id,
        obj.bucket if obj else None,
        obj.key if obj else None,
        obj.version if obj else None,
    )
