"""Keys under users/ through the /s3 routes: the s3:* scopes alone never read or change user records, and
reads and writes of financial and health files are audited with the object they went through."""

import json
import secrets
from typing import Any

import asyncpg
import httpx
import pytest

from tests.files.test_router import url_of
from tests.helpers import bearer, problem_of, unique_id

S3_ONLY = ["s3:read", "s3:write"]


def user_key(kind: str, user_id: str) -> str:
    return f"users/{kind}/{user_id}.json"


def exists(s3: Any, bucket: str, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))


async def test_s3_scopes_alone_cannot_upload_over_a_users_financial_record(
    client: httpx.AsyncClient, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    # The review's attack: an s3:write token uploads a financial file, which ingestion would upsert.
    user_id = unique_id("alice")
    created = await client.post(
        "/users/financial", json={"user_id": user_id, "account_number": "GOOD0001"}, headers=bearer()
    )
    assert created.status_code == 201
    key = f"users/financial/{secrets.token_hex(4)}.jsonl"
    attack = {"key": key, "content": [{"user_id": user_id, "account_number": "ATTACKER0001"}]}
    response = await client.post("/s3/upload?overwrite=true", json=attack, headers=bearer(S3_ONLY))
    assert response.status_code == 403
    assert "users:write" in problem_of(response)["detail"]
    assert not exists(s3, bucket, key)
    stored = await db.fetchval("SELECT account_number FROM users_financial WHERE user_id = $1", user_id)
    assert stored == "GOOD0001"


async def test_s3_scopes_alone_cannot_stream_a_file_under_users(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = f"users/health/{secrets.token_hex(4)}.jsonl"
    response = await client.post(
        "/s3/upload",
        files={"key": (None, key), "file": ("x.jsonl", b'{"user_id": "bob"}\n', "application/x-ndjson")},
        headers=bearer(S3_ONLY),
    )
    assert response.status_code == 403
    assert not exists(s3, bucket, key)


async def test_s3_scopes_alone_cannot_read_or_merge_a_user_file(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = user_key("health", unique_id())
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"blood_type": "O+"}')
    assert (await client.get(url_of(key), headers=bearer(S3_ONLY))).status_code == 403
    merged = await client.put(url_of(key), json={"blood_type": "AB-"}, headers=bearer(S3_ONLY))
    assert merged.status_code == 403
    assert json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == {"blood_type": "O+"}
    # Any key under users/, not only the three typed prefixes.
    other = f"users/notes/{secrets.token_hex(4)}.json"
    s3.put_object(Bucket=bucket, Key=other, Body=b"{}")
    assert (await client.get(url_of(other), headers=bearer(S3_ONLY))).status_code == 403


@pytest.mark.parametrize("scopes", [["users:read"], ["s3:write", "users:read"]])
async def test_reading_a_user_file_needs_s3_read_and_users_read(
    client: httpx.AsyncClient, s3: Any, bucket: str, scopes: list[str]
) -> None:
    key = user_key("personal", unique_id())
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"name": "Ada"}')
    assert (await client.get(url_of(key), headers=bearer(scopes))).status_code == 403
    allowed = await client.get(url_of(key), headers=bearer(["s3:read", "users:read"]))
    assert allowed.status_code == 200
    assert allowed.json() == {"name": "Ada"}


async def test_user_file_read_through_s3_is_audited_with_its_object(
    client: httpx.AsyncClient, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    key = user_key("health", user_id)
    version = s3.put_object(Bucket=bucket, Key=key, Body=b'{"blood_type": "O+"}')
    response = await client.get(url_of(key), headers=bearer(["s3:read", "users:read"], subject="auditor"))
    assert response.status_code == 200
    row = await db.fetchrow("SELECT * FROM audit_log WHERE user_id = $1", user_id)
    assert (row["actor"], row["action"], row["record_type"]) == ("auditor", "read", "health")
    assert (row["object_bucket"], row["object_key"]) == (bucket, key)
    assert row["object_version"] in (version.get("VersionId"), version["ETag"])


async def test_user_file_merge_needs_users_write_and_is_audited(
    client: httpx.AsyncClient, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    key = user_key("financial", user_id)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({"account_number": "ACCT0001"}).encode())
    headers = bearer(["s3:write", "users:write"], subject="merger")
    response = await client.put(url_of(key), json={"credit_score": 700}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"account_number": "ACCT0001", "credit_score": 700}
    row = await db.fetchrow("SELECT * FROM audit_log WHERE user_id = $1", user_id)
    assert (row["actor"], row["action"], row["object_key"]) == ("merger", "update", key)


async def test_a_batch_file_under_users_is_audited_for_any_user(
    client: httpx.AsyncClient, bucket: str, db: asyncpg.Connection
) -> None:
    key = f"users/health/batch-{secrets.token_hex(4)}.jsonl"
    headers = bearer(["s3:write", "users:write"], subject="batch-writer")
    response = await client.post("/s3/upload", json={"key": key, "content": []}, headers=headers)
    # An empty file is refused before anything is written or audited.
    assert response.status_code == 422
    content = [{"user_id": unique_id(), "blood_type": "A+"}]
    response = await client.post("/s3/upload", json={"key": key, "content": content}, headers=headers)
    assert response.status_code == 201, response.text
    row = await db.fetchrow("SELECT * FROM audit_log WHERE object_key = $1 AND actor = 'batch-writer'", key)
    assert (row["actor"], row["action"], row["user_id"]) == ("batch-writer", "create", "*")


async def test_other_keys_need_only_the_s3_scopes(client: httpx.AsyncClient, s3: Any, bucket: str) -> None:
    # A key that merely contains "users/" further down is no user record.
    key = f"docs/users/{secrets.token_hex(4)}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    assert (await client.get(url_of(key), headers=bearer(["s3:read"]))).status_code == 200
