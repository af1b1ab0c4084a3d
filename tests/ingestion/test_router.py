"""The /ingestion routes: the processing log, on-demand ingest, retry, DLQ redrive and the daily report."""

import asyncio
import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from app.ingestion import repository
from app.ingestion.claims import WORKER_ID
from app.ingestion.envelopes import ObjectRef
from app.ingestion.outcomes import Transient
from tests.helpers import bearer, eventually, problem_of, resources, started_app
from tests.ingestion.helpers import s3_event

READ = ["ingestion:read"]
WRITE = ["ingestion:write", "ingestion:read"]


async def ingest(client: httpx.AsyncClient, bucket: str, key: str) -> dict[str, Any]:
    response = await client.post(
        "/ingestion/files", json={"bucket": bucket, "key": key}, headers=bearer(WRITE)
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def final(client: httpx.AsyncClient, file_id: int) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/ingestion/files/{file_id}", headers=bearer(READ))).json()
        return body if body["status"] in ("completed", "failed", "skipped") else None

    result: dict[str, Any] = await eventually(done)
    return result


async def test_ingest_now_loads_the_object_once(
    app: Any, client: httpx.AsyncClient, s3: Any, quiet_bucket: str, db: asyncpg.Connection
) -> None:
    s3.put_object(Bucket=quiet_bucket, Key="api/a.jsonl", Body=b'{"a": 1}\n{"a": 2}\n')
    accepted = await ingest(client, quiet_bucket, "api/a.jsonl")
    assert accepted["status"] == "accepted"
    row = await final(client, accepted["file_id"])
    assert (row["status"], row["trigger"], row["rows_inserted"]) == ("completed", "api", 2)
    again = await ingest(client, quiet_bucket, "api/a.jsonl")
    assert again == {"file_id": accepted["file_id"], "status": "duplicate"}
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE bucket = $1", quiet_bucket) == 2


async def test_list_filters_and_pages_newest_first(
    app: Any, client: httpx.AsyncClient, s3: Any, quiet_bucket: str
) -> None:
    prefix = f"page-{secrets.token_hex(3)}/"
    ids = []
    for number in range(5):
        key = f"{prefix}{number}.jsonl"
        s3.put_object(Bucket=quiet_bucket, Key=key, Body=b'{"n": %d}\n' % number)
        ids.append((await ingest(client, quiet_bucket, key))["file_id"])
        await final(client, ids[-1])
    seen: list[int] = []
    cursor = None
    for _ in range(3):
        params: dict[str, Any] = {"key_prefix": prefix, "limit": 2, "status": "completed"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/ingestion/files", params=params, headers=bearer(READ))).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    failed_only = await client.get(
        "/ingestion/files", params={"key_prefix": prefix, "status": "failed"}, headers=bearer(READ)
    )
    assert failed_only.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"cursor": "not-a-cursor"}, "cursor"), ({"status": "done"}, "status"), ({"limit": 0}, "limit")],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/ingestion/files", params=params, headers=bearer(READ))
    assert response.status_code == 422
    assert field in [error["field"] for error in problem_of(response)["errors"]]


async def test_unknown_file_is_404_and_bad_id_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/ingestion/files/999999999", headers=bearer(READ))).status_code == 404
    assert (await client.get("/ingestion/files/0", headers=bearer(READ))).status_code == 422
    assert (await client.post("/ingestion/files/999999999/retry", headers=bearer(WRITE))).status_code == 404


async def test_retry_reruns_a_failed_file_and_refuses_others(
    app: Any, client: httpx.AsyncClient, s3: Any, quiet_bucket: str
) -> None:
    key = "retry/late.jsonl"
    accepted = await ingest(client, quiet_bucket, key)  # the object is not there yet
    failed = await final(client, accepted["file_id"])
    assert (failed["status"], failed["error_code"]) == ("failed", "object_missing")
    s3.put_object(Bucket=quiet_bucket, Key=key, Body=b'{"late": true}\n')
    retried = await client.post(f"/ingestion/files/{failed['id']}/retry", headers=bearer(WRITE))
    assert retried.status_code == 202
    assert retried.json() == {"file_id": failed["id"], "status": "accepted"}
    done = await final(client, failed["id"])
    assert (done["status"], done["attempts"], done["rows_inserted"]) == ("completed", 2, 1)
    again = await client.post(f"/ingestion/files/{failed['id']}/retry", headers=bearer(WRITE))
    assert again.status_code == 409
    assert "completed" in problem_of(again)["detail"]


