"""The lake case (issue 19): rows/s from a file's commit in PostgreSQL to its rows visible in the Iceberg
table, and the exporter's peak RSS, against a floor of pyarrow writing the same rows as one Parquet file
to the same S3 (moto)."""

import asyncio
import re
import subprocess
import sys
import time

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from app.lake.exporter import ARROW_SCHEMA
from bench.data import Dataset
from bench.ingest import KEY_PREFIX, SERVICE_ENV, delete_versions, fresh_tables, wait_file
from bench.report import MIB, Result, Target
from bench.stack import REGION, ROOT, Infra, service
from devtools.bootstrap import EMULATOR_CREDENTIAL

LAKE_BUCKET = "bench-lake"
EXPORTER_TARGET = Target(max_peak_rss_bytes=200 * MIB)
MAX_RSS = re.compile(r"^MAXRSS (\d+)$", re.MULTILINE)


def _lake_env(infra: Infra, namespace: str) -> dict[str, str]:
    return {
        **SERVICE_ENV,
        "LAKE_WAREHOUSE": f"s3://{LAKE_BUCKET}/warehouse",
        "LAKE_NAMESPACE": namespace,
        # The service's own exporter stays idle: the export is run (and measured) as its own process.
        "LAKE_EXPORT_INTERVAL_SECONDS": "3600",
        "LAKE_COMPACT_INTERVAL_SECONDS": "0",
    }


def _export_once(infra: Infra, env: dict[str, str]) -> tuple[float, int, str]:
    """`python -m app lake export` under GNU time: (seconds, peak RSS bytes, its stdout)."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS %M", sys.executable, "-m", "app", "lake", "export"],
        cwd=ROOT,
        env=infra.env(env),
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    peak = MAX_RSS.search(done.stderr)
    if peak is None:
        raise RuntimeError(f"no peak RSS from /usr/bin/time: {done.stderr[-500:]}")
    return seconds, int(peak.group(1)) * 1024, done.stdout.strip()


async def _rows_as_arrow(conn: asyncpg.Connection, file_id: int) -> pa.Table:
    rows = await conn.fetch(
        "SELECT bucket, key, record_index, row_hash, data::text AS record, created_at FROM processed_data "
        "WHERE file_id = $1 ORDER BY record_index",
        file_id,
    )
    return pa.Table.from_pydict(
        {
            "file_id": [file_id] * len(rows),
            "bucket": [r["bucket"] for r in rows],
            "key": [r["key"] for r in rows],
            "record_index": [r["record_index"] for r in rows],
            "row_hash": [r["row_hash"] for r in rows],
            "record": [r["record"] for r in rows],
            "loaded_at": [r["created_at"] for r in rows],
        },
        schema=ARROW_SCHEMA,
    )


def _floor(infra: Infra, table: pa.Table, runs: int) -> list[float]:
    """pyarrow writing the rows as one Parquet file to moto's S3, as the exporter's writer does."""
    s3 = fs.S3FileSystem(
        access_key=EMULATOR_CREDENTIAL,
        secret_key=EMULATOR_CREDENTIAL,
        region=REGION,
        endpoint_override=infra.endpoint_url,
        scheme="http",
    )
    seconds = []
    for n in range(runs):
        started = time.perf_counter()
        pq.write_table(table, f"{LAKE_BUCKET}/floor/run-{n}.parquet", filesystem=s3)
        seconds.append(time.perf_counter() - started)
    return seconds


async def lake_case(infra: Infra, conn: asyncpg.Connection, dataset: Dataset, runs: int) -> list[Result]:
    """Per run: the JSONL file loaded by the service (lake on, its exporter idle), then exported by `python
    -m app lake export` in a process of its own (timed, and its peak RSS read by GNU time)."""
    s3 = infra.client("s3")
    s3.create_bucket(Bucket=LAKE_BUCKET)
    path = dataset.jsonl
    seconds, peaks, floor_table = [], [], None
    for n in range(runs):
        env = _lake_env(infra, f"bench_{n}_{int(time.time())}")
        await fresh_tables(conn)
        key = f"{KEY_PREFIX}/lake/run-{n}.jsonl"
        with service(infra, env):
            with path.open("rb") as body:
                await asyncio.to_thread(s3.put_object, Bucket=infra.bucket, Key=key, Body=body)
            row = await wait_file(conn, infra.bucket, key)
        took, peak, said = await asyncio.to_thread(_export_once, infra, env)
        if said != "exported 1 file(s)":
            raise RuntimeError(f"lake export said {said!r}")
        seconds.append(took)
        peaks.append(peak)
        if floor_table is None:
            file_id = await conn.fetchval("SELECT id FROM file_processing_log WHERE key = $1", key)
            floor_table = await _rows_as_arrow(conn, file_id)
            rows = int(row["rows_inserted"])
    delete_versions(infra, f"{KEY_PREFIX}/lake/")
    await fresh_tables(conn)
    if floor_table is None:
        raise RuntimeError("no run")
    floor_seconds = await asyncio.to_thread(_floor, infra, floor_table, runs)
    return [
        Result(
            "lake",
            "floor pyarrow Parquet to S3",
            "rows/s",
            [rows / s for s in floor_seconds],
            note="the same rows, already in memory as an Arrow table, written as one Parquet file to moto",
        ),
        Result(
            "lake",
            "service export",
            "rows/s",
            [rows / s for s in seconds],
            peak_rss_bytes=max(peaks),
            floor="lake/floor pyarrow Parquet to S3",
            target=EXPORTER_TARGET,
            note="`python -m app lake export` of one loaded JSONL file: process start, catalog (SQL, in "
            "PostgreSQL), rows read from PostgreSQL in batches of LAKE_EXPORT_BATCH_ROWS (20,000), Parquet "
            "files to moto, one Iceberg commit, the outbox marked",
            details={"seconds": seconds, "peak_rss_bytes_per_run": peaks},
        ),
    ]
