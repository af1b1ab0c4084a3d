"""Property tests (hypothesis) of the pure pieces hostile input reaches first: JSON Merge Patch, S3 key
rules, SQS message classification and the streaming parsers."""

import asyncio
import copy
import csv
import gzip
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.files.keys import S3_MAX_KEY_BYTES, InvalidKey, validate_key
from app.files.merge import merge_patch
from app.ingestion.envelopes import (
    CustomMessage,
    FileEvents,
    IgnoredEvent,
    TestEvent,
    Unrecognized,
    classify,
)
from app.ingestion.parsers import FileFormat, ParseError, RecordStream
from app.messages import UserRecordsMessage

# Reproducible in CI, nothing written to a .hypothesis folder in the checkout.
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)
SLOW_PROPERTY = settings(
    PROPERTY, max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def json_documents(integers: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | integers | st.floats(allow_nan=False, allow_infinity=False)
    return st.recursive(
        scalars | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=25,
    )


json_values = json_documents(st.integers())
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


# --- JSON Merge Patch (RFC 7396) -------------------------------------------------------------------

RFC_7396_APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7396_APPENDIX_A)
def test_merge_patch_gives_the_rfc_7396_appendix_a_results(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


@PROPERTY
@given(target=json_objects)
def test_empty_patch_leaves_an_object_unchanged(target: dict[str, Any]) -> None:
    assert merge_patch(target, {}) == target


@PROPERTY
@given(target=json_values, patch=json_values)
def test_applying_a_patch_twice_is_applying_it_once(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


@PROPERTY
@given(target=json_values, patch=json_values.filter(lambda value: not isinstance(value, dict)))
def test_a_patch_that_is_not_an_object_replaces_the_target(target: Any, patch: Any) -> None:
    assert merge_patch(target, patch) == patch


@PROPERTY
@given(target=json_objects, patch=json_objects)
def test_null_members_of_a_patch_remove_those_members(target: dict[str, Any], patch: dict[str, Any]) -> None:
    merged = merge_patch(target, patch)
    for name, value in patch.items():
        if value is None:
            assert name not in merged
        else:
            assert name in merged


def _null_members(document: Any) -> bool:
    """Whether an object member is null, looking through objects only (arrays are replaced whole)."""
    if not isinstance(document, dict):
        return False
    return any(value is None or _null_members(value) for value in document.values())


@PROPERTY
@given(target=json_objects.filter(lambda target: not _null_members(target)), patch=json_objects)
def test_a_patch_never_leaves_null_object_members(target: dict[str, Any], patch: dict[str, Any]) -> None:
    assert not _null_members(merge_patch(target, patch))


@PROPERTY
@given(target=json_objects, patch=json_objects)
def test_merging_never_changes_its_inputs(target: dict[str, Any], patch: dict[str, Any]) -> None:
    before = copy.deepcopy((target, patch))
    merge_patch(target, patch)
    assert (target, patch) == before


# --- S3 key rules ----------------------------------------------------------------------------------

key_texts = st.lists(
    st.sampled_from(["/", ".", "..", "a", "é", "\u2028", "\x00", "\x1f", "\x7f", " "]) | st.characters(),
    max_size=40,
).map("".join)
long_keys = st.builds(
    lambda head, wide, narrow: head + "€" * wide + "a" * narrow,
    st.sampled_from(["", "k/"]),
    st.integers(330, 345),
    st.integers(0, 8),
)  # 3-byte characters around the 1024-byte limit


@PROPERTY
@given(key=key_texts | long_keys)
@example(key="a/../b")
@example(key="..")
@example(key="a/..")
@example(key="a/...")
@example(key="/a")
@example(key="")
def test_a_key_is_accepted_as_it_is_or_refused_naming_the_key_field(key: str) -> None:
    try:
        accepted = validate_key(key)
    except InvalidKey as exc:
        assert exc.field == "key"
        assert exc.status == 422
        return
    assert accepted == key
    assert ".." not in key.split("/")
    assert not key.startswith("/")
    assert not any(ord(char) < 0x20 or ord(char) == 0x7F for char in key)
    assert 1 <= len(key.encode()) <= S3_MAX_KEY_BYTES


# --- SQS message classification --------------------------------------------------------------------

CANARY = "Canary-7f3a-personal-data"
KNOWN = (FileEvents, TestEvent, IgnoredEvent, UserRecordsMessage, CustomMessage, Unrecognized)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.just(CANARY),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=15,
)


def mostly(*good: Any) -> st.SearchStrategy[Any]:
    """A value the classifier expects (a constant or a strategy), or now and then anything at all."""
    plausible = [value if isinstance(value, st.SearchStrategy) else st.just(value) for value in good]
    return st.one_of(*plausible, *plausible, anything)


texts = st.text(min_size=1, max_size=12)
object_fields = {"key": mostly(texts, "a%2Fb+c.json", "%ZZ", "%C3%28"), "size": mostly(st.integers(-1, 9))}
s3_record = st.fixed_dictionaries(
    {
        "eventSource": mostly("aws:s3"),
        "eventName": mostly("ObjectCreated:Put", "ObjectRemoved:Delete"),
        "s3": mostly(
            st.fixed_dictionaries(
                {
                    "bucket": mostly(st.fixed_dictionaries({"name": mostly(texts)})),
                    "object": mostly(
                        st.fixed_dictionaries(
                            object_fields, optional={"eTag": mostly(texts), "versionId": mostly(texts)}
                        )
                    ),
                }
            )
        ),
    }
)
shaped_documents = st.one_of(
    st.fixed_dictionaries({"Records": mostly(st.lists(s3_record, min_size=1, max_size=3))}),
    st.fixed_dictionaries(
        {
            "detail-type": mostly("Object Created", "Object Deleted"),
            "source": mostly("aws.s3"),
            "detail": mostly(
                st.fixed_dictionaries(
                    {
                        "bucket": mostly(st.fixed_dictionaries({"name": mostly(texts)})),
                        "object": mostly(st.fixed_dictionaries(object_fields)),
                    }
                )
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "message_type": mostly("user_records"),
            "data_type": mostly("personal", "health"),
            "user_id": mostly("u-1", texts),
            "record": mostly(st.dictionaries(texts, anything, max_size=3)),
        }
    ),
    st.fixed_dictionaries(
        {
            "source": st.just("aws-s3-service"),
            "event": mostly("object.uploaded", "report.daily"),
            "bucket": mostly(texts),
            "key": mostly(texts),
        },
        optional={"etag": mostly(texts), "version_id": mostly(texts), "size": mostly(st.integers())},
    ),
    st.fixed_dictionaries(
        {"Service": st.just("Amazon S3"), "Event": mostly("s3:TestEvent"), "Bucket": anything}
    ),
    anything,
)


def sns_envelope(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda kind, message, message_id: json.dumps(
            {"Type": kind, "Message": message, "MessageId": message_id}
        ),
        mostly("Notification", "SubscriptionConfirmation"),
        mostly(inner),
        mostly(texts),
    )


bodies = st.one_of(
    st.text(),
    anything.map(json.dumps),
    shaped_documents.map(json.dumps),
    sns_envelope(shaped_documents.map(json.dumps)),
    sns_envelope(sns_envelope(shaped_documents.map(json.dumps))),
)


@PROPERTY
@given(body=bodies)
@example(body="[" * 100_000)
@example(body='{"Records": [' + "[" * 5000 + "]" * 5000 + "]}")
@example(body="\ud800")
def test_any_message_body_is_classified_without_an_internal_error(body: str) -> None:
    message = classify(body)
    assert isinstance(message, KNOWN)
    if isinstance(message, Unrecognized):
        assert message.reason != "internal error while classifying"
        assert CANARY not in message.reason  # a reason describes the shape, never the content


# --- Streaming parsers -----------------------------------------------------------------------------


class MemorySource:
    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = data
        self._chunk = chunk
        self._at = 0

    async def read(self, n: int = -1) -> bytes:
        size = self._chunk if n < 0 else min(n, self._chunk)
        chunk = self._data[self._at : self._at + size]
        self._at += len(chunk)
        return chunk


async def _parse(data: bytes, fmt: FileFormat, chunk: int) -> list[dict[str, Any] | None]:
    stream = RecordStream(
        MemorySource(data, chunk),
        fmt,
        max_bytes=1 << 20,
        max_decompressed_bytes=1 << 20,
        max_records=10_000,
        max_record_bytes=1 << 20,
        chunk_size=chunk,
    )
    async with asyncio.timeout(5):  # a parser that loops on some input fails here instead of hanging
        return [record.data async for record in stream]


def parse(data: bytes, fmt: FileFormat, chunk: int) -> list[dict[str, Any] | None]:
    return asyncio.run(_parse(data, fmt, chunk))


byte_noise = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"[", b"{", b'"', b"\\", b",", b"\n", b"\r", b":", b"}", b"]", b"\x00", b"\xef\xbb\xbf"])
    | st.sampled_from([b"\xff", b"\xc3", b"1", b"a", b"null", b'"k"', b"\x1f\x8b"]),
    max_size=60,
).map(b"".join)


