"""Waiting on the processing log and on metrics, and S3 event bodies for the queue."""

import json
from typing import Any
from urllib.parse import quote_plus

import asyncpg
from prometheus_client import REGISTRY

from tests.helpers import eventually

FINAL_STATUSES = ("completed", "failed", "skipped")


async def wait_for_file(db: asyncpg.Connection, bucket: str, key: str) -> asyncpg.Record:
    """The log row of the newest version of `key` once it reached a final status."""

    async def newest() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT * FROM file_processing_log WHERE bucket = $1 AND key = $2 ORDER BY id DESC LIMIT 1",
            bucket,
            key,
        )

    async def final() -> asyncpg.Record | None:
        row = await newest()
        return row if row is not None and row["status"] in FINAL_STATUSES else None

    try:
        return await eventually(final, message=f"a final status of {key}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; newest row: {await newest()}") from None


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def wait_for_metric(name: str, labels: dict[str, str], above: float) -> float:
    """The metric's value once it is above `above`."""

    def value_above() -> float | None:
        value = metric(name, labels)
        return value if value > above else None

    return await eventually(value_above, message=f"{name}{labels} above {above}")


def s3_event(bucket: str, key: str, *, etag: str, version_id: str | None, size: int) -> dict[str, Any]:
    """An S3 ObjectCreated notification as S3 sends it (key URL-encoded)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag.strip('"')}
    if version_id:
        obj["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-23T12:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
            }
        ]
    }


def wrap_in_sns(message: dict[str, Any], topic_arn: str) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "0b1f4e2a-sns-test",
        "TopicArn": topic_arn,
        "Message": json.dumps(message),
        "Timestamp": "2026-11-23T12:00:00.000Z",
        "SignatureVersion": "1",
    }


def eventbridge_event(
    bucket: str, key: str, *, etag: str, version_id: str | None, size: int
) -> dict[str, Any]:
    detail_object: dict[str, Any] = {"key": key, "size": size, "etag": etag.strip('"')}
    if version_id:
        detail_object["version-id"] = version_id
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-23T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": detail_object,
            "reason": "PutObject",
        },
    }
