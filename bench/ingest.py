"""Ingestion cases: the service end to end (S3 object in moto -> S3 event on SQS -> the consumer ->
committed rows) against floor A (the database's own COPY + INSERT ... ON CONFLICT of the same rows),
floor B (a plain get_object stream from moto), the naive designs (an INSERT per record, executemany),
and the peer dlt (run by bench/peer_dlt.py in bench/.venv)."""

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import aioboto3
import asyncpg

from app.ingestion.parsers import RecordStream, detect_format
from bench.data import Dataset, write_jsonl
from bench.report import MIB, Result, Skipped, Target
from bench.stack import REGION, ROOT, Infra, Server, service
from devtools.bootstrap import EMULATOR_CREDENTIAL

KEY_PREFIX = "bench/ingest"
INGEST_TARGET = Target(min_ratio=0.75)
BIG_FILE_TARGET = Target(max_peak_rss_bytes=200 * MIB)
GROWTH_TARGET = Target(min_ratio=0.8)  # issue 18: of the empty-table rate, same file, same process
# What the service is run with in every case: production's log format and level.
SERVICE_ENV = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
POLL_SECONDS = 0.05
FILE_TIMEOUT_SECONDS = 3 * 3600
READ_CHUNK_BYTES = 1024 * 1024  # what the service asks the S3 body for (parsers.RecordStream)
EXECUTEMANY_BATCH = 1000
LOCAL_BUCKET = "local"  # the processing-log bucket of loads from local data (no S3 involved)
BENCH_PYTHON = ROOT / "bench" / ".venv" / "bin" / "python"

CPU_PARTS = ("cpu_service", "cpu_postgres", "cpu_moto")
Row = tuple[int, str, bytes]  # record_index, row_hash, canonical JSON: what the service COPYs

# The SQL of app/ingestion/repository.py (create_staging, copy_to_staging, insert_from_staging) and of
# its claim and completion, copied rather than imported: the floor is the database's ceiling for these
# statements, and must not move when the service's loading code changes shape.
STAGING_TABLE = "ingest_staging"
CREATE_STAGING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} "
    "(record_index BIGINT NOT NULL, row_hash TEXT NOT NULL, data JSONB NOT NULL) ON COMMIT DELETE ROWS"
)
INSERT_FROM_STAGING = f"""
    INSERT INTO processed_data (file_id, bucket, key, record_index, row_hash, data)
    SELECT $1, $2, $3, record_index, row_hash, data FROM {STAGING_TABLE}
    ON CONFLICT (bucket, key, row_hash) DO NOTHING
"""  # noqa: S608
INSERT_ONE = """
    INSERT INTO processed_data (file_id, bucket, key, record_index, row_hash, data)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (bucket, key, row_hash) DO NOTHING
"""
CLAIM = """
    INSERT INTO file_processing_log
        (bucket, key, etag, size_bytes, status, attempts, lease_owner, lease_expires_at, trigger, started_at)
    VALUES ($1, $2, $3, $4, 'processing', 1, 'bench', now() + interval '1 hour', 'cli', now())
    RETURNING id
"""
COMPLETE = """
    UPDATE file_processing_log
    SET status = 'completed', rows_read = $2, rows_inserted = $3, rows_skipped = $4, rows_rejected = 0,
        lease_owner = NULL, lease_expires_at = NULL, finished_at = clock_timestamp()
    WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class Format:
    name: str  # jsonl, csv, csv.gz
    suffix: str
    rows_of: str  # the format whose precomputed rows (and floor A) this one shares

    def path(self, dataset: Dataset) -> Path:
        return {"jsonl": dataset.jsonl, "csv": dataset.csv, "csv.gz": dataset.csv_gz}[self.name]


FORMATS = (
    Format("jsonl", ".jsonl", "jsonl"),
    Format("csv", ".csv", "csv"),
    Format("csv.gz", ".csv.gz", "csv"),
)


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection that sends JSONB as the canonical bytes, as the service's pool does (app.core.db)."""
    conn = await asyncpg.connect(dsn)
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=lambda v: b"\x01" + v, decoder=lambda v: v[1:], format="binary"
    )
    return conn


async def fresh_tables(conn: asyncpg.Connection) -> None:
    """Every run starts from an empty processed_data (its unique index is the expensive part, and it
    would grow run after run) and a checkpoint, so no run pays for its predecessor's dirty pages."""
    await conn.execute("TRUNCATE processed_data")
    await conn.execute("CHECKPOINT")


