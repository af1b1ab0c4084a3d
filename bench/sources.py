"""The sources case (issue 17): the billing example (examples/sources/billing.yaml, an AWS Cost and Usage
style CSV.gz keyed on line item id + usage start) landed into its typed table `sources.billing`, end to
end by the service (S3 object in moto -> S3 event on SQS -> the consumer -> parse, type, hash -> binary
COPY into a staging table -> the set-based upsert -> commit), against floor A: the same rows, typed
beforehand by the service's own code, loaded by the database alone with the service's own statements."""

import asyncio
import contextlib
import gc
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from app.core.db import _init_connection
from app.ingestion.loaders.typed import LOAD_CHUNK_ROWS, csv_options, typed_record
from app.ingestion.parsers import FileFormat, RecordStream
from app.sources import repository
from app.sources.spec import SourceSpec
from app.sources.values import compile_source, row_hash
from bench import ingest
from bench.data import SEED
from bench.report import MIB, Result, Target
from bench.stack import ROOT, Infra, Server, service
from examples.sources.generate import billing_csv_gz

SPEC_PATH = ROOT / "examples" / "sources" / "billing.yaml"
SOURCE = "billing"
KEY = "billing/2026/11/bench.csv.gz"  # under the source's prefix, matching its glob
FLOOR_KEY = "bench/sources/floor-a"  # the floor's processing-log rows (LOCAL_BUCKET: no S3 involved)
SOURCE_TARGET = Target(max_peak_rss_bytes=200 * MIB)  # issue 17 sets no ratio target: the ratio is reported
# The object version the floor's rows carry (the service's carry the S3 LastModified of the version).
FLOOR_OBJECT_MODIFIED = datetime(2026, 12, 1, tzinfo=UTC)

# ingest.CLAIM with the id reserved before the timed section: the staged rows carry their file's id
# (`_file_id`), and building a million tuples around it is Python work the floor must not time.
RESERVE_ID = "SELECT nextval(pg_get_serial_sequence('file_processing_log', 'id'))"
CLAIM = """
    INSERT INTO file_processing_log
        (id, bucket, key, etag, size_bytes, status, attempts, lease_owner, lease_expires_at, trigger,
         started_at)
    OVERRIDING SYSTEM VALUE
    VALUES ($1, $2, $3, $4, $5, 'processing', 1, 'bench', now() + interval '1 hour', 'cli', now())
"""

Row = tuple[Any, ...]  # _line, _object_modified, _row_hash, then the source's typed columns


