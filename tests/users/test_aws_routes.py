"""User routes that reach AWS: reading users/{type}/{user_id}.json from S3 and sending records to SQS."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.config import Settings
from tests.faults import TcpProxy
from tests.helpers import bearer, eventually, problem_of, started_app, unique_id
from tests.users.test_router import BODIES, create


def put_user_file(s3: Any, bucket: str, kind: str, user_id: str, document: Any) -> None:
    s3.put_object(Bucket=bucket, Key=f"users/{kind}/{user_id}.json", Body=json.dumps(document).encode())


@pytest.mark.parametrize("kind", ["personal", "financial", "health"])
async def test_user_file_is_read_from_its_key(
    client: httpx.AsyncClient, s3: Any, bucket: str, kind: str
) -> None:
    user_id = unique_id()
    put_user_file(s3, bucket, kind, user_id, {"kind": kind, "user_id": user_id})
    response = await client.get(f"/users/{user_id}/s3/{kind}", headers=bearer(["users:read"]))
    assert response.status_code == 200, response.text
    assert response.json() == {"kind": kind, "user_id": user_id}


async def test_missing_user_file_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/users/{unique_id()}/s3/health", headers=bearer())
    assert response.status_code == 404
    problem_of(response)


async def test_all_user_files_merge_with_null_for_missing(
    client: httpx.AsyncClient, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    put_user_file(s3, bucket, "personal", user_id, {"name": "Ada"})
    put_user_file(s3, bucket, "health", user_id, {"blood_type": "O+"})
    response = await client.get(f"/users/{user_id}/s3/all", headers=bearer(subject="file-reader"))
    assert response.status_code == 200
    assert response.json() == {"personal": {"name": "Ada"}, "financial": None, "health": {"blood_type": "O+"}}
    audited = await db.fetch("SELECT actor, action, record_type FROM audit_log WHERE user_id = $1", user_id)
    assert [(r["actor"], r["action"], r["record_type"]) for r in audited] == [
        ("file-reader", "read", "health")
    ]


async def test_all_user_files_missing_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/users/{unique_id()}/s3/all", headers=bearer())
    assert response.status_code == 404


async def test_user_file_routes_check_scope_and_user_id(client: httpx.AsyncClient) -> None:
    assert (await client.get("/users/x/s3/personal", headers=bearer(["s3:read"]))).status_code == 403
    assert (await client.get("/users/bad%20id/s3/all", headers=bearer())).status_code == 422


@pytest.fixture
async def send_queue(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName=f"test-send-{unique_id()}")["QueueUrl"]
    return url


@pytest.fixture
async def send_client(settings: Settings, send_queue: str) -> AsyncIterator[httpx.AsyncClient]:
    async with started_app(settings, sqs_queue_url=send_queue) as (_, http):
        yield http


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
    ).get("Messages"):
        messages.extend(batch)
    return messages


async def test_send_all_puts_one_message_per_existing_record(
    send_client: httpx.AsyncClient, sqs: Any, send_queue: str, db: asyncpg.Connection
) -> None:
    user_id = unique_id()
    await create(send_client, "personal", user_id)
    await create(send_client, "health", user_id)
    response = await send_client.post(
        "/users/sqs/send", json={"user_id": user_id, "data_type": "all"}, headers=bearer()
    )
    assert response.status_code == 202, response.text
    message_ids = response.json()["message_ids"]
    assert set(message_ids) == {"personal", "health"}
    messages = drain(sqs, send_queue)
    assert sorted(m["MessageId"] for m in messages) == sorted(message_ids.values())
    by_type = {m["MessageAttributes"]["data_type"]["StringValue"]: m for m in messages}
    health = json.loads(by_type["health"]["Body"])
    assert health["message_type"] == "user_records"
    assert health["user_id"] == user_id
    assert health["record"]["allergies"] == BODIES["health"]["allergies"]
    assert by_type["personal"]["MessageAttributes"]["message_type"]["StringValue"] == "user_records"
    audited = await db.fetch(
        "SELECT action, record_type FROM audit_log WHERE user_id = $1 ORDER BY id", user_id
    )
    assert [(r["action"], r["record_type"]) for r in audited] == [("create", "health"), ("read", "health")]


async def test_send_one_type(send_client: httpx.AsyncClient, sqs: Any, send_queue: str) -> None:
    user_id = unique_id()
    await create(send_client, "financial", user_id)
    await create(send_client, "personal", user_id)
    response = await send_client.post(
        "/users/sqs/send", json={"user_id": user_id, "data_type": "financial"}, headers=bearer()
    )
    assert response.status_code == 202
    assert list(response.json()["message_ids"]) == ["financial"]
    record = json.loads(drain(sqs, send_queue)[0]["Body"])["record"]
    assert record["annual_income"] == "1234567890123.45"


async def test_send_without_records_is_404_and_sends_nothing(
    send_client: httpx.AsyncClient, sqs: Any, send_queue: str
) -> None:
    response = await send_client.post(
        "/users/sqs/send", json={"user_id": unique_id(), "data_type": "all"}, headers=bearer()
    )
    assert response.status_code == 404
    problem_of(response)
    assert drain(sqs, send_queue) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"user_id": "u1", "data_type": "everything"}, "data_type"), ({"data_type": "all"}, "user_id")],
)
async def test_send_with_bad_body_is_422(client: httpx.AsyncClient, body: dict[str, str], field: str) -> None:
    response = await client.post("/users/sqs/send", json=body, headers=bearer())
    assert response.status_code == 422
    assert field in [error["field"] for error in problem_of(response)["errors"]]


async def test_reading_user_files_holds_no_database_connection_while_s3_answers(
    settings: Settings, moto_url: str, s3: Any, bucket: str
) -> None:
    # One pooled connection and a slow S3: a read of the files must not keep the connection (in an open
    # transaction) while S3 answers, or every other request waits behind it.
    user_id = unique_id()
    put_user_file(s3, bucket, "health", user_id, {"blood_type": "O+"})
    proxy, proxied = await TcpProxy.in_front_of(moto_url)
    slow = {"aws_endpoint_url": proxied, "db_pool_min_size": 1, "db_pool_max_size": 1}
    async with started_app(settings, **slow) as (_, http):
        proxy.latency = 1.0
        before = proxy.requests
        files = asyncio.create_task(http.get(f"/users/{user_id}/s3/all", headers=bearer()))
        await eventually(lambda: proxy.requests > before)  # the files' read is under way
        started = time.monotonic()
        other = await http.get(f"/users/{unique_id()}/personal", headers=bearer())
        waited = time.monotonic() - started
        assert other.status_code == 404
        assert not files.done()
        assert waited < 0.5
        assert (await files).status_code == 200
    await proxy.stop()
