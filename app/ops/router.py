"""GET /health (liveness), /ready (dependencies answer) and /metrics (Prometheus text)."""

import asyncio
import logging
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.core.errors import problem

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


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
async def ready(request: Request) -> Any:
    state = request.app.state
    settings = state.settings
    timeout = settings.ready_check_timeout_seconds
    checks = dict(
        await asyncio.gather(
            _check("database", state.pool.fetchval("SELECT 1"), timeout),
            _check("s3", state.aws.s3.head_bucket(Bucket=settings.s3_bucket_name), timeout),
            _check(
                "sqs",
                state.aws.sqs.get_queue_attributes(
                    QueueUrl=str(settings.sqs_queue_url), AttributeNames=["QueueArn"]
                ),
                timeout,
            ),
        )
    )
    results = {**checks}
    if state.consumer is not None:
        results["consumer"] = "ok" if state.consumer.healthy() else "failed: not polling"
    if all(result == "ok" for result in results.values()):
        return {"status": "ready", "checks": results}
    failed = ", ".join(name for name, result in results.items() if result != "ok")
    return problem(HTTPStatus.SERVICE_UNAVAILABLE, f"Not ready: {failed}.", slug="not-ready", checks=results)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
