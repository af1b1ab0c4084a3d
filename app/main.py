"""create_app() and the lifespan that owns the settings, the database pool and the AWS clients.

`uvicorn app.main:app` (the original service's command) finds `app` here: it is built on first access from
the environment, so importing this module reads no setting and opens no connection.
"""

import asyncio
import gc
import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import httpx
from fastapi import APIRouter, FastAPI

from app.core import aws, db
from app.core.config import EXIT_CONFIG, Settings, SettingsError, get_settings
from app.core.errors import install_error_handlers
from app.core.http import AccessLog, EdgeMiddleware
from app.core.logging import configure_logging
from app.core.openapi import install_openapi
from app.core.security import TokenVerifier
from app.files.budget import ByteBudget
from app.files.router import router as files_router
from app.ingestion.consumer import Consumer
from app.ingestion.dispatcher import Dispatcher, sns_handler
from app.ingestion.loader import Ingestor
from app.ingestion.reconcile import ReconcileLoop, Reconciler
from app.ingestion.reports import DailyReportJob
from app.ingestion.router import router as ingestion_router
from app.ingestion.service import BackgroundLoads
from app.notifications.router import router as notifications_router
from app.notifications.webhook import HandledMessageIds, SnsMessageVerifier
from app.notifications.webhook import router as sns_webhook_router
from app.ops.router import Readiness
from app.ops.router import router as ops_router
from app.users.router import router as users_router

logger = logging.getLogger(__name__)

POOL_CLOSE_TIMEOUT_SECONDS = 10.0
OUTBOUND_HTTP_TIMEOUT_SECONDS = 5.0
MULTIPART_ENVELOPE_BYTES = 65_536  # boundaries, part headers and small fields around an uploaded file
# A client's request id is echoed only if it is short and plain, so it cannot forge log lines.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


GC_YOUNGEST_THRESHOLD = 10_000


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with AsyncExitStack() as stack:
        stack.callback(app.state.access_log.flush)  # last: the lines of requests served until the end
        pool = await db.create_pool(settings)
        stack.push_async_callback(_close_pool, pool)
        if settings.migrate_on_startup:
            async with pool.acquire() as conn:
                await db.apply_migrations(conn)
        app.state.pool = pool
        app.state.aws = await aws.open_clients(settings, stack)
        # Buckets in S3_BUCKET_ROLES are read with their role's credentials, the others with aws.s3.
        s3_by_bucket = await aws.open_source_clients(settings, app.state.aws, stack)
        # Outbound HTTP (SNS certificates and subscription confirmations); never follows redirects,
        # so a trusted URL cannot bounce the service to an untrusted one.
        app.state.http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=OUTBOUND_HTTP_TIMEOUT_SECONDS, follow_redirects=False)
        )
        app.state.sns_verifier = SnsMessageVerifier(
            settings.sns_trusted_url_pattern,
            app.state.http,
            accepted_topic_arns=settings.accepted_topic_arns,
            allow_signature_v1=settings.sns_allow_signature_v1,
        )
        app.state.sns_handled_ids = HandledMessageIds()
        ingestor = Ingestor(pool, s3_by_bucket.client_for, settings)
        dispatcher = Dispatcher(ingestor, app.state.aws.s3, settings.s3_bucket_name)
        app.state.ingestor = ingestor
        app.state.background_loads = BackgroundLoads(ingestor, settings.ingest_max_api_loads)
        stack.push_async_callback(app.state.background_loads.stop)
        app.state.reconciler = Reconciler(pool, ingestor, s3_by_bucket.client_for, settings)
        if settings.reconcile_interval_seconds:
            sweeps = ReconcileLoop(app.state.reconciler, settings.reconcile_interval_seconds)
            sweeps.start()
            stack.push_async_callback(sweeps.stop)
        if settings.report_daily_at_utc is not None:
            reports = DailyReportJob(
                pool, app.state.aws.s3, app.state.aws.sns, settings, settings.report_daily_at_utc
            )
            reports.start()
            stack.push_async_callback(reports.stop)
        app.state.sns_notification_handler = sns_handler(dispatcher, app.state.background_loads)
        app.state.consumer = None
        if settings.sqs_consumer_enabled:
            consumer = Consumer(app.state.aws.sqs, dispatcher, settings)
            consumer.start()
            # Registered last, so it stops first: in-flight files still have the pool and clients.
            stack.push_async_callback(consumer.stop)
            app.state.consumer = consumer
        # What start-up built (AWS clients and their service models, the app, the pool) lives as long
        # as the process: frozen out of the collector's sight, a full collection stops walking it every
        # second or two under load (~100 ms pauses, every request in flight waiting: the API's p99).
        # Start-up's own garbage is collected first, so none of it is frozen.
        gc.collect()
        gc.freeze()
        # The youngest generation is collected when tracked objects outnumber the freed ones by the
        # threshold (700 by default). 64 requests in flight hold thousands, so it ran every few
        # requests, walking them all each time: ~20 us a request (measured with gc.callbacks). At
        # 10,000 it runs once that many objects are pending: cyclic garbage waits longer (a few MiB at most).
        thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNGEST_THRESHOLD, *thresholds[1:])
        logger.info("service started", extra={"consumer": settings.sqs_consumer_enabled})
        yield
        # A process that starts the app again (tests, reloads) gets the collector as it was.
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        logger.info("service stopping")


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_SECONDS)
    except TimeoutError:
        pool.terminate()


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes, added to the app itself rather than with `include_router`.

    FastAPI keeps an included router as a wrapper that matches through an extra layer of route
    contexts on every request (a tenth of a simple read's CPU in the API benchmark). Our routers
    carry their prefix, tags, responses and dependencies on each route already, and the app adds
    nothing at inclusion, so the routes are the same ones.
    """
    app.router.routes.extend(router.routes)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; with no argument, settings come from the environment.

    A bad environment exits with one line on stderr: uvicorn's `--factory` would otherwise print
    a traceback around it.
    """
    if settings is None:
        try:
            settings = get_settings()
        except SettingsError as exc:
            print(exc, file=sys.stderr)  # noqa: T201  (logging is not configured yet)
            raise SystemExit(EXIT_CONFIG) from None
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="aws-s3-service",
        version="0.1.0",
        description="S3 read/merge/upload, SNS publish, user records in PostgreSQL, "
        "and exactly-once ingestion of files announced on SQS.",
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
        # FastAPI's own OpenTelemetry hooks: off, the service's metrics are Prometheus at /metrics (and
        # the check whether they are configured costs on every request).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    app.state.access_log = AccessLog()
    app.state.json_budget = ByteBudget(settings.json_budget_bytes)
    app.state.readiness = Readiness()
    install_error_handlers(app)
    install_openapi(app)
    # Routes are tried in order: the user record routes, the most requested, go first.
    for router in (
        users_router,
        ops_router,
        files_router,
        notifications_router,
        sns_webhook_router,
        ingestion_router,
    ):
        _add_routes(app, router)
    app.add_middleware(
        EdgeMiddleware,
        request_id_pattern=_REQUEST_ID,
        max_body_bytes=settings.max_request_body_bytes,
        # The upload route streams and enforces the exact file limit itself; this bounds the envelope.
        per_path_body_bytes={"/s3/upload": settings.max_upload_bytes + MULTIPART_ENVELOPE_BYTES},
        access_log=app.state.access_log,
    )
    return app


def __getattr__(name: str) -> FastAPI:
    """The module-level `app`, created from the environment the first time it is asked for (PEP 562)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    application = create_app()
    globals()["app"] = application  # later lookups find it without calling this again
    return application
