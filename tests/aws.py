"""Sync boto3 clients on the suite's moto server, and waiting for messages."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import boto3
import httpx

from tests.helpers import eventually

AWS_REGION = "us-east-1"


def boto_client(service: str, endpoint_url: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint_url, region_name=AWS_REGION)


async def assumed(moto_endpoint: str, role_arn: str) -> list[dict[str, Any]]:
    """The AssumeRole calls moto recorded for `role_arn`.

    Read from /moto-api/data.json, which fails on a server where a bucket that held keys was deleted:
    use a moto server of the test module's own.
    """
    async with httpx.AsyncClient() as http:
        data = (await http.get(f"{moto_endpoint}/moto-api/data.json")).json()
    return [role for role in data.get("sts", {}).get("AssumedRole", []) if role["role_arn"] == role_arn]


def queue_depth(sqs: Any, url: str) -> int:
    """Messages on the queue, visible or in flight."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


async def receive_until(
    sqs: Any, queue_url: str, matches: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first message that satisfies `matches`; others are deleted as seen.

    Each receive waits in a thread: a consumer under test may run on the test's event loop.
    """

    def receive() -> dict[str, Any] | None:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        for message in response.get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            if matches(message):
                return message
        return None

    # No pause between receives: each one long-polls for a second.
    return await eventually(
        lambda: asyncio.to_thread(receive),
        timeout=15,
        interval=0,
        message=f"a matching message on {queue_url}",
    )


def sns_envelope(message: dict[str, Any]) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(message["Body"])
    return envelope


def notification_for(key: str) -> Callable[[dict[str, Any]], bool]:
    """Matches the service's own change notification about `key`, delivered through SNS."""

    def matches(message: dict[str, Any]) -> bool:
        envelope = sns_envelope(message)
        try:
            body = json.loads(envelope.get("Message", ""))
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("key") == key

    return matches
