"""SQL-injection and quoting attacks in every path, query and body field: refused with 422 naming the field,
or stored and returned verbatim; never a 500, and the tables are still there afterwards."""

import secrets
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.ingestion.envelopes import ObjectRef
from tests.helpers import bearer, problem_of, resources

INJECTIONS = [
    "'; DROP TABLE users_personal; --",
    '" OR 1=1 --',
    "' OR '1'='1",
    "1; DELETE FROM file_processing_log",
    "admin'--",
    "') UNION SELECT user_id, name FROM users_personal --",
    "\u2019; DROP TABLE users_health; --",  # a typographic apostrophe some drivers "normalize" to '
    "\u201c OR 1=1 \u201d",
    "%27%20OR%201%3D1",
    "\\'; SELECT pg_sleep(10); --",
    "$1 $$ $tag$ ::text",
    "% _ * ? [a-z]",
]
# Injection attempts that fit the user_id pattern ([A-Za-z0-9._-]{1,128}) reach the database as values.
PATTERN_SAFE_USER_IDS = ["--", "1-OR-1", "DROP_TABLE-users_personal--", "x.-_.", "0x27-0x3B"]
TABLES = ("users_personal", "users_financial", "users_health", "file_processing_log", "processed_data")


def _id(value: str) -> str:
    return value.encode("unicode_escape").decode()[:40]


def _s3_path(key: str) -> str:
    return "/s3/" + quote(key, safe="")


def _field_errors(response: httpx.Response) -> list[str]:
    return [error["field"] for error in problem_of(response)["errors"]]


@pytest.fixture(scope="module", autouse=True)
async def rows_before(db: asyncpg.Connection) -> dict[str, int]:
    """The row count of each table before this module's attacks."""
    return {table: await db.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}


# --- user_id in paths and bodies -------------------------------------------------------------------


@pytest.mark.parametrize("attack", INJECTIONS, ids=_id)
@pytest.mark.parametrize(
    "route", ["/users/{}", "/users/{}/personal", "/users/{}/s3/health", "/users/{}/s3/all"]
)
async def test_injected_user_id_in_the_path_is_422_naming_user_id(
    client: httpx.AsyncClient, route: str, attack: str
) -> None:
    response = await client.get(route.format(quote(attack, safe="")), headers=bearer())
    assert response.status_code == 422, response.text
    assert _field_errors(response) == ["user_id"]


@pytest.mark.parametrize("attack", INJECTIONS, ids=_id)
async def test_injected_user_id_in_a_patch_or_delete_path_is_422(
    client: httpx.AsyncClient, attack: str
) -> None:
    path = f"/users/{quote(attack, safe='')}/financial"
    patched = await client.patch(path, json={"credit_score": 700}, headers=bearer())
    deleted = await client.delete(path, headers=bearer())
    assert (patched.status_code, deleted.status_code) == (422, 422)
    assert _field_errors(patched) == _field_errors(deleted) == ["user_id"]


@pytest.mark.parametrize("attack", INJECTIONS, ids=_id)
async def test_injected_user_id_in_a_body_is_422_naming_user_id(
    client: httpx.AsyncClient, attack: str
) -> None:
    created = await client.post(
        "/users/personal", json={"user_id": attack, "name": "x", "email": "x@example.com"}, headers=bearer()
    )
    sent = await client.post(
        "/users/sqs/send", json={"user_id": attack, "data_type": "all"}, headers=bearer()
    )
    assert (created.status_code, sent.status_code) == (422, 422)
    assert _field_errors(created) == _field_errors(sent) == ["user_id"]


@pytest.mark.parametrize("user_id", PATTERN_SAFE_USER_IDS)
async def test_user_ids_that_fit_the_pattern_are_stored_and_read_verbatim(
    client: httpx.AsyncClient, db: asyncpg.Connection, user_id: str
) -> None:
    user_id = f"{user_id}{secrets.token_hex(3)}"  # unique per run, still in the pattern
    body = {"user_id": user_id, "account_number": "GB29-NWBK-6016"}
    assert (await client.post("/users/financial", json=body, headers=bearer())).status_code == 201
    fetched = await client.get(f"/users/{user_id}/financial", headers=bearer())
    assert fetched.status_code == 200
    assert fetched.json()["user_id"] == user_id
    assert await db.fetchval("SELECT count(*) FROM users_financial WHERE user_id = $1", user_id) == 1
    audited = await db.fetchval("SELECT count(*) FROM audit_log WHERE user_id = $1", user_id)
    assert audited == 2  # the create and the read, under this exact id
    assert (await client.delete(f"/users/{user_id}/financial", headers=bearer())).status_code == 204


