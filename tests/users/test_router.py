"""User record routes against the real PostgreSQL: success paths, every error, and what is stored."""

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import bearer, problem_of, unique_id

PERSONAL = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "address": "12 St James's Square, London",
    "date_of_birth": "1815-12-10",
}
FINANCIAL = {
    "account_number": "GB29NWBK60161331926819",
    "credit_score": 780,
    "annual_income": "1234567890123.45",
    "total_debt": 0.1,
}
HEALTH = {
    "blood_type": "AB-",
    "conditions": ["asthma", 'pollen, "hay" fever'],
    "medications": [],
    "allergies": ["peanuts", "{curly}", "back\\slash"],
}
BODIES = {"personal": PERSONAL, "financial": FINANCIAL, "health": HEALTH}
KINDS = list(BODIES)


async def create(client: httpx.AsyncClient, kind: str, user_id: str, **overrides: Any) -> httpx.Response:
    body = {"user_id": user_id, **BODIES[kind], **overrides}
    return await client.post(f"/users/{kind}", json=body, headers=bearer())


@pytest.mark.parametrize("kind", KINDS)
async def test_create_then_get_returns_the_stored_record(client: httpx.AsyncClient, kind: str) -> None:
    user_id = unique_id()
    created = await create(client, kind, user_id)
    assert created.status_code == 201, created.text
    fetched = await client.get(f"/users/{user_id}/{kind}", headers=bearer(["users:read"]))
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert fetched.json()["user_id"] == user_id
    assert fetched.headers["x-request-id"]


