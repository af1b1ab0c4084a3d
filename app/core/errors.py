"""RFC 9457 problem+json for every error path: domain errors, HTTP errors, validation, outages, crashes."""

import logging
from http import HTTPStatus
from typing import Any

import asyncpg
from asgi_correlation_id import correlation_id
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.core import aws, db

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
RETRY_AFTER_SECONDS = 5  # what a 503 tells clients; long enough for a pool to reconnect


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}" if slug else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extensions,
    }
    return ProblemResponse(body, status_code=status, headers=headers)


class DomainError(Exception):
    """An expected failure that maps to one HTTP status; subclasses set `status` and `slug`."""

    status: int = HTTPStatus.BAD_REQUEST
    slug: str = "bad-request"
    retry_after_seconds: int | None = None  # sent as Retry-After (503, 429)

    def __init__(self, detail: str, *, field: str | None = None, location: str = "body") -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field  # set when one input field is at fault: rendered in `errors`
        self.location = location


class NotFound(DomainError):
    status = HTTPStatus.NOT_FOUND
    slug = "not-found"


class Conflict(DomainError):
    status = HTTPStatus.CONFLICT
    slug = "conflict"


class ServiceUnavailable(DomainError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    slug = "service-unavailable"
    retry_after_seconds = RETRY_AFTER_SECONDS


def _field_name(loc: tuple[int | str, ...]) -> str:
    # ("body", "email") -> "email"; ("path", "user_id") -> "user_id"; nested -> "address.city"
    parts = [str(part) for part in loc[1:]] if len(loc) > 1 else [str(part) for part in loc]
    return ".".join(parts)


def _validation_problem(exc: RequestValidationError) -> ProblemResponse:
    raw = exc.errors()
    if any(error.get("type") == "json_invalid" for error in raw):
        return problem(HTTPStatus.BAD_REQUEST, "The request body is not valid JSON.", slug="json")
    errors = [
        # The client's input is deliberately not echoed: it may hold personal data.
        {
            "field": _field_name(tuple(error["loc"])),
            "in": str(error["loc"][0]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in raw
    ]
    fields = ", ".join(sorted({error["field"] for error in errors}))
    return problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        f"Invalid request: {fields}.",
        slug="validation",
        errors=errors,
    )


class BackingServiceDown(Exception):
    """A dependency (database, S3, SQS) failed in a way worth retrying later: a 503 at the edge."""


def _unavailable_problem() -> ProblemResponse:
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "A backing service is unavailable; retry shortly.",
        slug="service-unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _allowed_methods(request: Request) -> str:
    """Every method a route serves at the request's path. The router's own 405 names only the methods of
    the first route whose path matched, and FastAPI adds one route per method (RFC 9110 wants them all)."""
    where = {"type": "http", "path": request.scope["path"], "root_path": request.scope.get("root_path", "")}
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in HTTP_METHODS
        if any(route.matches({**where, "method": method})[0] is Match.FULL for route in routes)
    )


def _route(request: Request) -> str:
    return getattr(request.scope.get("route"), "path", "-")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> ProblemResponse:
        headers = None if exc.retry_after_seconds is None else {"Retry-After": str(exc.retry_after_seconds)}
        extensions: dict[str, Any] = {}
        if exc.field is not None:
            extensions["errors"] = [
                {"field": exc.field, "in": exc.location, "message": exc.detail, "type": exc.slug}
            ]
        return problem(exc.status, exc.detail, slug=exc.slug, headers=headers, **extensions)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return problem(exc.status_code, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> ProblemResponse:
        return _validation_problem(exc)

    @app.exception_handler(BackingServiceDown)
    @app.exception_handler(OSError)
    @app.exception_handler(TimeoutError)
    async def _unavailable(request: Request, exc: Exception) -> ProblemResponse:
        logger.warning(
            "dependency unavailable", extra={"error_type": type(exc).__name__, "route": _route(request)}
        )
        return _unavailable_problem()

    @app.exception_handler(asyncpg.PostgresError)
    @app.exception_handler(asyncpg.InterfaceError)
    async def _database(request: Request, exc: Exception) -> ProblemResponse:
        # By SQLSTATE: a failover, a cancelled query or an exhausted server is 503, retried by the client;
        # an error about the data is a 500, because the API should have refused the input first.
        if db.is_transient(exc):
            return await _unavailable(request, exc)
        return await _crash(request, exc)

    @app.exception_handler(ClientError)
    async def _aws_refused(request: Request, exc: ClientError) -> ProblemResponse:
        code = aws.error_code(exc)
        logger.warning("aws error", extra={"aws_error_code": code, "route": _route(request)})
        if aws.is_transient(exc):
            return _unavailable_problem()
        # AWS's own message can name resources and principals: only the code goes out.
        return problem(HTTPStatus.BAD_GATEWAY, f"AWS refused the request ({code}).", slug="aws")

    @app.exception_handler(BotoCoreError)
    async def _aws_unreachable(request: Request, exc: BotoCoreError) -> ProblemResponse:
        logger.warning("aws unreachable", extra={"error_type": type(exc).__name__, "route": _route(request)})
        return _unavailable_problem()

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> ProblemResponse:
        logger.error("unhandled error", exc_info=exc)
        # Starlette answers unhandled errors outside every middleware, so the request id
        # middleware never sees this response: the header is set here.
        return problem(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            "An unexpected error occurred.",
            headers={"X-Request-ID": correlation_id.get() or "-"},
        )


class FieldError(BaseModel):
    field: str
    location: str = Field(alias="in")
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response of this API."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries so Swagger shows each error a route can return."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }
