"""Outages and latency of PostgreSQL and of S3/SQS (moto), through a fault proxy in front of each, while a
real service process ingests files and answers API traffic."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.config import Settings
from tests.faults import TcpProxy
from tests.helpers import ServiceProcess, bearer, eventually, problem_of, started_app, unique_id
from tests.reliability.helpers import (
    assert_exactly_once,
    errors_logged,
    isolated_env,
    jsonl,
    put_files,
    queue_depth,
    scrape,
    service_env_of,
    wait_all_claimed,
    wait_all_completed,
)

Spawn = Callable[[dict[str, str]], ServiceProcess]
OUTAGE_SECONDS = 10
# A request during an outage must be answered (503) within this, not hang: the pool's acquire timeout
# plus the connect timeout, with room for a loaded machine.
ANSWER_WITHIN_SECONDS = 15


@pytest.fixture
def env(moto_url: str, service_env: dict[str, str]) -> dict[str, str]:
    return isolated_env(moto_url, service_env)


@pytest.fixture
async def db_proxy(env: dict[str, str]) -> AsyncIterator[tuple[TcpProxy, str]]:
    proxy, proxied = await TcpProxy.in_front_of(env["DATABASE_URL"])
    yield proxy, proxied
    await proxy.stop()


@pytest.fixture
async def aws_proxy(env: dict[str, str]) -> AsyncIterator[tuple[TcpProxy, str]]:
    proxy, proxied = await TcpProxy.in_front_of(env["AWS_ENDPOINT_URL"])
    yield proxy, proxied
    await proxy.stop()


class Traffic:
    """API requests every 200 ms while it runs, recording (status, seconds, content-type) of each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, float, str]] = []
        self.ready: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Traffic":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        path = f"/users/{unique_id()}/personal"
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            while True:
                started = time.monotonic()
                response = await http.get(path, headers=bearer())
                self.answers.append(
                    (
                        response.status_code,
                        time.monotonic() - started,
                        response.headers.get("content-type", ""),
                    )
                )
                self.ready.append((await http.get("/ready")).status_code)
                await asyncio.sleep(0.2)


async def test_database_outage_during_ingestion_and_api_traffic(
    env: dict[str, str],
    db_proxy: tuple[TcpProxy, str],
    spawn_service: Spawn,
    s3: Any,
    sqs: Any,
    db: asyncpg.Connection,
) -> None:
    proxy, proxied = db_proxy
    service = spawn_service({**service_env_of(env), "DATABASE_URL": proxied})
    await service.wait_healthy()
    rows_by_file = dict.fromkeys(range(20), 3_000)
    async with Traffic(service.url) as traffic:
        put_files(s3, env, "db", rows_by_file)
        await wait_all_claimed(db, env["S3_BUCKET_NAME"], len(rows_by_file))  # some still loading
        await proxy.cut()  # mid-flight
        during = len(traffic.answers)
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself: it lasts this long
        outage = traffic.answers[during:]
        outage_ready = traffic.ready[during:]
        await proxy.restore()
        await wait_all_completed(db, env["S3_BUCKET_NAME"], len(rows_by_file), timeout=120)
        after = len(traffic.answers)
        await eventually(lambda: len(traffic.answers) >= after + 3, message="three answers after recovering")
        # /ready reuses its last round of checks for a second, and that round may have run while the
        # last loads still held every pooled connection: ready again soon, not at a guessed moment.
        await eventually(lambda: traffic.ready[-1] == 200, timeout=20, message="/ready 200 again")

    assert outage, "the API must keep answering during the outage"
    assert {status for status, _, _ in outage} <= {404, 503}  # 404: answered just before the cut
    assert 503 in {status for status, _, _ in outage}
    assert all(seconds < ANSWER_WITHIN_SECONDS for _, seconds, _ in outage)
    assert all(kind == "application/problem+json" for status, _, kind in outage if status == 503)
    assert 503 in outage_ready
    assert {status for status, _, _ in traffic.answers[after:]} == {404}  # healthy again
    await assert_exactly_once(db, sqs, env, rows_by_file)
    assert errors_logged(service.log_path) == []


