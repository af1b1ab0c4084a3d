"""Publishing a client's message to SNS (POST /sns/publish)."""

import json
import logging
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from app.core import aws
from app.core.errors import DomainError
from app.notifications.schemas import SNS_MAX_MESSAGE_BYTES, AttributeValue, PublishRequest

if TYPE_CHECKING:  # the stub packages are dev dependencies, absent from the runtime image
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sns.type_defs import (
        MessageAttributeValueTypeDef,
        PublishInputTypeDef,
        PublishResponseTypeDef,
    )

logger = logging.getLogger(__name__)


class MessageTooLarge(DomainError):
    status = 413
    slug = "message-too-large"


class PublishRejected(DomainError):
    status = 422
    slug = "sns-rejected"


def _attribute(value: AttributeValue) -> "MessageAttributeValueTypeDef":
    if isinstance(value, list):
        return {"DataType": "String.Array", "StringValue": json.dumps(value)}
    if isinstance(value, bool | str):
        return {"DataType": "String", "StringValue": str(value)}
    return {"DataType": "Number", "StringValue": repr(value)}


async def publish(sns: "SNSClient", topic_arn: str, request: PublishRequest) -> "PublishResponseTypeDef":
    body = request.message if isinstance(request.message, str) else json.dumps(request.message)
    if len(body.encode()) > SNS_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"The message exceeds SNS's {SNS_MAX_MESSAGE_BYTES} bytes.")
    params: PublishInputTypeDef = {
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
        return await sns.publish(**params)
    except ClientError as exc:
        if aws.error_code(exc) in {"InvalidParameter", "InvalidParameterValue"}:
            # A FIFO id on a standard topic (or the reverse) and the like: the client's to fix.
            raise PublishRejected(f"SNS refused the message parameters ({aws.error_code(exc)}).") from None
        raise
