"""A source's files as rows of its typed table: each record typed and checked against the source's
columns, the good ones COPY'd (binary) into a staging table in chunks and landed by one set-based statement
per chunk (upsert on the natural key, or append skipping rows already there); the bad ones rejected,
skipped or quarantined as the source says."""

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import orjson
from prometheus_client import Counter

from app.core.db import Connection
from app.ingestion.loaders import Tally
from app.ingestion.outcomes import PermanentFailure
from app.ingestion.parsers import CsvOptions, Record, RecordStream
from app.sources import repository
from app.sources.spec import QUARANTINE_PREFIX, SourceSpec
from app.sources.values import Broken, CompiledSource, row_hash

LOAD_CHUNK_ROWS = 20_000  # rows per COPY + landing statement, as for processed_data
QUARANTINE_MEMORY_BYTES = 4 * 1024 * 1024  # quarantined rows beyond this spill to a temporary file
SHAPE = "record"  # the "column" of a record that could not be read as one (wrong field count, not an object)
QUARANTINE_CONTENT_TYPE = "application/x-ndjson"

# Label sets stay bounded: sources are few and made by admins; rules are the kinds in values.RULES.
ROWS = Counter("ingest_rows", "Rows of source files by outcome", ["source", "outcome"])
ROWS_REJECTED = Counter("ingest_rows_rejected", "Rule failures of rejected source rows", ["source", "rule"])


def csv_options(spec: SourceSpec) -> CsvOptions:
    dialect = spec.csv
    return CsvOptions(
        delimiter=dialect.delimiter,
        quote=dialect.quote,
        header=dialect.header,
        columns=() if dialect.header else tuple(dialect.column_order or ()),
        encoding=dialect.encoding,
    )


def quarantine_key(source: str, day: str, file_id: int) -> str:
    return f"{QUARANTINE_PREFIX}{source}/{day}/{file_id}.jsonl"


class Quarantine:
    """The rejected rows of one file, one JSON line each (line number, the rules broken, the record as
    read), written to the source's bucket when the file's load ends."""

    def __init__(self) -> None:
        self.rows = 0
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=QUARANTINE_MEMORY_BYTES)  # noqa: SIM115

    def add(self, record: Record, broken: list[Broken]) -> None:
        entry: dict[str, Any] = {"line": record.line, "rules": [str(rule) for rule in broken]}
        if record.data is not None:
            entry["record"] = record.data
        else:
            entry["problem"] = record.error
        self._file.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        self.rows += 1

    def body(self) -> IO[bytes]:
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        self._file.close()


PutObject = Callable[[str, IO[bytes]], Awaitable[None]]  # (key, body) into the source's bucket


@dataclass(frozen=True, slots=True)
class TypedFile:
    """What a typed load needs to know about the file."""

    file_id: int
    object_modified: datetime  # S3's LastModified of the version: an older version never overwrites
    put_object: PutObject  # writes the quarantine object


@dataclass(slots=True)
class Landed:
    tally: Tally
    inserted: int = 0
    updated: int = 0
    quarantine_key: str | None = None


