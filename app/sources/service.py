"""Applying sources: a spec file becomes a version in force and a typed table created or altered to match,
idempotently and one change at a time; an incompatible change is refused with what to do instead."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import yaml
from pydantic import ValidationError

from app.core.db import Connection
from app.core.errors import ServiceUnavailable
from app.sources import repository
from app.sources.repository import SYSTEM_COLUMNS, TableColumn
from app.sources.spec import ColumnType, SourceSpec
from app.sources.values import SourceError, compile_source

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
DDL_LOCK_TIMEOUT_SECONDS = 10.0
MAX_SPEC_BYTES = 256 * 1024
_POSTGRES_SPELLING = {"timestamp with time zone": "timestamptz"}
_SYSTEM = {name for name, _ in SYSTEM_COLUMNS}

Action = Literal["created", "changed", "unchanged"]


class SourceBusy(ServiceUnavailable):
    """A change to a source's table waited too long for the loads holding it."""


@dataclass(frozen=True, slots=True)
class Applied:
    name: str
    version: int
    action: Action
    ddl: list[str] = field(default_factory=list)


def read_spec(path: Path) -> SourceSpec:
    """One source from a YAML or JSON file; SourceError names the file and what is wrong."""
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SourceError(f"{path}: larger than {MAX_SPEC_BYTES} bytes")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not valid YAML or JSON ({type(exc).__name__})") from None
    return parse_spec(document, where=str(path))


def parse_spec(document: Any, *, where: str) -> SourceSpec:
    try:
        spec = SourceSpec.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'source'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise SourceError(f"{where}: {problems}") from None
    compile_source(spec)  # defaults, bounds and enum values must fit their columns
    return spec


def spec_files(path: Path) -> list[Path]:
    """PATH itself, or the spec files directly in the folder PATH, in name order."""
    if path.is_dir():
        return sorted(item for item in path.iterdir() if item.suffix in SPEC_SUFFIXES and item.is_file())
    return [path]


def table_changes(spec: SourceSpec, existing: list[TableColumn], key: list[str]) -> list[str]:
    """The DDL that brings an existing table to `spec`, or SourceError for a change that would lose or
    reinterpret data. Compared with the table itself, so a column dropped from the spec and added back
    is recognised."""
    refuse = _refusal(spec.name)
    if key != spec.key:
        raise refuse(
            f"the key changes from ({', '.join(key) or 'none'}) to ({', '.join(spec.key) or 'none'})"
        )
    current = {column.name: column for column in existing if column.name not in _SYSTEM}
    ddl: list[str] = []
    for column in spec.columns:
        found = current.get(column.name)
        if found is None:
            if column.required:
                raise refuse(f"new column {column.name} is required, and the rows already landed have none")
            ddl.append(repository.add_column_sql(spec.name, column.name, column.type))
            continue
        old = ColumnType(_POSTGRES_SPELLING.get(found.type, found.type))
        new = column.column_type
        if old.sql != new.sql:
            if not old.widens_to(new):
                raise refuse(
                    f"column {column.name} changes type from {old.sql} to {new.sql}, which is not wider"
                )
            ddl.append(repository.widen_column_sql(spec.name, column.name, new.sql))
        if found.not_null and not column.required:
            ddl.append(repository.drop_not_null_sql(spec.name, column.name))
        elif column.required and not found.not_null:
            raise refuse(f"column {column.name} becomes required, and landed rows may have no value")
    kept = {column.name for column in spec.columns}
    for name, existing_column in current.items():
        if name not in kept and existing_column.not_null:
            raise refuse(f"required column {name} is dropped")
    return ddl


def _refusal(name: str) -> Callable[[str], SourceError]:
    def refuse(problem: str) -> SourceError:
        return SourceError(
            f"source {name}: {problem}. That change is not compatible with the rows already in "
            f"sources.{name}: apply it as a new source (e.g. {name}_v2, whose table starts empty), move the "
            "prefix to it, and delete this one when its data is no longer needed."
        )

    return refuse


async def apply(conn: Connection, spec: SourceSpec, *, default_bucket: str) -> Applied:
    """Put `spec` in force: created, changed (a new version, the table altered) or unchanged."""
    spec = spec.resolved(default_bucket)
    compile_source(spec)
    async with conn.transaction():
        await repository.lock(conn)
        if owner := await repository.route_owner(conn, spec):
            raise SourceError(
                f"source {spec.name}: source {owner} already takes the files of bucket {spec.bucket}, prefix "
                f"{spec.prefix!r}, glob {spec.glob!r}"
            )
        current = await repository.get(conn, spec.name)
        if current is not None and current.spec.stored() == spec.stored():
            return Applied(spec.name, current.version, "unchanged")
        existing = await repository.table_columns(conn, spec.name)
        if existing is None:
            ddl = repository.create_table_sql(spec)
        else:
            ddl = table_changes(spec, existing, await repository.primary_key(conn, spec.name))
        try:
            # An ALTER waits for the loads that hold the table, and every load after it would queue
            # behind it: give up soon instead, and say so.
            await repository.execute_ddl(conn, ddl, lock_timeout_seconds=DDL_LOCK_TIMEOUT_SECONDS)
        except asyncpg.LockNotAvailableError:
            raise SourceBusy(
                f"sources.{spec.name} is busy (a file of it is loading): nothing was changed; apply the "
                "source again when the load has finished."
            ) from None
        version = await repository.latest_version(conn, spec.name) + 1
        await repository.save(conn, spec, version)
    return Applied(spec.name, version, "created" if current is None else "changed", ddl)


async def delete(conn: Connection, name: str) -> bool:
    """Take the source out of force (its files land in processed_data again); the table stays."""
    async with conn.transaction():
        await repository.lock(conn)
        return await repository.delete(conn, name)
