"""Applying sources: a typed table created, compatible changes applied to it, incompatible ones refused
with what to do instead; idempotent; through the API (ingestion:admin) and `python -m app sources apply`."""

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from app.sources import service
from tests.helpers import bearer, run_cli
from tests.sources.conftest import ApplySource, admin, source_name


def things(name: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "tenant": "acme",
        "prefix": f"{name}/",
        "format": "csv",
        "columns": [
            {"name": "id", "type": "integer", "required": True},
            {"name": "label", "type": "text", "required": True},
            {"name": "amount", "type": "numeric(10,2)"},
        ],
        "key": ["id"],
    }
    spec.update(changes)
    return spec


async def columns(db: asyncpg.Connection, name: str) -> dict[str, tuple[str, bool]]:
    rows = await db.fetch(
        """
        SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull FROM pg_attribute
        WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_%'
        """,
        f'sources."{name}"',
    )
    return {row["attname"]: (row["type"], row["attnotnull"]) for row in rows}


async def test_a_new_source_gets_its_typed_table_and_a_second_apply_changes_nothing(
    apply_source: ApplySource, client: httpx.AsyncClient, db: asyncpg.Connection, settings: Any
) -> None:
    name = source_name("things")
    created = await apply_source(things(name))
    assert (created["action"], created["version"]) == ("created", 1)
    assert await columns(db, name) == {
        "id": ("integer", True),
        "label": ("text", True),
        "amount": ("numeric(10,2)", False),
    }
    again = await apply_source(things(name))
    assert (again["action"], again["version"], again["ddl"]) == ("unchanged", 1, [])

    read = await client.get(f"/ingestion/sources/{name}", headers=bearer(["ingestion:read"]))
    assert read.status_code == 200
    assert read.json()["spec"]["bucket"] == settings.s3_bucket_name  # the default bucket, filled in
    listed = await client.get("/ingestion/sources", headers=bearer(["ingestion:read"]))
    assert name in [source["name"] for source in listed.json()]


async def test_compatible_changes_are_applied_to_the_table_as_a_new_version(
    apply_source: ApplySource, db: asyncpg.Connection
) -> None:
    name = source_name("things")
    await apply_source(things(name))
    await db.execute(f'INSERT INTO sources."{name}" VALUES (1, 1, now(), $1, now(), 7, $2, 1.5)', "h", "kept")
    widened = things(
        name,
        columns=[
            {"name": "id", "type": "bigint", "required": True},  # wider
            {"name": "label", "type": "text"},  # no longer required
            {"name": "amount", "type": "numeric(14,4)"},  # more digits on both sides
            {"name": "note", "type": "text"},  # new and nullable
        ],
    )
    changed = await apply_source(widened)
    assert (changed["action"], changed["version"]) == ("changed", 2)
    assert await columns(db, name) == {
        "id": ("bigint", True),
        "label": ("text", False),
        "amount": ("numeric(14,4)", False),
        "note": ("text", False),
    }
    row = await db.fetchrow(f'SELECT id, label, amount::text, note FROM sources."{name}"')
    assert tuple(row) == (7, "kept", "1.5000", None)  # the landed row is intact