async def load_typed(
    conn: Connection, stream: RecordStream, source: CompiledSource, file: TypedFile
) -> Landed:
    """Type and check the file's records and land the good ones in chunks, overlapping the two halves of
    the work as the processed_data loader does: while PostgreSQL lands chunk k, this process parses and
    types chunk k+1, which is COPY'd once chunk k has landed. All in the file's one transaction."""
    spec = source.spec
    landed = Landed(Tally("reject_file" if spec.on_error == "reject_file" else "skip_rows"))
    tally = landed.tally
    quarantine = Quarantine() if spec.on_error == "quarantine" else None
    staging = await repository.create_staging(conn, spec)
    names = source.names
    chunk: list[tuple[Any, ...]] = []
    header_checked = False
    landing: asyncio.Task[tuple[int, int]] | None = None

    async def landed_so_far() -> None:
        nonlocal landing
        if landing is not None:
            inserted, updated = await landing
            landing = None
            landed.inserted += inserted
            landed.updated += updated

    async def flush() -> None:
        nonlocal landing, chunk
        await landed_so_far()  # the connection runs one statement at a time
        await repository.copy_to_staging(conn, staging, names, chunk)
        chunk = []
        landing = asyncio.create_task(repository.land_staged(conn, staging, spec))
        # Let the task send its statement now: parsing may not yield again until the next chunk is typed.
        await asyncio.sleep(0)

    try:
        async for batch in stream.batches():
            if not header_checked:
                _check_header(stream, spec.file_rules.expected_columns)
                header_checked = True
            for record in batch:
                tally.read += 1
                typed = typed_record(record, source)
                if isinstance(typed, tuple):
                    chunk.append((file.file_id, record.line, file.object_modified, row_hash(typed), *typed))
                    continue
                tally.reject(rejection(record, typed), (str(rule) for rule in typed))
                if quarantine is not None:
                    quarantine.add(record, typed)
            if len(chunk) >= LOAD_CHUNK_ROWS:
                await flush()
        if not header_checked:
            _check_header(stream, spec.file_rules.expected_columns)
        if problems := file_problems(spec, tally.read, tally.rejected):
            raise PermanentFailure("file_rule", problems[0], counts=tally.counts())
        if chunk:
            await flush()
        await landed_so_far()
        tally.changed = landed.inserted + landed.updated
        if quarantine is not None and quarantine.rows:
            day = (await repository.file_created_on(conn, file.file_id)).isoformat()
            landed.quarantine_key = quarantine_key(spec.name, day, file.file_id)
            await file.put_object(landed.quarantine_key, quarantine.body())
    finally:
        if landing is not None:  # failing mid-file: let the connection finish before the rollback
            with contextlib.suppress(Exception):
                await landing
        if quarantine is not None:
            quarantine.close()
    return landed


def observe_typed(source: str, landed: "Landed") -> None:
    tally = landed.tally
    ROWS.labels(source, "inserted").inc(landed.inserted)
    ROWS.labels(source, "updated").inc(landed.updated)
    ROWS.labels(source, "unchanged").inc(tally.read - tally.rejected - landed.inserted - landed.updated)
    ROWS.labels(source, "rejected").inc(tally.rejected)
    for broken, count in tally.by_rule.items():
        ROWS_REJECTED.labels(source, broken.rsplit(": ", 1)[-1]).inc(count)


def typed_record(record: Record, source: CompiledSource) -> tuple[Any, ...] | list[Broken]:
    """The record's typed values, or the rules it broke (a record that could not be read as one breaks
    `record: shape`)."""
    if record.data is None:
        return [Broken(SHAPE, "shape")]
    return source.typed(record.data)


def rejection(record: Record, broken: list[Broken]) -> str:
    """Why a record was rejected, for the processing log: its line and rules, never its values."""
    if record.data is None:
        return record.error or f"line {record.line}: not a record"
    return f"line {record.line}: {', '.join(str(rule) for rule in broken)}"


def missing_columns(stream: RecordStream, expected: list[str]) -> list[str]:
    """The expected header columns a CSV file lacks (known once its first batch has been read)."""
    if not expected or stream.header is None:
        return []
    return [name for name in expected if name not in stream.header]


def _check_header(stream: RecordStream, expected: list[str]) -> None:
    if missing := missing_columns(stream, expected):
        raise PermanentFailure("file_rule", f"the header lacks the expected columns {', '.join(missing)}")


def file_problems(spec: SourceSpec, read: int, rejected: int) -> list[str]:
    """The file-level rules (other than the header's) a file of `read` rows, `rejected` of them, breaks."""
    rules = spec.file_rules
    problems: list[str] = []
    if read < rules.min_rows:
        problems.append(f"{read} rows, the source needs at least {rules.min_rows}")
    share = rules.max_rejected_share
    if share is not None and read and rejected / read > share:
        problems.append(f"{rejected} of {read} rows rejected, more than the source allows ({share:.0%})")
    return problems
