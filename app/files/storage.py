"""S3 object I/O: read JSON with its ETag, conditional puts, and a bounded-memory streaming writer."""

import codecs
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

import orjson
from botocore.exceptions import ClientError

from app.core import aws
from app.core.errors import DomainError, NotFound

if TYPE_CHECKING:  # the stub packages are dev dependencies, absent from the runtime image
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadRequestTypeDef,
        GetObjectOutputTypeDef,
        PutObjectRequestTypeDef,
    )

S3_MIN_PART_BYTES = 5 * 1024 * 1024  # API limit: every part but the last is at least 5 MiB
UPLOAD_PART_BYTES = S3_MIN_PART_BYTES  # what one upload holds in memory; files of up to ~48 GiB
S3_MAX_PARTS = 10_000  # API limit
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION = frozenset({"PreconditionFailed", "412"})
# S3 answers 409 ConditionalRequestConflict when two conditional writes race on one key.
_CONFLICT = frozenset({"ConditionalRequestConflict", "409"})


class ObjectNotFound(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"No object at key '{key}'.")


class NotJson(DomainError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "not-json"


class ObjectTooLarge(DomainError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "object-too-large"


class ObjectChanged(Exception):
    """A conditional write lost: the object is no longer at the ETag it was read at."""


class ObjectExists(DomainError):
    status = HTTPStatus.CONFLICT
    slug = "object-exists"

    def __init__(self, key: str) -> None:
        super().__init__(f"An object already exists at '{key}'; send overwrite=true to replace it.")


class UploadTooLarge(DomainError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    slug = "upload-too-large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file exceeds the upload limit of {limit} bytes.")


@dataclass(frozen=True, slots=True)
class StoredJson:
    """A stored object's bytes, checked to be JSON (UTF-8, no byte order mark, no NaN or Infinity)."""

    raw: bytes
    etag: str
    version_id: str | None


@dataclass(frozen=True, slots=True)
class Written:
    etag: str
    version_id: str | None
    size: int


class OpenedObject:
    """A GET whose headers have arrived; its body is read (or the connection released) inside `async with`."""

    def __init__(self, response: "GetObjectOutputTypeDef") -> None:
        self._response = response
        self.size: int = response["ContentLength"]
        self.etag: str = response["ETag"]
        self.version_id: str | None = response.get("VersionId")

    async def read(self) -> bytes:
        data: bytes = await self._response["Body"].read()
        return data

    async def __aenter__(self) -> "OpenedObject":
        return self

    async def __aexit__(self, *_: object) -> None:
        self._response["Body"].close()


async def open_object(s3: "S3Client", bucket: str, key: str, max_bytes: int) -> OpenedObject:
    """Start reading `key`: ObjectNotFound, or ObjectTooLarge before any byte of the body is read."""
    try:
        response = await s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws.error_code(exc) in MISSING_CODES:
            raise ObjectNotFound(key) from None
        raise
    opened = OpenedObject(response)
    if opened.size > max_bytes:
        async with opened:
            raise ObjectTooLarge(f"The object is larger than {max_bytes} bytes; it is not served as JSON.")
    return opened


def parse_json(data: bytes, key: str) -> object:
    """The document, parsed strictly: RFC 8259 JSON in UTF-8, so NaN, Infinity and other encodings are
    NotJson (a stored `NaN` would otherwise be read, then fail to serialize in the response)."""
    try:
        return orjson.loads(json_body(data))
    except orjson.JSONDecodeError:  # also nesting beyond orjson's 1024 levels
        raise NotJson(f"The object at '{key}' is not JSON.") from None


def json_body(data: bytes) -> bytes:
    """The bytes to serve for JSON that `parse_json` accepted: without a UTF-8 byte order mark."""
    return data.removeprefix(codecs.BOM_UTF8)


async def put_bytes(
    s3: "S3Client",
    bucket: str,
    key: str,
    data: bytes,
    content_type: str,
    *,
    if_match: str | None = None,
    if_none_match: bool = False,
) -> Written:
    """One PutObject; `if_match` / `if_none_match` make it conditional (ObjectChanged / ObjectExists)."""
    request: PutObjectRequestTypeDef = {
        "Bucket": bucket,
        "Key": key,
        "Body": data,
        "ContentType": content_type,
    }
    if if_match is not None:
        request["IfMatch"] = if_match
    if if_none_match:
        request["IfNoneMatch"] = "*"
    try:
        response = await s3.put_object(**request)
    except ClientError as exc:
        code = aws.error_code(exc)
        if code in _PRECONDITION | _CONFLICT and if_none_match:
            raise ObjectExists(key) from None
        if code in _PRECONDITION | _CONFLICT:
            raise ObjectChanged from None
        if code in MISSING_CODES:
            raise ObjectNotFound(key) from None
        raise
    return Written(response["ETag"], response.get("VersionId"), len(data))


async def exists(s3: "S3Client", bucket: str, key: str) -> bool:
    try:
        await s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws.error_code(exc) in MISSING_CODES:
            return False
        raise
    return True


class StreamingUpload:
    """Writes a stream of chunks to one key, holding at most one part in memory.

    Small files become one PutObject; larger ones a multipart upload, completed conditionally
    (`IfNoneMatch: *` unless overwriting) so a racing writer cannot be silently replaced.
    """

    def __init__(
        self, s3: "S3Client", bucket: str, key: str, content_type: str, *, overwrite: bool, max_bytes: int
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._overwrite = overwrite
        self._max_bytes = max_bytes
        self._chunks: list[bytes] = []  # joined into a part once they reach UPLOAD_PART_BYTES
        self._buffered = 0
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self.head = b""  # the first bytes, to check a file's magic number

    @property
    def size(self) -> int:
        return self._size

    async def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise UploadTooLarge(self._max_bytes)
        if len(self.head) < 2:
            self.head = (self.head + chunk)[:2]
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= UPLOAD_PART_BYTES:
            await self._upload_part(self._take_buffer())

    async def finish(self) -> Written:
        if self._upload_id is None:
            return await put_bytes(
                self._s3,
                self._bucket,
                self._key,
                self._take_buffer(),
                self._content_type,
                if_none_match=not self._overwrite,
            )
        if self._buffered:
            await self._upload_part(self._take_buffer())
        request: CompleteMultipartUploadRequestTypeDef = {
            "Bucket": self._bucket,
            "Key": self._key,
            "UploadId": self._upload_id,
            "MultipartUpload": {"Parts": self._parts},
        }
        if not self._overwrite:
            request["IfNoneMatch"] = "*"
        try:
            response = await self._s3.complete_multipart_upload(**request)
        except ClientError as exc:
            await self.abort()
            if aws.error_code(exc) in _PRECONDITION | _CONFLICT:
                raise ObjectExists(self._key) from None
            raise
        self._upload_id = None
        return Written(response["ETag"], response.get("VersionId"), self._size)

    async def abort(self) -> None:
        """Discard uploaded parts (they would otherwise be billed until a lifecycle rule removes them)."""
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            await self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)

    def _take_buffer(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return data

    async def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = await self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        if number > S3_MAX_PARTS:
            raise UploadTooLarge(S3_MAX_PARTS * UPLOAD_PART_BYTES)
        response = await self._s3.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})
