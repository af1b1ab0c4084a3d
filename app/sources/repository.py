"""All SQL of sources: the sources in force and their versions, each source's typed table (its DDL, its
staging table and the set-based statements that land a file's rows), and the files' source columns."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from app.core.db import Connection
from app.sources.spec import SourceSpec

SCHEMA = "sources"
STAGING_PREFIX = "source_staging_"
LOAD_TIMEOUT_SECONDS = 6 * 3600  # as a file's load in processed_data: it lasts as long as the file
# One source change at a time across replicas and CLI runs (the DDL and the version number).
SOURCES_LOCK_KEY = 7_301_843_565
# The service's own columns of every source table, before the source's columns.
SYSTEM_COLUMNS = (
    ("_file_id", "bigint NOT NULL"),  # the file_processing_log row that loaded (or last changed) the row
    ("_line", "bigint NOT NULL"),  # its line (CSV, JSON Lines) or item number (JSON) in that file
    ("_object_modified", "timestamptz NOT NULL"),  # when S3 stored that file version: an older one never wins
    ("_row_hash", "text NOT NULL"),  # sha256 of the typed values: an identical row is left untouched
    ("_loaded_at", "timestamptz NOT NULL DEFAULT now()"),
)
STAGED = ("_file_id", "_line", "_object_modified", "_row_hash")


@dataclass(frozen=True, slots=True)
class StoredSource:
    spec: SourceSpec
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TableColumn:
    name: str
    type: str  # format_type(), e.g. numeric(18,10), timestamp with time zone
    not_null: bool


def table(name: str) -> str:
    return f'{SCHEMA}."{name}"'


def _ident(name: str) -> str:
    return f'"{name}"'  # names are checked against NAME_PATTERN: no quote can be in one


def _stored(row: Any) -> StoredSource:
    return StoredSource(SourceSpec.model_validate(row["spec"]), row["version"], row["updated_at"])


async def lock(conn: Connection) -> None:
    """Serialize source changes; held until the caller's transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", SOURCES_LOCK_KEY)


async def list_sources(conn: Connection) -> list[StoredSource]:
    rows = await conn.fetch("SELECT spec, version, updated_at FROM ingestion_sources ORDER BY name")
    return [_stored(row) for row in rows]


async def get(conn: Connection, name: str) -> StoredSource | None:
    row = await conn.fetchrow("SELECT spec, version, updated_at FROM ingestion_sources WHERE name = $1", name)
    return _stored(row) if row else None


async def latest_version(conn: Connection, name: str) -> int:
    """The highest version ever applied under `name` (0 if none), deleted sources included."""
    found = await conn.fetchval("SELECT max(version) FROM ingestion_source_versions WHERE name = $1", name)
    return int(found or 0)


async def match(conn: Connection, bucket: str, key: str) -> StoredSource | None:
    """The source of a file: the longest prefix of `key` among the bucket's sources whose glob (if any)
    matches the rest of the key."""
    rows = await conn.fetch(
        """
        SELECT spec, version, updated_at FROM ingestion_sources
        WHERE bucket = $1 AND starts_with($2, prefix)
        ORDER BY length(prefix) DESC, glob NULLS LAST
        """,
        bucket,
        key,
    )
    for row in rows:
        stored = _stored(row)
        if stored.spec.matches(key):
            return stored
    return None


async def save(conn: Connection, spec: SourceSpec, version: int) -> None:
    """Put `spec` in force as `version` and keep it in the history."""
    document = orjson.dumps(spec.stored())
    await conn.execute(
        """
        INSERT INTO ingestion_sources (name, version, tenant, bucket, prefix, glob, spec)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (name) DO UPDATE SET
            version = EXCLUDED.version, tenant = EXCLUDED.tenant, bucket = EXCLUDED.bucket,
            prefix = EXCLUDED.prefix, glob = EXCLUDED.glob, spec = EXCLUDED.spec, updated_at = now()
        """,
        spec.name,
        version,
        spec.tenant,
        spec.bucket,
        spec.prefix,
        spec.glob,
        document,
    )
    await conn.execute(
        "INSERT INTO ingestion_source_versions (name, version, spec) VALUES ($1, $2, $3)",
        spec.name,
        version,
        document,
    )


async def route_owner(conn: Connection, spec: SourceSpec) -> str | None:
    """Another source that routes exactly the same files (bucket, prefix, glob), if any."""
    found: str | None = await conn.fetchval(
        """
        SELECT name FROM ingestion_sources
        WHERE bucket = $1 AND prefix = $2 AND COALESCE(glob, '') = COALESCE($3, '') AND name <> $4
        """,
        spec.bucket,
        spec.prefix,
        spec.glob,
        spec.name,
    )
    return found


async def delete(conn: Connection, name: str) -> bool:
    """Take a source out of force; its table, its rows and its versions stay."""
    status = await conn.execute("DELETE FROM ingestion_sources WHERE name = $1", name)
    return status.endswith(" 1")


# The typed table


async def table_columns(conn: Connection, name: str) -> list[TableColumn] | None:
    """The table's columns (the service's own included), or None if it does not exist."""
    rows = await conn.fetch(
        """
        SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
        FROM pg_attribute a
        WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        table(name),
    )
    if not rows:
        return None
    return [TableColumn(row["name"], row["type"], row["not_null"]) for row in rows]


async def primary_key(conn: Connection, name: str) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT a.attname FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = to_regclass($1) AND i.indisprimary
        ORDER BY array_position(i.indkey::int2[], a.attnum)
        """,
        table(name),
    )
    return [row["attname"] for row in rows]