async def test_ingestion_routes_need_their_scopes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/ingestion/files", headers=bearer(["ingestion:write"]))).status_code == 403
    response = await client.post("/ingestion/files", json={"key": "a.json"}, headers=bearer(READ))
    assert response.status_code == 403
    assert (await client.post("/ingestion/dlq/redrive", headers=bearer(READ))).status_code == 403


async def test_redrive_moves_dead_letters_back_and_they_get_processed(
    app: Any, client: httpx.AsyncClient, s3: Any, sqs: Any, quiet_bucket: str, aws_resources: dict[str, str]
) -> None:
    key = "redrive/x.jsonl"
    put = s3.put_object(Bucket=quiet_bucket, Key=key, Body=b'{"x": 1}\n')
    event = s3_event(quiet_bucket, key, etag=put["ETag"], version_id=put.get("VersionId"), size=9)
    sqs.send_message(QueueUrl=aws_resources["SQS_DLQ_URL"], MessageBody=json.dumps(event))
    response = await client.post("/ingestion/dlq/redrive", params={"limit": 1000}, headers=bearer(WRITE))
    assert response.status_code == 200
    assert response.json()["moved"] >= 1
    assert response.json()["failed"] == 0

    async def completed() -> Any:
        listing = await client.get(
            "/ingestion/files", params={"key_prefix": "redrive/"}, headers=bearer(READ)
        )
        items = [item for item in listing.json()["items"] if item["bucket"] == quiet_bucket]
        return items and items[0]["status"] == "completed"

    await eventually(completed)


