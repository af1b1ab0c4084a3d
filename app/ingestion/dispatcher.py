"""What to do with one message: do its work, then a verdict (delete, retry later, wait, dead-letter)."""

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from app.core import aws
from app.core.errors import ServiceUnavailable
from app.files import storage
from app.ingestion.envelopes import (
    CustomMessage,
    FileEvents,
    IgnoredEvent,
    TestEvent,
    Unrecognized,
    classify,
)
from app.ingestion.ingestor import Ingestor
from app.ingestion.operations import BackgroundLoads, LoadsFull
from app.ingestion.outcomes import Transient
from app.messages import UserRecordsMessage
from app.users.files import as_of, record_time, user_file_key
from app.users.schemas import RecordType

logger = logging.getLogger(__name__)

USER_FILE_MAX_BYTES = 1_048_576  # what one SQS message can hold: a larger file is no snapshot of ours
USER_FILE_WRITE_ATTEMPTS = 5  # conditional writes that lost a race, tried again

MESSAGES = Counter("consumer_messages_total", "Messages by kind and verdict", ["kind", "verdict"])

Action = Literal["delete", "retry", "delay", "requeue", "dead_letter"]


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    delay_seconds: float = 0.0  # for `delay` and `requeue`: when to look at the message again
    reason: str | None = None  # for `retry` and `dead_letter`


DELETE = Verdict("delete")


class Dispatcher:
    """Shared by the SQS consumer and the SNS webhook, so both understand the same messages."""

    def __init__(self, ingestor: Ingestor, s3: Any, bucket: str) -> None:
        self._ingestor = ingestor
        self._s3 = s3
        self._bucket = bucket

    async def dependencies_up(self) -> bool:
        return await self._ingestor.probe(self._bucket)

    async def dispatch(self, body: str, *, message_id: str, trigger: str) -> Verdict:
        message = classify(body)
        kind = type(message).__name__
        verdict = await self._act(message, message_id, trigger)
        MESSAGES.labels(kind, verdict.action).inc()
        return verdict

    async def _act(self, message: Any, message_id: str, trigger: str) -> Verdict:
        context = {"message_id": message_id}
        match message:
            case FileEvents(objects=objects):
                return await self._ingest(objects, trigger)
            case UserRecordsMessage() if trigger != "sqs":
                # Only /users/sqs/send's own messages, straight from the queue, may rewrite user records.
                return Verdict("dead_letter", reason="user_records messages are accepted only from the queue")
            case UserRecordsMessage():
                return await self._write_user_file(message)
            case TestEvent(bucket=bucket):
                logger.info("s3 test event acknowledged", extra={**context, "bucket": bucket})
                return DELETE
            case IgnoredEvent(reason=reason):
                logger.info("event ignored", extra={**context, "reason": reason})
                return DELETE
            case CustomMessage(message_id=sns_id, topic_arn=topic):
                logger.info(
                    "custom message acknowledged", extra={**context, "sns_message_id": sns_id, "topic": topic}
                )
                return DELETE
            case Unrecognized(reason=reason):
                logger.warning("message not understood", extra={**context, "reason": reason})
                return Verdict("dead_letter", reason=reason)
        return Verdict("dead_letter", reason=f"no handler for {type(message).__name__}")

    async def _ingest(self, objects: tuple[Any, ...], trigger: str) -> Verdict:
        wait = 0.0
        throttled = False
        for ref in objects:
            try:
                outcome = await self._ingestor.ingest(ref, trigger)
            except Transient as exc:
                return Verdict("retry", reason=str(exc))
            if outcome.status in ("busy", "throttled"):
                wait = max(wait, outcome.retry_after or 1.0)
                throttled = throttled or outcome.status == "throttled"
        # Objects already done are not redone when the message comes back: the log remembers them.
        if not wait:
            return DELETE
        # A throttled file may wait for many rounds: as a fresh message, so the waits never add up to the
        # queue's maxReceiveCount and send it to the dead-letter queue.
        return Verdict("requeue" if throttled else "delay", delay_seconds=wait)

    async def _write_user_file(self, message: UserRecordsMessage) -> Verdict:
        """Write the snapshot to users/{type}/{user_id}.json, unless the file there is as new or newer (a
        redriven or late message must not bring old values back); the write is conditional on the file
        read, so a concurrent writer makes it look again."""
        record = {name: value for name, value in message.record.items() if name != "created_at"}
        record["user_id"] = message.user_id
        snapshot = record_time(record.get("updated_at"))
        key = user_file_key(RecordType(message.data_type), message.user_id)
        body = json.dumps(record, ensure_ascii=False).encode()
        try:
            for _ in range(USER_FILE_WRITE_ATTEMPTS):
                current = await self._user_file_state(key)
                if current is not None and snapshot is not None and current[1] >= snapshot:
                    logger.info("user file is newer than the message; not written", extra={"key": key})
                    return DELETE
                try:
                    await storage.put_bytes(
                        self._s3,
                        self._bucket,
                        key,
                        body,
                        "application/json",
                        if_match=current[0] if current else None,
                        if_none_match=current is None,
                    )
                except (storage.ObjectChanged, storage.ObjectExists, storage.ObjectNotFound):
                    continue  # replaced or removed since it was read: look again
                logger.info("user file written", extra={"key": key})
                return DELETE
        except BotoCoreError as exc:
            return Verdict("retry", reason=type(exc).__name__)
        except ClientError as exc:
            if aws.is_transient(exc):
                return Verdict("retry", reason=aws.error_code(exc))
            return Verdict("dead_letter", reason=f"S3 refused writing the user file ({aws.error_code(exc)})")
        return Verdict("retry", reason="the user file kept changing while it was written")

    async def _user_file_state(self, key: str) -> tuple[str, datetime] | None:
        """(ETag, when its data is as of) of the user file now at `key`; None when there is none."""
        try:
            response = await self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if aws.error_code(exc) in storage.MISSING_CODES:
                return None
            raise
        async with response["Body"] as body:
            document = None
            if response["ContentLength"] <= USER_FILE_MAX_BYTES:  # else not one record: its time is S3's
                with contextlib.suppress(ValueError):
                    document = orjson.loads(await body.read())
        written_at = record_time(document.get("updated_at") if isinstance(document, dict) else None)
        return response["ETag"], as_of(written_at, response["LastModified"])


def sns_handler(dispatcher: Dispatcher, loads: BackgroundLoads) -> Callable[[str, str], Awaitable[None]]:
    """The SNS webhook's notification handler: a failure answers 5xx, so SNS delivers again. It loads in a
    place of the API's loads, so a burst of notifications cannot start more loads than that."""

    async def handle(message: str, message_id: str) -> None:
        try:
            with loads.place():
                verdict = await dispatcher.dispatch(message, message_id=message_id, trigger="sns")
        except LoadsFull:
            raise ServiceUnavailable("Too many files are loading; deliver it again later.") from None
        if verdict.action in ("retry", "delay", "requeue"):
            raise ServiceUnavailable("The notification cannot be processed now; deliver it again later.")
        if verdict.action == "dead_letter":
            # Through the webhook the SNS envelope is already gone, so a client's own message (from
            # /sns/publish) looks like any unknown body: acknowledged and logged, as on the queue.
            logger.info(
                "sns notification is not a file event",
                extra={"message_id": message_id, "reason": verdict.reason},
            )

    return handle