def create_table_sql(spec: SourceSpec) -> list[str]:
    columns = [f"{name} {sql}" for name, sql in SYSTEM_COLUMNS]
    columns += [
        f"{_ident(column.name)} {column.type}{' NOT NULL' if column.required else ''}"
        for column in spec.columns
    ]
    if spec.key:
        columns.append(f"PRIMARY KEY ({', '.join(_ident(part) for part in spec.key)})")
    else:
        columns.append("UNIQUE (_row_hash)")
    return [
        f"CREATE TABLE {table(spec.name)} (\n    " + ",\n    ".join(columns) + "\n)",
        f"CREATE INDEX ON {table(spec.name)} (_file_id)",
    ]


def add_column_sql(name: str, column: str, sql_type: str) -> str:
    return f"ALTER TABLE {table(name)} ADD COLUMN {_ident(column)} {sql_type}"


def widen_column_sql(name: str, column: str, sql_type: str) -> str:
    return f"ALTER TABLE {table(name)} ALTER COLUMN {_ident(column)} TYPE {sql_type}"


def drop_not_null_sql(name: str, column: str) -> str:
    return f"ALTER TABLE {table(name)} ALTER COLUMN {_ident(column)} DROP NOT NULL"


async def execute_ddl(conn: Connection, statements: list[str], *, lock_timeout_seconds: float) -> None:
    """Run the statements in the caller's transaction, each waiting at most `lock_timeout_seconds` for a
    lock (asyncpg.LockNotAvailableError beyond)."""
    if not statements:
        return
    await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_seconds * 1000)}ms'")
    for statement in statements:
        await conn.execute(statement)


# Landing a file's rows


async def create_staging(conn: Connection, spec: SourceSpec) -> str:
    """A temporary table with the source table's columns as they are now (a later version may have
    altered them), dropped at commit."""
    staging = f"{STAGING_PREFIX}{spec.name}"
    await conn.execute(
        f"CREATE TEMPORARY TABLE {staging} (LIKE {table(spec.name)} INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    return staging


async def copy_to_staging(
    conn: Connection, staging: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Binary COPY of typed rows: (_file_id, _line, _object_modified, _row_hash, the source's columns)."""
    await conn.execute(f"TRUNCATE {staging}")
    await conn.copy_records_to_table(
        staging, records=rows, columns=[*STAGED, *columns], timeout=LOAD_TIMEOUT_SECONDS
    )


async def land_staged(conn: Connection, staging: str, spec: SourceSpec) -> tuple[int, int]:
    """Move the staged rows into the source's table in one statement: (inserted, updated).

    With a key: the last row of a key in the chunk wins; an existing row is updated only when its values
    differ and the staged row's object version is not older than the one that wrote it. Without a key:
    rows already in the table (same typed values) are skipped."""
    names = [*STAGED, *(column.name for column in spec.columns)]
    listed = ", ".join(_ident(name) for name in names)
    target = table(spec.name)
    if not spec.key:
        status = await conn.execute(
            f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {staging} "  # noqa: S608
            "ON CONFLICT (_row_hash) DO NOTHING",
            timeout=LOAD_TIMEOUT_SECONDS,
        )
        return int(status.rsplit(" ", 1)[-1]), 0
    key = ", ".join(_ident(part) for part in spec.key)
    updates = ", ".join(f"{_ident(name)} = EXCLUDED.{_ident(name)}" for name in names if name not in spec.key)
    row = await conn.fetchrow(
        f"""
        WITH landed AS (
            INSERT INTO {target} AS t ({listed})
            SELECT DISTINCT ON ({key}) {listed} FROM {staging} ORDER BY {key}, _line DESC
            ON CONFLICT ({key}) DO UPDATE SET {updates}
            WHERE t._row_hash IS DISTINCT FROM EXCLUDED._row_hash
              AND t._object_modified <= EXCLUDED._object_modified
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
        FROM landed
        """,  # noqa: S608
        timeout=LOAD_TIMEOUT_SECONDS,
    )
    assert row is not None  # noqa: S101  (an aggregate always returns its row)
    return int(row["inserted"]), int(row["updated"])


async def set_file_source(conn: Connection, file_id: int, name: str, version: int) -> None:
    await conn.execute(
        "UPDATE file_processing_log SET source_name = $2, source_version = $3 WHERE id = $1",
        file_id,
        name,
        version,
    )


async def set_rejected_by_rule(conn: Connection, file_id: int, rejected_by_rule: dict[str, int]) -> None:
    await conn.execute(
        "UPDATE file_processing_log SET rejected_by_rule = $2 WHERE id = $1",
        file_id,
        orjson.dumps(rejected_by_rule) if rejected_by_rule else None,
    )


async def file_created_on(conn: Connection, file_id: int) -> date:
    """The day (UTC) the file was first seen: its quarantine object's folder, the same on every retry."""
    day: date = await conn.fetchval(
        "SELECT (created_at AT TIME ZONE 'UTC')::date FROM file_processing_log WHERE id = $1", file_id
    )
    return day
