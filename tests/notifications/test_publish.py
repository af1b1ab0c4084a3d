"""POST /sns/publish against moto: what a subscriber of the topic receives."""

import json
from typing import Any

import httpx
import pytest

from tests.aws import receive_until, sns_envelope
from tests.helpers import bearer, problem_of, unique_id


def body_is(text: str) -> Any:
    return lambda message: sns_envelope(message).get("Message") == text


async def test_string_message_with_subject_and_attributes_reaches_subscribers(
    client: httpx.AsyncClient, sqs: Any, notifications_queue: str
) -> None:
    text = f"hello {unique_id()}"
    response = await client.post(
        "/sns/publish",
        json={"message": text, "subject": "Greeting", "attributes": {"kind": "greeting", "priority": 3}},
        headers=bearer(["sns:publish"]),
    )
    assert response.status_code == 202, response.text
    envelope = sns_envelope(await receive_until(sqs, notifications_queue, body_is(text)))
    assert envelope["MessageId"] == response.json()["message_id"]
    assert envelope["Subject"] == "Greeting"
    assert envelope["MessageAttributes"]["kind"] == {"Type": "String", "Value": "greeting"}
    assert envelope["MessageAttributes"]["priority"] == {"Type": "Number", "Value": "3"}


async def test_json_message_is_sent_serialized(
    client: httpx.AsyncClient, sqs: Any, notifications_queue: str
) -> None:
    document = {"order": unique_id(), "lines": [1, 2]}
    response = await client.post("/sns/publish", json={"message": document}, headers=bearer())
    assert response.status_code == 202
    envelope = sns_envelope(await receive_until(sqs, notifications_queue, body_is(json.dumps(document))))
    assert json.loads(envelope["Message"]) == document


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"message": ""}, 422, "message"),
        ({}, 422, "message"),
        ({"message": "x", "subject": "two\nlines"}, 422, "subject"),
        ({"message": "x", "subject": "s" * 101}, 422, "subject"),
        ({"message": "x", "attributes": {"AWS.reserved": "v"}}, 422, "attributes"),
        ({"message": "x", "attributes": {f"a{i}": "v" for i in range(11)}}, 422, "attributes"),
        ({"message": "x", "attributes": {"nested": {"a": 1}}}, 422, "attributes.nested.str"),
        ({"message": "x", "message_group_id": ""}, 422, "message_group_id"),
        ({"message": "x" * 262_145}, 413, None),
    ],
)
async def test_bad_publish_is_4xx_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, field: str | None
) -> None:
    response = await client.post("/sns/publish", json=body, headers=bearer())
    assert response.status_code == status, response.text
    problem = problem_of(response)
    if field:
        assert field in [error["field"] for error in problem["errors"]]


async def test_publish_needs_the_scope(client: httpx.AsyncClient) -> None:
    response = await client.post("/sns/publish", json={"message": "x"}, headers=bearer(["s3:write"]))
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"message": {"level": NaN}}', "message"),
        (b'{"message": [1, -Infinity]}', "message"),
        (b'{"message": "hi", "attributes": {"score": Infinity}}', "attributes.score"),
    ],
)
async def test_publish_holding_nan_or_infinity_is_422(
    client: httpx.AsyncClient, body: bytes, field: str
) -> None:
    # Sent on, `NaN` is a message no JSON reader of the topic can parse.
    response = await client.post(
        "/sns/publish", content=body, headers={**bearer(["sns:publish"]), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    fields = [error["field"] for error in problem_of(response)["errors"]]
    assert any(name.startswith(field) for name in fields), fields
