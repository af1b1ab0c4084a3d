"""The lifespan's resources, read from the request by the routes that use them.

Plain typed accessors, not FastAPI dependencies: FastAPI resolves every dependency of a route on every
request (a nested solve, a cache key, a call), about 25 us each in the API benchmark, a tenth of a
record read; reading an attribute costs nothing. Dependencies are kept for what has behaviour a route
declares (the token check, the JSON body check)."""

from typing import TYPE_CHECKING

import asyncpg
from fastapi import Request

from app.core.aws import AwsClients
from app.core.config import Settings

if TYPE_CHECKING:
    from app.files.budget import ByteBudget
    from app.ingestion.loader import Ingestor
    from app.ingestion.service import BackgroundLoads


def settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def aws(request: Request) -> AwsClients:
    return request.app.state.aws  # type: ignore[no-any-return]


def pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool  # type: ignore[no-any-return]


def ingestor(request: Request) -> "Ingestor":
    return request.app.state.ingestor  # type: ignore[no-any-return]


def background_loads(request: Request) -> "BackgroundLoads":
    return request.app.state.background_loads  # type: ignore[no-any-return]


def json_budget(request: Request) -> "ByteBudget":
    return request.app.state.json_budget  # type: ignore[no-any-return]
