"""POST /sns/publish: publish a client's message to the service's topic."""

import json
from typing import Annotated, Any

from fastapi import APIRouter

from app.core.deps import AppSettings, Aws
from app.core.errors import problem_responses
from app.core.http import JsonBody
from app.core.security import Principal, requires
from app.ingestion.envelopes import Unrecognized, classify
from app.notifications import publisher
from app.notifications.schemas import PublishRequest, PublishResponse

router = APIRouter(prefix="/sns", tags=["sns"], responses=problem_responses(401, 403))


@router.post(
    "/publish",
    status_code=202,
    response_model=PublishResponse,
    summary="Publish a message (string or JSON) to the SNS topic",
    responses=problem_responses(400, 413, 415, 422, 502, 503),
)
async def publish(
    _: Annotated[Principal, requires("sns:publish")],
    _json: JsonBody,
    body: PublishRequest,
    aws: Aws,
    settings: AppSettings,
) -> Any:
    text = body.message if isinstance(body.message, str) else json.dumps(body.message)
    if not isinstance(classify(text), Unrecognized):
        # The topic feeds the ingestion queue: a client must not forge a file event or a user-records
        # message, which would make the consumer load any object it can read or rewrite user records.
        raise publisher.PublishRejected(
            "The message has the shape of an event the service acts on (S3/EventBridge event, service "
            "notification or user records); publish a different shape.",
            field="message",
        )
    result = await publisher.publish(aws.sns, settings.sns_topic_arn, body)
    return PublishResponse(message_id=result["MessageId"], sequence_number=result.get("SequenceNumber"))
