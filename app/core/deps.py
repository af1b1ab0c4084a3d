"""Request dependencies on the lifespan's resources, declared once as Annotated aliases.

They are `async def` although they do not await: FastAPI runs a plain `def` dependency in its thread
pool, a thread hop per request for an attribute read."""

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from app.core.aws import AwsClients
from app.core.config import Settings


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _aws(request: Request) -> AwsClients:
    return request.app.state.aws  # type: ignore[no-any-return]


async def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool  # type: ignore[no-any-return]


AppSettings = Annotated[Settings, Depends(_settings)]
Aws = Annotated[AwsClients, Depends(_aws)]
# For routes that must act after their transaction commits (e.g. send to SQS).
DbPool = Annotated[asyncpg.Pool, Depends(_pool)]
