"""Routes take what they use as FastAPI dependencies, so a test (or an embedder) can replace any of them with
`app.dependency_overrides`."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.deps import get_app_settings
from app.core.security import Principal, bearer_principal
from tests.helpers import started_app, unique_id


@pytest.fixture
async def overridable(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with started_app(settings) as started:
        yield started


async def test_the_principal_can_be_overridden(overridable: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = overridable
    path = f"/users/{unique_id()}/personal"
    assert (await http.get(path)).status_code == 401

    async def a_reader() -> Principal:
        return Principal(subject="override", scopes=frozenset({"users:read"}))

    app.dependency_overrides[bearer_principal] = a_reader
    assert (await http.get(path)).status_code == 404  # past the token check, to the (missing) record


async def test_the_settings_a_route_uses_can_be_overridden(
    overridable: tuple[FastAPI, httpx.AsyncClient], settings: Settings
) -> None:
    app, http = overridable

    async def another_bucket() -> Settings:
        return settings.model_copy(update={"s3_bucket_name": "no-such-bucket-here"})

    app.dependency_overrides[get_app_settings] = another_bucket
    response = await http.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["s3"].startswith("failed")
