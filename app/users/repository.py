"""All SQL for the users_personal, users_financial and users_health tables."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from app.core.db import Connection
from app.users.schemas import (
    FinancialRead,
    HealthRead,
    PersonalRead,
    RecordType,
)

ReadModel = PersonalRead | FinancialRead | HealthRead


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]  # writable columns, after user_id
    read_model: type[ReadModel]

    @property
    def returning(self) -> str:
        return ", ".join(("user_id", *self.columns, "created_at", "updated_at"))


# Identifiers in the SQL below come only from these constants, never from input.
TABLES: dict[RecordType, _Table] = {
    RecordType.PERSONAL: _Table(
        "users_personal",
        ("name", "email", "phone", "address", "date_of_birth"),
        PersonalRead,
    ),
    RecordType.FINANCIAL: _Table(
        "users_financial",
        ("account_number", "credit_score", "annual_income", "total_debt"),
        FinancialRead,
    ),
    RecordType.HEALTH: _Table(
        "users_health",
        ("blood_type", "conditions", "medications", "allergies"),
        HealthRead,
    ),
}


def _model(table: _Table, row: asyncpg.Record | None) -> ReadModel | None:
    return table.read_model.model_validate(dict(row)) if row is not None else None


async def insert(
    conn: Connection, kind: RecordType, user_id: str, values: Mapping[str, object]
) -> ReadModel | None:
    """Insert a record; None if the user already has one of this kind."""
    table = TABLES[kind]
    columns = ", ".join(("user_id", *table.columns))
    placeholders = ", ".join(f"${i}" for i in range(1, len(table.columns) + 2))
    row = await conn.fetchrow(
        f"INSERT INTO {table.name} ({columns}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT (user_id) DO NOTHING RETURNING {table.returning}",
        user_id,
        *(values.get(column) for column in table.columns),
    )
    return _model(table, row)


async def get(conn: Connection, kind: RecordType, user_id: str) -> ReadModel | None:
    table = TABLES[kind]
    row = await conn.fetchrow(
        f"SELECT {table.returning} FROM {table.name} WHERE user_id = $1",  # noqa: S608
        user_id,
    )
    return _model(table, row)


async def update(
    conn: Connection, kind: RecordType, user_id: str, changes: Mapping[str, object]
) -> ReadModel | None:
    """Set only the given columns and bump updated_at; None if there is no such record."""
    table = TABLES[kind]
    unknown = changes.keys() - set(table.columns)
    if unknown:
        raise ValueError(f"not columns of {table.name}: {sorted(unknown)}")
    names = list(changes)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    row = await conn.fetchrow(
        f"UPDATE {table.name} SET {assignments}, updated_at = now() "  # noqa: S608
        f"WHERE user_id = $1 RETURNING {table.returning}",
        user_id,
        *(changes[name] for name in names),
    )
    return _model(table, row)


async def delete(conn: Connection, kind: RecordType, user_id: str) -> bool:
    table = TABLES[kind]
    deleted = await conn.fetchval(
        f"DELETE FROM {table.name} WHERE user_id = $1 RETURNING user_id",  # noqa: S608
        user_id,
    )
    return deleted is not None


Upserted = Literal["create", "update", "unchanged", "stale"]


async def upsert_as_of(
    conn: Connection, kind: RecordType, user_id: str, values: Mapping[str, object], as_of: datetime
) -> Upserted:
    """Store an ingested record whose data is as of `as_of`, unless the row holds newer data ('stale').

    The row's updated_at becomes `as_of`: 'create' or 'update' when the data changed, 'unchanged' when it
    was identical (its time still moves forward, so an older file cannot later pass for newer).
    """
    table = TABLES[kind]
    columns = ", ".join(table.columns)
    params = [f"${i}" for i in range(3, len(table.columns) + 3)]  # $1 user_id, $2 as_of
    assignments = ", ".join(f"{name} = {param}" for name, param in zip(table.columns, params, strict=True))
    old = ", ".join(f"old.{name}" for name in table.columns)
    new = ", ".join(f"t.{name}" for name in table.columns)
    # The row is locked before it is compared, so two loads of one user apply one after the other.
    update = (
        f"UPDATE {table.name} AS t SET {assignments}, updated_at = $2 "  # noqa: S608
        f"FROM (SELECT {columns} FROM {table.name} WHERE user_id = $1 FOR UPDATE) AS old "
        f"WHERE t.user_id = $1 AND t.updated_at <= $2 "
        f"RETURNING ({old}) IS DISTINCT FROM ({new}) AS changed"
    )
    insert = (
        f"INSERT INTO {table.name} (user_id, updated_at, {columns}) "  # noqa: S608
        f"VALUES ($1, $2, {', '.join(params)}) ON CONFLICT (user_id) DO NOTHING RETURNING true"
    )
    arguments = (user_id, as_of, *(values.get(column) for column in table.columns))
    changed = await conn.fetchval(update, *arguments)
    if changed is None:
        if await conn.fetchval(insert, *arguments):
            return "create"
        changed = await conn.fetchval(update, *arguments)  # inserted by another load meanwhile
    if changed is None:
        return "stale"
    return "update" if changed else "unchanged"
