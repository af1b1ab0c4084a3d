"""The /s3 routes against moto: reads, merge patches under concurrency, uploads, and their notifications."""

import asyncio
import gzip
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from prometheus_client import REGISTRY

from app.core.config import Settings
from tests.aws import notification_for, receive_until, sns_envelope
from tests.helpers import bearer, problem_of, started_app


def new_key(suffix: str = ".json", prefix: str = "docs") -> str:
    return f"{prefix}/{secrets.token_hex(5)}{suffix}"


def url_of(key: str) -> str:
    return "/s3/" + quote(key, safe="/")


def put_json(s3: Any, bucket: str, key: str, document: Any) -> str:
    response = s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
    return str(response["ETag"])


def stored(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


# --- GET /s3/{key} --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["plain.json", "nested/deeper/still/doc.json", "with space/and+plus.json", "ünïcødé/文件 名.json"]
)
async def test_get_returns_the_json_object_and_its_etag(
    client: httpx.AsyncClient, s3: Any, bucket: str, key: str
) -> None:
    etag = put_json(s3, bucket, key, {"hello": "world", "n": [1, 2]})
    response = await client.get(url_of(key), headers=bearer(["s3:read"]))
    assert response.status_code == 200, response.text
    assert response.json() == {"hello": "world", "n": [1, 2]}
    assert response.headers["etag"] == etag