def apply_source(infra: Infra) -> str:
    """`python -m app sources apply examples/sources/billing.yaml`, as an operator would: the source in
    force and its table created. Returns what the command printed."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "sources", "apply", str(SPEC_PATH)],
        cwd=ROOT,
        env=infra.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sources apply failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def write_billing(folder: Path, records: int, seed: int = SEED) -> Path:
    """The billing sample of `records` line items (examples/sources/generate.py, a fixed seed), written
    once per size."""
    path = folder / f"billing-{records}.csv.gz"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(billing_csv_gz(records, seed=seed))
        partial.rename(path)
    return path


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection set up as the service's pool sets up each of its own (app.core.db: the jsonb codec
    that sends the typed values' serialized bytes as they are)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def stored_spec(conn: asyncpg.Connection) -> SourceSpec:
    """The source as applied (what the service loads by)."""
    stored = await repository.get(conn, SOURCE)
    if stored is None:
        raise RuntimeError(f"source {SOURCE} is not in force after sources apply")
    return stored.spec


async def fresh_table(conn: asyncpg.Connection) -> None:
    """Every run starts from an empty source table (its primary key is the expensive part, and would grow
    run after run) and a checkpoint, as the ingestion cases do for processed_data."""
    await conn.execute(f"TRUNCATE {repository.table(SOURCE)}")
    await conn.execute("CHECKPOINT")


async def stored_rows(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval(f"SELECT count(*) FROM {repository.table(SOURCE)}")  # noqa: S608
    return count


async def typed_rows(path: Path, spec: SourceSpec) -> list[Row]:
    """The rows the service would stage for this file, less their file id: parsed by the service's
    streaming parser in the source's dialect, typed (`compile_source(spec).typed`) and hashed (`row_hash`)
    by its own code, outside any timed section (floor A measures the database only)."""
    source = compile_source(spec)
    rows: list[Row] = []
    with path.open("rb") as file:
        stream = RecordStream(
            ingest._LocalFile(file),
            FileFormat(spec.format),
            max_bytes=2**40,
            max_decompressed_bytes=2**40,
            max_records=2**40,
            max_record_bytes=2**40,
            csv=csv_options(spec),
        )
        async for batch in stream.batches():
            for record in batch:
                typed = typed_record(record, source)
                if not isinstance(typed, tuple):
                    raise RuntimeError(f"{path.name}: line {record.line} rejected: {typed}")
                rows.append((record.line, FLOOR_OBJECT_MODIFIED, row_hash(typed), *typed))
    return rows


async def floor_a(
    conn: asyncpg.Connection, spec: SourceSpec, rows: list[Row], key: str, size: int
) -> dict[str, float]:
    """One transaction as the service's load makes it: a fresh processing-log row, the service's staging
    table, binary COPY of each 20,000-row chunk and its landing statement (repository.copy_to_staging,
    land_staged), the file marked completed, commit. `seconds`: from BEGIN to COMMIT; `copy` and `land`:
    the part of it in each statement; `cpu_harness`: this process's CPU meanwhile (asyncpg's encoding of
    the COPY rows, which the service pays too)."""
    await fresh_table(conn)
    file_id: int = await conn.fetchval(RESERVE_ID)
    staged = [(file_id, *row) for row in rows]
    names = [column.name for column in spec.columns]
    gc.collect()  # not during the timed section: the harness holds millions of objects here
    cpu_before = time.process_time()
    started = time.perf_counter()
    changed = 0
    copy = land = 0.0
    async with conn.transaction():
        await conn.execute(CLAIM, file_id, ingest.LOCAL_BUCKET, key, f"etag-{time.time_ns()}", size)
        staging = await repository.create_staging(conn, spec)
        for at in range(0, len(staged), LOAD_CHUNK_ROWS):
            step = time.perf_counter()
            await repository.copy_to_staging(conn, staging, names, staged[at : at + LOAD_CHUNK_ROWS])
            copied = time.perf_counter()
            inserted, updated = await repository.land_staged(conn, staging, spec)
            copy, land = copy + copied - step, land + time.perf_counter() - copied
            changed += inserted + updated
        await conn.execute(ingest.COMPLETE, file_id, len(rows), changed, len(rows) - changed)
    seconds = time.perf_counter() - started
    cpu_harness = time.process_time() - cpu_before
    del staged
    stored = await stored_rows(conn)
    if changed != len(rows) or stored != len(rows):
        raise RuntimeError(f"floor A landed {changed} rows ({stored} stored) of {len(rows)}")
    return {"seconds": seconds, "copy": copy, "land": land, "cpu_harness": cpu_harness}


async def wait_version(conn: asyncpg.Connection, bucket: str, key: str, version_id: str) -> asyncpg.Record:
    """ingest.wait_file for one version of the key (every run puts the same key: a new version each)."""
    deadline = time.monotonic() + ingest.FILE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        row = await conn.fetchrow(
            """
            SELECT status, rows_read, rows_inserted, error_code, error_message,
                   EXTRACT(EPOCH FROM started_at)::float8 AS started,
                   EXTRACT(EPOCH FROM finished_at)::float8 AS finished
            FROM file_processing_log
            WHERE bucket = $1 AND key = $2 AND version_id = $3 AND status NOT IN ('pending', 'processing')
            """,
            bucket,
            key,
            version_id,
        )
        if row is not None:
            if row["status"] != "completed":
                raise RuntimeError(f"{key} ended {row['status']}: {row['error_code']} {row['error_message']}")
            return row
        await asyncio.sleep(ingest.POLL_SECONDS)
    raise RuntimeError(f"{key} was not ingested within {ingest.FILE_TIMEOUT_SECONDS} s")


async def service_run(
    infra: Infra, conn: asyncpg.Connection, svc: Server, path: Path, records: int
) -> dict[str, float]:
    """Put the file under KEY once and wait for its commit. Time: from put_object's return (the S3 event
    is on the queue) to the file's `completed` commit (finished_at, the database's clock)."""
    s3 = infra.client("s3")
    svc.reset_peak_rss()
    started = time.time()
    with path.open("rb") as body:
        put = await asyncio.to_thread(s3.put_object, Bucket=infra.bucket, Key=KEY, Body=body)
    uploaded = time.time()
    cpu_before = ingest.cpu_seconds(infra, svc)
    row = await wait_version(conn, infra.bucket, KEY, put["VersionId"])
    used = {part: after - cpu_before[part] for part, after in ingest.cpu_seconds(infra, svc).items()}
    if row["rows_read"] != records or row["rows_inserted"] != records:
        landed = f"{row['rows_read']} rows read, {row['rows_inserted']} landed"
        raise RuntimeError(f"{KEY}: {landed}, of {records}")
    if (stored := await stored_rows(conn)) != records:
        raise RuntimeError(f"{KEY}: {stored} rows in {repository.table(SOURCE)}, the file has {records}")
    return {
        "seconds": row["finished"] - uploaded,
        "claim_to_commit": row["finished"] - row["started"],
        "event_to_claim": row["started"] - uploaded,
        "upload": uploaded - started,
        "peak": svc.peak_rss_bytes(),
        **used,
    }


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)  # as bench.__main__.log


@contextlib.asynccontextmanager
async def _floor_connection(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(infra.database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def sources_case(infra: Infra, conn: asyncpg.Connection, records: int, runs: int) -> list[Result]:
    """Floor A and the service, run after run in turn (floor, service, floor, service, ...: drift of the
    host hits both alike), each service run in a fresh process with its peak RSS reset once it is up."""
    applied = await asyncio.to_thread(apply_source, infra)
    started = time.perf_counter()
    path = await asyncio.to_thread(write_billing, infra.workdir / "data", records)
    size = path.stat().st_size
    floor: dict[str, list[float]] = {}
    out: dict[str, list[float]] = {}
    idle: list[int] = []
    async with _floor_connection(infra) as floor_conn:
        spec = await stored_spec(floor_conn)
        rows = await typed_rows(path, spec)
        if len(rows) != records:
            raise RuntimeError(f"{path.name}: {len(rows)} rows, expected {records}")
        _log(
            f"sources data: {records:,} billing line items, {path.name} {size / 1e6:.0f} MB "
            f"(seed {SEED}), typed for floor A ({time.perf_counter() - started:.0f} s)"
        )
        for n in range(runs):
            before = infra.cpu_seconds()["postgres"]
            measured = await floor_a(floor_conn, spec, rows, f"{FLOOR_KEY}/{n}", size)
            measured["cpu_postgres"] = infra.cpu_seconds()["postgres"] - before
            for part, value in measured.items():
                floor.setdefault(part, []).append(value)
            await fresh_table(conn)
            with service(infra, ingest.SERVICE_ENV) as svc:
                idle.append(svc.rss_bytes())
                for part, value in (await service_run(infra, conn, svc, path, records)).items():
                    out.setdefault(part, []).append(value)
            _log(
                f"sources run {n + 1}: floor A {records / floor['seconds'][-1]:,.0f} rows/s, "
                f"service {records / out['seconds'][-1]:,.0f} rows/s, "
                f"peak RSS {out['peak'][-1] / MIB:,.0f} MiB"
            )
    del rows
    await fresh_table(conn)
    ingest.delete_versions(infra, KEY)
    floor_result = Result(
        "sources",
        "floor A billing",
        "rows/s",
        [records / s for s in floor["seconds"]],
        mb_per_s=[size / s / 1e6 for s in floor["seconds"]],
        note="COPY + the landing upsert of rows typed beforehand by the service's code: the database's work "
        "(and asyncpg's COPY encoding) only",
        details={
            "records": records,
            "seconds": floor["seconds"],
            "copy_seconds": floor["copy"],
            "land_seconds": floor["land"],
            "cpu_harness_seconds": floor["cpu_harness"],
            "cpu_postgres_seconds": floor["cpu_postgres"],
        },
    )
    service_result = Result(
        "sources",
        "service billing csv.gz",
        "rows/s",
        [records / s for s in out["seconds"]],
        mb_per_s=[size / s / 1e6 for s in out["seconds"]],
        peak_rss_bytes=int(max(out["peak"])),
        floor="sources/floor A billing",
        target=SOURCE_TARGET,
        note=f"{records:,} line items, {size / 1e6:.0f} MB gzipped, into {repository.table(SOURCE)}; "
        "ratio reported, no ratio target (issue 17)",
        details={
            "records": records,
            "file_bytes": size,
            "sources_apply": applied,
            "seconds": out["seconds"],
            "claim_to_commit_seconds": out["claim_to_commit"],
            "event_to_claim_seconds": out["event_to_claim"],
            "upload_seconds": out["upload"],
            "idle_rss_bytes": idle,
            "peak_rss_bytes_per_run": out["peak"],
            **{f"{part}_seconds": out[part] for part in ingest.CPU_PARTS},
        },
    )
    return [floor_result, service_result]
