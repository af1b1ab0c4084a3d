"""Classify an SQS message body (S3, EventBridge or service file events, user records, ...) into a typed
message; never raises, and a reason for not understanding one describes its shape, never its contents."""

import logging
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus

import orjson

from app.files.keys import key_rule_broken
from app.files.merge import depth
from app.messages import FILE_EVENTS, RECORD_TYPES, SERVICE_SOURCE, USER_RECORDS, UserRecordsMessage
from app.users.schemas import USER_ID_PATTERN

logger = logging.getLogger(__name__)

MAX_BODY_CHARS = 1_048_576  # SQS's largest message is 1 MiB, and a character is at least one byte
MAX_OBJECT_SIZE = 2**63 - 1  # what the processing log's bigint holds (S3's own limit is 50 TB)
# What botocore lets through as a bucket name (legacy us-east-1 names included); anything else could
# never be read, so the message is dead-lettered at once instead of retried as if S3 were down.
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
# User records nest two levels (health lists); a deep one would overflow json.dumps when its file is written.
RECORD_MAX_DEPTH = 8
# Tuples, not sets: membership is tested on values from the body, which may be unhashable lists.
SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")

_USER_ID = re.compile(USER_ID_PATTERN)

EventSource = Literal["s3", "eventbridge", "service"]


@dataclass(frozen=True, slots=True)
class ObjectRef:
    bucket: str
    key: str  # decoded
    version_id: str | None
    etag: str | None  # without surrounding quotes
    size: int | None


@dataclass(frozen=True, slots=True)
class FileEvents:
    """One or more objects to ingest."""

    objects: tuple[ObjectRef, ...]
    source: EventSource
    via_sns: bool  # arrived wrapped in an SNS envelope (raw delivery leaves no trace)


@dataclass(frozen=True, slots=True)
class TestEvent:
    """The s3:TestEvent S3 sends when a notification is configured: acknowledged and logged."""

    __test__ = False  # not a pytest test class, whatever its name
    bucket: str | None


@dataclass(frozen=True, slots=True)
class IgnoredEvent:
    """Understood, with nothing to ingest: acknowledged and logged."""

    reason: str


@dataclass(frozen=True, slots=True)
class CustomMessage:
    """A client's message published through POST /sns/publish: acknowledged, logged by id and topic only."""

    message_id: str | None
    topic_arn: str | None


@dataclass(frozen=True, slots=True)
class Unrecognized:
    """Not understood: dead-lettered with `reason`, which never quotes the body."""

    reason: str


Message = FileEvents | TestEvent | IgnoredEvent | UserRecordsMessage | CustomMessage | Unrecognized


class _Malformed(Exception):
    """A body that breaks the format it claims; its text is the reason, so it must not quote the body."""


def classify(body: str) -> Message:
    """The kind of message `body` is; never raises."""
    try:
        return _classify(body)
    except _Malformed as exc:
        return Unrecognized(str(exc))
    except Exception:
        # A bug here must not stall the consumer on one message: it goes to the DLQ, the traceback to the log.
        logger.exception("classifying a message failed")
        return Unrecognized("internal error while classifying")


def _classify(body: str) -> Message:
    if not body:
        raise _Malformed("empty body")
    if len(body) > MAX_BODY_CHARS:
        raise _Malformed("body larger than an SQS message can be")
    document = _parse(body)
    if not isinstance(document, dict):
        raise _Malformed(f"JSON {_json_type(document)}, not an object")
    if document.get("Type") in SNS_TYPES:
        return _from_sns(document)
    message = _from_document(document, via_sns=False)
    if message is None:
        raise _Malformed("JSON object without Records, detail-type, message_type, or a known source")
    return message


def _parse(text: str) -> object:
    try:
        return orjson.loads(text)
    except (ValueError, RecursionError):
        # orjson refuses nesting deeper than 1024 levels with a ValueError; RecursionError in case it ever
        # leaves that to Python.
        raise _Malformed("not JSON (malformed, or nested too deeply)") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array"


def _from_sns(envelope: dict[str, object]) -> Message:
    kind = envelope["Type"]
    if kind != "Notification":
        # AWS confirms SQS subscriptions itself: a confirmation on the queue needs nothing from us.
        return IgnoredEvent(f"SNS {kind}")
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise _Malformed("SNS notification without a string Message")
    custom = CustomMessage(_str_or_none(envelope.get("MessageId")), _str_or_none(envelope.get("TopicArn")))
    try:
        inner = _parse(message)
    except _Malformed:
        return custom
    if not isinstance(inner, dict):
        return custom
    if inner.get("Type") in SNS_TYPES:
        raise _Malformed("SNS envelope inside an SNS envelope")
    known = _from_document(inner, via_sns=True)
    # A known shape that is malformed has raised: acknowledging it as custom would silently drop a file event.
    return custom if known is None else known


def _from_document(document: dict[str, object], *, via_sns: bool) -> Message | None:
    """The message a JSON object is, or None when it has none of the known shapes."""
    if "Records" in document:
        return _s3_event(document["Records"], via_sns=via_sns)
    if "detail-type" in document:
        return _eventbridge_event(document, via_sns=via_sns)
    if "message_type" in document:
        return _user_records(document, via_sns=via_sns)
    if document.get("source") == SERVICE_SOURCE:
        return _service_notification(document, via_sns=via_sns)
    if document.get("Service") == "Amazon S3":
        return _test_event(document)
    return None


