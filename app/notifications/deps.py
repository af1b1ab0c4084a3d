"""The SNS webhook's resources as dependencies: the message verifier, the MessageIds already handled, the
handler notifications go to (ingestion's dispatcher), and the outbound HTTP client."""

from typing import Annotated, Protocol, cast

import httpx
from fastapi import Depends, Request

from app.notifications.sns_verification import HandledMessageIds, NotificationHandler, SnsMessageVerifier


class _WebhookResources(Protocol):
    @property
    def sns_verifier(self) -> SnsMessageVerifier: ...

    @property
    def handled_sns_ids(self) -> HandledMessageIds: ...

    @property
    def notification_handler(self) -> NotificationHandler: ...

    @property
    def http(self) -> httpx.AsyncClient: ...


def _resources(request: Request) -> _WebhookResources:
    return cast(_WebhookResources, request.app.state.resources)


async def get_sns_verifier(request: Request) -> SnsMessageVerifier:
    return _resources(request).sns_verifier


async def get_handled_ids(request: Request) -> HandledMessageIds:
    return _resources(request).handled_sns_ids


async def get_notification_handler(request: Request) -> NotificationHandler:
    return _resources(request).notification_handler


async def get_http(request: Request) -> httpx.AsyncClient:
    return _resources(request).http


Verifier = Annotated[SnsMessageVerifier, Depends(get_sns_verifier)]
HandledIds = Annotated[HandledMessageIds, Depends(get_handled_ids)]
Handler = Annotated[NotificationHandler, Depends(get_notification_handler)]
Http = Annotated[httpx.AsyncClient, Depends(get_http)]
