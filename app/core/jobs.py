"""Background jobs the lifespan starts and cancels at shutdown: a loop of turns that outlives failures."""

import asyncio
import contextlib
import logging

from botocore.exceptions import ClientError

from app.core import aws

logger = logging.getLogger(__name__)


class BackgroundJob:
    """Runs `turn()` again and again; a turn returns how long to wait before the next one."""

    name = "job"
    retry_after_failure_seconds = 60.0

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def turn(self) -> float:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                delay = await self.turn()
            except Exception as exc:  # the job must outlive an outage: the next turn tries again
                reason = aws.error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
                logger.warning("%s failed", self.name, extra={"reason": reason})
                delay = self.retry_after_failure_seconds
            await asyncio.sleep(delay)
