"""Records posted to a source (exactly once per Idempotency-Key) and dry runs of a file against a source
(POST /ingestion/sources/{name}/validate and `python -m app sources validate`): nothing is written by a
dry run, and each answers what a data owner needs to fix their file."""

import gzip
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.helpers import bearer, run_cli
from tests.sources.conftest import ApplySource, source_name


def writer() -> dict[str, str]:
    return bearer(["ingestion:write"])


def reader() -> dict[str, str]:
    return bearer(["ingestion:read"])


def scores(name: str, bucket: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "tenant": "acme",
        "bucket": bucket,
        "prefix": f"{name}/",
        "format": "csv",
        "columns": [
            {"name": "id", "type": "integer", "required": True},
            {"name": "score", "type": "integer", "rules": {"min": 0, "max": 10}},
        ],
        "key": ["id"],
        "on_error": "skip_rows",
        "file_rules": {"max_rejected_share": 0.5},
    }
    spec.update(changes)
    return spec


async def test_posted_records_load_once_per_idempotency_key(
    apply_source: ApplySource, client: httpx.AsyncClient, bucket: str, db: asyncpg.Connection
) -> None:
    name = source_name("scores")
    await apply_source(scores(name, bucket))
    url = f"/ingestion/sources/{name}/records"
    records = [{"id": 1, "score": 5}, {"id": 2, "score": 11}, {"id": 3, "score": "7"}]
    headers = {**writer(), "Idempotency-Key": "batch-1"}

    first = await client.post(url, json=records, headers=headers)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["status"], body["rows_inserted"], body["rows_rejected"]) == ("completed", 2, 1)
    assert body["rejected_by_rule"] == {"score: max": 1} and body["source_name"] == name

    # A retry (the client lost the answer) gets the first result, and nothing is loaded again.
    await db.execute(f'UPDATE sources."{name}" SET score = 0 WHERE id = 1')
    again = await client.post(url, json=records, headers=headers)
    assert again.status_code == 200 and again.json() == body
    assert await db.fetchval(f'SELECT score FROM sources."{name}" WHERE id = 1') == 0

    other_body = await client.post(url, json=records[:1], headers=headers)
    assert other_body.status_code == 409
    assert other_body.json()["errors"][0]["field"] == "Idempotency-Key"

    rejected = await client.post(
        url, json=[{"id": "x"}, {"id": "y"}], headers={**writer(), "Idempotency-Key": "b2"}
    )
    assert rejected.status_code == 422
    assert (
        "1 of 2" not in rejected.json()["detail"]
        and "file_rule: 2 of 2 rows rejected" in rejected.json()["detail"]
    )
    replay = await client.post(
        url, json=[{"id": "x"}, {"id": "y"}], headers={**writer(), "Idempotency-Key": "b2"}
    )
    assert replay.status_code == 422 and replay.json()["detail"] == rejected.json()["detail"]