class _LocalFile:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    async def read(self, n: int = -1) -> bytes:
        return self._file.read(n)


async def precompute_rows(path: Path) -> list[Row]:
    """The rows the service would COPY for this file, made by the service's own parser (outside any
    timed section: floor A measures the database only)."""
    rows: list[Row] = []
    with path.open("rb") as file:
        stream = RecordStream(
            _LocalFile(file),
            detect_format(path.name),
            max_bytes=2**40,
            max_decompressed_bytes=2**40,
            max_records=2**40,
            max_record_bytes=2**40,
        )
        async for batch in stream.batches():
            for record in batch:
                if record.error is not None or record.row_hash is None or record.canonical is None:
                    raise RuntimeError(f"{path.name}: record {record.index} rejected: {record.error}")
                rows.append((record.index, record.row_hash, record.canonical))
    return rows


async def wait_file(conn: asyncpg.Connection, bucket: str, key: str) -> asyncpg.Record:
    """The processing log row of the object once it has ended; raises unless it is `completed`."""
    deadline = time.monotonic() + FILE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        row = await conn.fetchrow(
            """
            SELECT status, rows_read, rows_inserted, error_code, error_message,
                   EXTRACT(EPOCH FROM started_at)::float8 AS started,
                   EXTRACT(EPOCH FROM finished_at)::float8 AS finished
            FROM file_processing_log
            WHERE bucket = $1 AND key = $2 AND status NOT IN ('pending', 'processing')
            """,
            bucket,
            key,
        )
        if row is not None:
            if row["status"] != "completed":
                raise RuntimeError(f"{key} ended {row['status']}: {row['error_code']} {row['error_message']}")
            return row
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"{key} was not ingested within {FILE_TIMEOUT_SECONDS} s")


async def service_runs(
    infra: Infra,
    conn: asyncpg.Connection,
    svc: Server,
    path: Path,
    records: int,
    keys: Sequence[str],
    *,
    before_each: Callable[[int], Awaitable[None]] | None = None,
    fresh: bool = True,
) -> dict[str, list[float]]:
    """Put the file under each key in turn and wait for its commit. Time: from put_object's return (the
    S3 event is on the queue) to the file's `completed` commit (finished_at, the database's clock).

    `before_each(n)` runs before run n (the floors, interleaved: A C S A C S ...). `fresh`: each run starts
    from an empty processed_data; else only from a checkpoint (the table keeps what it holds).

    One PutObject, not a multipart upload: moto announces a multipart upload twice (ObjectCreated:Put and
    :CompleteMultipartUpload; AWS only the latter), and the second event would find the file busy."""
    s3 = infra.client("s3")
    out: dict[str, list[float]] = {
        k: [] for k in ("seconds", "claim_to_commit", "event_to_claim", "upload", "peak", *CPU_PARTS)
    }
    for n, key in enumerate(keys):
        if before_each is not None:
            await before_each(n)
        await (fresh_tables(conn) if fresh else conn.execute("CHECKPOINT"))
        svc.reset_peak_rss()
        started = time.time()
        with path.open("rb") as body:
            await asyncio.to_thread(s3.put_object, Bucket=infra.bucket, Key=key, Body=body)
        uploaded = time.time()
        cpu_before = cpu_seconds(infra, svc)
        row = await wait_file(conn, infra.bucket, key)
        for part, used in cpu_seconds(infra, svc).items():
            out[part].append(used - cpu_before[part])
        if row["rows_inserted"] != records:
            raise RuntimeError(f"{key}: {row['rows_inserted']} rows inserted, expected {records}")
        out["seconds"].append(row["finished"] - uploaded)
        out["claim_to_commit"].append(row["finished"] - row["started"])
        out["event_to_claim"].append(row["started"] - uploaded)
        out["upload"].append(uploaded - started)
        out["peak"].append(svc.peak_rss_bytes())
    return out


def cpu_seconds(infra: Infra, svc: Server | None = None) -> dict[str, float]:
    """CPU seconds so far of the service (when given), PostgreSQL and moto: where a run's time went."""
    used = {f"cpu_{name}": seconds for name, seconds in infra.cpu_seconds().items()}
    if svc is not None:
        used["cpu_service"] = svc.cpu_seconds()
    return used


def delete_versions(infra: Infra, prefix: str) -> None:
    """Forget the run's objects (moto keeps every version of a versioned bucket in memory or on disk)."""
    s3 = infra.client("s3")
    listing = s3.list_object_versions(Bucket=infra.bucket, Prefix=prefix)
    for version in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        s3.delete_object(Bucket=infra.bucket, Key=version["Key"], VersionId=version["VersionId"])


