"""Pure ASGI middleware (request body limit, access log and metrics) and request-level guards."""

import logging
import time
from email.message import Message
from http import HTTPStatus

from fastapi import HTTPException, Request
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("app.access")

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by method, route and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by method and route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNMATCHED_ROUTE = "<unmatched>"  # one label for every unknown path, so scanners cannot grow the series


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"The request body exceeds {limit} bytes.")


class BodyLimitMiddleware:
    """Refuses bodies over the limit from Content-Length, and counts bytes for chunked bodies."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope["path"], self.default_max_bytes)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        received = int(declared) if declared.isdigit() else 0

        async def limited_receive() -> dict:  # type: ignore[type-arg]
            # Raised inside the app (not answered here) so the problem+json handler renders it;
            # a declared length over the limit fails before any byte is read.
            nonlocal received
            if received > max_bytes:
                raise BodyTooLarge(max_bytes)
            message = await receive()
            if message["type"] == "http.request" and not declared:
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        await self.app(scope, limited_receive, send)


async def require_json(request: Request) -> None:
    """Route dependency for JSON bodies: anything else is 415, not a confusing 422."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    header = request.headers.get("content-type")
    if header:
        message = Message()
        message["content-type"] = header
        subtype = message.get_content_subtype()
        if message.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json")
        ):
            return
    raise HTTPException(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "The request body must be application/json.")


class AccessLogMiddleware:
    """One log line and the HTTP metrics per request, labelled by route template, never raw path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = HTTPStatus.INTERNAL_SERVER_ERROR.value

        async def capture(message: dict) -> None:  # type: ignore[type-arg]
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            method = scope["method"]
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(elapsed)
            logger.info(
                "%s %s %s %.1fms",
                method,
                route,
                status,
                elapsed * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
