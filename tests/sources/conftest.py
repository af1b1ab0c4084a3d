"""Sources under test: each test's own name and prefix, applied through the API as an admin would."""

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.helpers import bearer


def admin() -> dict[str, str]:
    """A fresh admin token: one made at import would expire before a late test of a long run."""
    return bearer(["ingestion:admin", "ingestion:read"])


ApplySource = Callable[..., Awaitable[dict[str, Any]]]


def source_name(base: str) -> str:
    return f"{base}_{secrets.token_hex(4)}"


@pytest.fixture
def apply_source(client: httpx.AsyncClient) -> ApplySource:
    """PUT a source; 200 expected unless `status` says otherwise. Returns the answer's body."""

    async def apply(spec: dict[str, Any], *, status: int = 200) -> dict[str, Any]:
        response = await client.put(f"/ingestion/sources/{spec['name']}", json=spec, headers=admin())
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    return apply