async def service_case(
    infra: Infra,
    conn: asyncpg.Connection,
    dataset: Dataset,
    fmt: Format,
    runs: int,
    floor_b_runs: int,
    rows: list[Row] | None = None,
) -> list[Result]:
    """The service on one format (a fresh process, its peak RSS reset before each run), then floor B
    on the same object once the service has stopped.

    With `rows` (the format's precomputed rows), floors A and C run before each service run, interleaved
    (A C S A C S ...), so the ratios compare runs made under the same conditions (issue 18)."""
    path = fmt.path(dataset)
    size = path.stat().st_size
    keys = [f"{KEY_PREFIX}/{fmt.name}/run-{n}{fmt.suffix}" for n in range(runs)]
    floors: dict[str, list[float]] = {"a": [], "c": [], "cpu_postgres_a": []}

    async def run_floors(n: int) -> None:
        if rows is None:
            return
        before = infra.cpu_seconds()["postgres"]
        floors["a"].append(await floor_a(conn, rows, f"{KEY_PREFIX}/floor-a/{fmt.name}/{n}", size))
        floors["cpu_postgres_a"].append(infra.cpu_seconds()["postgres"] - before)
        floors["c"].append(await floor_c(conn, rows, f"{KEY_PREFIX}/floor-c/{fmt.name}/{n}"))

    with service(infra, SERVICE_ENV) as svc:
        idle_rss = svc.rss_bytes()
        runs_out = await service_runs(
            infra, conn, svc, path, dataset.records, keys, before_each=run_floors if rows else None
        )
    service_result = Result(
        "ingest",
        f"service {fmt.name}",
        "rows/s",
        [dataset.records / s for s in runs_out["seconds"]],
        mb_per_s=[size / s / 1e6 for s in runs_out["seconds"]],
        peak_rss_bytes=int(max(runs_out["peak"])),
        floor=f"ingest/floor A {fmt.rows_of}",
        target=INGEST_TARGET if fmt.name != "csv.gz" else None,
        details={
            "records": dataset.records,
            "file_bytes": size,
            "seconds": runs_out["seconds"],
            "claim_to_commit_seconds": runs_out["claim_to_commit"],
            "event_to_claim_seconds": runs_out["event_to_claim"],
            "upload_seconds": runs_out["upload"],
            "idle_rss_bytes": idle_rss,
            "peak_rss_bytes_per_run": runs_out["peak"],
            **{f"{part}_seconds": runs_out[part] for part in CPU_PARTS},
        },
    )
    results = []
    if rows:
        results.append(
            _loaded(
                f"floor A {fmt.name}",
                len(rows),
                size,
                floors["a"],
                note="COPY + INSERT ... ON CONFLICT of precomputed rows: database work only; interleaved "
                "with the service's runs",
                details={"seconds": floors["a"], "cpu_postgres_seconds": floors["cpu_postgres_a"]},
            )
        )
        results.append(
            _loaded(
                f"floor C {fmt.name}",
                len(rows),
                size,
                floors["c"],
                floor=f"ingest/floor A {fmt.name}",
                note="binary COPY of the same rows into processed_data's shape with no index: the landing "
                "ceiling (issue 18); interleaved with the service's runs",
            )
        )
    results.append(service_result)
    floor_b = await floor_b_case(infra, keys[-1], size, floor_b_runs)
    floor_b.variant = f"floor B get_object {fmt.name}"
    results.append(floor_b)
    delete_versions(infra, f"{KEY_PREFIX}/{fmt.name}/")
    return results


async def floor_b_case(infra: Infra, key: str, size: int, runs: int) -> Result:
    """Stream the object from moto in the service's chunk size with the service's client (aioboto3) and
    discard the bytes: the emulator's ceiling for any consumer of this file."""
    session = aioboto3.Session(
        aws_access_key_id=EMULATOR_CREDENTIAL, aws_secret_access_key=EMULATOR_CREDENTIAL, region_name=REGION
    )
    seconds = []
    async with session.client("s3", endpoint_url=infra.endpoint_url) as s3:
        for _ in range(runs):
            started = time.perf_counter()
            response = await s3.get_object(Bucket=infra.bucket, Key=key)
            read = 0
            body = response["Body"]
            async with body:
                while chunk := await body.read(READ_CHUNK_BYTES):
                    read += len(chunk)
            seconds.append(time.perf_counter() - started)
            if read != size:
                raise RuntimeError(f"get_object returned {read} bytes of {size}")
    return Result(
        "ingest",
        "floor B",
        "MB/s",
        [size / s / 1e6 for s in seconds],
        mb_per_s=[size / s / 1e6 for s in seconds],
    )


