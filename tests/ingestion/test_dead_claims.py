"""A claim lives as long as its worker's database session: when the session ends (a worker killed with
kill -9, OOM-killed, its host lost) the file is free at once for the consumer, the reconcile sweep, the
API's retry and the CLI, although the dead worker's lease has minutes left."""

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.ingestion import repository
from app.ingestion.claims import BUSY_RECHECK_SECONDS, Claimed
from app.ingestion.envelopes import ObjectRef
from app.ingestion.outcomes import PermanentFailure
from app.ingestion.recovery import ClaimRecovery
from tests.helpers import bearer, eventually, problem_of, resources, run_cli
from tests.ingestion.helpers import wait_for_file

LEASE_SECONDS = 300  # the default: a dead worker's lease would keep its file for five minutes
WRITE = ["ingestion:write", "ingestion:read"]


class OtherWorker:
    """Another replica, as the database sees it: its own session, which claims a file and then dies."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim(self, ref: ObjectRef, *, lease_seconds: int = LEASE_SECONDS) -> int:
        claim = await repository.claim(
            self.conn,
            bucket=ref.bucket,
            key=ref.key,
            version_id=ref.version_id,
            etag=ref.etag,
            size=ref.size,
            trigger="sqs",
            owner=f"other-host:1:{secrets.token_hex(4)}",
            lease_seconds=lease_seconds,
        )
        assert claim is not None
        return claim.file_id

    async def die(self, db: asyncpg.Connection, file_id: int) -> None:
        """Its session ends without a word (what PostgreSQL sees of a kill -9), and the server notices."""
        self.conn.terminate()

        async def claim_dropped() -> bool:
            return not await db.fetchval("SELECT file_claim_alive($1)", file_id)

        await eventually(claim_dropped, timeout=10)


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[OtherWorker]:
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        yield OtherWorker(conn)
    finally:
        if not conn.is_closed():
            await conn.close()


def put(s3: Any, bucket: str, key: str, body: bytes) -> ObjectRef:
    response = s3.put_object(Bucket=bucket, Key=key, Body=body)
    return ObjectRef(bucket, key, response.get("VersionId"), response["ETag"].strip('"'), len(body))


async def status_of(db: asyncpg.Connection, file_id: int) -> str:
    status: str = await db.fetchval("SELECT status FROM file_processing_log WHERE id = $1", file_id)
    return status


async def test_a_live_claim_is_busy_and_a_dead_one_is_taken_at_once_despite_its_lease(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str, other: OtherWorker
) -> None:
    ref = put(s3, quiet_bucket, "dead/a.jsonl", b'{"n": 1}\n{"n": 2}\n')
    file_id = await other.claim(ref)
    ingestor = resources(app).ingestor

    busy = await ingestor.ingest(ref, "sqs")
    # Looked at again soon, not when the lease ends: the worker may die any moment.
    assert (busy.status, busy.file_id) == ("busy", file_id)
    assert busy.retry_after is not None and busy.retry_after <= BUSY_RECHECK_SECONDS

    await other.die(db, file_id)
    done = await ingestor.ingest(ref, "sqs")

    assert (done.status, done.file_id, done.counts.rows_inserted) == ("completed", file_id, 2)
    assert await db.fetchval("SELECT attempts FROM file_processing_log WHERE id = $1", file_id) == 2


async def test_a_stuck_worker_whose_lease_ran_out_loses_the_claim_to_the_lease(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str, other: OtherWorker
) -> None:
    ref = put(s3, quiet_bucket, "stuck/a.jsonl", b'{"n": 1}\n')
    # Alive (its session holds the claim lock) but it stopped renewing: the lease is the fallback.
    file_id = await other.claim(ref, lease_seconds=0)
    assert await db.fetchval("SELECT file_claim_alive($1)", file_id)

    done = await resources(app).ingestor.ingest(ref, "sqs")

    assert (done.status, done.file_id) == ("completed", file_id)
    assert await db.fetchval("SELECT file_claim_alive($1)", file_id)  # still the stuck worker's lock


async def test_a_finished_load_gives_its_claim_lock_back(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    ref = put(s3, quiet_bucket, "lock/a.jsonl", b'{"n": 1}\n')
    ingestor = resources(app).ingestor
    claimed = await ingestor.claim(ref, "api")
    assert isinstance(claimed, Claimed)
    assert await db.fetchval("SELECT file_claim_alive($1)", claimed.file_id)

    outcome = await ingestor.load(claimed)

    assert outcome.status == "completed"
    # The pooled connection went back without the lock: the next file it serves is not mistaken for it.
    assert not await db.fetchval("SELECT file_claim_alive($1)", claimed.file_id)


async def test_claim_recovery_loads_dead_claims_only(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str, other: OtherWorker
) -> None:
    ref = put(s3, quiet_bucket, "recovered/a.jsonl", b'{"n": 1}\n{"n": 2}\n')
    file_id = await other.claim(ref)
    opened = resources(app)
    recovery = ClaimRecovery(opened.db, opened.ingestor, interval_seconds=5)

    async def recovered_here() -> list[tuple[str, int | None, int]]:
        # (The database is shared with other tests: only this test's file counts.)
        outcomes = await recovery.recover()
        return [(o.status, o.file_id, o.counts.rows_inserted) for o in outcomes if o.file_id == file_id]

    assert await recovered_here() == []  # alive: not touched
    assert await status_of(db, file_id) == "processing"

    await other.die(db, file_id)  # and nothing else will come: no message, no sweep

    assert await recovered_here() == [("completed", file_id, 2)]
    assert await recovered_here() == []  # done: nothing left to take over


async def test_the_sweep_finishes_a_dead_claim_and_leaves_a_live_one_alone(
    app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str, other: OtherWorker
) -> None:
    ref = put(s3, quiet_bucket, "swept/a.jsonl", b'{"n": 1}\n{"n": 2}\n{"n": 3}\n')
    file_id = await other.claim(ref)
    reconciler = resources(app).reconciler

    alive = await reconciler.sweep([(quiet_bucket, "swept/")], min_age_seconds=0)
    assert (alive.listed, alive.unseen) == (1, 0)
    assert await status_of(db, file_id) == "processing"

    await other.die(db, file_id)  # and its message was lost: only the sweep will bring it back
    dead = await reconciler.sweep([(quiet_bucket, "swept/")], min_age_seconds=0)

    assert dict(dead.outcomes) == {"completed": 1}
    row = await wait_for_file(db, quiet_bucket, ref.key)
    # The first trigger stays on the row; the second attempt is the sweep's.
    assert (row["id"], row["status"], row["attempts"], row["rows_inserted"]) == (file_id, "completed", 2, 3)


async def test_retry_takes_a_dead_claim_and_refuses_a_live_one(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    s3: Any,
    quiet_bucket: str,
    other: OtherWorker,
) -> None:
    ref = put(s3, quiet_bucket, "retried/a.jsonl", b'{"n": 1}\n')
    file_id = await other.claim(ref)

    refused = await client.post(f"/ingestion/files/{file_id}/retry", headers=bearer(WRITE))
    assert refused.status_code == 409
    assert "processing" in problem_of(refused)["detail"]

    await other.die(db, file_id)
    accepted = await client.post(f"/ingestion/files/{file_id}/retry", headers=bearer(WRITE))

    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"file_id": file_id, "status": "accepted"}
    row = await wait_for_file(db, quiet_bucket, ref.key)
    assert (row["status"], row["rows_inserted"]) == ("completed", 1)


async def test_cli_retry_takes_a_dead_claim(
    app: FastAPI,
    db: asyncpg.Connection,
    s3: Any,
    quiet_bucket: str,
    other: OtherWorker,
    tmp_path: Path,
    service_env: dict[str, str],
) -> None:
    ref = put(s3, quiet_bucket, "cli/a.jsonl", b'{"n": 1}\n{"n": 2}\n')
    file_id = await other.claim(ref)
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}
    assert run_cli(["retry", str(file_id)], env, tmp_path).returncode == 1  # alive: not its to take

    await other.die(db, file_id)
    retried = run_cli(["retry", str(file_id)], env, tmp_path)

    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"completed file_id={file_id}")
    assert await status_of(db, file_id) == "completed"


@pytest.mark.parametrize("ending", ["release", "fail"])
@pytest.mark.parametrize("left", ["aborted", "open"])
async def test_a_claim_ends_even_when_the_load_left_its_connection_in_a_transaction(
    left: str, ending: str, app: FastAPI, db: asyncpg.Connection, s3: Any, quiet_bucket: str
) -> None:
    # A load cut mid-query (a shutdown's cancel) can leave the claim's connection in an aborted
    # transaction, or in one whose rollback never ran: how the claim ended must still be written, and
    # not inside that transaction (which the pool rolls back), or the file would wait for claim recovery.
    ref = put(s3, quiet_bucket, f"unusable/{ending}-{left}.jsonl", b'{"n": 1}\n')
    ingestor = resources(app).ingestor
    claimed = await ingestor.claim(ref, "api")
    assert isinstance(claimed, Claimed)
    conn = claimed.session.conn
    await conn.execute("BEGIN")
    if left == "aborted":
        with pytest.raises(asyncpg.DataError):
            await conn.execute("SELECT 1 / 0")

    if ending == "release":
        await ingestor.claims.release(claimed)
    else:
        await ingestor.claims.fail(claimed, PermanentFailure("parse_error", "line 1: broken"))

    row = await db.fetchrow(
        "SELECT status, lease_owner FROM file_processing_log WHERE id = $1", claimed.file_id
    )
    assert dict(row) == {"status": "pending" if ending == "release" else "failed", "lease_owner": None}

    async def claim_dropped() -> bool:  # its session was ended: the server notices within moments
        return not await db.fetchval("SELECT file_claim_alive($1)", claimed.file_id)

    await eventually(claim_dropped, timeout=10)
