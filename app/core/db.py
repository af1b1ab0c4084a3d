"""asyncpg pool, a request's connection or transaction, versioned SQL migrations under an advisory lock."""

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolAcquireContext

from app.core.config import DatabaseSettings

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works as long as every replica uses the same one.
MIGRATION_LOCK_KEY = 7_301_843_562
POOL_ACQUIRE_TIMEOUT_SECONDS = 5.0  # past this a request gets 503 instead of queueing forever

Connection = asyncpg.Connection


class MigrationError(Exception):
    pass


JSONB_BINARY_VERSION = b"\x01"  # the jsonb binary wire format: a version byte, then the JSON text


def _encode_jsonb(value: bytes | str) -> bytes:
    return JSONB_BINARY_VERSION + (value.encode() if isinstance(value, str) else value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: Connection) -> None:
    # JSONB travels as already-serialized JSON bytes (no per-row decode/encode on the COPY path)
    # and comes back parsed.
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


async def _keep_session(conn: Connection) -> None:
    """What a connection needs on its way back to the pool, beyond asyncpg's own rollback of an open
    transaction: nothing. The service sets no session variable, LISTENs to nothing, and releases
    every advisory lock it takes (`exclusive`, migrations); asyncpg's default reset would spend a
    round trip on every request making sure of it."""


async def create_pool(settings: DatabaseSettings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        str(settings.database_url),
        init=_init_connection,
        reset=_keep_session,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        command_timeout=settings.db_command_timeout_seconds,
        timeout=settings.db_connect_timeout_seconds,
        server_settings={"application_name": "aws-s3-service"},
    )


async def apply_migrations(conn: Connection) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; returns the versions applied."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version TEXT PRIMARY KEY,
                checksum TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {row["version"]: row["checksum"] for row in rows}
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            sql = path.read_text(encoding="utf-8")
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            version = path.stem
            if version in applied:
                if applied[version] != checksum:
                    raise MigrationError(f"migration {version} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    version,
                    checksum,
                )
            logger.info("migration applied", extra={"version": version})
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


@asynccontextmanager
async def exclusive(pool: asyncpg.Pool, lock_key: int) -> AsyncIterator[bool]:
    """Whether this process may run a job that must run on one replica at a time.

    A session-level advisory lock held on one pooled connection for the job's duration; the other
    replicas get False at once. If this process dies, PostgreSQL drops the lock with the connection.
    """
    async with pool.acquire(timeout=POOL_ACQUIRE_TIMEOUT_SECONDS) as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key):
            yield False
            return
        try:
            yield True
        finally:
            # A broken connection has dropped the lock already.
            with contextlib.suppress(asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)


# The edge owns the transaction: a route opens it around its service call, and it commits when the block
# exits, before the response is sent. (Not a yield dependency: FastAPI shields every such dependency's
# exit in an anyio cancel scope, a fifth of a simple read's CPU in the API benchmark.)


def _acquire(pool: asyncpg.Pool) -> PoolAcquireContext:
    """The pool's acquire context. The timeout only matters when every connection is busy: an idle
    one is handed over at once, and asyncpg's timeout wrapper costs a tenth of a simple read's CPU."""
    return pool.acquire(timeout=None if pool.get_idle_size() else POOL_ACQUIRE_TIMEOUT_SECONDS)


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A pooled connection inside a transaction that commits on a clean exit."""
    async with _acquire(pool) as conn, conn.transaction():
        yield conn


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A pooled connection without a transaction, for one read-only statement (BEGIN and COMMIT would be
    two more round trips for nothing)."""
    async with _acquire(pool) as conn:
        yield conn
