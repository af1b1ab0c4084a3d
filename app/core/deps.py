"""Request dependencies on the lifespan's resources, declared once as Annotated aliases."""

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from app.core.aws import AwsClients
from app.core.config import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _aws(request: Request) -> AwsClients:
    return request.app.state.aws  # type: ignore[no-any-return]


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool  # type: ignore[no-any-return]


AppSettings = Annotated[Settings, Depends(_settings)]
Aws = Annotated[AwsClients, Depends(_aws)]
# For routes that must act after their transaction commits (e.g. send to SQS).
DbPool = Annotated[asyncpg.Pool, Depends(_pool)]