async def test_incompatible_changes_are_refused_and_say_to_use_a_new_source(
    apply_source: ApplySource, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    name = source_name("things")
    await apply_source(things(name))
    base = things(name)["columns"]
    for change, problem in [
        ({"columns": [{**base[0], "type": "text"}, *base[1:]]}, "changes type from integer to text"),
        ({"columns": [base[0], base[1], {**base[2], "type": "numeric(6,2)"}]}, "not wider"),
        ({"columns": [base[0], base[2]]}, "required column label is dropped"),
        (
            {"columns": [*base, {"name": "must", "type": "text", "required": True}]},
            "new column must is required",
        ),
        ({"columns": [base[0], base[1], {**base[2], "required": True}]}, "amount becomes required"),
        ({"key": ["id", "label"]}, "the key changes"),
        ({"key": []}, "the key changes"),
    ]:
        response = await client.put(
            f"/ingestion/sources/{name}", json=things(name, **change), headers=admin()
        )
        assert response.status_code == 422, (change, response.text)
        detail = response.json()["detail"]
        assert problem in detail and f"{name}_v2" in detail, detail
    assert (await client.get(f"/ingestion/sources/{name}", headers=admin())).json()["version"] == 1
    assert await columns(db, name) == {
        "id": ("integer", True),
        "label": ("text", True),
        "amount": ("numeric(10,2)", False),
    }


async def test_only_an_admin_changes_sources_and_bad_bodies_name_the_field(
    apply_source: ApplySource, client: httpx.AsyncClient
) -> None:
    name = source_name("things")
    writer = bearer(["ingestion:write", "ingestion:read"])
    assert (
        await client.put(f"/ingestion/sources/{name}", json=things(name), headers=writer)
    ).status_code == 403
    assert (await client.delete(f"/ingestion/sources/{name}", headers=writer)).status_code == 403

    other = await client.put(f"/ingestion/sources/{name}", json=things("other_name"), headers=admin())
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "name"
    bad_type = await client.put(
        f"/ingestion/sources/{name}",
        json=things(name, columns=[{"name": "id", "type": "money", "required": True}]),
        headers=admin(),
    )
    assert bad_type.status_code == 422
    assert bad_type.headers["content-type"] == "application/problem+json"
    assert "columns.0.type" in {error["field"] for error in bad_type.json()["errors"]}
    assert (await client.get("/ingestion/sources/Bad-Name", headers=admin())).status_code == 422


async def test_two_sources_cannot_take_the_same_files(apply_source: ApplySource) -> None:
    first = source_name("things")
    await apply_source(things(first))
    second = source_name("things")
    refused = await apply_source(things(second, prefix=f"{first}/"), status=422)
    assert f"source {first} already takes the files" in refused["detail"]


async def test_a_deleted_source_keeps_its_table_and_continues_its_versions(
    apply_source: ApplySource, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    name = source_name("things")
    await apply_source(things(name))
    assert (await client.delete(f"/ingestion/sources/{name}", headers=admin())).status_code == 204
    assert (await client.get(f"/ingestion/sources/{name}", headers=admin())).status_code == 404
    assert (await client.delete(f"/ingestion/sources/{name}", headers=admin())).status_code == 404
    assert await columns(db, name)  # the table and its rows stay
    again = await apply_source(things(name))
    assert (again["action"], again["version"]) == ("created", 2)


async def test_the_cli_applies_a_folder_all_or_nothing_and_prints_the_plan(
    tmp_path: Path, service_env: dict[str, str], db: asyncpg.Connection
) -> None:
    good, bad = source_name("things"), source_name("things")
    folder = tmp_path / "sources"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump(things(good)))
    (folder / "b.json").write_text(yaml.safe_dump(things(bad)))
    (folder / "notes.txt").write_text("not a source")

    plan = run_cli(["sources", "apply", "--plan", str(folder)], service_env, tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert f"created\t{good}\tversion 1" in plan.stdout and "plan only" in plan.stdout
    assert await columns(db, good) == {}  # nothing applied

    applied = run_cli(["sources", "apply", str(folder)], service_env, tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert f"created\t{bad}\tversion 1" in applied.stdout
    assert f'CREATE TABLE sources."{good}"' in applied.stdout
    again = run_cli(["sources", "apply", str(folder)], service_env, tmp_path)
    assert f"unchanged\t{good}\tversion 1" in again.stdout

    # One refused change: nothing of the run is applied, and the message says why.
    (folder / "a.yaml").write_text(yaml.safe_dump(things(good, key=[])))
    (folder / "b.json").write_text(
        yaml.safe_dump(things(bad, columns=[*things(bad)["columns"], {"name": "x", "type": "text"}]))
    )
    refused = run_cli(["sources", "apply", str(folder)], service_env, tmp_path)
    assert refused.returncode == 1
    assert "the key changes" in refused.stderr
    assert "x" not in await columns(db, bad)

    (folder / "a.yaml").write_text("name: [unclosed")
    broken = run_cli(["sources", "apply", str(folder / "a.yaml")], service_env, tmp_path)
    assert broken.returncode == 1 and "a.yaml: not valid YAML or JSON" in broken.stderr


async def test_a_change_waits_briefly_for_a_loading_file_then_says_it_is_busy(
    apply_source: ApplySource,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = source_name("things")
    await apply_source(things(name))
    monkeypatch.setattr(service, "DDL_LOCK_TIMEOUT_SECONDS", 0.5)
    widened = things(name, columns=[*things(name)["columns"], {"name": "note", "type": "text"}])
    # A load in flight: its transaction has written to the table and holds it until it commits.
    loading = await asyncpg.connect(str(settings.database_url))
    try:
        async with loading.transaction():
            await loading.execute(
                f'INSERT INTO sources."{name}" VALUES (1, 1, now(), $1, now(), 7, $2, 1.5)', "h", "x"
            )
            async with asyncio.timeout(10):  # without a lock timeout the change would wait for ever
                busy = await client.put(f"/ingestion/sources/{name}", json=widened, headers=admin())
            assert busy.status_code == 503, busy.text
            assert "is busy (a file of it is loading)" in busy.json()["detail"]
            assert "retry-after" in busy.headers
        # Nothing was changed meanwhile, and once the load has committed the change goes through.
        assert "note" not in await columns(db, name)
        assert (await apply_source(widened))["action"] == "changed"
    finally:
        await loading.close()
