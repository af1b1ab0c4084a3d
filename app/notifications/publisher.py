"""Publishing to SNS: client messages, and the service's own change notifications."""

import json
import logging
from datetime import UTC, datetime
from typing import Any

from asgi_correlation_id import correlation_id
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from app.core import aws
from app.core.errors import DomainError
from app.notifications.events import SERVICE_SOURCE
from app.notifications.schemas import SNS_MAX_MESSAGE_BYTES, AttributeValue, PublishRequest

logger = logging.getLogger(__name__)


NOTIFICATIONS = Counter(
    "sns_change_notifications_total", "Change notifications published after writes", ["event", "outcome"]
)


class MessageTooLarge(DomainError):
    status = 413
    slug = "message-too-large"


class PublishRejected(DomainError):
    status = 422
    slug = "sns-rejected"


def _attribute(value: AttributeValue) -> dict[str, str]:
    if isinstance(value, list):
        return {"DataType": "String.Array", "StringValue": json.dumps(value)}
    if isinstance(value, bool | str):
        return {"DataType": "String", "StringValue": str(value)}
    return {"DataType": "Number", "StringValue": repr(value)}


async def publish(sns: Any, topic_arn: str, request: PublishRequest) -> dict[str, Any]:
    body = request.message if isinstance(request.message, str) else json.dumps(request.message)
    if len(body.encode()) > SNS_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"The message exceeds SNS's {SNS_MAX_MESSAGE_BYTES} bytes.")
    params: dict[str, Any] = {
        "TopicArn": topic_arn,
        "Message": body,
        "MessageAttributes": {name: _attribute(value) for name, value in request.attributes.items()},
    }
    if request.subject:
        params["Subject"] = request.subject
    if request.message_group_id:
        params["MessageGroupId"] = request.message_group_id
    if request.deduplication_id:
        params["MessageDeduplicationId"] = request.deduplication_id
    try:
        return await sns.publish(**params)  # type: ignore[no-any-return]
    except ClientError as exc:
        if aws.error_code(exc) in {"InvalidParameter", "InvalidParameterValue"}:
            # A FIFO id on a standard topic (or the reverse) and the like: the client's to fix.
            raise PublishRejected(f"SNS refused the message parameters ({aws.error_code(exc)}).") from None
        raise


async def notify_change(
    sns: Any,
    topic_arn: str,
    *,
    event: str,
    bucket: str,
    key: str,
    etag: str,
    version_id: str | None,
    size: int,
) -> bool:
    """Announce a write that already happened; a failure is logged and counted, never raised."""
    message = {
        "source": SERVICE_SOURCE,
        "event": event,
        "bucket": bucket,
        "key": key,
        "etag": etag,
        "version_id": version_id,
        "size": size,
        "request_id": correlation_id.get(),
        "time": datetime.now(UTC).isoformat(),
    }
    try:
        await sns.publish(
            TopicArn=topic_arn,
            Message=json.dumps(message),
            MessageAttributes={
                "source": {"DataType": "String", "StringValue": SERVICE_SOURCE},
                "event": {"DataType": "String", "StringValue": event},
                "bucket": {"DataType": "String", "StringValue": bucket},
            },
        )
    except (ClientError, BotoCoreError) as exc:
        NOTIFICATIONS.labels(event, "failed").inc()
        logger.error(
            "change notification not published",
            extra={"event": event, "bucket": bucket, "key": key, "error_type": type(exc).__name__},
        )
        return False
    NOTIFICATIONS.labels(event, "published").inc()
    return True
