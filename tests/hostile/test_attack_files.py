"""Files built to hurt the parser, through the real ingestion path (S3 -> claim -> parse -> PostgreSQL): each
ends `failed` with a code a data owner can act on, or loads correctly; the consumer keeps going."""

import gzip
import json
import secrets
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.ingestion.envelopes import ObjectRef
from app.ingestion.parsers import MAX_JSON_DEPTH
from tests.helpers import bearer, problem_of, resources, started_app
from tests.ingestion.helpers import wait_for_file

MIB = 1024 * 1024
BOM = b"\xef\xbb\xbf"
PERSON = {"user_id": "u-bom", "name": "Ada", "email": "ada@example.com"}


@pytest.fixture(scope="module")
def quiet_bucket(s3: Any) -> str:
    """A bucket without notifications: only what a test ingests is ingested."""
    name = f"hostile-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
async def strict_app(settings: Settings, quiet_bucket: str) -> AsyncIterator[FastAPI]:
    """Low limits and the skip_rows policy, to reach each limit with a small file; its own bucket (where
    users/ files are typed) is the quiet one."""
    async with started_app(
        settings,
        s3_bucket_name=quiet_bucket,
        ingest_max_file_bytes=2 * MIB,
        ingest_max_decompressed_bytes=4 * MIB,
        ingest_max_records=1000,
        ingest_error_policy="skip_rows",
    ) as (application, _):
        yield application


async def ingest(app: FastAPI, db: asyncpg.Connection, s3: Any, bucket: str, name: str, body: bytes) -> Any:
    """Put `body` under a fresh key ending in `name`, ingest it as the CLI does, return its log row."""
    key = f"hostile/{secrets.token_hex(4)}/{name}"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    outcome = await resources(app).ingestor.ingest(ObjectRef(bucket, key, None, None, None), "cli")
    row = await db.fetchrow("SELECT * FROM file_processing_log WHERE id = $1", outcome.file_id)
    assert row["status"] == outcome.status
    return row


async def stored(db: asyncpg.Connection, file_id: int) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT data FROM processed_data WHERE file_id = $1 ORDER BY record_index", file_id)
    return [json.loads(row["data"]) if isinstance(row["data"], str | bytes) else row["data"] for row in rows]


