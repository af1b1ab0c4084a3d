"""Any file's records as processed_data rows: COPY into a staging table, then one INSERT ... ON CONFLICT DO
NOTHING on (bucket, key, row hash) per chunk, so a re-uploaded object only adds the rows not seen under
its key."""

import asyncio
import contextlib

from app.core.db import Connection
from app.ingestion import repository
from app.ingestion.envelopes import ObjectRef
from app.ingestion.loaders import ErrorPolicy, Tally, record_problem
from app.ingestion.parsers import RecordStream

# Records per COPY + INSERT round of a file's load: big enough that statements are few, small enough
# that the last round (which nothing overlaps) is short and the chunk held in memory is a few MB.
LOAD_CHUNK_ROWS = 20_000

Row = tuple[int, str, bytes]  # record index, row hash, canonical JSON


async def load_rows(
    conn: Connection, stream: RecordStream, file_id: int, ref: ObjectRef, policy: ErrorPolicy
) -> Tally:
    """Stream the records into processed_data in chunks, overlapping the two halves of the work.

    While PostgreSQL inserts chunk k (INSERT ... SELECT ... ON CONFLICT, the expensive part: index upkeep),
    this process streams and parses chunk k+1 from S3; then chunk k+1 is COPY'd into the emptied staging
    table and its INSERT starts. Everything stays in the file's one transaction.
    """
    tally = Tally(policy)
    inserting: asyncio.Task[int] | None = None

    async def flush(chunk: list[Row]) -> asyncio.Task[int]:
        if inserting is not None:
            tally.changed += await inserting
        await repository.copy_to_staging(conn, chunk, replace=inserting is not None)
        task = asyncio.create_task(
            repository.insert_from_staging(conn, file_id=file_id, bucket=ref.bucket, key=ref.key)
        )
        # Let the task send its INSERT now: the parser may not yield again until the next chunk is parsed
        # (the S3 stream's data is often already buffered), and then nothing overlaps.
        await asyncio.sleep(0)
        return task

    await repository.create_staging(conn)
    chunk: list[Row] = []
    try:
        async for batch in stream.batches():
            for record in batch:
                tally.read += 1
                reason = record_problem(record)
                if reason is not None:
                    tally.reject(reason)
                    continue
                # record_problem() passed: the record has its canonical form and hash.
                chunk.append((record.index, record.row_hash or "", record.canonical or b""))
            if len(chunk) >= LOAD_CHUNK_ROWS:
                inserting = await flush(chunk)
                chunk = []
        if chunk or inserting is None:
            inserting = await flush(chunk)
        tally.changed += await inserting
        inserting = None
    finally:
        if inserting is not None:  # failing mid-file: let the connection finish before the rollback
            with contextlib.suppress(Exception):
                await inserting
    return tally
