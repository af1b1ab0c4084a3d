"""User record operations: existence rules and the audit trail around the repository."""

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from asgi_correlation_id import correlation_id
from pydantic import BaseModel

from app.audit import repository as audit
from app.audit.repository import AuditAction
from app.core.aws import AwsClients
from app.core.config import Settings
from app.core.db import Connection
from app.core.errors import Conflict, NotFound, ServiceUnavailable
from app.core.security import Principal
from app.files import service as files
from app.files.storage import ObjectNotFound
from app.users import repository
from app.users.schemas import RecordType, SendDataType, UserFiles, UserRecords

AUDITED = frozenset({RecordType.FINANCIAL, RecordType.HEALTH})
SEND_ATTEMPTS = 3  # SendMessageBatch can fail per entry; those entries are sent again


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


USER_RECORDS_MESSAGE = "user_records"  # message_type the consumer writes to users/{type}/{user_id}.json


def user_file_key(kind: RecordType, user_id: str) -> str:
    return f"users/{kind.value}/{user_id}.json"


async def get_file(
    conn: Connection,
    principal: Principal,
    aws: AwsClients,
    settings: Settings,
    kind: RecordType,
    user_id: str,
) -> Any:
    stored = await files.get_json(aws, settings, user_file_key(kind, user_id))
    await _audit(conn, principal, AuditAction.READ, kind, user_id)
    return stored.document


async def get_all_files(
    conn: Connection, principal: Principal, aws: AwsClients, settings: Settings, user_id: str
) -> UserFiles:
    async def one(kind: RecordType) -> Any:
        try:
            return (await files.get_json(aws, settings, user_file_key(kind, user_id))).document
        except ObjectNotFound:
            return None

    documents = dict(zip(RecordType, await asyncio.gather(*(one(kind) for kind in RecordType)), strict=True))
    if all(document is None for document in documents.values()):
        raise NotFound(f"User '{user_id}' has no files in S3.")
    for kind, document in documents.items():
        if document is not None:
            await _audit(conn, principal, AuditAction.READ, kind, user_id)
    return UserFiles(**{kind.value: document for kind, document in documents.items()})


async def read_for_sending(
    conn: Connection, principal: Principal, user_id: str, data_type: SendDataType
) -> dict[RecordType, BaseModel]:
    records = {}
    for kind in data_type.record_types():
        record = await repository.get(conn, kind, user_id)
        if record is not None:
            records[kind] = record
            await _audit(conn, principal, AuditAction.READ, kind, user_id)
    if not records:
        raise UserRecordNotFound(None if data_type is SendDataType.ALL else RecordType(data_type), user_id)
    return records


async def send_to_queue(
    sqs: Any, queue_url: str, user_id: str, records: dict[RecordType, BaseModel]
) -> dict[RecordType, str]:
    """One SQS message per record type, in one batch; entry ids are positions, as the API wants."""
    kinds = list(records)
    entries = [
        {
            "Id": str(position),
            "MessageBody": json.dumps(
                {
                    "message_type": USER_RECORDS_MESSAGE,
                    "data_type": kind.value,
                    "user_id": user_id,
                    "record": records[kind].model_dump(mode="json"),
                    "request_id": correlation_id.get(),
                    "sent_at": datetime.now(UTC).isoformat(),
                }
            ),
            "MessageAttributes": {
                "message_type": {"DataType": "String", "StringValue": USER_RECORDS_MESSAGE},
                "data_type": {"DataType": "String", "StringValue": kind.value},
            },
        }
        for position, kind in enumerate(kinds)
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