async def test_s3_and_sqs_outage_backs_off_and_loses_nothing(
    env: dict[str, str],
    aws_proxy: tuple[TcpProxy, str],
    spawn_service: Spawn,
    s3: Any,
    sqs: Any,
    db: asyncpg.Connection,
) -> None:
    proxy, proxied = aws_proxy
    service = spawn_service({**service_env_of(env), "AWS_ENDPOINT_URL": proxied})
    await service.wait_healthy()
    rows_by_file = dict.fromkeys(range(20), 2_000)
    put_files(s3, env, "aws", rows_by_file)
    await wait_all_claimed(db, env["S3_BUCKET_NAME"], len(rows_by_file))  # some still loading
    await proxy.cut()  # mid-flight
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        ready = [(await http.get("/ready")).status_code]
        started = time.monotonic()
        read = await http.get("/s3/any/object.json", headers=bearer())
        assert (read.status_code, read.headers["content-type"]) == (503, "application/problem+json")
        assert time.monotonic() - started < ANSWER_WITHIN_SECONDS
        refused_before = proxy.refused
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself: it lasts this long
        attempts = proxy.refused - refused_before  # what the consumer tried while AWS was gone
        await proxy.restore()
        await wait_all_completed(db, env["S3_BUCKET_NAME"], len(rows_by_file), timeout=120)
        ready.append((await http.get("/ready")).status_code)

    print(f"connection attempts to AWS during a {OUTAGE_SECONDS}s outage: {attempts}")  # noqa: T201
    # Backing off, not spinning: in-flight files give up (3 tries each), then one probe per backoff
    # step (1, 2, 4, 4 s here); a hot loop would make thousands.
    assert attempts < 6 * OUTAGE_SECONDS
    assert ready == [503, 200]
    await assert_exactly_once(db, sqs, env, rows_by_file)
    metrics = await scrape(service.url)
    assert metrics.get("consumer_dead_lettered_total", 0) == 0
    assert errors_logged(service.log_path) == []


async def test_slow_s3_keeps_a_long_file_invisible_with_the_heartbeat(
    env: dict[str, str],
    aws_proxy: tuple[TcpProxy, str],
    spawn_service: Spawn,
    s3: Any,
    sqs: Any,
    db: asyncpg.Connection,
) -> None:
    """A file that takes longer than the visibility timeout (10 s) to stream: the heartbeat keeps its
    message hidden, so no other receive sees it, and it is deleted once, after the commit."""
    proxy, proxied = aws_proxy
    service = spawn_service({**service_env_of(env), "AWS_ENDPOINT_URL": proxied})
    await service.wait_healthy()
    received_before = (await scrape(service.url)).get("consumer_received_total", 0)
    rows = 60_000  # ~5 MB: about 80 chunks of 64 KiB
    proxy.latency = 0.2
    started = time.monotonic()
    s3.put_object(Bucket=env["S3_BUCKET_NAME"], Key="slow/long.jsonl", Body=jsonl(0, rows))
    await wait_all_completed(db, env["S3_BUCKET_NAME"], 1, timeout=120)
    took = time.monotonic() - started
    await proxy.restore()

    assert took > 10, f"the file must outlast the visibility timeout to test the heartbeat ({took:.1f}s)"
    await assert_exactly_once(db, sqs, env, {0: rows})
    metrics = await scrape(service.url)
    assert metrics["consumer_received_total"] - received_before == 1  # never redelivered
    assert metrics.get('ingest_files_total{outcome="busy"}', 0) == 0
    await eventually(lambda: queue_depth(sqs, env["SQS_QUEUE_URL"]) == 0)  # deleted after the commit


async def test_ingest_now_during_a_database_outage_is_503_not_500(
    settings: Settings, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, proxied = db_proxy
    async with started_app(settings, database_url=proxied) as (_, http):
        await proxy.cut()
        response = await http.post(
            "/ingestion/files", json={"key": "outage/now.jsonl"}, headers=bearer(["ingestion:write"])
        )
        assert problem_of(response)["status"] == 503
        assert response.headers["retry-after"]
        await proxy.restore()
