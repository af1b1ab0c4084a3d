"""The API case's floors: GET /users/{user_id}/personal answered with the service's query
(app/users/repository.py `get`) and nothing else, as a bare FastAPI route and as a raw ASGI callable.

No auth, no request id, no access log, no metrics, no per-request transaction (one pooled fetchrow), the
service's default pool bounds, and asyncpg's default reset of a connection on release (one more round trip
a request, which the service's pool skips: docs/benchmarks.md). Served in a process set up as the
service's is: `python -m bench.serve bench.api_floor:served_fastapi_app` (or `served_raw_app`) runs
uvicorn with the service's options, and the factory applies the service's process tuning (`perf.tuned`);
every factory configures logging as the service does (LOG_LEVEL, LOG_FORMAT, with the service's defaults).
`create_fastapi_app` and `create_raw_app` are the same floors without the tuning (`python -m bench
--untuned`). DATABASE_URL comes from the environment.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, HTTPException, Request
from starlette.types import ASGIApp

from app.core import perf
from app.core.config import DatabaseSettings, Settings
from app.core.logging import configure_logging

SQL = (
    "SELECT user_id, name, email, phone, address, date_of_birth, created_at, updated_at "
    "FROM users_personal WHERE user_id = $1"
)
# The service's pool bounds (DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE defaults).
POOL_MIN_SIZE = DatabaseSettings.model_fields["db_pool_min_size"].default
POOL_MAX_SIZE = DatabaseSettings.model_fields["db_pool_max_size"].default


async def _pool() -> asyncpg.Pool:
    return await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE
    )


def _logging() -> None:
    """The service's logging configuration (the floors log nothing per request)."""
    fields = Settings.model_fields
    configure_logging(
        os.environ.get("LOG_LEVEL", fields["log_level"].default),
        os.environ.get("LOG_FORMAT", fields["log_format"].default),
    )


def create_fastapi_app() -> FastAPI:
    _logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await _pool()
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/users/{user_id}/personal")
    async def personal(user_id: str, request: Request) -> dict[str, Any]:
        row = await request.app.state.pool.fetchrow(SQL, user_id)
        if row is None:
            raise HTTPException(404)
        return dict(row)

    return app


class RawApp:
    """ASGI with no framework: the path split by hand, the row serialized by orjson."""

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        parts = scope["path"].split("/")  # "", "users", id, "personal"
        status, body = 404, b'{"detail":"Not Found"}'
        if scope["path"] == "/health":
            status, body = 200, b'{"status":"ok"}'
        elif len(parts) == 4 and parts[1] == "users" and parts[3] == "personal" and self._pool is not None:
            row = await self._pool.fetchrow(SQL, parts[2])
            if row is not None:
                status, body = 200, orjson.dumps(dict(row))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._pool = await _pool()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    await self._pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_raw_app() -> RawApp:
    _logging()
    return RawApp()


def served_fastapi_app() -> ASGIApp:
    """The bare FastAPI floor as `python -m app serve` runs the service: `perf.tuned` around it."""
    return perf.tuned(create_fastapi_app())


def served_raw_app() -> ASGIApp:
    """The raw ASGI floor with the service's process tuning."""
    return perf.tuned(create_raw_app())