def _s3_event(records: object, *, via_sns: bool) -> Message:
    """ObjectCreated records are ingested and others skipped; one malformed record rejects the whole message,
    because acknowledging the rest would silently drop it, while the DLQ keeps the batch for a replay."""
    if not isinstance(records, list) or not records:
        raise _Malformed("S3 event whose Records is not a non-empty array")
    created: list[ObjectRef] = []
    for index, record in enumerate(records):
        where = f"S3 event record {index}"
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            raise _Malformed(f"{where} is not an aws:s3 record")
        event_name = record.get("eventName")
        if not isinstance(event_name, str):
            raise _Malformed(f"{where} has no eventName")
        s3 = _object(record, "s3", where)
        obj = _object(s3, "object", where)
        ref = _object_ref(
            bucket=_object(s3, "bucket", where).get("name"),
            key=obj.get("key"),
            version_id=obj.get("versionId"),
            etag=obj.get("eTag"),
            size=obj.get("size"),
            where=where,
            url_encoded_key=True,
        )
        if event_name.startswith("ObjectCreated:"):
            created.append(ref)
    if not created:
        return IgnoredEvent("S3 event without ObjectCreated records")
    return FileEvents(tuple(created), "s3", via_sns)


def _eventbridge_event(document: dict[str, object], *, via_sns: bool) -> Message:
    where = "EventBridge event"
    if document.get("source") != "aws.s3":
        raise _Malformed(f"{where} whose source is not aws.s3")
    detail_type = document["detail-type"]
    if not isinstance(detail_type, str):
        raise _Malformed(f"{where} whose detail-type is not a string")
    if detail_type != "Object Created":
        return IgnoredEvent("EventBridge S3 event other than Object Created")
    detail = _object(document, "detail", where)
    obj = _object(detail, "object", where)
    ref = _object_ref(
        bucket=_object(detail, "bucket", where).get("name"),
        key=obj.get("key"),
        version_id=obj.get("version-id"),
        etag=obj.get("etag"),
        size=obj.get("size"),
        where=where,
        url_encoded_key=False,
    )
    return FileEvents((ref,), "eventbridge", via_sns)


def _service_notification(document: dict[str, object], *, via_sns: bool) -> Message:
    if document.get("event") not in FILE_EVENTS:
        return IgnoredEvent("service notification of an event other than object.uploaded or object.updated")
    ref = _object_ref(
        bucket=document.get("bucket"),
        key=document.get("key"),
        version_id=document.get("version_id"),
        etag=document.get("etag"),
        size=document.get("size"),
        where="service notification",
        url_encoded_key=False,
    )
    return FileEvents((ref,), "service", via_sns)


def _test_event(document: dict[str, object]) -> Message:
    if document.get("Event") != "s3:TestEvent":
        raise _Malformed("Amazon S3 message whose Event is not s3:TestEvent")
    bucket = document.get("Bucket")
    return TestEvent(bucket if isinstance(bucket, str) and bucket else None)


def _user_records(document: dict[str, object], *, via_sns: bool) -> Message:
    where = "user_records message"
    if document["message_type"] != USER_RECORDS:
        raise _Malformed("message_type is not user_records")
    if via_sns:
        # /users/sqs/send puts them on the queue itself; through a topic, anyone allowed to publish there
        # could rewrite user records.
        raise _Malformed(f"{where} inside an SNS envelope (accepted only straight from the queue)")
    data_type = document.get("data_type")
    if not isinstance(data_type, str) or data_type not in RECORD_TYPES:
        raise _Malformed(f"{where} whose data_type is not personal, financial or health")
    user_id = document.get("user_id")
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise _Malformed(f"{where} whose user_id is not 1-128 of A-Z a-z 0-9 . _ -")
    record = document.get("record")
    if not isinstance(record, dict):
        raise _Malformed(f"{where} whose record is not an object")
    if depth(record) > RECORD_MAX_DEPTH:
        raise _Malformed(f"{where} whose record nests deeper than {RECORD_MAX_DEPTH} levels")
    return UserRecordsMessage(data_type, user_id, record)


def _object(parent: dict[str, object], name: str, where: str) -> dict[str, object]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise _Malformed(f"{where} whose {name} is not an object")
    return value


def _object_ref(
    *,
    bucket: object,
    key: object,
    version_id: object,
    etag: object,
    size: object,
    where: str,
    url_encoded_key: bool,
) -> ObjectRef:
    """`url_encoded_key`: S3 event notifications encode keys ("red flower.jpg" arrives as "red+flower.jpg");
    EventBridge and the service's own notifications send them as they are."""
    if not isinstance(bucket, str) or not bucket:
        raise _Malformed(f"{where} without a bucket name")
    if not _BUCKET_NAME.match(bucket):
        raise _Malformed(f"{where} whose bucket name no S3 request can carry")
    if not isinstance(key, str) or not key:
        raise _Malformed(f"{where} without an object key")
    if url_encoded_key:
        try:
            key = unquote_plus(key, errors="strict")
        except UnicodeDecodeError:
            raise _Malformed(f"{where} with a key that is not URL-encoded UTF-8") from None
    broken = key_rule_broken(key)
    if broken is not None:
        # The same rules as the API's keys: a control character (NUL above all) cannot be stored or shown.
        raise _Malformed(f"{where} with a key the service does not accept: {broken}")
    if version_id is not None and not isinstance(version_id, str):
        raise _Malformed(f"{where} whose version id is not a string")
    if etag is not None and not isinstance(etag, str):
        raise _Malformed(f"{where} whose etag is not a string")
    # bool is an int in Python, and JSON true is no size.
    if size is not None and (
        not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_OBJECT_SIZE
    ):
        raise _Malformed(f"{where} whose size is not an integer from 0 to 2^63-1")
    return ObjectRef(bucket, key, version_id or None, _unquoted(etag), size)


def _unquoted(etag: str | None) -> str | None:
    """S3 quotes ETags in HTTP headers and some notifications; the log and If-Match want them bare."""
    bare = etag.strip('"') if etag else None
    return bare or None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
