"""The connection pool under contention: connections go to waiters in the order they asked."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.core import db
from app.core.config import Settings


async def _pool_of(settings: Settings, size: int) -> db.FairPool:
    return await db.create_pool(
        settings.model_copy(update={"db_pool_min_size": size, "db_pool_max_size": size})
    )


@pytest.fixture
async def one_connection_pool(settings: Settings) -> AsyncIterator[db.FairPool]:
    pool = await _pool_of(settings, 1)
    try:
        yield pool
    finally:
        await pool.close()


async def test_no_waiter_is_overtaken_more_than_once_by_each_other_one(settings: Settings) -> None:
    # asyncpg's own pool lets whoever asks right after a release take the connection ahead of the
    # waiters, who go back to the end of the line: under load some requests waited for seconds (here
    # a waiter saw about 40 others served, twice the fair bound).
    workers = 20
    pool = await _pool_of(settings, 2)
    served = most_served_while_waiting = 0

    async def request_loop() -> None:
        nonlocal served, most_served_while_waiting
        for _ in range(30):
            before = served
            async with pool.acquire(timeout=30) as conn:
                most_served_while_waiting = max(most_served_while_waiting, served - before)
                served += 1
                await conn.fetchval("SELECT 1")

    try:
        await asyncio.gather(*(request_loop() for _ in range(workers)))
    finally:
        await pool.close()
    assert served == workers * 30
    assert most_served_while_waiting <= workers - 1


async def test_waiting_longer_than_the_acquire_timeout_fails_and_gives_the_turn_back(
    one_connection_pool: db.FairPool,
) -> None:
    pool = one_connection_pool
    held = await pool.acquire()
    with pytest.raises(TimeoutError):
        await pool.acquire(timeout=0.05)
    await pool.release(held)
    # The timed-out waiter left no turn behind: the connection is there, and there once only.
    assert await pool.fetchval("SELECT 41 + 1") == 42
    async with pool.acquire(timeout=1) as conn:
        assert await conn.fetchval("SELECT 1") == 1
        with pytest.raises(TimeoutError):
            await pool.acquire(timeout=0.05)


async def test_releasing_twice_or_a_stranger_does_not_add_a_connection(
    one_connection_pool: db.FairPool, settings: Settings
) -> None:
    pool = one_connection_pool
    conn = await pool.acquire()
    await pool.release(conn)
    await pool.release(conn)  # asyncpg ignores a second release; it must not count as a free turn
    stranger = await _pool_of(settings, 1)
    try:
        foreign = await stranger.acquire()
        with pytest.raises(asyncpg.InterfaceError):
            await pool.release(foreign)
        await stranger.release(foreign)
    finally:
        await stranger.close()
    async with pool.acquire(timeout=1):
        with pytest.raises(TimeoutError):
            await pool.acquire(timeout=0.05)  # still one connection, not two or three


@pytest.mark.parametrize("cancelled", ["while waiting", "after being handed the turn"])
async def test_a_cancelled_waiter_gives_its_turn_back(
    one_connection_pool: db.FairPool, cancelled: str
) -> None:
    # A request whose client went away is cancelled wherever it waits; its place in line must not keep
    # the pool's only connection from the next request.
    pool = one_connection_pool
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire(timeout=5).__aenter__())
    await asyncio.sleep(0)  # the waiter is in line
    assert not waiter.done()
    if cancelled == "while waiting":
        waiter.cancel()
        await pool.release(held)
    else:
        await pool.release(held)  # hands the turn to the waiter, which has not run yet
        waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    async with pool.acquire(timeout=1) as conn:
        assert await conn.fetchval("SELECT 1") == 1
        with pytest.raises(TimeoutError):
            await pool.acquire(timeout=0.05)  # one connection still, not two


async def test_a_connection_that_cannot_open_gives_its_turn_back(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={
            "database_url": "postgresql://postgres@127.0.0.1:1/none",  # nothing listens on port 1
            "db_pool_min_size": 0,
            "db_pool_max_size": 1,
        }
    )
    pool = await db.create_pool(unreachable)
    try:
        for _ in range(3):  # a lost turn would make the second one wait, and time out
            with pytest.raises(ConnectionRefusedError):
                await pool.acquire(timeout=1)
    finally:
        await pool.close()