async def test_numeric_values_round_trip_exactly(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    user_id = unique_id()
    created = await create(client, "financial", user_id)
    body = created.json()
    assert body["annual_income"] == "1234567890123.45"
    assert body["total_debt"] == "0.10"
    stored = await db.fetchrow(
        "SELECT annual_income, total_debt FROM users_financial WHERE user_id = $1", user_id
    )
    assert stored["annual_income"] == Decimal("1234567890123.45")
    assert stored["total_debt"] == Decimal("0.10")


async def test_text_arrays_round_trip_with_quotes_commas_and_braces(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    await create(client, "health", user_id)
    fetched = (await client.get(f"/users/{user_id}/health", headers=bearer())).json()
    assert fetched["conditions"] == HEALTH["conditions"]
    assert fetched["medications"] == []
    assert fetched["allergies"] == HEALTH["allergies"]
    stored = await db.fetchval("SELECT allergies FROM users_health WHERE user_id = $1", user_id)
    assert stored == HEALTH["allergies"]


@pytest.mark.parametrize("kind", KINDS)
async def test_second_create_for_same_user_is_409_and_keeps_the_first(
    client: httpx.AsyncClient, kind: str
) -> None:
    user_id = unique_id()
    first = await create(client, kind, user_id)
    assert first.status_code == 201
    again = await create(client, kind, user_id)
    assert again.status_code == 409
    assert user_id in problem_of(again)["detail"]
    fetched = await client.get(f"/users/{user_id}/{kind}", headers=bearer())
    assert fetched.json() == first.json()


async def test_concurrent_creates_for_one_user_give_one_201_and_409s(client: httpx.AsyncClient) -> None:
    user_id = unique_id()
    responses = await asyncio.gather(*(create(client, "personal", user_id) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_missing_record_is_404_problem(client: httpx.AsyncClient, kind: str, method: str) -> None:
    body = {"blood_type": "O+"} if kind == "health" else {"credit_score": 700}
    if kind == "personal":
        body = {"name": "Nobody"}
    response = await client.request(
        method,
        f"/users/{unique_id()}/{kind}",
        headers=bearer(),
        json=body if method == "PATCH" else None,
    )
    assert response.status_code == 404
    assert "has no" in problem_of(response)["detail"]


async def test_patch_changes_only_sent_fields_and_bumps_updated_at(client: httpx.AsyncClient) -> None:
    user_id = unique_id()
    created = (await create(client, "personal", user_id)).json()
    patched = await client.patch(
        f"/users/{user_id}/personal", json={"phone": "+1 555 0100"}, headers=bearer()
    )
    assert patched.status_code == 200, patched.text
    after = patched.json()
    assert after["phone"] == "+1 555 0100"
    unchanged = {k: v for k, v in created.items() if k not in ("phone", "updated_at")}
    assert {k: after[k] for k in unchanged} == unchanged
    assert after["updated_at"] > created["updated_at"]
    assert after["created_at"] == created["created_at"]


async def test_patch_null_clears_an_optional_field(client: httpx.AsyncClient) -> None:
    user_id = unique_id()
    await create(client, "financial", user_id)
    patched = await client.patch(f"/users/{user_id}/financial", json={"total_debt": None}, headers=bearer())
    assert patched.status_code == 200
    assert patched.json()["total_debt"] is None
    assert patched.json()["credit_score"] == FINANCIAL["credit_score"]


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("personal", {}, "body"),
        ("personal", {"email": None}, "body"),
        ("personal", {"email": "not-an-email"}, "email"),
        ("personal", {"user_id": "other"}, "user_id"),
        ("financial", {"credit_score": 851}, "credit_score"),
        ("financial", {"annual_income": "1.234"}, "annual_income"),
        ("health", {"conditions": None}, "body"),
        ("health", {"blood_type": "C+"}, "blood_type"),
    ],
)
async def test_bad_patch_is_422_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, kind: str, body: dict[str, Any], field: str
) -> None:
    user_id = unique_id()
    created = (await create(client, kind, user_id)).json()
    response = await client.patch(f"/users/{user_id}/{kind}", json=body, headers=bearer())
    assert response.status_code == 422
    problem = problem_of(response)
    assert field in [error["field"] for error in problem["errors"]]
    assert (await client.get(f"/users/{user_id}/{kind}", headers=bearer())).json() == created


@pytest.mark.parametrize(
    ("kind", "overrides", "field"),
    [
        ("personal", {"email": "ada-at-example.com"}, "email"),
        ("personal", {"date_of_birth": "2999-01-01"}, "date_of_birth"),
        ("personal", {"name": ""}, "name"),
        ("personal", {"name": None}, "name"),
        ("personal", {"phone": "call me"}, "phone"),
        ("personal", {"nickname": "ada"}, "nickname"),
        ("financial", {"credit_score": 299}, "credit_score"),
        ("financial", {"credit_score": 700.5}, "credit_score"),
        ("financial", {"annual_income": -1}, "annual_income"),
        ("financial", {"annual_income": "12345678901234.00"}, "annual_income"),
        ("financial", {"total_debt": "NaN"}, "total_debt"),
        ("financial", {"account_number": "x"}, "account_number"),
        ("health", {"blood_type": "AB"}, "blood_type"),
        ("health", {"allergies": "peanuts"}, "allergies"),
        ("health", {"conditions": [""]}, "conditions.0"),
    ],
)
async def test_invalid_create_is_422_naming_the_field(
    client: httpx.AsyncClient, db: asyncpg.Connection, kind: str, overrides: dict[str, Any], field: str
) -> None:
    user_id = unique_id()
    response = await create(client, kind, user_id, **overrides)
    assert response.status_code == 422, response.text
    problem = problem_of(response)
    assert [error["field"] for error in problem["errors"]] == [field]
    assert field in problem["detail"]
    assert await db.fetchval(f"SELECT count(*) FROM users_{kind} WHERE user_id = $1", user_id) == 0


@pytest.mark.parametrize("user_id", ["", "a" * 129, "has space", "semi;colon", "ünï"])
async def test_invalid_user_id_in_body_is_422(client: httpx.AsyncClient, user_id: str) -> None:
    response = await create(client, "personal", user_id)
    assert response.status_code == 422
    assert problem_of(response)["errors"][0]["field"] == "user_id"


@pytest.mark.parametrize(
    "path",
    [
        "/users/" + "a" * 200 + "/personal",
        "/users/a%20b/personal",
        "/users/a%2Fb/personal",
        "/users/a/b/personal",
    ],
)
async def test_invalid_user_id_in_path_is_4xx_problem(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers=bearer())
    assert response.status_code in (404, 422)
    problem_of(response)


@pytest.mark.parametrize("kind", KINDS)
async def test_delete_removes_the_record_then_404(client: httpx.AsyncClient, kind: str) -> None:
    user_id = unique_id()
    await create(client, kind, user_id)
    deleted = await client.delete(f"/users/{user_id}/{kind}", headers=bearer())
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"/users/{user_id}/{kind}", headers=bearer())).status_code == 404
    assert (await client.delete(f"/users/{user_id}/{kind}", headers=bearer())).status_code == 404


