"""The /ingestion routes' own resources as dependencies."""

from typing import Annotated, Protocol, cast

from fastapi import Depends, Request

from app.ingestion.operations import BackgroundLoads


class _IngestionResources(Protocol):
    @property
    def background_loads(self) -> BackgroundLoads: ...


async def get_background_loads(request: Request) -> BackgroundLoads:
    return cast(_IngestionResources, request.app.state.resources).background_loads


Loads = Annotated[BackgroundLoads, Depends(get_background_loads)]