@contextlib.asynccontextmanager
async def _file_transaction(conn: asyncpg.Connection, key: str, size: int) -> AsyncIterator[int]:
    """One transaction holding a fresh processing-log row, as the service's claim + load make."""
    async with conn.transaction():
        file_id: int = await conn.fetchval(CLAIM, LOCAL_BUCKET, key, f"etag-{time.time_ns()}", size)
        yield file_id


async def floor_a(conn: asyncpg.Connection, rows: list[Row], key: str, size: int) -> float:
    """COPY (binary) into the staging table, INSERT ... SELECT ... ON CONFLICT DO NOTHING, mark the file
    completed, commit: the seconds from BEGIN to COMMIT."""
    await fresh_tables(conn)
    started = time.perf_counter()
    async with _file_transaction(conn, key, size) as file_id:
        await conn.execute(CREATE_STAGING)
        await conn.copy_records_to_table(
            STAGING_TABLE, records=rows, columns=["record_index", "row_hash", "data"]
        )
        status = await conn.execute(INSERT_FROM_STAGING, file_id, LOCAL_BUCKET, key)
        inserted = int(status.rsplit(" ", 1)[-1])
        await conn.execute(COMPLETE, file_id, len(rows), inserted, len(rows) - inserted)
    seconds = time.perf_counter() - started
    if inserted != len(rows):
        raise RuntimeError(f"floor A inserted {inserted} of {len(rows)} rows")
    return seconds


FLOOR_C_TABLE = "floor_c_processed_data"
# processed_data's shape (columns, defaults, identity, CHECKs) without its indexes and unique constraint.
CREATE_FLOOR_C = (
    f"CREATE TABLE IF NOT EXISTS {FLOOR_C_TABLE} "
    "(LIKE processed_data INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
)


async def floor_c(conn: asyncpg.Connection, rows: list[Row], key: str) -> float:
    """Floor C (issue 18): the landing ceiling. Binary COPY of the same rows, with their file id, bucket and
    key, straight into a table of processed_data's shape with no index, in one transaction: the seconds
    from BEGIN to COMMIT. No deduplication at all: what any exactly-once design pays on top shows as
    the gap."""
    await conn.execute(CREATE_FLOOR_C)
    await conn.execute(f"TRUNCATE {FLOOR_C_TABLE}")
    await conn.execute("CHECKPOINT")
    started = time.perf_counter()
    async with conn.transaction():
        await conn.copy_records_to_table(
            FLOOR_C_TABLE,
            records=((0, LOCAL_BUCKET, key, index, row_hash, data) for index, row_hash, data in rows),
            columns=["file_id", "bucket", "key", "record_index", "row_hash", "data"],
        )
    return time.perf_counter() - started


async def insert_per_record(conn: asyncpg.Connection, rows: list[Row], key: str, size: int) -> float:
    """The naive design: one INSERT ... ON CONFLICT DO NOTHING per record (a prepared statement, one
    round trip each), in the file's one transaction."""
    await fresh_tables(conn)
    started = time.perf_counter()
    async with _file_transaction(conn, key, size) as file_id:
        statement = await conn.prepare(INSERT_ONE)
        for index, row_hash, data in rows:
            await statement.fetch(file_id, LOCAL_BUCKET, key, index, row_hash, data)
        await conn.execute(COMPLETE, file_id, len(rows), len(rows), 0)
    return time.perf_counter() - started


async def insert_executemany(conn: asyncpg.Connection, rows: list[Row], key: str, size: int) -> float:
    """The batched design: executemany of the same INSERT, EXECUTEMANY_BATCH records a call."""
    await fresh_tables(conn)
    started = time.perf_counter()
    async with _file_transaction(conn, key, size) as file_id:
        for at in range(0, len(rows), EXECUTEMANY_BATCH):
            await conn.executemany(
                INSERT_ONE, [(file_id, LOCAL_BUCKET, key, *row) for row in rows[at : at + EXECUTEMANY_BATCH]]
            )
        await conn.execute(COMPLETE, file_id, len(rows), len(rows), 0)
    return time.perf_counter() - started


