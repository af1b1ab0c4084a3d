"""The OpenAPI document as a generated client reads it: error bodies as problem+json with their schema,
the bearer scheme as a JWT, and the scope each operation needs."""

from typing import Any

import httpx
import pytest

from app.core.security import SCOPES

PUBLIC = {("/health", "get"), ("/ready", "get"), ("/metrics", "get"), ("/sns/webhook", "post")}


@pytest.fixture(scope="module")
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


async def test_every_error_response_is_problem_json_with_the_problem_schema(document: dict[str, Any]) -> None:
    checked = 0
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (path, method, status)
                checked += 1
    assert checked > 50
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])


async def test_the_bearer_scheme_says_jwt(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }


async def test_each_protected_operation_names_its_scope(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if (path, method) in PUBLIC:
            assert "x-required-scopes" not in operation
            continue
        [scope] = operation["x-required-scopes"]
        assert scope in SCOPES
        assert f"Requires the `{scope}` scope." in operation["description"]
    assert document["paths"]["/users/{user_id}/health"]["patch"]["x-required-scopes"] == ["users:write"]
    assert document["paths"]["/s3/{key}"]["get"]["x-required-scopes"] == ["s3:read"]
