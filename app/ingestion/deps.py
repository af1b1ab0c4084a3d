"""The /ingestion routes' own resources as dependencies."""

from typing import Annotated, Protocol, cast

from fastapi import Depends, Request

from app.ingestion.ingestor import Ingestor
from app.ingestion.operations import BackgroundLoads


class _IngestionResources(Protocol):
    @property
    def background_loads(self) -> BackgroundLoads: ...

    @property
    def ingestor(self) -> Ingestor: ...


def _resources(request: Request) -> _IngestionResources:
    return cast(_IngestionResources, request.app.state.resources)


async def get_background_loads(request: Request) -> BackgroundLoads:
    return _resources(request).background_loads


async def get_ingestor(request: Request) -> Ingestor:
    return _resources(request).ingestor


Loads = Annotated[BackgroundLoads, Depends(get_background_loads)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
