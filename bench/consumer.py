"""Consumer case: many small JSON files through S3 events, files/s from the first put to the last file
done, for the service's consumer and for the no-op consumer (bench/noop_consumer.py), put the same way."""

import asyncio
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import asyncpg

from bench.data import SMALL_FILE_RECORDS, small_files
from bench.ingest import SERVICE_ENV, fresh_tables
from bench.report import Result, Target
from bench.stack import ROOT, SQS_WAIT_SECONDS, Infra, abandoned_polls_ended, queue_depth, service

KEY_PREFIX = "bench/consumer"
CONSUMER_TARGET = Target(min_ratio=0.80)
# The put pattern, the same for both consumers: batches of PUT_BATCH objects (PUT_THREADS at a time),
# each batch put only once the queue holds at most MAX_QUEUE_DEPTH messages, visible or in flight.
# moto's SQS scans the whole queue on every call, so a deep queue would measure moto, not the consumer.
PUT_BATCH = 50
PUT_THREADS = 4
MAX_QUEUE_DEPTH = 100
DEPTH_POLL_SECONDS = 0.02
POLL_SECONDS = 0.1
RUN_TIMEOUT_SECONDS = 1800


def put_files(infra: Infra, prefix: str, payloads: list[bytes]) -> float:
    """Put the files with the pattern above; returns the epoch time of the first put."""
    s3, sqs = infra.client("s3"), infra.client("sqs")

    def put(index: int) -> None:
        s3.put_object(
            Bucket=infra.bucket,
            Key=f"{prefix}/file-{index:05d}.json",
            Body=payloads[index],
            ContentType="application/json",
        )

    first = time.time()
    with ThreadPoolExecutor(PUT_THREADS) as pool:
        for at in range(0, len(payloads), PUT_BATCH):
            while queue_depth(sqs, infra.queue_url) > MAX_QUEUE_DEPTH:
                time.sleep(DEPTH_POLL_SECONDS)
            list(pool.map(put, range(at, min(at + PUT_BATCH, len(payloads)))))
    return first


async def _wait_all(conn: asyncpg.Connection, bucket: str, prefix: str, count: int) -> float:
    """The epoch time of the last commit once all `count` files under `prefix` are completed."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status IN ('failed', 'skipped')) AS failed,
                   EXTRACT(EPOCH FROM max(finished_at))::float8 AS last
            FROM file_processing_log WHERE bucket = $1 AND starts_with(key, $2)
            """,
            bucket,
            prefix,
        )
        if row["failed"]:
            raise RuntimeError(f"{row['failed']} files under {prefix} did not complete")
        if row["completed"] == count:
            return float(row["last"])
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"the files under {prefix} were not all ingested within {RUN_TIMEOUT_SECONDS} s")


async def service_variant(infra: Infra, conn: asyncpg.Connection, payloads: list[bytes], runs: int) -> Result:
    rates, rss = [], []
    with service(infra, SERVICE_ENV) as svc:
        for run in range(runs):
            await fresh_tables(conn)
            svc.reset_peak_rss()
            prefix = f"{KEY_PREFIX}/service/run-{run}"
            first = await asyncio.to_thread(put_files, infra, prefix, payloads)
            last = await _wait_all(conn, infra.bucket, prefix, len(payloads))
            rates.append(len(payloads) / (last - first))
            rss.append(svc.peak_rss_bytes())
            rows = await conn.fetchval("SELECT count(*) FROM processed_data")
            if rows != len(payloads) * SMALL_FILE_RECORDS:
                raise RuntimeError(f"{rows} rows loaded, expected {len(payloads) * SMALL_FILE_RECORDS}")
    return Result(
        "consumer",
        f"service, {len(payloads):,} files",
        "files/s",
        rates,
        mb_per_s=[r * sum(map(len, payloads)) / len(payloads) / 1e6 for r in rates],
        peak_rss_bytes=max(rss),
        floor=f"consumer/floor no-op, {len(payloads):,} files",
        target=CONSUMER_TARGET,
    )


def noop_run(infra: Infra, prefix: str, payloads: list[bytes]) -> float:
    command = [
        sys.executable,
        "-m",
        "bench.noop_consumer",
        "--endpoint-url",
        infra.endpoint_url,
        "--queue-url",
        infra.queue_url,
        "--expect",
        str(len(payloads)),
        "--wait-seconds",
        str(SQS_WAIT_SECONDS),
    ]
    infra.empty_queue()
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None  # noqa: S101  (stdout=PIPE)
        if process.stdout.readline().strip() != "READY":
            raise RuntimeError("the no-op consumer did not start")
        first = put_files(infra, prefix, payloads)
        outcome = json.loads(process.stdout.readline())
        process.wait(RUN_TIMEOUT_SECONDS)
    abandoned_polls_ended()
    if outcome["objects"] != len(payloads):
        raise RuntimeError(f"the no-op consumer handled {outcome['objects']} of {len(payloads)} objects")
    return len(payloads) / (outcome["last_done"] - first)


async def consumer_cases(infra: Infra, conn: asyncpg.Connection, files: int, runs: int) -> list[Result]:
    payloads = small_files(files)
    size = sum(map(len, payloads)) / len(payloads)
    rates = [
        await asyncio.to_thread(noop_run, infra, f"{KEY_PREFIX}/noop/run-{run}", payloads)
        for run in range(runs)
    ]
    noop = Result(
        "consumer",
        f"floor no-op, {files:,} files",
        "files/s",
        rates,
        mb_per_s=[r * size / 1e6 for r in rates],
        note=f"files of {size:,.0f} bytes ({SMALL_FILE_RECORDS} JSON records); at most {MAX_QUEUE_DEPTH} "
        f"messages queued, put {PUT_BATCH} at a time",
    )
    return [noop, await service_variant(infra, conn, payloads, runs)]
