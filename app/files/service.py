"""Object operations behind the /s3 routes: read, race-safe merge, and uploads, each announced on SNS."""

import asyncio
import gzip
import json
import random
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from app.core.aws import AwsClients
from app.core.config import Settings
from app.core.errors import Conflict, DomainError
from app.files import storage
from app.files.announce import notify_change
from app.files.budget import ByteBudget
from app.files.keys import GZIP_SUFFIX, content_type_for, file_kind
from app.files.merge import MAX_PATCH_DEPTH, depth, merge_patch
from app.files.storage import StoredJson, Written
from app.messages import EVENT_UPDATED, EVENT_UPLOADED

MAX_MERGE_ATTEMPTS = 8  # lost races retried before giving up with 409
GZIP_MAGIC = b"\x1f\x8b"


class PreconditionFailed(DomainError):
    status = HTTPStatus.PRECONDITION_FAILED
    slug = "precondition-failed"

    def __init__(self) -> None:
        super().__init__("The object no longer matches If-Match; read it again and retry.")


class InvalidContent(DomainError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "invalid-content"


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: Written
    notified: bool


def etag_matches(header: str, etag: str) -> bool:
    """RFC 9110 If-Match: `*`, or a list of strong ETags (weak ones never match)."""
    candidates = [candidate.strip() for candidate in header.split(",")]
    return "*" in candidates or etag in candidates


def _json_bytes(document: Any) -> bytes:
    # allow_nan=False: NaN and Infinity are not JSON, and nothing stored here may hold them.
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def _notify(aws: AwsClients, settings: Settings, event: str, key: str, written: Written) -> bool:
    return await notify_change(
        aws.sns,
        settings.sns_topic_arn,
        event=event,
        bucket=settings.s3_bucket_name,
        key=key,
        etag=written.etag,
        version_id=written.version_id,
        size=written.size,
    )


async def get_json(aws: AwsClients, settings: Settings, budget: ByteBudget, key: str) -> StoredJson:
    """The object's bytes once they are known to be JSON; parsed within the budget, the parse then dropped."""
    opened = await storage.open_object(aws.s3, settings.s3_bucket_name, key, settings.s3_max_json_bytes)
    async with opened, budget.hold(opened.size):
        data = await opened.read()
        storage.parse_json(data, key)
    return StoredJson(storage.json_body(data), opened.etag, opened.version_id)


async def merge(
    aws: AwsClients, settings: Settings, budget: ByteBudget, key: str, patch: Any, if_match: str | None
) -> tuple[bytes, WriteResult]:
    """Apply a merge patch with a conditional put on the ETag read; a lost race re-reads and retries.

    The stored document, the merged one and its bytes are held within the budget until the write ends."""
    if depth(patch) > MAX_PATCH_DEPTH:
        raise InvalidContent(f"The patch nests deeper than {MAX_PATCH_DEPTH} levels.")
    for attempt in range(MAX_MERGE_ATTEMPTS):
        opened = await storage.open_object(aws.s3, settings.s3_bucket_name, key, settings.s3_max_json_bytes)
        async with opened, budget.hold(opened.size):
            if if_match is not None and not etag_matches(if_match, opened.etag):
                raise PreconditionFailed
            current = storage.parse_json(await opened.read(), key)
            try:
                data = _json_bytes(merge_patch(current, patch))
            except RecursionError:  # json.dumps recurses once per level; orjson read up to 1024
                raise InvalidContent("The merged object nests too deeply to be stored.") from None
            del current  # what the budget does not count any more than it must
            if len(data) > settings.s3_max_json_bytes:
                raise InvalidContent(f"The merged object would exceed {settings.s3_max_json_bytes} bytes.")
            try:
                written = await storage.put_bytes(
                    aws.s3, settings.s3_bucket_name, key, data, "application/json", if_match=opened.etag
                )
            except storage.ObjectChanged:
                if if_match is not None:
                    raise PreconditionFailed from None
                written = None
        if written is None:
            # Jittered backoff so racing writers do not collide again in lockstep.
            await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311
            continue
        return data, WriteResult(written, await _notify(aws, settings, EVENT_UPDATED, key, written))
    raise Conflict("The object kept changing while merging; retry.")


def _serialize_content(key: str, content: Any) -> bytes:
    """The bytes to store for a JSON-body upload, checked against the key's file kind."""
    suffix, gzipped = file_kind(key)
    if isinstance(content, str):
        data = content.encode()
        if suffix == ".json":
            try:
                orjson.loads(data)
            except orjson.JSONDecodeError:
                raise InvalidContent("`content` is a string that is not JSON, for a .json key.") from None
    elif suffix == ".json":
        data = _json_bytes(content)
    elif suffix in (".jsonl", ".ndjson") and isinstance(content, list):
        data = b"".join(_json_bytes(item) + b"\n" for item in content)
    else:
        raise InvalidContent(f"For a {suffix} key, `content` must be a string (the file's text).")
    if not data.strip():
        raise InvalidContent("`content` is empty.")
    return gzip.compress(data, mtime=0) if gzipped else data


async def upload_content(
    aws: AwsClients, settings: Settings, key: str, content: Any, *, overwrite: bool
) -> WriteResult:
    data = _serialize_content(key, content)
    written = await storage.put_bytes(
        aws.s3,
        settings.s3_bucket_name,
        key,
        data,
        content_type_for(key),
        if_none_match=not overwrite,
    )
    return WriteResult(written, await _notify(aws, settings, EVENT_UPLOADED, key, written))


async def start_stream(
    aws: AwsClients, settings: Settings, key: str, *, overwrite: bool
) -> storage.StreamingUpload:
    """A streaming upload to `key`; refuses early when the key exists and overwrite is off."""
    content_type = content_type_for(key)
    if not overwrite and await storage.exists(aws.s3, settings.s3_bucket_name, key):
        raise storage.ObjectExists(key)
    return storage.StreamingUpload(
        aws.s3,
        settings.s3_bucket_name,
        key,
        content_type,
        overwrite=overwrite,
        max_bytes=settings.max_upload_bytes,
    )


async def finish_stream(
    aws: AwsClients, settings: Settings, key: str, upload: storage.StreamingUpload
) -> WriteResult:
    if upload.size == 0:
        raise InvalidContent("The file is empty.")
    if key.lower().endswith(GZIP_SUFFIX) and upload.head != GZIP_MAGIC:
        await upload.abort()
        raise InvalidContent("The file ends in .gz but is not gzip data.")
    written = await upload.finish()
    return WriteResult(written, await _notify(aws, settings, EVENT_UPLOADED, key, written))