def _loaded(variant: str, rows: int, size: float, seconds: list[float], **extra: Any) -> Result:
    """An ingestion result from each run's seconds for `rows` records of `size` bytes."""
    return Result(
        "ingest",
        variant,
        "rows/s",
        [rows / s for s in seconds],
        mb_per_s=[size / s / 1e6 for s in seconds],
        **extra,
    )


async def database_cases(
    conn: asyncpg.Connection, dataset: Dataset, slow_runs: int, per_record_sample: int
) -> list[Result]:
    """The naive designs on the JSON Lines rows (floors A and C run interleaved with the service:
    service_case)."""
    fmt = FORMATS[0]
    path = fmt.path(dataset)
    size = path.stat().st_size
    rows = await precompute_rows(path)
    sample = rows[:per_record_sample]
    sample_bytes = size * len(sample) / len(rows)
    seconds = [
        await insert_per_record(conn, sample, f"{KEY_PREFIX}/per-record/{n}", size) for n in range(slow_runs)
    ]
    results = [
        _loaded(
            "naive INSERT per record",
            len(sample),
            sample_bytes,
            seconds,
            floor="ingest/floor A jsonl",
            note=f"on the first {len(sample):,} records"
            + (" (a sample: the whole file would take too long)" if len(sample) < len(rows) else ""),
        )
    ]
    seconds = [
        await insert_executemany(conn, rows, f"{KEY_PREFIX}/executemany/{n}", size) for n in range(slow_runs)
    ]
    results.append(
        _loaded(
            f"naive executemany x{EXECUTEMANY_BATCH}", len(rows), size, seconds, floor="ingest/floor A jsonl"
        )
    )
    return results


PREFILL_KEYS = 1000  # the growth case's other objects: the rows are spread over this many keys
PREFILL = """
    INSERT INTO processed_data (file_id, bucket, key, record_index, row_hash, data)
    SELECT $1, $2, 'bench/prefill/' || (n % $5), n,
           encode(sha256(convert_to(n::text || '/' || $6, 'UTF8')), 'hex'),
           jsonb_build_object('id', n, 'name', md5(n::text),
                              'email', left(md5(n::text), 12) || '@example.com',
                              'amount', (n % 100000) / 100.0, 'active', n % 2 = 0)
    FROM generate_series($3::bigint, $4::bigint) AS n
"""


