"""User record operations: existence rules and the audit trail around the repository."""

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asgi_correlation_id import correlation_id
from pydantic import BaseModel

from app.audit import repository as audit
from app.audit.repository import ANY_USER, AuditAction, AuditedObject
from app.core.aws import AwsClients
from app.core.config import Settings
from app.core.db import REQUEST_WAIT_SECONDS, Connection, Database
from app.core.errors import Conflict, NotFound, ServiceUnavailable
from app.core.security import Forbidden, Principal
from app.files import service as files
from app.files.budget import ByteBudget
from app.files.storage import ObjectNotFound, StoredJson
from app.messages import UserRecordsMessage
from app.users import repository
from app.users.files import (
    USERS_PREFIX,
    is_user_key,
    record_type_of,
    user_file_key,
    user_id_of,
)
from app.users.schemas import AUDITED, RecordType, SendDataType, UserRecords

if TYPE_CHECKING:  # the stub packages are dev dependencies, absent from the runtime image
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SEND_ATTEMPTS = 3  # SendMessageBatch can fail per entry; those entries are sent again


class UserRecordNotFound(NotFound):
    def __init__(self, kind: RecordType | None, user_id: str) -> None:
        what = f"{kind} record" if kind else "records"
        super().__init__(f"User '{user_id}' has no {what}.")


class RecordAlreadyExists(Conflict):
    def __init__(self, kind: RecordType, user_id: str) -> None:
        super().__init__(f"User '{user_id}' already has a {kind} record; use PATCH to change it.")


async def _audit(
    conn: Connection,
    principal: Principal,
    action: AuditAction,
    kind: RecordType,
    user_id: str,
    obj: AuditedObject | None = None,
) -> None:
    if kind in AUDITED:
        await audit.record(
            conn,
            actor=principal.subject,
            action=action,
            record_type=kind.value,
            user_id=user_id,
            request_id=correlation_id.get(),
            obj=obj,
        )


async def create(conn: Connection, principal: Principal, kind: RecordType, data: BaseModel) -> Any:
    values = data.model_dump(exclude={"user_id"})
    user_id: str = data.user_id  # type: ignore[attr-defined]
    created = await repository.insert(conn, kind, user_id, values)
    if created is None:
        raise RecordAlreadyExists(kind, user_id)
    await _audit(conn, principal, AuditAction.CREATE, kind, user_id)
    return created


async def read(db: Database, principal: Principal, kind: RecordType, user_id: str) -> Any:
    """An audited read and its audit row commit together; an unaudited one is a single SELECT (BEGIN and
    COMMIT would be two more round trips for nothing)."""
    if kind in AUDITED:
        async with db.transaction(REQUEST_WAIT_SECONDS) as conn:
            return await get(conn, principal, kind, user_id)
    async with db.acquire(REQUEST_WAIT_SECONDS) as conn:
        return await get(conn, principal, kind, user_id)


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
    return UserRecords.model_validate(
        {"user_id": user_id, **{kind.value: part for kind, part in parts.items()}}
    )


class UserKeys:
    """The rules of the users/ prefix, which holds user records, as the /s3 routes apply them
    (app/files/deps.py's KeyPolicy): `s3:*` alone never reaches what `users:*` guards."""

    def require_scope(self, principal: Principal, key: str, *, write: bool) -> None:
        """Keys under users/ are served and changed only for a token that also holds users:read (or
        users:write)."""
        scope = "users:write" if write else "users:read"
        if is_user_key(key) and scope not in principal.scopes:
            raise Forbidden(f"Keys under {USERS_PREFIX} also need the `{scope}` scope.")

    def audited(self, key: str) -> bool:
        return record_type_of(key) in AUDITED

    async def audit(
        self, conn: Connection, principal: Principal, action: AuditAction, obj: AuditedObject
    ) -> None:
        """Record a read or change of a financial or health record through its S3 object (else nothing)."""
        kind = record_type_of(obj.key)
        if kind is not None:
            await _audit(conn, principal, action, kind, user_id_of(obj.key) or ANY_USER, obj)


async def read_file(
    aws: AwsClients, settings: Settings, budget: ByteBudget, kind: RecordType, user_id: str
) -> StoredJson:
    return await files.get_json(aws, settings, budget, user_file_key(kind, user_id))


async def read_all_files(
    aws: AwsClients, settings: Settings, budget: ByteBudget, user_id: str
) -> dict[RecordType, StoredJson | None]:
    """The user's three files (None for a missing one); NotFound when none exists."""

    async def one(kind: RecordType) -> StoredJson | None:
        try:
            return await read_file(aws, settings, budget, kind, user_id)
        except ObjectNotFound:
            return None

    found = dict(zip(RecordType, await asyncio.gather(*(one(kind) for kind in RecordType)), strict=True))
    if all(stored is None for stored in found.values()):
        raise NotFound(f"User '{user_id}' has no files in S3.")
    return found


async def audit_file_reads(
    conn: Connection,
    principal: Principal,
    bucket: str,
    user_id: str,
    files_read: dict[RecordType, StoredJson | None],
) -> None:
    for kind, stored in files_read.items():
        if stored is not None:
            obj = AuditedObject(bucket, user_file_key(kind, user_id), stored.version_id or stored.etag)
            await UserKeys().audit(conn, principal, AuditAction.READ, obj)


async def read_for_sending(
    conn: Connection, principal: Principal, user_id: str, data_type: SendDataType
) -> dict[RecordType, BaseModel]:
    records: dict[RecordType, BaseModel] = {}
    for kind in data_type.record_types():
        record = await repository.get(conn, kind, user_id)
        if record is not None:
            records[kind] = record
            await _audit(conn, principal, AuditAction.READ, kind, user_id)
    if not records:
        raise UserRecordNotFound(None if data_type is SendDataType.ALL else RecordType(data_type), user_id)
    return records


async def send_to_queue(
    sqs: "SQSClient", queue_url: str, user_id: str, records: dict[RecordType, BaseModel]
) -> dict[RecordType, str]:
    """One SQS message per record type, in one batch; entry ids are positions, as the API wants."""
    kinds = list(records)
    request_id, sent_at = correlation_id.get(), datetime.now(UTC).isoformat()
    messages = [
        UserRecordsMessage(kind.value, user_id, records[kind].model_dump(mode="json")) for kind in kinds
    ]
    entries: list[SendMessageBatchRequestEntryTypeDef] = [
        {
            "Id": str(position),
            "MessageBody": message.body(request_id=request_id, sent_at=sent_at),
            "MessageAttributes": message.attributes(),
        }
        for position, message in enumerate(messages)
    ]
    sent: dict[RecordType, str] = {}
    for _ in range(SEND_ATTEMPTS):
        response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        for success in response.get("Successful", []):
            sent[kinds[int(success["Id"])]] = success["MessageId"]
        failed_ids = {failure["Id"] for failure in response.get("Failed", [])}
        entries = [entry for entry in entries if entry["Id"] in failed_ids]
        if not entries:
            return sent
    raise ServiceUnavailable(f"SQS did not accept {len(entries)} of the messages; retry.")