@SLOW_PROPERTY
@given(
    data=byte_noise,
    fmt=st.sampled_from(list(FileFormat)),
    gzipped=st.booleans(),
    chunk=st.integers(1, 64),
)
@example(data=b"\xef\xbb\xbf", fmt=FileFormat.JSON, gzipped=False, chunk=1)
@example(data=b"\x1f", fmt=FileFormat.CSV, gzipped=False, chunk=1)
@example(data=b"\x1f\x8b", fmt=FileFormat.JSONL, gzipped=False, chunk=1)
def test_arbitrary_bytes_become_records_or_a_parse_error(
    data: bytes, fmt: FileFormat, gzipped: bool, chunk: int
) -> None:
    try:
        records = parse(gzip.compress(data) if gzipped else data, fmt, chunk)
    except ParseError as exc:
        assert exc.code in ("parse_error", "encoding", "file_too_large", "too_many_records")
        return
    assert all(record is None or isinstance(record, dict) for record in records)


field_names = st.text(min_size=1, max_size=8).filter(lambda name: name.strip() and "\x00" not in name)
csv_values = st.text(max_size=12).filter(lambda value: "\x00" not in value)
tables = st.lists(field_names, min_size=1, max_size=4, unique=True).flatmap(
    lambda header: st.tuples(
        st.just(header),
        st.lists(st.lists(csv_values, min_size=len(header), max_size=len(header)), max_size=6),
    )
)


