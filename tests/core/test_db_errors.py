"""Database failures classified by SQLSTATE, from real PostgreSQL errors: the server, the connection and
contention are transient (retry later); the data and bugs are not. Then what a user sees of each kind:
an ingested file released for a retry instead of failed, and a 503 instead of a 500."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.core import db as database
from app.core.config import Settings
from app.core.db import apply_migrations
from app.ingestion.claims import Claimed
from app.ingestion.envelopes import ObjectRef
from app.ingestion.outcomes import Transient
from tests.helpers import bearer, eventually, problem_of, resources, started_app, unique_id

Failure = Callable[[asyncpg.Connection], Awaitable[Any]]


def raising(sqlstate: str) -> Failure:
    """A statement the server fails with `sqlstate` (PL/pgSQL's RAISE sends any code, as the server's own)."""

    async def run(conn: asyncpg.Connection) -> Any:
        return await conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$")

    return run


async def statement_timeout(conn: asyncpg.Connection) -> Any:
    await conn.execute("SET statement_timeout = 10")
    try:
        return await conn.execute("SELECT pg_sleep(5)")
    finally:
        await conn.execute("RESET statement_timeout")


async def read_only_write(conn: asyncpg.Connection) -> Any:
    async with conn.transaction(readonly=True):
        return await conn.execute("CREATE TABLE read_only_test (n int)")


async def integer_out_of_range(conn: asyncpg.Connection) -> Any:
    return await conn.fetchval("SELECT 2147483647::int + 1")


async def bigint_parameter_out_of_range(conn: asyncpg.Connection) -> Any:
    return await conn.fetchval("SELECT $1::bigint", 2**64)  # asyncpg refuses to encode it


async def duplicate_key(conn: asyncpg.Connection) -> Any:
    await conn.execute("CREATE TEMPORARY TABLE IF NOT EXISTS dup_test (n int PRIMARY KEY)")
    await conn.execute("INSERT INTO dup_test VALUES (1) ON CONFLICT DO NOTHING")
    return await conn.execute("INSERT INTO dup_test VALUES (1)")


async def undefined_column(conn: asyncpg.Connection) -> Any:
    return await conn.fetchval("SELECT no_such_column FROM audit_log")


@pytest.mark.parametrize(
    ("failure", "transient"),
    [
        pytest.param(statement_timeout, True, id="57014-query-canceled"),
        pytest.param(read_only_write, True, id="25006-read-only-after-failover"),
        pytest.param(raising("53300"), True, id="53300-too-many-connections"),
        pytest.param(raising("53100"), True, id="53100-disk-full"),
        pytest.param(raising("53200"), True, id="53200-out-of-memory"),
        pytest.param(raising("40001"), True, id="40001-serialization"),
        pytest.param(raising("40P01"), True, id="40P01-deadlock"),
        pytest.param(raising("55P03"), True, id="55P03-lock-not-available"),
        pytest.param(raising("57P01"), True, id="57P01-admin-shutdown"),
        pytest.param(raising("58030"), True, id="58030-io-error"),
        pytest.param(raising("XX000"), True, id="XX000-internal-error"),
        pytest.param(integer_out_of_range, False, id="22003-numeric-out-of-range"),
        pytest.param(bigint_parameter_out_of_range, False, id="client-data-error"),
        pytest.param(duplicate_key, False, id="23505-unique-violation"),
        pytest.param(raising("23514"), False, id="23514-check-violation"),
        pytest.param(raising("54000"), False, id="54000-program-limit"),
        pytest.param(undefined_column, False, id="42703-undefined-column"),
    ],
)
async def test_database_errors_are_transient_by_sqlstate_class(
    db: asyncpg.Connection, failure: Failure, transient: bool
) -> None:
    with pytest.raises(database.DATABASE_ERRORS) as raised:
        await failure(db)
    assert database.is_transient(raised.value) is transient


def as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


async def test_too_many_connections_for_a_role_is_transient(
    settings: Settings, db: asyncpg.Connection
) -> None:
    # The server's own 53300: a role whose connection limit is reached.
    role = f"limited_{secrets.token_hex(4)}"
    await db.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError) as raised:
            await asyncpg.connect(as_role(str(settings.database_url), role))
        assert database.is_transient(raised.value)
    finally:
        await db.execute(f"DROP ROLE {role}")


# --- what a user sees ------------------------------------------------------------------------------


@pytest.fixture
def quiet_bucket(s3: Any) -> str:
    name = f"quiet-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


async def test_file_whose_load_is_cancelled_by_the_server_is_released_not_failed(
    app: FastAPI, s3: Any, quiet_bucket: str, db: asyncpg.Connection, settings: Settings
) -> None:
    # A query cancelled mid-load (statement_timeout, an operator's pg_cancel_backend, a failover drill)
    # says nothing about the file: it must be retried, not failed for good with its message deleted.
    key = f"cancel/{secrets.token_hex(4)}.jsonl"
    s3.put_object(Bucket=quiet_bucket, Key=key, Body=b"".join(b'{"n": %d}\n' % n for n in range(2_000)))
    ingestor = resources(app).ingestor
    claimed = await ingestor.claim(ObjectRef(quiet_bucket, key, None, None, None), "cli")
    assert isinstance(claimed, Claimed)
    # The load will wait for this lock on the file's row (its rows' foreign key, or its `completed`): a
    # query caught running, every time, rather than one that a poll may or may not catch.
    blocker = await asyncpg.connect(str(settings.database_url))
    try:
        async with blocker.transaction():
            await blocker.execute(
                "SELECT 1 FROM file_processing_log WHERE id = $1 FOR UPDATE", claimed.file_id
            )
            loading = asyncio.create_task(ingestor.load(claimed))

            async def cancel_the_waiting_load() -> bool:
                return bool(
                    await db.fetchval(
                        """
                        SELECT bool_or(pg_cancel_backend(pid)) FROM pg_stat_activity
                        WHERE application_name = 'aws-s3-service' AND datname = current_database()
                          AND state = 'active' AND wait_event_type = 'Lock'
                        """
                    )
                )

            await eventually(cancel_the_waiting_load, message="the load waiting to complete, cancelled")
        with pytest.raises(Transient):
            await loading
    finally:
        await blocker.close()
    row = await db.fetchrow("SELECT status, error_code FROM file_processing_log WHERE key = $1", key)
    assert dict(row) == {"status": "pending", "error_code": None}
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE file_id = $1", claimed.file_id) == 0
    # Retried, it loads.
    outcome = await ingestor.ingest(ObjectRef(quiet_bucket, key, None, None, None), "cli")
    assert (outcome.status, outcome.counts.rows_inserted) == ("completed", 2_000)


@pytest.fixture
def empty_database(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture
async def read_only_client(settings: Settings, empty_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a database that became read-only (what a primary demoted by a failover is)."""
    dsn = empty_database
    admin = await asyncpg.connect(dsn)
    try:
        await apply_migrations(admin)  # while it is still writable
        await admin.execute(
            f"ALTER DATABASE {urlsplit(dsn).path.lstrip('/')} SET default_transaction_read_only = on"
        )
    finally:
        await admin.close()
    async with started_app(settings, database_url=dsn, migrate_on_startup=False) as (_, http):
        yield http


async def test_write_to_a_read_only_database_is_503_with_retry_after(
    read_only_client: httpx.AsyncClient,
) -> None:
    body = {"user_id": unique_id(), "name": "Ada", "email": "ada@example.com"}
    response = await read_only_client.post("/users/personal", json=body, headers=bearer())
    assert response.status_code == 503
    assert problem_of(response)["type"] == "/problems/service-unavailable"
    assert response.headers["retry-after"]
