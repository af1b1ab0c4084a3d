"""The shared resources as route dependencies, declared once as `Annotated` aliases: a route's signature shows
what it uses (`conn: Tx`, `aws: Aws`), and tests replace any of them with `app.dependency_overrides`.

The lifespan keeps one `Resources` on `app.state.resources` (app/resources.py). Each package reads the part it
needs through a protocol of its own, so no package imports the composition root.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Protocol, cast

from fastapi import Depends, Request

from app.core.aws import AwsClients
from app.core.config import Settings
from app.core.db import REQUEST_WAIT_SECONDS, Connection, Database


class CoreResources(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def aws(self) -> AwsClients: ...


def resources(request: Request) -> CoreResources:
    return cast(CoreResources, request.app.state.resources)


async def get_app_settings(request: Request) -> Settings:
    return resources(request).settings


async def get_db(request: Request) -> Database:
    return resources(request).db


async def get_aws(request: Request) -> AwsClients:
    return resources(request).aws


async def get_transaction(request: Request) -> AsyncIterator[Connection]:
    """The request's transaction: it commits when the route returns, before the response is sent, or
    rolls back if the route raised."""
    async with resources(request).db.transaction(REQUEST_WAIT_SECONDS) as conn:
        yield conn


AppSettings = Annotated[Settings, Depends(get_app_settings)]
# The database itself: for reads, which hold a connection for their statement only (`async with
# db.acquire()`), and for a route that must do other I/O before its transaction (S3 first, then the audit
# row: no connection waits on S3). A connection as a yield dependency cost ~35 us a request in FastAPI
# (an exit stack, a shielded cancel scope, a generator context manager), a fifth of a read's CPU on the API
# benchmark (docs/benchmarks.md); writes keep `Tx`, whose commit must precede the response.
Db = Annotated[Database, Depends(get_db)]
Aws = Annotated[AwsClients, Depends(get_aws)]
# scope="function": the transaction ends when the route returns, so a commit failure is the route's error
# (a 503 problem), never a response already sent.
Tx = Annotated[Connection, Depends(get_transaction, scope="function")]
