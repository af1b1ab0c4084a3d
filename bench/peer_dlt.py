"""The peer: dlt (dlthub) loading a JSON Lines file into PostgreSQL, timed from the first byte read to the
committed load. Runs in bench/.venv (requirements-bench.txt), imports nothing from the service, and prints
one JSON line: {"seconds", "rows", "peak_rss_bytes"}.

dlt infers a schema, normalizes every record into typed columns (plus its _dlt_id and _dlt_load_id),
writes load files and loads them; `append` keeps every row: no deduplication, no per-key row hash and no
exactly-once processing log, unlike the service (dlt's `merge` with a primary key would add a dedup step).
"""

import argparse
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dlt
import orjson
import psycopg2
from dlt.destinations import postgres

BATCH = 10_000  # records yielded at a time: dlt's recommended way to feed a resource quickly
TABLE = "records"


def read_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    with path.open("rb") as file:
        batch: list[dict[str, Any]] = []
        for line in file:
            batch.append(orjson.loads(line))
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def with_password(dsn: str) -> str:
    """dlt insists on a password; the bench's PostgreSQL trusts loopback connections and ignores it."""
    parts = urlsplit(dsn)
    if parts.password is not None or parts.username is None:
        return dsn
    return urlunsplit(parts._replace(netloc=f"{parts.username}:unused@{parts.netloc.split('@', 1)[1]}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--dataset", required=True, help="the PostgreSQL schema dlt creates and loads")
    parser.add_argument("--loader-file-format", choices=["insert_values", "csv"], default="insert_values")
    parser.add_argument("--workdir", type=Path, required=True, help="dlt's pipeline state and load files")
    args = parser.parse_args()
    pipeline = dlt.pipeline(
        pipeline_name="bench_peer",
        destination=postgres(credentials=with_password(args.dsn)),
        dataset_name=args.dataset,
        pipelines_dir=str(args.workdir),
    )
    resource_ = dlt.resource(read_batches(args.file), name=TABLE, write_disposition="append")
    started = time.perf_counter()
    pipeline.run(resource_, loader_file_format=args.loader_file_format)
    seconds = time.perf_counter() - started
    with psycopg2.connect(args.dsn) as conn, conn.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{args.dataset}"."{TABLE}"')  # noqa: S608  (our own names)
        rows = cursor.fetchone()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_rss_bytes": peak}))


if __name__ == "__main__":
    main()