# --- record values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", INJECTIONS, ids=_id)
async def test_injected_record_values_are_stored_and_read_verbatim(
    client: httpx.AsyncClient, db: asyncpg.Connection, attack: str
) -> None:
    user_id = f"inj-{secrets.token_hex(6)}"
    personal = {
        "user_id": user_id,
        "name": attack,
        "email": "x@example.com",
        "address": f"{attack}\n{attack}",
    }
    health = {"user_id": user_id, "conditions": [attack, "{" + attack + "}"], "allergies": ['"', "'", "\\"]}
    assert (await client.post("/users/personal", json=personal, headers=bearer())).status_code == 201
    assert (await client.post("/users/health", json=health, headers=bearer())).status_code == 201
    patched = await client.patch(f"/users/{user_id}/health", json={"medications": [attack]}, headers=bearer())
    assert patched.status_code == 200

    both = (await client.get(f"/users/{user_id}", headers=bearer())).json()
    assert both["personal"]["name"] == attack
    assert both["personal"]["address"] == f"{attack}\n{attack}"
    assert both["health"]["conditions"] == health["conditions"]
    assert both["health"]["allergies"] == health["allergies"]
    assert both["health"]["medications"] == [attack]
    stored = await db.fetchrow("SELECT name, address FROM users_personal WHERE user_id = $1", user_id)
    assert (stored["name"], stored["address"]) == (attack, f"{attack}\n{attack}")


async def test_a_nul_character_in_a_record_value_is_422_not_a_crash(client: httpx.AsyncClient) -> None:
    # PostgreSQL text cannot hold U+0000; the API must say so instead of failing in the driver.
    user_id = f"nul-{secrets.token_hex(6)}"
    body = {
        "user_id": user_id,
        "name": "Robert\x00'); DROP TABLE users_personal; --",
        "email": "x@example.com",
    }
    created = await client.post("/users/personal", json=body, headers=bearer())
    assert created.status_code == 422, created.text
    assert _field_errors(created) == ["name"]
    patched = await client.patch(
        f"/users/{user_id}/health", json={"conditions": ["a\x00b"]}, headers=bearer()
    )
    assert patched.status_code == 422, patched.text
    assert _field_errors(patched) == ["conditions.0"]


# --- S3 keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", INJECTIONS, ids=_id)
async def test_injected_s3_keys_are_stored_verbatim_and_read_back(
    client: httpx.AsyncClient, s3: Any, bucket: str, attack: str
) -> None:
    key = f"hostile/{secrets.token_hex(4)}/{attack}.json"
    uploaded = await client.post("/s3/upload", json={"key": key, "content": {"v": attack}}, headers=bearer())
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["key"] == key
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0

    merged = await client.put(_s3_path(key), json={"w": attack}, headers=bearer())
    assert merged.status_code == 200, merged.text
    fetched = await client.get(_s3_path(key), headers=bearer())
    assert fetched.status_code == 200
    assert fetched.json() == {"v": attack, "w": attack}


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "a/../../b.json", "/etc/passwd.json", "a\x00.json", "a\n.json"]
)
async def test_traversal_and_control_character_keys_are_422_naming_key(
    client: httpx.AsyncClient, key: str
) -> None:
    uploaded = await client.post("/s3/upload", json={"key": key, "content": {}}, headers=bearer())
    ingested = await client.post("/ingestion/files", json={"key": key}, headers=bearer())
    assert (uploaded.status_code, ingested.status_code) == (422, 422)
    assert _field_errors(uploaded) == _field_errors(ingested) == ["key"]


