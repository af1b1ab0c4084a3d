"""users/{type}/ files of the service's own bucket: each record validated with the API's schema and upserted
into its users_* table, unless the row holds newer data; financial and health changes are audited with
the object they came from."""

import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from app.audit import repository as audit
from app.audit.repository import AuditAction, AuditedObject
from app.core.db import Connection
from app.ingestion.loaders import ErrorPolicy, Tally, validation_reason
from app.ingestion.parsers import RecordStream
from app.users import repository as users_repository
from app.users.files import as_of
from app.users.schemas import AUDITED, FILE_RECORD_MODELS, RecordType

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UserChanges:
    """Where a users/{type}/ file's records come from: what their order and audit rows need."""

    kind: RecordType
    file_id: int
    obj: AuditedObject
    last_modified: datetime  # when S3 stored the object version: no record in it is newer

    async def audit(self, conn: Connection, user_id: str, action: AuditAction) -> None:
        if self.kind in AUDITED:
            await audit.record(
                conn,
                actor="ingestion",
                action=action,
                record_type=self.kind.value,
                user_id=user_id,
                request_id=f"file:{self.file_id}",
                obj=self.obj,
            )


async def load_users(
    conn: Connection, stream: RecordStream, changes: UserChanges, policy: ErrorPolicy
) -> Tally:
    """Upsert each valid record, unless the row holds newer data than the record (see `as_of`)."""
    tally = Tally(policy)
    model = FILE_RECORD_MODELS[changes.kind]
    stale = 0
    async for batch in stream.batches():
        for record in batch:
            tally.read += 1
            if record.error is not None or record.data is None:
                tally.reject(record.error or f"line {record.line}: not a record")
                continue
            try:
                user = model.model_validate(record.data)
            except ValidationError as exc:
                tally.reject(validation_reason(record.line, exc))
                continue
            values = user.model_dump(exclude={"user_id", "updated_at"})
            record_time = as_of(getattr(user, "updated_at", None), changes.last_modified)
            action = await users_repository.upsert_as_of(
                conn, changes.kind, user.user_id, values, record_time
            )
            if action == "stale":
                stale += 1
            if action in ("create", "update"):
                tally.changed += 1
                await changes.audit(conn, user.user_id, AuditAction(action))
    if stale:
        # Counted as skipped; no values logged, only how many were older than what is stored.
        logger.info("older user records left alone", extra={"file_id": changes.file_id, "records": stale})
    return tally
