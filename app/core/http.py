"""The pure ASGI edge middleware (request id, body limit, access log, metrics) and request-level guards."""

import logging
import random
import re
import time
from email.message import Message as MimeHeader
from http import HTTPStatus
from typing import Annotated

from asgi_correlation_id import correlation_id
from fastapi import Depends, HTTPException, Request, Response
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class JsonBytes(Response):
    """A JSON response whose body is JSON bytes already (checked when read), served as they are."""

    media_type = "application/json"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"The request body exceeds {limit} bytes.")


async def require_json(request: Request) -> None:
    """Route dependency for JSON bodies: anything else is 415, not a confusing 422."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    header = request.headers.get("content-type")
    if header:
        message = MimeHeader()
        message["content-type"] = header
        subtype = message.get_content_subtype()
        if message.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json")
        ):
            return
    raise HTTPException(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "The request body must be application/json.")


# A parameter of routes that take a JSON body, declared after the principal: the token is checked first.
JsonBody = Annotated[None, Depends(require_json)]


def _new_request_id() -> str:
    """32 hex digits, like a uuid4's: a correlation id, not a secret, so it comes from the process's
    seeded PRNG, not from os.urandom (a system call per request)."""
    return f"{random.getrandbits(128):032x}"


class EdgeMiddleware:
    """Every request's edge in one pure ASGI layer: the request id, the body limit, the access log line
    and the HTTP metrics. (One layer, not three: each layer costs a coroutine and a send wrapper per
    request, which the API benchmark showed.)

    - Request id: a client's X-Request-ID is kept if it matches `request_id_pattern` (short and plain,
      so it cannot forge log lines), else a new one is made; it is in every log line of the request
      (asgi_correlation_id's context variable and log filter) and echoed on the response.
    - Body limit: a declared Content-Length over the limit fails before any byte is read; a chunked body
      is counted as it arrives. BodyTooLarge is raised inside the app so the problem+json handler renders
      it. A request without a body (no Content-Length, no Transfer-Encoding) is passed through as is.
    - Access log and metrics: one `app.access` line per request, written when the request ends (nothing is
      buffered), and the metrics, labelled by the route template, never the raw path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_id_pattern: re.Pattern[str],
        max_body_bytes: int,
        per_path_body_bytes: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.request_id_pattern = request_id_pattern
        self.max_body_bytes = max_body_bytes
        self.per_path_body_bytes = per_path_body_bytes or {}
        self._metric_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        client_id: str | None = None
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:  # ASGI header names are lower case
            if name == b"x-request-id":
                client_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        replaced = client_id is not None and not self.request_id_pattern.match(client_id)
        request_id = _new_request_id() if replaced or client_id is None else client_id
        correlation_id.set(request_id)
        if replaced:
            logger.warning("request id replaced: the X-Request-ID header is not short and plain")
        request_id_header = (b"x-request-id", request_id.encode())
        status = HTTPStatus.INTERNAL_SERVER_ERROR.value

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        if declared is not None or chunked:
            receive = self._limited(scope, receive, declared)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            method = scope["method"]
            count, latency = self._metrics(method, route, status)
            count.inc()
            latency.observe(elapsed)
            if logger.isEnabledFor(logging.INFO):
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

    def _metrics(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        # prometheus_client looks labels up under a lock on every call; the children are few (route
        # templates, not paths), so they are kept here.
        key = (method, route, status)
        children = self._metric_children.get(key)
        if children is None:
            children = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route))
            self._metric_children[key] = children
        return children

    def _limited(self, scope: Scope, receive: Receive, declared: bytes | None) -> Receive:
        max_bytes = self.per_path_body_bytes.get(scope["path"], self.max_body_bytes)
        # A length that is not a number is not trusted: the body is counted as it arrives.
        counting = declared is None or not declared.isdigit()
        received = 0 if counting else int(declared or 0)

        async def limited_receive() -> Message:
            nonlocal received
            if received > max_bytes:
                raise BodyTooLarge(max_bytes)
            message = await receive()
            if counting and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        return limited_receive
