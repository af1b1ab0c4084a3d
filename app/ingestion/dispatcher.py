"""What to do with one message: do its work, then a verdict (delete, retry later, wait, dead-letter)."""

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from app.core import aws
from app.core.errors import ServiceUnavailable
from app.ingestion.envelopes import (
    CustomMessage,
    FileEvents,
    IgnoredEvent,
    TestEvent,
    Unrecognized,
    UserRecordsMessage,
    classify,
)
from app.ingestion.loader import Ingestor, Transient
from app.users.schemas import RecordType
from app.users.service import user_file_key

logger = logging.getLogger(__name__)

DEAD_LETTER_REASON = "dead_letter_reason"  # message attribute carrying why a message was dead-lettered
_SERVER_FIELDS = frozenset({"created_at", "updated_at"})  # not part of a record's input schema

MESSAGES = Counter("consumer_messages_total", "Messages by kind and verdict", ["kind", "verdict"])

Action = Literal["delete", "retry", "delay", "dead_letter"]


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    delay_seconds: float = 0.0  # for `delay`: when to look at the message again
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
        for ref in objects:
            try:
                outcome = await self._ingestor.ingest(ref, trigger)
            except Transient as exc:
                return Verdict("retry", reason=str(exc))
            if outcome.status == "busy":
                wait = max(wait, outcome.retry_after or 1.0)
        # Objects already done are not redone when the message comes back: the log remembers them.
        return Verdict("delay", delay_seconds=wait) if wait else DELETE

    async def _write_user_file(self, message: UserRecordsMessage) -> Verdict:
        record = {name: value for name, value in message.record.items() if name not in _SERVER_FIELDS}
        record["user_id"] = message.user_id
        key = user_file_key(RecordType(message.data_type), message.user_id)
        try:
            await self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=json.dumps(record, ensure_ascii=False).encode(),
                ContentType="application/json",
            )
        except BotoCoreError as exc:
            return Verdict("retry", reason=type(exc).__name__)
        except ClientError as exc:
            if aws.is_transient(exc):
                return Verdict("retry", reason=aws.error_code(exc))
            return Verdict("dead_letter", reason=f"S3 refused writing the user file ({aws.error_code(exc)})")
        logger.info("user file written", extra={"key": key})
        return DELETE


def sns_handler(dispatcher: Dispatcher) -> Callable[[str, str], Awaitable[None]]:
    """The SNS webhook's notification handler: a failure answers 5xx, so SNS delivers again."""

    async def handle(message: str, message_id: str) -> None:
        verdict = await dispatcher.dispatch(message, message_id=message_id, trigger="sns")
        if verdict.action in ("retry", "delay"):
            raise ServiceUnavailable("The notification cannot be processed now; deliver it again later.")
        if verdict.action == "dead_letter":
            # Through the webhook the SNS envelope is already gone, so a client's own message (from
            # /sns/publish) looks like any unknown body: acknowledged and logged, as on the queue.
            logger.info(
                "sns notification is not a file event",
                extra={"message_id": message_id, "reason": verdict.reason},
            )

    return handle