@SLOW_PROPERTY
@given(
    table=tables,
    bom=st.booleans(),
    gzipped=st.booleans(),
    line_end=st.sampled_from(["\n", "\r\n"]),
    chunk=st.integers(1, 32),
)
def test_csv_written_by_a_csv_writer_reads_back_as_it_was(
    table: tuple[list[str], list[list[str]]], bom: bool, gzipped: bool, line_end: str, chunk: int
) -> None:
    header, rows = table
    text = io.StringIO()
    csv.writer(text, lineterminator=line_end).writerows([header, *rows])
    data = (b"\xef\xbb\xbf" if bom else b"") + text.getvalue().encode()
    records = parse(gzip.compress(data) if gzipped else data, FileFormat.CSV, chunk)
    assert records == [dict(zip(header, row, strict=True)) for row in rows]


# yajl (JSON files) fails a whole file on an integer outside the signed 64-bit range, and on -2**63 too
# (it negates the magnitude, which overflows: "integer overflow"), and orjson (JSON Lines) on one beyond
# 64 bits unsigned; within that range integers are read exactly.
int64_objects = st.dictionaries(
    st.text(max_size=8), json_documents(st.integers(-(2**63) + 1, 2**63 - 1)), max_size=5
)


@SLOW_PROPERTY
@given(
    objects=st.lists(int64_objects, max_size=6),
    fmt=st.sampled_from([FileFormat.JSON, FileFormat.JSONL]),
    bom=st.booleans(),
    gzipped=st.booleans(),
    chunk=st.integers(1, 32),
)
def test_json_and_json_lines_read_back_as_they_were(
    objects: list[dict[str, Any]], fmt: FileFormat, bom: bool, gzipped: bool, chunk: int
) -> None:
    if fmt is FileFormat.JSON:
        text = json.dumps(objects, ensure_ascii=False)
    else:
        text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in objects)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")
    records = parse(gzip.compress(data) if gzipped else data, fmt, chunk)
    assert records == objects
