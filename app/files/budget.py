"""A process-wide budget of JSON bytes being parsed at once: what bounds the memory of the /s3 and user-file
reads and merges, since a parsed document can take 25 to 40 times its size (a 10 MiB `[{},{},...]` is
several hundred MB of Python objects)."""

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

from app.core.errors import ServiceUnavailable

BUDGET_WAIT_SECONDS = 10.0  # past this a request gets 503 instead of queueing behind large documents


class BudgetExhausted(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("Too many large JSON documents are being processed; retry shortly.")


class ByteBudget:
    """A FIFO semaphore counted in bytes: `hold(n)` waits until `n` bytes are free and no one asked before.

    An amount over the capacity is held as the whole capacity, so a document of the largest allowed size
    waits until it runs alone rather than never.
    """

    def __init__(self, capacity: int, *, wait_seconds: float = BUDGET_WAIT_SECONDS) -> None:
        self._capacity = capacity
        self._free = capacity
        self._wait_seconds = wait_seconds
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @property
    def free(self) -> int:
        return self._free

    @contextlib.asynccontextmanager
    async def hold(self, amount: int) -> AsyncIterator[None]:
        amount = min(max(amount, 1), self._capacity)
        await self._take(amount)
        try:
            yield
        finally:
            self._free += amount
            self._wake()

    async def _take(self, amount: int) -> None:
        if not self._waiters and self._free >= amount:
            self._free -= amount
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((amount, turn))
        try:
            async with asyncio.timeout(self._wait_seconds):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                # Handed the bytes just as the wait ended: give them back to the next in line.
                self._free += amount
            with contextlib.suppress(ValueError):
                self._waiters.remove((amount, turn))
            self._wake()
            if isinstance(exc, TimeoutError):
                raise BudgetExhausted from None
            raise

    def _wake(self) -> None:
        while self._waiters:
            amount, turn = self._waiters[0]
            if turn.done():
                self._waiters.popleft()
                continue
            if self._free < amount:
                return
            self._waiters.popleft()
            self._free -= amount
            turn.set_result(None)
