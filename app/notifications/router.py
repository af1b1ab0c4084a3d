"""POST /sns/publish: publish a client's message to the service's topic."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from app.core import deps
from app.core.errors import problem_responses
from app.core.http import require_json
from app.core.security import Principal, RequireScope, ScopeFirstRoute
from app.ingestion.envelopes import Unrecognized, classify
from app.notifications import publisher
from app.notifications.schemas import PublishRequest, PublishResponse

router = APIRouter(
    prefix="/sns", tags=["sns"], responses=problem_responses(401, 403), route_class=ScopeFirstRoute
)


@router.post(
    "/publish",
    status_code=202,
    response_model=PublishResponse,
    summary="Publish a message (string or JSON) to the SNS topic",
    dependencies=[Depends(require_json)],
    responses=problem_responses(400, 413, 415, 422, 502, 503),
)
async def publish(
    body: PublishRequest,
    request: Request,
    _: Annotated[Principal, Depends(RequireScope("sns:publish"))],
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
    result = await publisher.publish(deps.aws(request).sns, deps.settings(request).sns_topic_arn, body)
    return PublishResponse(message_id=result["MessageId"], sequence_number=result.get("SequenceNumber"))