# --- /ingestion/files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def injected_file(app: FastAPI, s3: Any) -> dict[str, Any]:
    """A file whose key starts with an injection string, ingested into the processing log."""
    quiet = f"quiet-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=quiet)
    key = f"'; DROP TABLE file_processing_log; --{secrets.token_hex(4)}/%_rows.jsonl"
    s3.put_object(Bucket=quiet, Key=key, Body=b'{"a": 1}\n')
    outcome = await resources(app).ingestor.ingest(ObjectRef(quiet, key, None, None, None), "cli")
    assert outcome.status == "completed"
    return {"bucket": quiet, "key": key, "file_id": outcome.file_id}


async def test_key_prefix_filters_verbatim_with_no_wildcards(
    client: httpx.AsyncClient, injected_file: dict[str, Any]
) -> None:
    key = injected_file["key"]
    exact = await client.get("/ingestion/files", params={"key_prefix": key[:45]}, headers=bearer())
    assert exact.status_code == 200
    assert [item["key"] for item in exact.json()["items"]] == [key]
    for wildcard in ("%", "_", "'%", "%'; --"):
        response = await client.get("/ingestion/files", params={"key_prefix": wildcard}, headers=bearer())
        assert response.status_code == 200
        assert all(item["key"].startswith(wildcard) for item in response.json()["items"])


@pytest.mark.parametrize("attack", [*INJECTIONS, "\x00", "a\x00b"], ids=_id)
async def test_injected_key_prefix_is_200_or_422_never_500(client: httpx.AsyncClient, attack: str) -> None:
    response = await client.get("/ingestion/files", params={"key_prefix": attack}, headers=bearer())
    if response.status_code == 422:
        assert _field_errors(response) == ["key_prefix"]
    else:
        assert response.status_code == 200, response.text
        assert all(item["key"].startswith(attack) for item in response.json()["items"])


@pytest.mark.parametrize("param", ["status", "since", "cursor", "limit"])
@pytest.mark.parametrize("attack", [*INJECTIONS, "\x00"], ids=_id)
async def test_injected_listing_parameters_are_422_naming_them(
    client: httpx.AsyncClient, param: str, attack: str
) -> None:
    response = await client.get("/ingestion/files", params={param: attack}, headers=bearer())
    assert response.status_code == 422, response.text
    assert _field_errors(response) == [param]


@pytest.mark.parametrize("attack", INJECTIONS, ids=_id)
async def test_injected_file_id_and_report_date_are_422(client: httpx.AsyncClient, attack: str) -> None:
    one = await client.get(f"/ingestion/files/{quote(attack, safe='')}", headers=bearer())
    retry = await client.post(f"/ingestion/files/{quote(attack, safe='')}/retry", headers=bearer())
    report = await client.get("/ingestion/report", params={"date": attack}, headers=bearer())
    assert (one.status_code, retry.status_code, report.status_code) == (422, 422, 422)
    assert _field_errors(one) == _field_errors(retry) == ["file_id"]
    assert _field_errors(report) == ["date"]


@pytest.mark.parametrize("attack", INJECTIONS, ids=_id)
async def test_injected_bucket_name_is_422_naming_bucket(client: httpx.AsyncClient, attack: str) -> None:
    response = await client.post(
        "/ingestion/files", json={"bucket": attack, "key": "a.json"}, headers=bearer()
    )
    assert response.status_code == 422, response.text
    assert _field_errors(response) == ["bucket"]


async def test_the_injected_file_row_reads_back_verbatim(
    client: httpx.AsyncClient, injected_file: dict[str, Any]
) -> None:
    response = await client.get(f"/ingestion/files/{injected_file['file_id']}", headers=bearer())
    assert response.status_code == 200
    assert (response.json()["bucket"], response.json()["key"]) == (
        injected_file["bucket"],
        injected_file["key"],
    )


async def test_after_all_the_attacks_every_table_is_there_with_its_rows(
    db: asyncpg.Connection, rows_before: dict[str, int]
) -> None:
    for table in TABLES:
        assert await db.fetchval("SELECT to_regclass($1)", table) is not None, f"{table} is gone"
        assert await db.fetchval(f"SELECT count(*) FROM {table}") >= rows_before[table], f"{table} lost rows"