async def test_get_with_matching_if_none_match_is_304(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key()
    etag = put_json(s3, bucket, key, {"a": 1})
    response = await client.get(url_of(key), headers={**bearer(), "If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""


async def test_get_missing_object_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(url_of(new_key()), headers=bearer())
    assert response.status_code == 404
    problem_of(response)


async def test_get_non_json_object_is_422(client: httpx.AsyncClient, s3: Any, bucket: str) -> None:
    key = new_key(".csv")
    s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,2\n")
    response = await client.get(url_of(key), headers=bearer())
    assert response.status_code == 422
    assert problem_of(response)["type"] == "/problems/not-json"


@pytest.mark.parametrize(
    "raw_path",
    ["/s3/a/%2E%2E/secret.json", "/s3/%2Fabsolute.json", "/s3/ctl%01char.json", "/s3/" + "k" * 1025],
)
async def test_invalid_key_is_422_naming_key_even_if_such_an_object_exists(
    client: httpx.AsyncClient, s3: Any, bucket: str, raw_path: str
) -> None:
    # The object exists in S3, so only validation before the AWS call can refuse it.
    from urllib.parse import unquote

    key = unquote(raw_path.removeprefix("/s3/"))
    if len(key) <= 1024 and not key.startswith("/"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    for method in ("GET", "PUT"):
        response = await client.request(method, raw_path, headers=bearer(), json={"x": 1})
        assert response.status_code == 422, (method, response.text)
        assert problem_of(response)["errors"][0]["field"] == "key"


async def test_s3_routes_need_their_scopes(client: httpx.AsyncClient) -> None:
    key = url_of(new_key())
    assert (await client.get(key)).status_code == 401
    assert (await client.get(key, headers=bearer(["s3:write"]))).status_code == 403
    assert (await client.put(key, json={}, headers=bearer(["s3:read"]))).status_code == 403
    upload = await client.post(
        "/s3/upload", json={"key": "a.json", "content": {}}, headers=bearer(["s3:read"])
    )
    assert upload.status_code == 403


# --- PUT /s3/{key}: JSON Merge Patch -------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "patch", "expected"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": 3, "d": 4}}, {"a": {"b": 1, "c": 3, "d": 4}}),
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"tags": [1, 2, 3]}, {"tags": [4]}, {"tags": [4]}),
        ({"a": {"b": 1}}, {"a": "scalar"}, {"a": "scalar"}),
        ({"a": 1}, ["whole", "document"], ["whole", "document"]),
        ({"a": 1}, {"x": {"y": {"z": None}}}, {"a": 1, "x": {"y": {}}}),
        (["not", "an", "object"], {"a": 1}, {"a": 1}),
    ],
    ids=[
        "nested",
        "null-removes",
        "array-replaced",
        "object-to-scalar",
        "non-object-patch",
        "deep-null",
        "on-array",
    ],
)
async def test_merge_patch_follows_rfc_7396(
    client: httpx.AsyncClient, s3: Any, bucket: str, original: Any, patch: Any, expected: Any
) -> None:
    key = new_key()
    put_json(s3, bucket, key, original)
    response = await client.put(
        url_of(key),
        content=json.dumps(patch),
        headers={**bearer(["s3:write"]), "Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == expected
    assert json.loads(stored(s3, bucket, key)) == expected
    assert response.headers["etag"] == s3.head_object(Bucket=bucket, Key=key)["ETag"]


async def test_merge_publishes_one_notification_with_attributes(
    client: httpx.AsyncClient, s3: Any, sqs: Any, bucket: str, notifications_queue: str
) -> None:
    key = new_key(prefix="notify")
    put_json(s3, bucket, key, {"v": 1})
    response = await client.put(
        url_of(key), json={"v": 2}, headers={**bearer(), "X-Request-ID": "merge-req-1"}
    )
    assert response.headers["x-notification-published"] == "true"
    message = await receive_until(sqs, notifications_queue, notification_for(key))
    envelope = sns_envelope(message)
    body = json.loads(envelope["Message"])
    assert body["event"] == "object.updated"
    assert body["bucket"] == bucket
    assert body["etag"] == response.headers["etag"]
    assert body["request_id"] == "merge-req-1"
    assert body["size"] == len(stored(s3, bucket, key))
    attributes = envelope["MessageAttributes"]
    assert attributes["event"]["Value"] == "object.updated"
    assert attributes["bucket"]["Value"] == bucket
    assert attributes["source"]["Value"] == "aws-s3-service"


async def test_concurrent_merges_all_land(client: httpx.AsyncClient, s3: Any, bucket: str) -> None:
    key = new_key()
    put_json(s3, bucket, key, {"start": True})
    writers = 8
    responses = await asyncio.gather(
        *(client.put(url_of(key), json={f"field{i}": i}, headers=bearer()) for i in range(writers))
    )
    assert [r.status_code for r in responses] == [200] * writers, [r.text for r in responses]
    final = json.loads(stored(s3, bucket, key))
    assert final == {"start": True, **{f"field{i}": i for i in range(writers)}}


async def test_if_match_current_etag_updates_stale_etag_is_412(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key()
    first_etag = put_json(s3, bucket, key, {"v": 1})
    ok = await client.put(url_of(key), json={"v": 2}, headers={**bearer(), "If-Match": first_etag})
    assert ok.status_code == 200
    stale = await client.put(url_of(key), json={"v": 3}, headers={**bearer(), "If-Match": first_etag})
    assert stale.status_code == 412
    problem_of(stale)
    assert json.loads(stored(s3, bucket, key)) == {"v": 2}


async def test_merge_on_missing_object_is_404_and_creates_nothing(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key()
    response = await client.put(url_of(key), json={"a": 1}, headers=bearer())
    assert response.status_code == 404
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=key)


async def test_merge_into_non_json_object_is_422_and_leaves_it(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key(".json")
    s3.put_object(Bucket=bucket, Key=key, Body=b"not json")
    response = await client.put(url_of(key), json={"a": 1}, headers=bearer())
    assert response.status_code == 422
    assert stored(s3, bucket, key) == b"not json"


async def test_merge_with_non_json_body_is_415_or_400(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key()
    put_json(s3, bucket, key, {"a": 1})
    text = await client.put(url_of(key), content=b"a=1", headers={**bearer(), "Content-Type": "text/plain"})
    assert text.status_code == 415
    broken = await client.put(
        url_of(key), content=b"{", headers={**bearer(), "Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert json.loads(stored(s3, bucket, key)) == {"a": 1}


async def test_too_deep_patch_is_422(client: httpx.AsyncClient, s3: Any, bucket: str) -> None:
    key = new_key()
    put_json(s3, bucket, key, {})
    patch: Any = 1
    for _ in range(100):
        patch = {"n": patch}
    response = await client.put(url_of(key), json=patch, headers=bearer())
    assert response.status_code == 422
    assert json.loads(stored(s3, bucket, key)) == {}


# --- POST /s3/upload ------------------------------------------------------------------------------


async def test_json_body_upload_stores_content_with_type_and_notifies(
    client: httpx.AsyncClient, s3: Any, sqs: Any, bucket: str, notifications_queue: str
) -> None:
    key = new_key(prefix="uploads")
    response = await client.post("/s3/upload", json={"key": key, "content": {"a": [1, 2]}}, headers=bearer())
    assert response.status_code == 201, response.text
    body = response.json()
    head = s3.head_object(Bucket=bucket, Key=key)
    assert body["etag"] == head["ETag"]
    assert body["version_id"] == head["VersionId"]
    assert body["size"] == head["ContentLength"]
    assert body["notification_published"] is True
    assert head["ContentType"] == "application/json"
    assert json.loads(stored(s3, bucket, key)) == {"a": [1, 2]}
    message = await receive_until(sqs, notifications_queue, notification_for(key))
    assert json.loads(sns_envelope(message)["Message"])["event"] == "object.uploaded"


@pytest.mark.parametrize(
    ("suffix", "content", "expected"),
    [
        (".jsonl", [{"a": 1}, {"b": 2}], b'{"a":1}\n{"b":2}\n'),
        (".ndjson", '{"a":1}\n', b'{"a":1}\n'),
        (".csv", "id,name\n1,Ada\n", b"id,name\n1,Ada\n"),
        (".json", '{"raw": true}', b'{"raw": true}'),
    ],
)
async def test_json_body_upload_of_each_file_kind(
    client: httpx.AsyncClient, s3: Any, bucket: str, suffix: str, content: Any, expected: bytes
) -> None:
    key = new_key(suffix)
    response = await client.post("/s3/upload", json={"key": key, "content": content}, headers=bearer())
    assert response.status_code == 201, response.text
    assert stored(s3, bucket, key) == expected


async def test_json_body_upload_to_gz_key_is_gzipped(client: httpx.AsyncClient, s3: Any, bucket: str) -> None:
    key = new_key(".csv.gz")
    response = await client.post("/s3/upload", json={"key": key, "content": "a\n1\n"}, headers=bearer())
    assert response.status_code == 201
    assert response.json()["content_type"] == "application/gzip"
    assert gzip.decompress(stored(s3, bucket, key)) == b"a\n1\n"


async def test_upload_refuses_existing_key_unless_overwrite(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key()
    first = await client.post("/s3/upload", json={"key": key, "content": {"v": 1}}, headers=bearer())
    assert first.status_code == 201
    again = await client.post("/s3/upload", json={"key": key, "content": {"v": 2}}, headers=bearer())
    assert again.status_code == 409
    problem_of(again)
    assert json.loads(stored(s3, bucket, key)) == {"v": 1}
    replaced = await client.post(
        "/s3/upload?overwrite=true", json={"key": key, "content": {"v": 2}}, headers=bearer()
    )
    assert replaced.status_code == 201
    assert replaced.json()["etag"] != first.json()["etag"]
    assert json.loads(stored(s3, bucket, key)) == {"v": 2}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"key": "notes.txt", "content": "x"}, 415, None),
        ({"key": "data.json", "content": "not json"}, 422, None),
        ({"key": "data.csv", "content": {"a": 1}}, 422, None),
        ({"key": "data.csv", "content": ""}, 422, None),
        ({"key": "../up.json", "content": {}}, 422, "key"),
        ({"content": {}}, 422, "key"),
        ({"key": "a.json", "content": {}, "extra": 1}, 422, "extra"),
    ],
)
async def test_bad_json_upload_is_4xx_and_stores_nothing(
    client: httpx.AsyncClient, s3: Any, bucket: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    before = s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    response = await client.post("/s3/upload", json=body, headers=bearer())
    assert response.status_code == status, response.text
    problem = problem_of(response)
    if field:
        assert field in [error["field"] for error in problem["errors"]]
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == before


async def test_upload_with_other_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/s3/upload", content=b"a,b", headers={**bearer(), "Content-Type": "text/csv"}
    )
    assert response.status_code == 415


async def test_multipart_upload_uses_the_key_field_or_the_filename(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key(".csv")
    named = await client.post(
        "/s3/upload",
        data={"key": key},
        files={"file": ("ignored.csv", b"id\n1\n", "text/csv")},
        headers=bearer(),
    )
    assert named.status_code == 201, named.text
    assert named.json()["key"] == key
    assert stored(s3, bucket, key) == b"id\n1\n"
    filename = f"{secrets.token_hex(4)} file.ndjson"
    unnamed = await client.post("/s3/upload", files={"file": (filename, b'{"a":1}\n')}, headers=bearer())
    assert unnamed.status_code == 201
    assert unnamed.json()["key"] == filename
    assert unnamed.json()["content_type"] == "application/x-ndjson"


async def test_multipart_upload_larger_than_one_part_is_reassembled(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key(".jsonl")
    line = b'{"id": 1, "payload": "' + b"x" * 1000 + b'"}\n'
    content = line * (17 * 1024)  # ~17 MB: four parts of 5 MiB
    response = await client.post(
        "/s3/upload", data={"key": key}, files={"file": ("big.jsonl", content)}, headers=bearer()
    )
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(content)
    assert stored(s3, bucket, key) == content


async def test_multipart_gz_upload_must_be_gzip(client: httpx.AsyncClient, s3: Any, bucket: str) -> None:
    key = new_key(".csv.gz")
    fake = await client.post(
        "/s3/upload", data={"key": key}, files={"file": ("x.gz", b"a,b\n")}, headers=bearer()
    )
    assert fake.status_code == 422
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=key)
    real = await client.post(
        "/s3/upload", data={"key": key}, files={"file": ("x.gz", gzip.compress(b"a,b\n"))}, headers=bearer()
    )
    assert real.status_code == 201


@pytest.mark.parametrize(
    ("data", "files", "status"),
    [
        ({"key": "x.json"}, None, 422),
        ({}, {"file": ("notes.txt", b"x")}, 415),
        ({"key": "a/../b.json"}, {"file": ("a.json", b"{}")}, 422),
        ({}, {"file": ("empty.json", b"")}, 422),
    ],
    ids=["no-file", "bad-type", "bad-key", "empty"],
)
async def test_bad_multipart_upload_is_4xx(
    client: httpx.AsyncClient, data: dict[str, str], files: Any, status: int
) -> None:
    response = await client.post(
        "/s3/upload", data=data, files=files or {"other": ("o", b"x")}, headers=bearer()
    )
    assert response.status_code == status, response.text
    problem_of(response)


MIB = 1024 * 1024
BOUNDARY = "envelope-test-boundary"
Part = tuple[list[str], bytes]  # header lines and content


def form_field(name: str, value: str) -> Part:
    return [f'Content-Disposition: form-data; name="{name}"'], value.encode()


def file_part(content: bytes, *, disposition_extra: str = "", headers: tuple[str, ...] = ()) -> Part:
    disposition = f'Content-Disposition: form-data; name="file"; filename="f.csv"{disposition_extra}'
    return [disposition, "Content-Type: text/csv", *headers], content


async def post_form(client: httpx.AsyncClient, parts: list[Part], chunk: int | None = None) -> httpx.Response:
    """A multipart body built by hand (the envelopes below are ones httpx would never send), sent whole or
    streamed in chunks of `chunk` bytes."""
    body = b"".join(
        f"--{BOUNDARY}\r\n".encode()
        + "".join(f"{line}\r\n" for line in headers).encode()
        + b"\r\n"
        + content
        + b"\r\n"
        for headers, content in parts
    )
    body += f"--{BOUNDARY}--\r\n".encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), chunk or len(body)):
            yield body[start : start + (chunk or len(body))]

    return await client.post(
        "/s3/upload",
        content=body if chunk is None else chunks(),
        headers={**bearer(), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def nothing_written(s3: Any, bucket: str, key: str) -> bool:
    return "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=key) and not s3.list_multipart_uploads(
        Bucket=bucket, Prefix=key
    ).get("Uploads")


@pytest.mark.parametrize("chunk", [None, 4096], ids=["whole", "in-4-kib-chunks"])
@pytest.mark.parametrize(
    ("envelope", "says"),
    [
        pytest.param(
            lambda: [file_part(b"id\n1\n", disposition_extra=f'; padding="{"x" * MIB}"')],
            "8192 bytes in all",
            id="1-mib-content-disposition",
        ),
        pytest.param(
            lambda: [file_part(b"id\n1\n", headers=tuple(f"X-Filler-{n}: {'x' * 1400}" for n in range(6)))],
            "8192 bytes in all",
            id="part-headers-over-8-kib-in-all",
        ),
        pytest.param(
            lambda: [file_part(b"id\n1\n", headers=tuple(f"X-{n}: y" for n in range(20)))],
            "8 headers",
            id="twenty-headers",
        ),
        pytest.param(
            lambda: [*(form_field(f"f{n}", "v") for n in range(1000)), file_part(b"id\n1\n")],
            "more than 16 parts",
            id="1000-fields-before-the-file",
        ),
        pytest.param(
            lambda: [
                file_part(b"id\n" + b"1234567\n" * MIB),
                *(form_field(f"f{n}", "v") for n in range(1000)),
            ],
            "more than 16 parts",
            id="1000-fields-after-8-mib-of-file",
        ),
    ],
)
async def test_multipart_envelope_over_a_limit_is_422_naming_it_and_writes_nothing(
    client: httpx.AsyncClient,
    s3: Any,
    bucket: str,
    envelope: Callable[[], list[Part]],
    says: str,
    chunk: int | None,
) -> None:
    key = new_key(".csv")
    response = await post_form(client, [form_field("key", key), *envelope()], chunk)
    assert response.status_code == 422, response.text
    assert says in problem_of(response)["detail"]
    assert nothing_written(s3, bucket, key)  # an upload already started (8 MiB: one S3 part) is aborted


async def test_multipart_upload_at_the_envelope_limits_still_works(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key(".csv")
    fields = [form_field("key", key), *(form_field(f"f{n}", "v" * 4096) for n in range(14))]
    headers = tuple(f"X-{n}: {'y' * 1000}" for n in range(6))  # with the two usual ones: 8 headers, ~6.1 KiB
    response = await post_form(client, [*fields, file_part(b"id\n1\n", headers=headers)])
    assert response.status_code == 201, response.text
    assert response.json()["key"] == key
    assert stored(s3, bucket, key) == b"id\n1\n"


@pytest.fixture
async def small_limit_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with started_app(settings, max_upload_bytes=20_000) as (_, http):
        yield http


async def test_upload_over_the_limit_is_413_and_leaves_nothing(
    small_limit_client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key(".csv")
    response = await small_limit_client.post(
        "/s3/upload", data={"key": key}, files={"file": ("f.csv", b"x" * 30_000)}, headers=bearer()
    )
    assert response.status_code == 413
    problem_of(response)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=key)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.fixture
async def broken_topic_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    missing_topic = settings.sns_topic_arn.rsplit(":", 1)[0] + ":no-such-topic"
    async with started_app(settings, sns_topic_arn=missing_topic) as (_, http):
        yield http


async def test_failed_notification_still_reports_the_write(
    broken_topic_client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    def failures() -> float:
        value = REGISTRY.get_sample_value(
            "sns_change_notifications_total", {"event": "object.uploaded", "outcome": "failed"}
        )
        return value or 0.0

    before = failures()
    key = new_key()
    response = await broken_topic_client.post(
        "/s3/upload", json={"key": key, "content": {"a": 1}}, headers=bearer()
    )
    assert response.status_code == 201
    assert response.json()["notification_published"] is False
    assert json.loads(stored(s3, bucket, key)) == {"a": 1}
    assert failures() == before + 1


# --- NaN and Infinity are not JSON (security review, issue 14) ------------------------------------


@pytest.mark.parametrize("patch", [b'{"x": NaN}', b'{"x": {"y": [1, Infinity]}}', b"-Infinity"])
async def test_merge_patch_holding_nan_or_infinity_is_422_and_writes_nothing(
    client: httpx.AsyncClient, s3: Any, bucket: str, patch: bytes
) -> None:
    key = new_key()
    put_json(s3, bucket, key, {"a": 1})
    response = await client.put(
        url_of(key), content=patch, headers={**bearer(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert problem_of(response)["errors"]
    assert json.loads(stored(s3, bucket, key)) == {"a": 1}
    assert (await client.get(url_of(key), headers=bearer())).json() == {"a": 1}


async def test_upload_content_holding_nan_is_422_and_writes_nothing(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key(".jsonl")
    body = b'{"key": "%s", "content": [{"x": NaN}]}' % key.encode()
    response = await client.post(
        "/s3/upload", content=body, headers={**bearer(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "content" in [error["field"] for error in problem_of(response)["errors"]]
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount")


@pytest.mark.parametrize("document", [b'{"x": NaN}', b"[Infinity]", b"\xff\xfe{}"])
async def test_stored_object_that_is_not_strict_json_is_422_to_read_and_to_merge(
    client: httpx.AsyncClient, s3: Any, bucket: str, document: bytes
) -> None:
    # Written by something else than this API: reading it must not end in a 500 while serializing.
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=document)
    read = await client.get(url_of(key), headers=bearer())
    assert read.status_code == 422
    assert problem_of(read)["type"] == "/problems/not-json"
    merged = await client.put(url_of(key), json={"y": 1}, headers=bearer())
    assert merged.status_code == 422
    assert stored(s3, bucket, key) == document


async def test_stored_object_with_a_byte_order_mark_is_served_without_it(
    client: httpx.AsyncClient, s3: Any, bucket: str
) -> None:
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b'\xef\xbb\xbf{"bom": true}')
    response = await client.get(url_of(key), headers=bearer())
    assert response.status_code == 200
    assert response.content == b'{"bom": true}'