async def test_get_user_merges_parts_with_null_for_missing(client: httpx.AsyncClient) -> None:
    user_id = unique_id()
    personal = (await create(client, "personal", user_id)).json()
    health = (await create(client, "health", user_id)).json()
    response = await client.get(f"/users/{user_id}", headers=bearer(["users:read"]))
    assert response.status_code == 200
    assert response.json() == {"user_id": user_id, "personal": personal, "financial": None, "health": health}


async def test_get_user_without_any_record_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/users/{unique_id()}", headers=bearer())
    assert response.status_code == 404
    problem_of(response)


READ_ROUTES = [("GET", "/users/{id}/personal"), ("GET", "/users/{id}")]
WRITE_ROUTES = [
    ("POST", "/users/personal"),
    ("PATCH", "/users/{id}/financial"),
    ("DELETE", "/users/{id}/health"),
]


@pytest.mark.parametrize(("method", "path"), READ_ROUTES + WRITE_ROUTES)
async def test_no_token_is_401_with_bearer_challenge(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path.format(id=unique_id()), json={})
    assert response.status_code == 401
    problem_of(response)


@pytest.mark.parametrize(
    ("method", "path", "scopes"),
    [(m, p, ["users:write"]) for m, p in READ_ROUTES] + [(m, p, ["users:read"]) for m, p in WRITE_ROUTES],
)
async def test_token_without_the_scope_is_403(
    client: httpx.AsyncClient, method: str, path: str, scopes: list[str]
) -> None:
    response = await client.request(method, path.format(id=unique_id()), json={}, headers=bearer(scopes))
    assert response.status_code == 403
    assert "scope" in problem_of(response)["detail"]


async def test_financial_and_health_access_is_audited_personal_is_not(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    headers = bearer(subject="auditor-7")
    for kind in KINDS:
        await client.post(f"/users/{kind}", json={"user_id": user_id, **BODIES[kind]}, headers=headers)
    await client.get(f"/users/{user_id}/financial", headers=headers)
    await client.patch(f"/users/{user_id}/health", json={"blood_type": "O-"}, headers=headers)
    await client.get(f"/users/{user_id}", headers=headers)
    await client.delete(f"/users/{user_id}/financial", headers=headers)
    rows = await db.fetch(
        "SELECT actor, action, record_type, request_id FROM audit_log WHERE user_id = $1 ORDER BY id", user_id
    )
    assert [(r["action"], r["record_type"]) for r in rows] == [
        ("create", "financial"),
        ("create", "health"),
        ("read", "financial"),
        ("update", "health"),
        ("read", "financial"),
        ("read", "health"),
        ("delete", "financial"),
    ]
    assert {r["actor"] for r in rows} == {"auditor-7"}
    assert all(r["request_id"] for r in rows)


async def test_failed_write_leaves_no_audit_row(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    user_id = unique_id()
    await create(client, "financial", user_id)
    assert (await create(client, "financial", user_id)).status_code == 409
    actions = await db.fetch("SELECT action FROM audit_log WHERE user_id = $1", user_id)
    assert [r["action"] for r in actions] == ["create"]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"user_id": "x", "name": ', "application/json", 400),
        (b"user_id=x&name=y", "application/x-www-form-urlencoded", 415),
        (b'{"user_id": "x"}', "text/plain", 415),
        (b"", "application/json", 422),
        (b"[1, 2]", "application/json", 422),
    ],
)
async def test_malformed_bodies_are_4xx_problems(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int
) -> None:
    response = await client.post(
        "/users/personal", content=content, headers={**bearer(), "Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    problem_of(response)


async def test_oversized_body_is_413_problem(client: httpx.AsyncClient, settings: Any) -> None:
    big = {"user_id": unique_id(), **PERSONAL, "address": "x" * settings.max_request_body_bytes}
    response = await client.post("/users/personal", json=big, headers=bearer())
    assert response.status_code == 413
    problem_of(response)


async def test_oversized_chunked_body_is_413_problem(client: httpx.AsyncClient, settings: Any) -> None:
    async def chunks() -> Any:
        for _ in range(settings.max_request_body_bytes // 1024 + 2):
            yield b" " * 1024

    response = await client.post(
        "/users/personal", content=chunks(), headers={**bearer(), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    problem_of(response)