async def test_bad_record_requests_are_refused_clearly(
    apply_source: ApplySource, client: httpx.AsyncClient, bucket: str
) -> None:
    name = source_name("scores")
    await apply_source(scores(name, bucket))
    url = f"/ingestion/sources/{name}/records"
    no_key = await client.post(url, json=[{"id": 1}], headers=writer())
    assert no_key.status_code == 422 and no_key.json()["errors"][0]["field"] == "Idempotency-Key"
    bad_key = await client.post(url, json=[{"id": 1}], headers={**writer(), "Idempotency-Key": "a/b"})
    assert bad_key.status_code == 422
    read_only = await client.post(url, json=[{"id": 1}], headers={**reader(), "Idempotency-Key": "k"})
    assert read_only.status_code == 403
    missing = await client.post(
        "/ingestion/sources/no_such_source/records",
        json=[{"id": 1}],
        headers={**writer(), "Idempotency-Key": "k"},
    )
    assert missing.status_code == 404
    not_json = await client.post(
        url, content=b"id\n1\n", headers={**writer(), "Idempotency-Key": "k3", "Content-Type": "text/csv"}
    )
    assert not_json.status_code == 415
    # A CSV source takes JSON records too; a value JSON can hold but a column cannot is that row's problem.
    nested = await client.post(
        url, json=[{"id": {"a": 1}, "score": [1]}, {"id": 2}], headers={**writer(), "Idempotency-Key": "k5"}
    )
    assert nested.status_code == 201, nested.text
    assert nested.json()["rejected_by_rule"] == {"id: type": 1, "score: type": 1}
    broken = await client.post(
        url, content=b"[{", headers={**writer(), "Idempotency-Key": "k4", "Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"].startswith("parse_error")


async def test_validate_reports_rejections_per_rule_and_writes_nothing(
    apply_source: ApplySource, client: httpx.AsyncClient, s3: Any, bucket: str, db: asyncpg.Connection
) -> None:
    name = source_name("scores")
    await apply_source(
        scores(
            name, bucket, file_rules={"expected_columns": ["id", "score", "team"], "max_rejected_share": 0.5}
        )
    )
    sample = b"id,score\n1,5\n2,11\nx,3\n4,12\n5,1\n"

    checked = await client.post(
        f"/ingestion/sources/{name}/validate", content=gzip.compress(sample), headers=reader()
    )
    assert checked.status_code == 200, checked.text
    assert checked.json() == {
        "source": name,
        "version": 1,
        "rows_read": 5,
        "rows_accepted": 2,
        "rows_rejected": 3,
        "rejected_by_rule": [
            {"rule": "score: max", "rows": 2, "first_lines": [3, 5]},
            {"rule": "id: type", "rows": 1, "first_lines": [4]},
        ],
        "file_problems": [
            "the header lacks the expected columns team",
            "3 of 5 rows rejected, more than the source allows (50%)",
        ],
        "error": None,
    }

    s3.put_object(Bucket=bucket, Key=f"{name}-drafts/a.csv", Body=sample)  # outside the source's prefix
    outside = await client.post(
        f"/ingestion/sources/{name}/validate", params={"key": f"{name}-drafts/a.csv"}, headers=reader()
    )
    assert outside.status_code == 422 and outside.json()["errors"][0]["field"] == "key"
    absent = await client.post(
        f"/ingestion/sources/{name}/validate", params={"key": f"{name}/none.csv"}, headers=reader()
    )
    assert absent.status_code == 404
    empty = await client.post(f"/ingestion/sources/{name}/validate", headers=reader())
    assert empty.status_code == 400
    unreadable = await client.post(
        f"/ingestion/sources/{name}/validate", content=b'id,score\n1,"2\n', headers=reader()
    )
    assert unreadable.json()["error"].startswith("parse_error")
    assert await db.fetchval(f'SELECT count(*) FROM sources."{name}"') == 0
    assert await db.fetchval("SELECT count(*) FROM file_processing_log WHERE source_name = $1", name) == 0


async def test_validate_from_the_command_line(
    apply_source: ApplySource, tmp_path: Path, service_env: dict[str, str], s3: Any, bucket: str
) -> None:
    name = source_name("scores")
    await apply_source(scores(name, bucket))
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}
    good = tmp_path / "good.csv"
    good.write_text("id,score\n1,2\n")
    passed = run_cli(["sources", "validate", "--source", name, str(good)], env, tmp_path)
    assert passed.returncode == 0, passed.stderr
    assert "rows 1  accepted 1  rejected 0" in passed.stdout

    s3.put_object(Bucket=bucket, Key=f"{name}/bad.csv", Body=b"id,score\n1,99\n")
    failed = run_cli(
        ["sources", "validate", "--source", name, f"s3://{bucket}/{name}/bad.csv"], env, tmp_path
    )
    assert failed.returncode == 1
    assert "score: max: 1 (lines 2)" in failed.stdout
    unknown = run_cli(["sources", "validate", "--source", "nope", str(good)], env, tmp_path)
    assert unknown.returncode == 1 and "no source named nope" in unknown.stderr
    # Bad input is one line and a usage exit code, not a stack trace.
    for target, message in [
        (str(tmp_path / "absent.csv"), "cannot read"),
        ("s3://", "expected s3://bucket/key"),
    ]:
        bad = run_cli(["sources", "validate", "--source", name, target], env, tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


async def test_the_files_command_shows_the_source_version_and_rejections(
    apply_source: ApplySource,
    client: httpx.AsyncClient,
    tmp_path: Path,
    service_env: dict[str, str],
    bucket: str,
) -> None:
    name = source_name("scores")
    await apply_source(scores(name, bucket))
    posted = await client.post(
        f"/ingestion/sources/{name}/records",
        json=[{"id": 1, "score": 1}, {"id": 2, "score": 11}, {"id": "x"}, {"id": 4}],
        headers={**writer(), "Idempotency-Key": "cli"},
    )
    assert posted.status_code == 201, posted.text
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}
    listed = run_cli(["files", "--key-prefix", f"api-records/{name}/"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if name in line)
    assert f"\t{name}@v1[id: type=1,score: max=1]\t" in line
