"""create_app() and the lifespan that opens the service's resources (app/resources.py) and runs its jobs.

`uvicorn app.main:app` (the original service's command) finds `app` here: it is built on first access from
the environment, so importing this module reads no setting and opens no connection.
"""

import logging
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from app.core import perf
from app.core.config import EXIT_CONFIG, Settings, SettingsError, get_settings
from app.core.db import apply_migrations
from app.core.errors import install_error_handlers
from app.core.http import EdgeMiddleware
from app.core.logging import configure_logging
from app.core.openapi import install_openapi
from app.files.router import router as files_router
from app.ingestion.router import router as ingestion_router
from app.notifications.router import router as notifications_router
from app.notifications.webhook import router as sns_webhook_router
from app.ops.router import router as ops_router
from app.resources import open_resources
from app.sources.router import router as sources_router
from app.users.router import router as users_router

logger = logging.getLogger(__name__)

MULTIPART_ENVELOPE_BYTES = 65_536  # boundaries, part headers and small fields around an uploaded file
# A client's request id is echoed only if it is short and plain, so it cannot forge log lines.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            if settings.migrate_on_startup:
                async with resources.db.acquire() as conn:
                    await apply_migrations(conn)
            # Read by the route dependencies (app/core/deps.py and each package's deps).
            app.state.resources = resources
            async with resources.jobs.running():
                logger.info("service started", extra={"consumer": settings.sqs_consumer_enabled})
                yield
                logger.info("service stopping")

    return lifespan


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
        lifespan=_lifespan(settings),
        swagger_ui_parameters={"persistAuthorization": True},
    )
    install_error_handlers(app)
    install_openapi(app)
    for router in (
        users_router,
        ops_router,
        files_router,
        notifications_router,
        sns_webhook_router,
        ingestion_router,
        sources_router,
    ):
        app.include_router(router)
    app.add_middleware(
        EdgeMiddleware,
        request_id_pattern=_REQUEST_ID,
        max_body_bytes=settings.max_request_body_bytes,
        # The upload route streams and enforces the exact file limit itself; this bounds the envelope.
        per_path_body_bytes={"/s3/upload": settings.max_upload_bytes + MULTIPART_ENVELOPE_BYTES},
    )
    return app


def create_served_app() -> ASGIApp:
    """What `python -m app serve` runs: create_app() in a process tuned for serving (app/core/perf.py)."""
    return perf.tuned(create_app())


def __getattr__(name: str) -> FastAPI:
    """The module-level `app`, created from the environment the first time it is asked for (PEP 562)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    application = create_app()
    globals()["app"] = application  # later lookups find it without calling this again
    return application