async def test_daily_report_counts_the_days_files(
    app: Any, client: httpx.AsyncClient, s3: Any, quiet_bucket: str
) -> None:
    today = datetime.now(UTC).date().isoformat()

    async def report() -> dict[str, Any]:
        response = await client.get("/ingestion/report", params={"date": today}, headers=bearer(READ))
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    before = await report()
    s3.put_object(Bucket=quiet_bucket, Key="report/ok.jsonl", Body=b'{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    s3.put_object(Bucket=quiet_bucket, Key="report/bad.jsonl", Body=b'{"a": 1}\n{oops\n')
    for key in ("report/ok.jsonl", "report/bad.jsonl"):
        await final(client, (await ingest(client, quiet_bucket, key))["file_id"])
    after = await report()
    assert after["date"] == today
    assert after["files"] - before["files"] >= 2
    assert after["files_by_status"]["completed"] - before["files_by_status"].get("completed", 0) >= 1
    failures = after["failures_by_error_code"].get("parse_error", 0) - before["failures_by_error_code"].get(
        "parse_error", 0
    )
    assert failures >= 1
    assert after["rows_inserted"] - before["rows_inserted"] >= 3
    assert (
        after["p50_duration_seconds"] is not None
        and after["p95_duration_seconds"] >= after["p50_duration_seconds"]
    )
    bad = await client.get("/ingestion/report", params={"date": "2026-13-01"}, headers=bearer(READ))
    assert bad.status_code == 422


@pytest.mark.parametrize("since", ["2026-01-01T00:00:00", "2026-01-01T00:00:00+02:00", "2026-01-01"])
async def test_since_accepts_naive_aware_and_date_only_values(client: httpx.AsyncClient, since: str) -> None:
    response = await client.get("/ingestion/files", params={"since": since, "limit": 1}, headers=bearer(READ))
    assert response.status_code == 200, response.text


async def test_api_load_cut_by_shutdown_is_left_pending_and_taken_again(
    settings: Any, s3: Any, quiet_bucket: str, db: asyncpg.Connection
) -> None:
    """No SQS message exists for a load started by the API: the claim must be released at shutdown,
    so that asking again (or the reconcile sweep) takes the file."""
    key = "cut/big.jsonl"
    s3.put_object(Bucket=quiet_bucket, Key=key, Body=b"".join(b'{"n": %d}\n' % n for n in range(300_000)))
    async with started_app(settings) as (_, http):
        response = await http.post(
            "/ingestion/files", json={"bucket": quiet_bucket, "key": key}, headers=bearer(WRITE)
        )
        file_id = response.json()["file_id"]

        async def loading() -> bool:
            status = await db.fetchval("SELECT status FROM file_processing_log WHERE id = $1", file_id)
            return status == "processing"

        await eventually(loading)
    row = await db.fetchrow("SELECT status, lease_owner FROM file_processing_log WHERE id = $1", file_id)
    assert dict(row) == {"status": "pending", "lease_owner": None}
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE file_id = $1", file_id) == 0

    async with started_app(settings) as (_, http):
        again = await http.post(
            "/ingestion/files", json={"bucket": quiet_bucket, "key": key}, headers=bearer(WRITE)
        )
        assert again.json() == {"file_id": file_id, "status": "accepted"}
        done = await final(http, file_id)
    assert (done["status"], done["attempts"], done["rows_inserted"]) == ("completed", 2, 300_000)


@pytest.mark.parametrize(
    "cursor",
    [
        # A real cursor's shape with an id beyond bigint: it must not reach the database.
        "MjAyNC0wMS0wMVQwMDowMDowMCswMDowMHw5OTk5OTk5OTk5OTk5OTk5OTk5OQ",
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|0").decode().rstrip("="),
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00|5").decode().rstrip("="),  # no time zone
    ],
)
async def test_cursor_that_this_api_cannot_have_made_is_422(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/ingestion/files", params={"cursor": cursor}, headers=bearer(READ))
    assert response.status_code == 422
    assert [error["field"] for error in problem_of(response)["errors"]] == ["cursor"]


async def test_api_loads_beyond_the_limit_are_429_with_retry_after(
    settings: Any, s3: Any, quiet_bucket: str, db: asyncpg.Connection
) -> None:
    big, small = "limit/big.jsonl", "limit/small.jsonl"
    s3.put_object(Bucket=quiet_bucket, Key=big, Body=b"".join(b'{"n": %d}\n' % n for n in range(200_000)))
    s3.put_object(Bucket=quiet_bucket, Key=small, Body=b'{"n": 1}\n')
    async with started_app(settings, ingest_max_api_loads=1) as (_, http):
        first = await ingest(http, quiet_bucket, big)
        refused = await http.post(
            "/ingestion/files", json={"bucket": quiet_bucket, "key": small}, headers=bearer(WRITE)
        )
        assert refused.status_code == 429
        assert problem_of(refused)["type"] == "/problems/too-many-loads"
        assert int(refused.headers["retry-after"]) > 0
        # Refused before the claim: the processing log never saw the small file.
        seen = await db.fetchval(
            "SELECT count(*) FROM file_processing_log WHERE bucket = $1 AND key = $2", quiet_bucket, small
        )
        assert seen == 0
        assert (await final(http, first["file_id"]))["status"] == "completed"
        second = await ingest(http, quiet_bucket, small)  # the place is free again
        assert (await final(http, second["file_id"]))["status"] == "completed"


async def test_load_waiting_for_a_pooled_connection_gives_up_and_is_retried_later(
    settings: Any, s3: Any, quiet_bucket: str
) -> None:
    key = "wait/x.jsonl"
    s3.put_object(Bucket=quiet_bucket, Key=key, Body=b'{"n": 1}\n')
    tight = {"db_pool_min_size": 1, "db_pool_max_size": 1, "db_pool_wait_seconds": 0.5}
    async with started_app(settings, **tight) as (application, _):
        opened = resources(application)
        async with opened.db.acquire():  # the only connection, held elsewhere
            with pytest.raises(Transient):
                async with asyncio.timeout(10):  # before the fix it waited for ever
                    await opened.ingestor.ingest(ObjectRef(quiet_bucket, key, None, None, None), "cli")
        outcome = await opened.ingestor.ingest(ObjectRef(quiet_bucket, key, None, None, None), "cli")
        assert outcome.status == "completed"


async def test_pending_file_left_by_a_transient_failure_can_be_retried(
    app: Any, client: httpx.AsyncClient, s3: Any, quiet_bucket: str, db: asyncpg.Connection
) -> None:
    key = "pending/x.jsonl"
    s3.put_object(Bucket=quiet_bucket, Key=key, Body=b'{"n": 1}\n')
    # What a transient failure of an API-triggered load leaves: a released claim, no message behind it.
    claimed = await resources(app).ingestor.claim(ObjectRef(quiet_bucket, key, None, None, None), "api")
    await repository.release(db, claimed.file_id, WORKER_ID)
    await claimed.session.close()
    retried = await client.post(f"/ingestion/files/{claimed.file_id}/retry", headers=bearer(WRITE))
    assert retried.status_code == 202, retried.text
    done = await final(client, claimed.file_id)
    assert (done["status"], done["rows_inserted"]) == ("completed", 1)
