"""The database under contention: connections go to waiters in the order they asked, and no wait is longer
than its limit."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from app.core import db
from app.core.config import Settings


async def _database_of(settings: Settings, size: int) -> db.Database:
    return await db.open_database(
        settings.model_copy(update={"db_pool_min_size": size, "db_pool_max_size": size})
    )


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[db.Database]:
    database = await _database_of(settings, 1)
    try:
        yield database
    finally:
        await database.close()


async def test_no_waiter_is_overtaken_more_than_once_by_each_other_one(settings: Settings) -> None:
    # asyncpg's own pool lets whoever asks right after a release take the connection ahead of the
    # waiters, who go back to the end of the line: under load some requests waited for seconds (here
    # a waiter saw about 40 others served, twice the fair bound).
    workers = 20
    database = await _database_of(settings, 2)
    served = most_served_while_waiting = 0

    async def request_loop() -> None:
        nonlocal served, most_served_while_waiting
        for _ in range(30):
            before = served
            async with database.acquire(30) as conn:
                most_served_while_waiting = max(most_served_while_waiting, served - before)
                served += 1
                await conn.fetchval("SELECT 1")

    try:
        await asyncio.gather(*(request_loop() for _ in range(workers)))
    finally:
        await database.close()
    assert served == workers * 30
    assert most_served_while_waiting <= workers - 1


async def assert_one_free_connection(database: db.Database) -> None:
    """The pool's only connection is free, and there once only (no turn was lost or added)."""
    async with database.acquire(1) as conn:
        assert await conn.fetchval("SELECT 1") == 1
        with pytest.raises(TimeoutError):
            async with database.acquire(0.05):
                pass


async def test_waiting_longer_than_the_wait_limit_fails_and_gives_the_turn_back(
    one_connection: db.Database,
) -> None:
    async with one_connection.acquire():
        with pytest.raises(TimeoutError):
            async with one_connection.acquire(0.05):
                pass
    await assert_one_free_connection(one_connection)


async def test_without_a_limit_of_its_own_a_wait_ends_at_the_pools(settings: Settings) -> None:
    database = await db.open_database(
        settings.model_copy(
            update={"db_pool_min_size": 1, "db_pool_max_size": 1, "db_pool_wait_seconds": 0.05}
        )
    )
    try:
        async with database.acquire():
            with pytest.raises(TimeoutError):
                async with database.acquire():
                    pass
    finally:
        await database.close()


@pytest.mark.parametrize("cancelled", ["while waiting", "after being handed the turn"])
async def test_a_cancelled_waiter_gives_its_turn_back(one_connection: db.Database, cancelled: str) -> None:
    # A request whose client went away is cancelled wherever it waits; its place in line must not keep
    # the pool's only connection from the next request.
    holder = AsyncExitStack()
    await holder.enter_async_context(one_connection.acquire())

    async def wait_for_the_connection() -> None:
        async with one_connection.acquire(5):
            await asyncio.Event().wait()  # until cancelled

    waiter = asyncio.create_task(wait_for_the_connection())
    await asyncio.sleep(0)  # one step of the loop: the waiter gets in line
    assert not waiter.done()
    if cancelled == "while waiting":
        waiter.cancel()
        await holder.aclose()
    else:
        await holder.aclose()  # hands the turn to the waiter, which has not run yet
        waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await assert_one_free_connection(one_connection)


async def test_a_connection_that_cannot_open_gives_its_turn_back(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={
            "database_url": "postgresql://postgres@127.0.0.1:1/none",  # nothing listens on port 1
            "db_pool_min_size": 0,
            "db_pool_max_size": 1,
        }
    )
    database = await db.open_database(unreachable)
    try:
        for _ in range(3):  # a lost turn would make the second one wait, and time out
            with pytest.raises(ConnectionRefusedError):
                async with database.acquire(1):
                    pass
    finally:
        await database.close()
