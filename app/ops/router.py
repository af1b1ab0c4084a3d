"""GET /health (liveness), /ready (dependencies answer) and /metrics (Prometheus text)."""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Annotated, Any, Protocol, cast

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from app.core.deps import AppSettings, Aws, Db
from app.core.errors import problem

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

READY_CACHE_SECONDS = 1.0  # /ready is public: however often it is hit, the checks run once a second
READY_CHECKS = Counter("ready_checks_total", "Rounds of /ready's database, S3 and SQS checks actually run")


class Polling(Protocol):
    def healthy(self) -> bool:
        """Whether it polled recently (or is busy with as much work as it takes)."""
        ...


class Readiness:
    """The last round of dependency checks, reused for READY_CACHE_SECONDS; one round runs at a time, and
    requests arriving meanwhile get its result. The consumer's health (no I/O) is looked at every time."""

    def __init__(self, consumer: Polling | None) -> None:
        self.consumer = consumer
        self._lock = asyncio.Lock()
        self._checked_at = -math.inf
        self._results: dict[str, str] = {}

    async def results(self, run: Callable[[], Awaitable[dict[str, str]]]) -> dict[str, str]:
        async with self._lock:
            if time.monotonic() - self._checked_at >= READY_CACHE_SECONDS:
                READY_CHECKS.inc()
                self._results = await run()
                self._checked_at = time.monotonic()
            return self._results


class _OpsResources(Protocol):
    @property
    def readiness(self) -> Readiness: ...


async def get_readiness(request: Request) -> Readiness:
    return cast(_OpsResources, request.app.state.resources).readiness


ReadinessDep = Annotated[Readiness, Depends(get_readiness)]


@router.get("/health", summary="Liveness: the process answers; touches nothing external")
async def health() -> dict[str, str]:
    return {"message": "ok"}


async def _check(name: str, probe: Awaitable[Any], limit_seconds: float) -> tuple[str, str]:
    try:
        async with asyncio.timeout(limit_seconds):
            await probe
    except Exception as exc:  # any failure means "not ready"; the type is enough to act on
        logger.warning("readiness check failed", extra={"check": name, "error_type": type(exc).__name__})
        return name, f"failed: {type(exc).__name__}"
    return name, "ok"


@router.get(
    "/ready",
    summary="Readiness: database, S3 and SQS answer, and the consumer polls",
    responses={503: {"description": "A dependency is not ready; `checks` says which"}},
)
async def ready(db: Db, aws: Aws, settings: AppSettings, readiness: ReadinessDep) -> Any:
    timeout = settings.ready_check_timeout_seconds

    async def run() -> dict[str, str]:
        return dict(
            await asyncio.gather(
                _check("database", db.ping(), timeout),
                _check("s3", aws.s3.head_bucket(Bucket=settings.s3_bucket_name), timeout),
                _check(
                    "sqs",
                    aws.sqs.get_queue_attributes(
                        QueueUrl=str(settings.sqs_queue_url), AttributeNames=["QueueArn"]
                    ),
                    timeout,
                ),
            )
        )

    results = {**await readiness.results(run)}
    if readiness.consumer is not None:
        results["consumer"] = "ok" if readiness.consumer.healthy() else "failed: not polling"
    if all(result == "ok" for result in results.values()):
        return {"status": "ready", "checks": results}
    failed = ", ".join(name for name, result in results.items() if result != "ok")
    return problem(HTTPStatus.SERVICE_UNAVAILABLE, f"Not ready: {failed}.", slug="not-ready", checks=results)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
