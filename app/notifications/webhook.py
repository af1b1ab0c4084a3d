"""POST /sns/webhook: the SNS HTTP(S) subscription endpoint, authenticated by the SNS message signature."""

import json
import logging
from http import HTTPStatus
from typing import Any

import httpx
from fastapi import APIRouter, Request
from prometheus_client import Counter

from app.core.errors import DomainError, problem_responses
from app.notifications.deps import HandledIds, Handler, Http, Verifier
from app.notifications.sns_verification import (
    MESSAGE_TYPE_HEADER,
    NOTIFICATION,
    SIGNED_TYPES,
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    SnsConfirmation,
    SnsMessageRejected,
    SnsNotification,
)

logger = logging.getLogger(__name__)

MESSAGES = Counter(
    "sns_webhook_messages_total",
    "Messages received on the SNS webhook, by type and outcome",
    ["type", "outcome"],
)


class SnsBodyInvalid(DomainError):
    slug = "json"


class SubscriptionNotConfirmed(DomainError):
    status = HTTPStatus.BAD_GATEWAY
    slug = "sns-confirmation"


def _parse(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise SnsBodyInvalid("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise SnsBodyInvalid("The request body must be a JSON object.")
    return document


async def _confirm(http: httpx.AsyncClient, confirmation: SnsConfirmation) -> None:
    log_fields = {"message_id": confirmation.message_id, "topic_arn": confirmation.topic_arn}
    try:
        # The body (a ConfirmSubscriptionResponse) is never read: the status says enough.
        async with http.stream("GET", confirmation.subscribe_url) as response:
            confirmed, status = response.is_success, response.status_code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.warning(
            "sns subscription not confirmed", extra={**log_fields, "error_type": type(exc).__name__}
        )
        raise SubscriptionNotConfirmed("Could not confirm the subscription.") from None
    if not confirmed:
        logger.warning("sns subscription not confirmed", extra={**log_fields, "status": status})
        raise SubscriptionNotConfirmed("Could not confirm the subscription.")
    logger.info("sns subscription confirmed", extra=log_fields)


router = APIRouter(tags=["sns"])


@router.post(
    "/sns/webhook",
    summary="SNS HTTP(S) subscription endpoint; the SNS message signature is the authentication",
    responses=problem_responses(400, 403, 413, 502, 503),
)
async def sns_webhook(
    request: Request, verifier: Verifier, handled: HandledIds, handler: Handler, http: Http
) -> dict[str, str]:
    """Confirms subscriptions and hands notifications to ingestion. SNS sends JSON as text/plain."""
    type_label = "unknown"  # only known types become label values, so forged ones cannot grow the series
    try:
        document = _parse(await request.body())
        if document.get("Type") in SIGNED_TYPES:
            type_label = document["Type"]
        declared = request.headers.get(MESSAGE_TYPE_HEADER)
        if declared is not None and declared != document.get("Type"):
            raise SnsMessageRejected(f"The {MESSAGE_TYPE_HEADER} header does not match the message type.")
        message = await verifier.verify(document)
    except DomainError as exc:
        MESSAGES.labels(
            type_label, "rejected" if exc.status < HTTPStatus.INTERNAL_SERVER_ERROR else "failed"
        ).inc()
        # Only our own reason is logged: every field of an unverified message is the sender's choice.
        logger.warning("sns message refused", extra={"sns_type": type_label, "reason": exc.detail})
        raise

    if isinstance(message, SnsNotification):
        log_fields = {"message_id": message.message_id, "topic_arn": message.topic_arn}
        if message.message_id in handled:
            # A replay of a signed message within its window, or SNS delivering it twice: done already.
            logger.info("sns notification already handled", extra=log_fields)
            MESSAGES.labels(NOTIFICATION, "duplicate").inc()
            return {"status": "duplicate", "message_id": message.message_id}
        try:
            await handler(message.message, message.message_id)
        except Exception:
            # Answered 500 by the app's handler, so SNS delivers the message again: not yet handled.
            MESSAGES.labels(NOTIFICATION, "failed").inc()
            raise
        handled.add(message.message_id, sent=message.sent)
        MESSAGES.labels(NOTIFICATION, "accepted").inc()
        return {"status": "accepted", "message_id": message.message_id}

    if message.type == SUBSCRIPTION_CONFIRMATION:
        try:
            await _confirm(http, message)
        except SubscriptionNotConfirmed:
            MESSAGES.labels(SUBSCRIPTION_CONFIRMATION, "failed").inc()
            raise
        MESSAGES.labels(SUBSCRIPTION_CONFIRMATION, "confirmed").inc()
        return {"status": "confirmed", "topic_arn": message.topic_arn}

    # Deliberately not resubscribed: whoever unsubscribed the endpoint meant it.
    logger.info(
        "sns unsubscribe confirmation received",
        extra={"message_id": message.message_id, "topic_arn": message.topic_arn},
    )
    MESSAGES.labels(UNSUBSCRIBE_CONFIRMATION, "accepted").inc()
    return {"status": "unsubscribed"}
