"""The change notification after every write through /s3 (app/messages.py: ObjectNotification), published on
SNS_TOPIC_ARN; subscribers, the ingestion queue among them, learn of the new object version."""

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from asgi_correlation_id import correlation_id
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from app.messages import ObjectNotification

if TYPE_CHECKING:  # the stub packages are dev dependencies, absent from the runtime image
    from types_aiobotocore_sns import SNSClient

logger = logging.getLogger(__name__)

NOTIFICATIONS = Counter(
    "sns_change_notifications_total", "Change notifications published after writes", ["event", "outcome"]
)


async def notify_change(
    sns: "SNSClient",
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
    notification = ObjectNotification(
        event=event,
        bucket=bucket,
        key=key,
        etag=etag,
        version_id=version_id,
        size=size,
        request_id=correlation_id.get(),
        time=datetime.now(UTC).isoformat(),
    )
    try:
        await sns.publish(
            TopicArn=topic_arn, Message=notification.body(), MessageAttributes=notification.attributes()
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