async def prefill(conn: asyncpg.Connection, rows: int) -> float:
    """processed_data with `rows` rows of other objects (their hashes random, as the service's are), in
    batches of 1,000,000 committed one by one; a VACUUM ANALYZE after, as autovacuum would have run. The
    seconds it took."""
    started = time.perf_counter()
    await fresh_tables(conn)
    batch = 1_000_000
    async with _file_transaction(conn, "bench/prefill", 0) as file_id:
        await conn.execute(COMPLETE, file_id, rows, rows, 0)  # completed: no recovery takes it over
    salt = str(time.time_ns())
    for n in range((rows + batch - 1) // batch):
        first, last = n * batch + 1, min((n + 1) * batch, rows)
        await conn.execute(PREFILL, file_id, LOCAL_BUCKET, first, last, PREFILL_KEYS, salt)
    await conn.execute("VACUUM ANALYZE processed_data")
    return time.perf_counter() - started


async def growth_case(infra: Infra, conn: asyncpg.Connection, dataset: Dataset, runs: int) -> list[Result]:
    """Issue 18's growth check: the JSON Lines file loaded into a processed_data that already holds 10 x
    records rows of other objects (each run's rows stay: the table keeps growing), against the same file
    into an empty table, the two interleaved (E G E G ...) in one service process."""
    fmt = FORMATS[0]
    path = fmt.path(dataset)
    existing = 10 * dataset.records
    with service(infra, SERVICE_ENV) as svc:
        empty: dict[str, list[float]] = {"seconds": [], "peak": []}
        grown: dict[str, list[float]] = {"seconds": [], "peak": []}
        prefill_seconds = []
        for n in range(runs):
            once = await service_runs(
                infra, conn, svc, path, dataset.records, [f"{KEY_PREFIX}/growth/empty-{n}{fmt.suffix}"]
            )
            empty["seconds"] += once["seconds"]
            empty["peak"] += once["peak"]
            prefill_seconds.append(await prefill(conn, existing))
            key = f"{KEY_PREFIX}/growth/full-{n}{fmt.suffix}"
            once = await service_runs(infra, conn, svc, path, dataset.records, [key], fresh=False)
            grown["seconds"] += once["seconds"]
            grown["peak"] += once["peak"]
    delete_versions(infra, f"{KEY_PREFIX}/growth/")
    await fresh_tables(conn)
    base = Result(
        "ingest",
        "service jsonl, empty table",
        "rows/s",
        [dataset.records / s for s in empty["seconds"]],
        peak_rss_bytes=int(max(empty["peak"])),
        note="interleaved with the next row's runs",
    )
    return [
        base,
        Result(
            "ingest",
            f"service jsonl, {existing:,} rows in the table",
            "rows/s",
            [dataset.records / s for s in grown["seconds"]],
            peak_rss_bytes=int(max(grown["peak"])),
            floor="ingest/service jsonl, empty table",
            target=GROWTH_TARGET,
            note=f"the table prefilled with {existing:,} rows of {PREFILL_KEYS} other objects before each "
            f"run (median {sorted(prefill_seconds)[len(prefill_seconds) // 2]:.0f} s)",
            details={"seconds": grown["seconds"], "prefill_seconds": prefill_seconds},
        ),
    ]


def dlt_available() -> str | None:
    """Why the dlt case cannot run, or None when it can."""
    if not BENCH_PYTHON.exists():
        return "bench/.venv is missing (make bench installs requirements-bench.txt into it)"
    probe = subprocess.run(
        [str(BENCH_PYTHON), "-c", "import dlt"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"dlt does not import in bench/.venv: {probe.stderr.strip().splitlines()[-1:]}"
    return None


async def dlt_case(
    infra: Infra, conn: asyncpg.Connection, dataset: Dataset, runs: int, file_format: str
) -> Result | Skipped:
    variant = f"peer dlt jsonl ({file_format})"
    reason = dlt_available()
    if reason is not None:
        return Skipped("ingest", variant, reason)
    size = dataset.jsonl.stat().st_size
    seconds, peaks = [], []
    for n in range(runs):
        await fresh_tables(conn)
        await conn.execute("DROP SCHEMA IF EXISTS dlt_bench CASCADE")
        await conn.execute("CHECKPOINT")
        command = [
            str(BENCH_PYTHON),
            "-m",
            "bench.peer_dlt",
            "--file",
            str(dataset.jsonl),
            "--dsn",
            infra.database_url,
            "--dataset",
            "dlt_bench",
            "--loader-file-format",
            file_format,
            "--workdir",
            str(infra.workdir / f"dlt-{file_format}-{n}"),
        ]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(infra.workdir),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PYTHONPATH": str(ROOT),
        }
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return Skipped("ingest", variant, f"dlt failed: {' | '.join(tail)}")
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        if outcome["rows"] != dataset.records:
            return Skipped("ingest", variant, f"dlt loaded {outcome['rows']} rows of {dataset.records}")
        seconds.append(outcome["seconds"])
        peaks.append(outcome["peak_rss_bytes"])
    return Result(
        "ingest",
        variant,
        "rows/s",
        [dataset.records / s for s in seconds],
        mb_per_s=[size / s / 1e6 for s in seconds],
        peak_rss_bytes=max(peaks),
        floor="ingest/floor A jsonl",
        note="dlt extract + normalize + load of the local JSONL file into its own table (append: no dedup, "
        "no row hash, no exactly-once log); its process's peak RSS",
    )


async def big_file_case(infra: Infra, conn: asyncpg.Connection, dataset: Dataset, megabytes: int) -> Result:
    """One JSON Lines file of about `megabytes` MiB, once, for the peak-RSS target."""
    per_record = dataset.jsonl.stat().st_size / dataset.records
    records = round(megabytes * MIB / per_record)
    path = infra.workdir / "big.jsonl"
    write_jsonl(path, records)
    size = path.stat().st_size
    with service(infra, SERVICE_ENV) as svc:
        out = await service_runs(infra, conn, svc, path, records, [f"{KEY_PREFIX}/big/{megabytes}mb.jsonl"])
    path.unlink()
    delete_versions(infra, f"{KEY_PREFIX}/big/")
    await conn.execute("TRUNCATE processed_data")
    return Result(
        "ingest",
        f"service jsonl {size / MIB:,.0f} MiB",
        "rows/s",
        [records / s for s in out["seconds"]],
        mb_per_s=[size / s / 1e6 for s in out["seconds"]],
        peak_rss_bytes=int(max(out["peak"])),
        target=BIG_FILE_TARGET,
        details={"records": records, "file_bytes": size, "seconds": out["seconds"]},
    )
