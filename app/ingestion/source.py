"""Reading the object versions ingestion loads: naming the version an event meant, opening exactly that
version with the bucket's own S3 client (its role, for a client's bucket), and what S3's refusals mean."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from app.core import aws
from app.core.cross_account import RoleAssumptionDenied
from app.ingestion.envelopes import ObjectRef
from app.ingestion.outcomes import PermanentFailure, Transient

Progress = Callable[[int, int], None]  # (bytes read, file size): the CLI's progress bar
S3ClientFor = Callable[[str], Any]  # bucket -> the S3 client to read it with (S3_BUCKET_ROLES)
# What a network failure between the service and S3 looks like (the SDK's own, or its HTTP client's).
NETWORK_ERRORS = (BotoCoreError, aiohttp.ClientError)


@dataclass(frozen=True, slots=True)
class Opened:
    """A GET of one object version whose headers have arrived; its body is read by the parser."""

    ref: ObjectRef
    response: Any

    @property
    def body(self) -> Any:
        return self.response["Body"]

    @property
    def size(self) -> int:
        return int(self.response["ContentLength"])

    @property
    def content_type(self) -> str | None:
        value = self.response.get("ContentType")
        return str(value) if value is not None else None

    @property
    def last_modified(self) -> datetime:
        """When S3 stored this version (whole seconds)."""
        value: datetime = self.response["LastModified"]
        return value

    def close(self) -> None:
        self.body.close()


class Counted:
    """A byte source that reports how much of it was read."""

    def __init__(self, source: Any, size: int, progress: Progress) -> None:
        self._source = source
        self._size = size
        self._progress = progress
        self._read = 0

    async def read(self, n: int = -1) -> bytes:
        chunk: bytes = await self._source.read(n)
        self._read += len(chunk)
        self._progress(self._read, self._size)
        return chunk


def s3_failure(exc: ClientError) -> Exception:
    """What S3's refusal means for the file: Transient (retry later) or a PermanentFailure."""
    code = aws.error_code(exc)
    if aws.is_transient(exc):
        return Transient(f"S3 {code}")
    if code in {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}:
        return PermanentFailure("object_missing", "the object (version) no longer exists in S3")
    if code in {"PreconditionFailed", "412"}:
        return PermanentFailure("superseded", "the object was replaced after the event", status="skipped")
    if isinstance(exc, RoleAssumptionDenied):
        return PermanentFailure("access_denied", f"STS denied assuming {exc.role_arn} to read the bucket")
    if code in {"AccessDenied", "403"}:
        return PermanentFailure("access_denied", "S3 denied reading the object")
    return PermanentFailure("s3_error", f"S3 refused the read ({code})")


def versioned(ref: ObjectRef, version_id: str | None, etag: str | None) -> ObjectRef:
    # An unversioned bucket reports the version id "null": the ETag then names the object.
    version = version_id if version_id and version_id != "null" else None
    return ObjectRef(ref.bucket, ref.key, version, etag, ref.size)


class ObjectSource:
    """Object versions in S3, each bucket read with its own client (S3_BUCKET_ROLES)."""

    def __init__(self, s3_for: S3ClientFor, *, max_file_bytes: int) -> None:
        self._s3_for = s3_for
        self._max_file_bytes = max_file_bytes

    async def answers(self, bucket: str) -> None:
        """Raises unless S3 answers for `bucket` (the consumer's outage probe)."""
        await self._s3_for(bucket).head_bucket(Bucket=bucket)

    async def open_naming_version(self, ref: ObjectRef) -> Opened | None:
        """The GET of the version the event's ETag names, with the version id it reports; None when the
        object was replaced, removed or cannot be read (the usual path then finds out and records why).

        An event that names no version (S3's for an unversioned bucket; moto's always) is resolved this
        way, and that same response is loaded: the object is asked for once, not twice (HEAD, then GET).
        """
        try:
            response = await self._s3_for(ref.bucket).get_object(
                Bucket=ref.bucket, Key=ref.key, IfMatch=f'"{ref.etag}"'
            )
        except ClientError as exc:
            failure = s3_failure(exc)
            if isinstance(failure, Transient):
                raise failure from None
            return None
        except NETWORK_ERRORS as exc:
            raise Transient(type(exc).__name__) from exc
        return Opened(versioned(ref, response.get("VersionId"), ref.etag), response)

    async def with_version(self, ref: ObjectRef) -> ObjectRef:
        """The ref with its version id, when the bucket keeps versions and the event did not say.

        Every source must name an object version the same way, or one version could be logged twice
        (an S3 event without a versionId, and the service's own notification with one).
        """
        if ref.version_id is not None:
            return ref
        s3 = self._s3_for(ref.bucket)
        try:
            head = await s3.head_object(Bucket=ref.bucket, Key=ref.key)
            etag = head["ETag"].strip('"')
            if ref.etag in (None, etag):
                return versioned(ref, head.get("VersionId"), etag)
            # Replaced since the event: find the version the event was about among the older ones.
            listing = await s3.list_object_versions(Bucket=ref.bucket, Prefix=ref.key)
        except ClientError as exc:
            failure = s3_failure(exc)
            if isinstance(failure, Transient):
                raise failure from None
            return ref  # the read that follows records why (missing, denied...)
        except NETWORK_ERRORS as exc:
            raise Transient(type(exc).__name__) from exc
        for version in listing.get("Versions", []):
            if version["Key"] == ref.key and version["ETag"].strip('"') == ref.etag:
                return versioned(ref, version.get("VersionId"), ref.etag)
        return ref

    async def open(self, ref: ObjectRef) -> Opened:
        """The GET of exactly this version (by version id, else on its ETag), within the size limit."""
        params: dict[str, str] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version_id:
            params["VersionId"] = ref.version_id
        elif ref.etag:
            params["IfMatch"] = f'"{ref.etag}"'
        try:
            response = await self._s3_for(ref.bucket).get_object(**params)
        except ClientError as exc:
            raise s3_failure(exc) from None
        return self.checked(Opened(ref, response))

    async def put(self, bucket: str, key: str, body: IO[bytes], content_type: str) -> None:
        """Write an object the service makes from a file (its quarantined rows) into the file's bucket,
        with the client the bucket is read with (a client's role needs s3:PutObject on quarantine/)."""
        try:
            await self._s3_for(bucket).put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except ClientError as exc:
            if aws.is_transient(exc):
                raise Transient(f"S3 {aws.error_code(exc)}") from None
            raise PermanentFailure(
                "quarantine_write", f"S3 refused writing {key} ({aws.error_code(exc)})"
            ) from None
        except NETWORK_ERRORS as exc:
            raise Transient(type(exc).__name__) from exc

    def checked(self, opened: Opened) -> Opened:
        if opened.size > self._max_file_bytes:
            opened.close()
            raise PermanentFailure(
                "file_too_large",
                f"{opened.size} bytes is over INGEST_MAX_FILE_BYTES ({self._max_file_bytes})",
            )
        return opened
