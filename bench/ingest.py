"""End-to-end ingestion of one large JSONL file: S3 object in moto -> S3 event -> SQS -> consumer ->
committed rows. Reports rows/s, MB/s and the service's peak RSS; fails if the peak reaches 200 MB."""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import asyncpg
import boto3
from boto3.s3.transfer import TransferConfig

from bench.stack import RESULTS, Stack, peak_rss_bytes, service_stack
from devtools.bootstrap import EMULATOR_CREDENTIAL

PEAK_RSS_LIMIT_BYTES = 200 * 1024 * 1024
KEY = "bench/ingest.jsonl"


def write_jsonl(path: Path, target_bytes: int) -> int:
    """A deterministic JSONL file of about `target_bytes`; returns the number of records."""
    records = 0
    written = 0
    with path.open("wb") as file:
        while written < target_bytes:
            lines = b"".join(
                json.dumps(
                    {"id": records + i, "name": f"user-{(records + i) % 9973}", "score": (records + i) % 1000}
                ).encode()
                + b"\n"
                for i in range(10_000)
            )
            file.write(lines)
            written += len(lines)
            records += 10_000
    return records


async def wait_completed(dsn: str, deadline_seconds: float) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            row = await conn.fetchrow(
                "SELECT status, rows_inserted, error_code, started_at, finished_at, "
                "EXTRACT(EPOCH FROM finished_at - started_at)::float8 AS seconds "
                "FROM file_processing_log WHERE key = $1",
                KEY,
            )
            if row is not None and row["status"] in ("completed", "failed"):
                return row
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    raise RuntimeError(f"ingestion did not finish in {deadline_seconds} s")


def run(stack: Stack, megabytes: int) -> dict[str, float | int | str]:
    data = stack.workdir / "ingest.jsonl"
    records = write_jsonl(data, megabytes * 1024 * 1024)
    size = data.stat().st_size
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=EMULATOR_CREDENTIAL,
        aws_secret_access_key=EMULATOR_CREDENTIAL,
    )
    before = peak_rss_bytes(stack.pid)
    s3.upload_file(str(data), stack.bucket, KEY, Config=TransferConfig(multipart_chunksize=64 * 1024 * 1024))
    uploaded = time.perf_counter()
    data.unlink()
    row = asyncio.run(wait_completed(stack.database_url, deadline_seconds=3600))
    end_to_end = time.perf_counter() - uploaded
    if row["status"] != "completed" or row["rows_inserted"] != records:
        raise RuntimeError(
            f"ingestion ended {row['status']} ({row['error_code']}), {row['rows_inserted']} rows"
        )
    seconds = row["seconds"]
    return {
        "file_bytes": size,
        "records": records,
        "seconds": round(seconds, 2),
        "seconds_from_upload": round(end_to_end, 2),
        "rows_per_second": round(records / seconds),
        "mb_per_second": round(size / seconds / 1e6, 1),
        "peak_rss_before_bytes": before,
        "peak_rss_bytes": peak_rss_bytes(stack.pid),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=1024, help="size of the JSONL file")
    args = parser.parse_args()
    with service_stack() as stack:
        result = run(stack, args.megabytes)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    mib = 1024 * 1024
    peak = int(result["peak_rss_bytes"])
    print(
        f"ingest {int(result['file_bytes']) / mib:.0f} MiB JSONL, {result['records']} records in "
        f"{result['seconds']} s: {result['rows_per_second']} rows/s, {result['mb_per_second']} MB/s; "
        f"service peak RSS {peak / mib:.0f} MiB (limit {PEAK_RSS_LIMIT_BYTES / mib:.0f} MiB)"
    )
    return 0 if peak < PEAK_RSS_LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
