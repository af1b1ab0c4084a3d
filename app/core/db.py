"""The database: a fair asyncpg pool, connections and transactions, SQLSTATE classes, and versioned SQL
migrations under an advisory lock."""

import asyncio
import collections
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from app.core.config import DatabaseSettings

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works as long as every replica uses the same one.
MIGRATION_LOCK_KEY = 7_301_843_562
REQUEST_WAIT_SECONDS = 5.0  # a request waits this long for a connection, then gets 503
# TCP keepalives of the server's side of each connection: when a worker's host vanishes (no FIN, no RST),
# PostgreSQL ends its session within idle + interval * count = 25 s, and with it the claims it held.
KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
POOL_CLOSE_TIMEOUT_SECONDS = 10.0  # at shutdown, then the remaining connections are dropped

# What the service's SQL runs on: a pooled connection (asyncpg hands out a proxy), or a direct one. The
# stubs make both generic in the record type; at run time they are plain classes.
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Connection = asyncpg.Connection | PoolConnectionProxy


class MigrationError(Exception):
    pass


# SQLSTATE classes (PostgreSQL's Appendix A) that describe the server, the connection or contention, never
# the data: connection exception, transaction rollback (serialization, deadlock), insufficient resources,
# object not in prerequisite state (lock not available), operator intervention (query canceled, admin or
# crash shutdown, cannot connect now), system error, internal error.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58", "XX"})
# read_only_sql_transaction: after a failover the old primary is a replica until the DNS name moves.
_TRANSIENT_SQLSTATES = frozenset({"25006"})
# What a database failure can be raised as; `is_transient` tells the two kinds apart.
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Whether a database failure is worth retrying later, rather than a verdict on the data or a bug.

    Server errors go by their SQLSTATE class (asyncpg raises a value it cannot encode, such as an integer
    beyond bigint, as SQLSTATE 22000). Its client-side errors go by kind: a DataError (a ValueError) is
    about the data; the others (a closed connection, a protocol error) and network errors are not.
    """
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state in _TRANSIENT_SQLSTATES
    if isinstance(exc, ValueError):
        return False
    return isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError)


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


class _Turns:
    """A FIFO semaphore whose wait has a deadline: a free turn goes to the longest waiter, never to a
    newcomer. (asyncio.Semaphore inside asyncio.timeout did the same at several times the cost per
    wait, a tenth of a pooled read's CPU in the API benchmark: here a wait is one future and one timer.)
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, value: int) -> None:
        self._free = value
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def take(self, wait_limit: float) -> None:
        """Wait for a turn, at most `wait_limit` seconds (TimeoutError)."""
        if self._free and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiters.append(turn)
        timer = loop.call_later(wait_limit, _time_out, turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self.give_back()  # handed a turn, then cancelled before it ran: the next one's
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(turn)
            raise
        finally:
            timer.cancel()

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _time_out(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_exception(TimeoutError())


class Database:
    """The service's PostgreSQL: an asyncpg pool whose connections go out in the order they were asked for,
    and never after an unbounded wait.

    asyncpg keeps its waiters in an asyncio.Queue, where a newcomer takes a connection released for a
    waiter before that waiter runs, and the waiter goes back to the end of the line: with more requests
    than connections, some waited for seconds (the API benchmark's p99 and max). A FIFO of turns, one per
    connection, in front of the pool admits them in order, and an admitted one always finds a free
    connection. Every connection the service uses comes from `acquire`.
    """

    def __init__(self, pool: asyncpg.Pool, *, size: int, wait_limit: float) -> None:
        self._pool = pool
        self._turns = _Turns(size)
        self._wait_limit = wait_limit

    @asynccontextmanager
    async def acquire(self, wait_limit: float | None = None) -> AsyncIterator[Connection]:
        """A pooled connection, after waiting at most `wait_limit` seconds (default: DB_POOL_WAIT_SECONDS;
        TimeoutError past it, which callers treat as an outage)."""
        await self._turns.take(self._wait_limit if wait_limit is None else wait_limit)
        try:
            # Admitted: a connection is free, or being opened (which has its own connect timeout).
            async with self._pool.acquire() as conn:
                yield conn
        finally:
            self._turns.give_back()

    @asynccontextmanager
    async def transaction(self, wait_limit: float | None = None) -> AsyncIterator[Connection]:
        """A connection inside a transaction that commits on a clean exit."""
        async with self.acquire(wait_limit) as conn, conn.transaction():
            yield conn

    async def ping(self) -> None:
        """One round trip: whether the database answers (readiness, the consumer's outage probe)."""
        async with self.acquire() as conn:
            await conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def exclusive(self, lock_key: int) -> AsyncIterator[bool]:
        """Whether this process may run a job that must run on one replica at a time.

        A session-level advisory lock held on one pooled connection for the job's duration; the other
        replicas get False at once. If this process dies, PostgreSQL drops the lock with the connection.
        """
        async with self.acquire(REQUEST_WAIT_SECONDS) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key):
                yield False
                return
            try:
                yield True
            finally:
                # A broken connection has dropped the lock already.
                with contextlib.suppress(*DATABASE_ERRORS):
                    await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), POOL_CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            self._pool.terminate()


async def open_database(settings: DatabaseSettings) -> Database:
    pool = await asyncpg.create_pool(
        str(settings.database_url),
        init=_init_connection,
        reset=_keep_session,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        command_timeout=settings.db_command_timeout_seconds,
        timeout=settings.db_connect_timeout_seconds,
        server_settings={"application_name": "aws-s3-service", **KEEPALIVES},
    )
    return Database(pool, size=settings.db_pool_max_size, wait_limit=settings.db_pool_wait_seconds)


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