def gzip_of(start: bytes, filler: bytes, total_bytes: int, end: bytes = b"") -> bytes:
    """A valid gzip of `start`, `filler` repeated to `total_bytes`, then `end`, made a MiB at a time: the
    test never holds the decompressed file, and one repeated byte packs ~1000:1 (300 MiB in ~300 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = filler * (MIB // len(filler))
    parts = [packer.compress(start), *(packer.compress(block) for _ in range(total_bytes // MIB))]
    return b"".join([*parts, packer.compress(end), packer.flush()])


def gzip_bomb(decompressed_bytes: int) -> bytes:
    """A valid gzip of `decompressed_bytes` zeros, about a thousandth of that size."""
    return gzip_of(b"", b"\0", decompressed_bytes)


# --- files that end `failed` with a clear code -----------------------------------------------------

HOSTILE_FILES = [
    pytest.param("deep.json", b"[" * 100_000, "parse_error", "nested deeper", id="100k-open-brackets"),
    pytest.param(
        "deep.json", b'[{"a":' + b"[" * 5000 + b"]" * 5000 + b"}]", "parse_error", "nested", id="deep-item"
    ),
    pytest.param(
        "deep.jsonl", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}\n", "parse_error", "line 1", id="deep-line"
    ),
    pytest.param("nul.json", b'[{"a": "x\x00y"}]', "parse_error", "item 1", id="raw-nul-in-json"),
    pytest.param("nul.jsonl", b'{"a": 1}\n{"a": "x\x00y"}\n', "parse_error", "line 2", id="raw-nul-in-jsonl"),
    pytest.param("nul.csv", b"a,b\n1,2\n3,x\x00y\n", "parse_error", "line 3: NUL", id="raw-nul-in-csv"),
    pytest.param("esc.json", b'[{"a": "x\\u0000y"}]', "validation_error", "U+0000", id="escaped-nul"),
    pytest.param("bad.json", b'[{"a": "caf\xe9"}]', "encoding", "item 1", id="latin1-in-json"),
    pytest.param("bad.jsonl", b'{"a": 1}\n{"a": "\xff\xfe"}\n', "encoding", "line 2", id="latin1-in-jsonl"),
    pytest.param("bad.csv", b"a,b\n1,2\n3,\xc3\x28\n", "encoding", "line 3", id="bad-utf8-in-csv"),
    pytest.param("cut.csv", b"a,b\n1,\xe2\x82", "encoding", "cut short", id="utf8-cut-short"),
    pytest.param("ragged.csv", b"a,b\n1,2\n1,2,3\n4\n", "validation_error", "line 3: 3 fields", id="ragged"),
    pytest.param("quote.csv", b'a,b\n1,"unterminated\n', "parse_error", "line", id="open-quote"),
    pytest.param("bom-only.csv", BOM, "parse_error", "header row is missing", id="bom-only-csv"),
    pytest.param("utf16.csv", "name\nAda\n".encode("utf-16"), "encoding", "line 1", id="utf16-with-its-bom"),
    pytest.param("fake.json.gz", b"\x1f\x8bnot really gzip", "parse_error", "not valid gzip", id="fake-gzip"),
    pytest.param(
        "scalar.json", b'"just a string"', "parse_error", "object or an array", id="top-level-scalar"
    ),
    pytest.param(
        "trailing.json", b'[{"a": 1}] [{"b": 2}]', "parse_error", "invalid JSON", id="two-documents"
    ),
]


@pytest.mark.parametrize(("name", "body", "code", "says"), HOSTILE_FILES)
async def test_hostile_file_fails_with_a_clear_error_code(
    app: FastAPI,
    db: asyncpg.Connection,
    s3: Any,
    quiet_bucket: str,
    name: str,
    body: bytes,
    code: str,
    says: str,
) -> None:
    row = await ingest(app, db, s3, quiet_bucket, name, body)
    assert (row["status"], row["error_code"]) == ("failed", code), row["error_message"]
    assert says in row["error_message"]
    assert await stored(db, row["id"]) == []  # reject_file: nothing of a bad file is loaded


async def test_a_gzip_bomb_stops_at_the_decompressed_limit(
    strict_app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    bomb = gzip_bomb(512 * MIB)  # ~0.5 MB on disk
    assert len(bomb) < resources(strict_app).settings.ingest_max_file_bytes
    tracemalloc.start()
    try:
        row = await ingest(strict_app, db, s3, quiet_bucket, "bomb.jsonl.gz", bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (row["status"], row["error_code"]) == ("failed", "file_too_large")
    assert "uncompressed" in row["error_message"]
    assert peak < 64 * MIB  # stopped at the 4 MiB limit, not inflated to 512 MiB


ONE_HUGE_RECORD = 300 * MIB  # far over the default record limit (16 MiB), far under the file limits


@pytest.mark.parametrize(
    ("name", "start", "end", "says"),
    [
        pytest.param("one-line.jsonl.gz", b'{"pad": "', b'"}\n', "line 1", id="jsonl-one-300-mib-line"),
        pytest.param("open-quote.csv.gz", b'id,note\n1,"never closed', b"", "line 2", id="csv-open-quote"),
        pytest.param("one-item.json.gz", b'[{"a": 1}, {"pad": "', b'"}]', "item 2", id="json-item"),
    ],
)
async def test_one_huge_record_fails_record_too_large_in_bounded_memory(
    app: FastAPI,
    db: asyncpg.Connection,
    s3: Any,
    quiet_bucket: str,
    name: str,
    start: bytes,
    end: bytes,
    says: str,
) -> None:
    body = gzip_of(start, b"x", ONE_HUGE_RECORD, end)
    # The default limits: the file (~300 KB, 300 MiB inflated) is within the file and decompressed ones.
    limit = resources(app).settings.ingest_max_record_bytes
    assert (limit, len(body) < MIB) == (16 * MIB, True)
    tracemalloc.start()
    try:
        row = await ingest(app, db, s3, quiet_bucket, name, body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (row["status"], row["error_code"]) == ("failed", "record_too_large"), row["error_message"]
    assert row["error_message"] == f"{says}: the record is larger than {limit} bytes"
    assert peak < 64 * MIB, f"peak Python allocations {peak / MIB:.0f} MiB for one record of {name}"
    assert await stored(db, row["id"]) == []


@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        pytest.param("big.jsonl", b'{"a": 1}\n' * (3 * MIB // 9), "file_too_large", id="raw-size"),
        pytest.param("many.jsonl", b'{"a": 1}\n' * 1001, "too_many_records", id="records"),
        pytest.param("many.csv", b"a\n" + b"1\n" * 1001, "too_many_records", id="csv-records"),
    ],
)
async def test_files_over_the_limits_fail_with_the_limit_named(
    strict_app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str, name: str, body: bytes, code: str
) -> None:
    row = await ingest(strict_app, db, s3, quiet_bucket, name, body)
    assert (row["status"], row["error_code"]) == ("failed", code)
    assert await stored(db, row["id"]) == []


# --- files that load correctly ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body"),
    [
        pytest.param("bom.json", BOM + json.dumps([{"name": "Ada"}, {"name": "Émilie"}]).encode(), id="json"),
        pytest.param("bom.jsonl", BOM + b'{"name": "Ada"}\n{"name": "\xc3\x89milie"}\n', id="jsonl"),
        pytest.param("bom.csv", BOM + "name\nAda\nÉmilie\n".encode(), id="csv"),
        pytest.param("bom.csv.gz", gzip.compress(BOM + "name\nAda\nÉmilie\n".encode()), id="csv-gz"),
    ],
)
async def test_a_utf8_byte_order_mark_is_not_part_of_the_first_field(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str, name: str, body: bytes
) -> None:
    # Excel writes "CSV UTF-8" with a BOM; the first column must still be called `name`.
    row = await ingest(app, db, s3, quiet_bucket, name, body)
    assert (row["status"], row["rows_inserted"]) == ("completed", 2), row["error_message"]
    assert await stored(db, row["id"]) == [{"name": "Ada"}, {"name": "Émilie"}]


async def test_a_bom_before_a_users_csv_header_still_names_user_id(
    app: FastAPI, db: asyncpg.Connection, s3: Any, bucket: str
) -> None:
    user_id = f"bom-{secrets.token_hex(4)}"
    body = BOM + f"user_id,name,email\n{user_id},Ada,ada@example.com\n".encode()
    key = f"users/personal/{user_id}.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    row = await wait_for_file(db, bucket, key)  # through the S3 event, the queue and the consumer
    assert (row["status"], row["rows_inserted"]) == ("completed", 1), row["error_message"]
    assert await db.fetchval("SELECT name FROM users_personal WHERE user_id = $1", user_id) == "Ada"


async def test_ragged_rows_are_skipped_and_counted_under_skip_rows(
    strict_app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    row = await ingest(strict_app, db, s3, quiet_bucket, "ragged.csv", b"a,b\n1,2\n3\n4,5,6\n7,8\n")
    assert (row["status"], row["error_code"]) == ("completed", "rows_rejected")
    assert (row["rows_read"], row["rows_inserted"], row["rows_rejected"]) == (4, 2, 2)
    assert "line 3: 1 fields, header has 2" in row["error_message"]
    assert await stored(db, row["id"]) == [{"a": "1", "b": "2"}, {"a": "7", "b": "8"}]


async def test_a_user_record_holding_nul_is_rejected_alone_under_skip_rows(
    strict_app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    # PostgreSQL text cannot store U+0000: the record is refused, the file's other records still load.
    good, bad = f"nul-ok-{secrets.token_hex(4)}", f"nul-bad-{secrets.token_hex(4)}"
    lines = [
        {"user_id": good, "name": "Ada", "email": "ada@example.com"},
        {"user_id": bad, "name": "Ro\u0000bert'); DROP TABLE users_personal; --", "email": "bob@example.com"},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    key = f"users/personal/{secrets.token_hex(4)}.jsonl"
    s3.put_object(Bucket=quiet_bucket, Key=key, Body=body)
    outcome = await resources(strict_app).ingestor.ingest(
        ObjectRef(quiet_bucket, key, None, None, None), "cli"
    )
    row = await db.fetchrow("SELECT * FROM file_processing_log WHERE id = $1", outcome.file_id)
    assert (row["status"], row["rows_inserted"], row["rows_rejected"]) == ("completed", 1, 1), row[
        "error_message"
    ]
    assert "line 2: name" in row["error_message"]
    assert "Ro" not in row["error_message"]  # the reason names the field, never the value
    assert await db.fetchval("SELECT count(*) FROM users_personal WHERE user_id = ANY($1)", [good, bad]) == 1


def _one_line_json_array(path: Path, target_bytes: int) -> int:
    """Writes a JSON array of ~1 KiB objects on a single line, a block at a time; returns the item count."""
    item = json.dumps({"pad": "x" * 1000, "n": 0})[:-2]  # everything before the number's digit
    block_items = 1000
    count = 0
    with path.open("wb") as out:
        out.write(b"[")
        while out.tell() < target_bytes:
            items = (f"{item}{count + i}}}" for i in range(block_items))
            out.write((b"," if count else b"") + ",".join(items).encode())
            count += block_items
        out.write(b"]")
    return count


async def test_a_50_mb_single_line_json_array_loads_in_bounded_memory(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str, tmp_path: Path
) -> None:
    # The 1 GB end-to-end case is `make bench` (bench.ingest); this is its in-suite, in-process cousin.
    path = tmp_path / "one-line.json"
    count = _one_line_json_array(path, 50 * MIB)
    key = f"hostile/{secrets.token_hex(4)}/one-line.json"
    s3.upload_file(str(path), quiet_bucket, key)
    path.unlink()
    tracemalloc.start()
    try:
        outcome = await resources(app).ingestor.ingest(ObjectRef(quiet_bucket, key, None, None, None), "cli")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    row = await db.fetchrow("SELECT * FROM file_processing_log WHERE id = $1", outcome.file_id)
    assert (row["status"], row["rows_inserted"]) == ("completed", count), row["error_message"]
    assert peak < 64 * MIB, f"peak Python allocations {peak / MIB:.0f} MiB for a 50 MB line"
    last = await db.fetchval(
        "SELECT data->>'n' FROM processed_data WHERE file_id = $1 ORDER BY record_index DESC LIMIT 1",
        row["id"],
    )
    assert last == str(count - 1)


# --- the consumer and the S3 reader survive them ---------------------------------------------------


async def test_the_consumer_fails_hostile_files_and_keeps_consuming(
    app: FastAPI, db: asyncpg.Connection, s3: Any, bucket: str
) -> None:
    prefix = f"hostile/{secrets.token_hex(4)}"
    attacks = {
        f"{prefix}/deep.json": (b"[" * 100_000, "parse_error"),
        f"{prefix}/bad.csv": (b"a\n\xff\n", "encoding"),
        f"{prefix}/fake.jsonl.gz": (b"\x1f\x8b\x08\x00garbage", "parse_error"),
    }
    for key, (body, _) in attacks.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/after.jsonl", Body=b'{"ok": true}\n')
    for key, (_, code) in attacks.items():
        row = await wait_for_file(db, bucket, key)
        assert (row["status"], row["error_code"]) == ("failed", code)
    after = await wait_for_file(db, bucket, f"{prefix}/after.jsonl")
    assert after["status"] == "completed"
    assert resources(app).jobs.consumer.healthy()


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH // 2, 950, 1_000, 5_000])
async def test_deeply_nested_s3_objects_are_served_or_refused_never_a_500(
    client: httpx.AsyncClient, s3: Any, bucket: str, depth: int
) -> None:
    key = f"reports/hostile/{secrets.token_hex(4)}/deep.json"  # excluded from ingestion
    s3.put_object(Bucket=bucket, Key=key, Body=_nested(depth))
    read = await client.get(f"/s3/{key}", headers=bearer())
    merged = await client.put(f"/s3/{key}", json={"b": 2}, headers=bearer())
    for response in (read, merged):
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:  # too deep to parse (read) or to write back (merge)
            detail = problem_of(response)["detail"]
            assert "not JSON" in detail or "nests too deeply" in detail, detail
