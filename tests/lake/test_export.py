"""The lake (issue 19): loaded files' rows appear in the Iceberg table exactly once, through the outbox."""

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.core.config import Settings
from app.lake.catalog import lake_table, open_catalog
from app.lake.exporter import FILE_ID_PROPERTY, LakeExporter
from tests.aws import boto_client
from tests.helpers import ROOT, bearer, eventually, isolated_env, resources, run_cli, started_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def lake_database(new_database: Any) -> str:
    """A database of the test's own: its outbox and its SQL catalog are nobody else's."""
    return str(new_database())


@pytest.fixture
def lake_settings(settings: Settings, lake_database: str, moto_url: str) -> Settings:
    """A bucket of files without event notifications (nothing reaches the suite's queue), a warehouse
    bucket, a namespace of the test's own; the exporter looks every 0.2 s."""
    run = secrets.token_hex(4)
    s3 = boto_client("s3", moto_url)
    for bucket in (f"lake-src-{run}", f"lake-wh-{run}"):
        s3.create_bucket(Bucket=bucket)
    return settings.model_copy(
        update={
            "database_url": lake_database,
            "s3_bucket_name": f"lake-src-{run}",
            "lake_warehouse": f"s3://lake-wh-{run}/warehouse",
            "lake_namespace": f"test_{run}",
            "lake_export_interval_seconds": 0.2,
        }
    )


@pytest.fixture
async def lake_app(lake_settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with started_app(lake_settings) as started:
        yield started


def put_jsonl(moto_url: str, bucket: str, key: str, records: list[dict[str, Any]]) -> None:
    body = "".join(json.dumps(record) + "\n" for record in records).encode()
    boto_client("s3", moto_url).put_object(Bucket=bucket, Key=key, Body=body)


async def ingest(http: httpx.AsyncClient, key: str) -> int:
    response = await http.post("/ingestion/files", json={"key": key}, headers=bearer())
    assert response.status_code == 202, response.text
    file_id = int(response.json()["file_id"])

    async def completed() -> bool:
        body = (await http.get(f"/ingestion/files/{file_id}", headers=bearer())).json()
        assert body["status"] not in ("failed", "rejected"), body
        return bool(body["status"] == "completed")

    await eventually(completed, message=f"file {file_id} completed")
    return file_id


def lake_rows(settings: Settings, file_id: int) -> list[tuple[int, str, Any]]:
    """(record_index, row_hash, record) of the file in the Iceberg table, read back with pyiceberg."""
    table = lake_table(open_catalog(settings), settings.lake_namespace, "processed_data")
    found = table.scan(row_filter=f"file_id == {file_id}").to_arrow().to_pylist()
    return sorted((row["record_index"], row["row_hash"], json.loads(row["record"])) for row in found)


async def postgres_rows(app: FastAPI, file_id: int) -> list[tuple[int, str, Any]]:
    async with resources(app).db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT record_index, row_hash, data FROM processed_data WHERE file_id = $1", file_id
        )
    return sorted((row["record_index"], row["row_hash"], row["data"]) for row in rows)


async def exported(app: FastAPI, file_id: int) -> dict[str, Any] | None:
    async with resources(app).db.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM lake_exports WHERE file_id = $1", file_id)
    return None if row is None or row["exported_at"] is None else dict(row)


async def test_a_loaded_file_lands_in_the_lake_with_exactly_the_rows_postgresql_has(
    lake_app: tuple[FastAPI, httpx.AsyncClient], lake_settings: Settings, moto_url: str
) -> None:
    app, http = lake_app
    records = [{"n": n, "name": f"row {n}", "amount": "12.50", "tags": ["a", "b"]} for n in range(40)]
    records.append(records[3])  # a duplicate line: stored once, exported once
    put_jsonl(moto_url, lake_settings.s3_bucket_name, "lake/first.jsonl", records)
    file_id = await ingest(http, "lake/first.jsonl")

    export = await eventually(lambda: exported(app, file_id), message="the file's export")
    in_postgres = await postgres_rows(app, file_id)
    assert len(in_postgres) == 40
    assert await asyncio.to_thread(lake_rows, lake_settings, file_id) == in_postgres
    assert export["rows_exported"] == 40 and export["snapshot_id"] is not None

    # The object replaced by the same records in another order: a new file, no new rows, nothing to export.
    put_jsonl(moto_url, lake_settings.s3_bucket_name, "lake/first.jsonl", records[::-1])
    again = await ingest(http, "lake/first.jsonl")
    assert again != file_id
    async with resources(app).db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM lake_exports WHERE file_id = $1", again) == 0


async def test_a_crash_between_the_lake_commit_and_the_outbox_update_adds_no_duplicate(
    lake_app: tuple[FastAPI, httpx.AsyncClient], lake_settings: Settings, moto_url: str
) -> None:
    app, http = lake_app
    put_jsonl(moto_url, lake_settings.s3_bucket_name, "lake/crash.jsonl", [{"n": n} for n in range(25)])
    file_id = await ingest(http, "lake/crash.jsonl")
    await eventually(lambda: exported(app, file_id), message="the file's export")
    await resources(app).jobs.lake.stop()  # type: ignore[union-attr]  (on: LAKE_WAREHOUSE is set)

    # The state a kill -9 leaves after the Iceberg commit and before the outbox update.
    async with resources(app).db.acquire() as conn:
        await conn.execute(
            "UPDATE lake_exports SET exported_at = NULL, snapshot_id = NULL, rows_exported = NULL "
            "WHERE file_id = $1",
            file_id,
        )
    restarted = LakeExporter(resources(app).db, lake_settings)
    assert await restarted.export_pending() == 1
    export = await exported(app, file_id)
    assert export is not None and export["rows_exported"] is None  # found in the lake, not appended
    assert len(await asyncio.to_thread(lake_rows, lake_settings, file_id)) == 25


async def test_two_exporters_at_once_commit_each_file_once(lake_settings: Settings, moto_url: str) -> None:
    quiet = lake_settings.model_copy(update={"lake_export_interval_seconds": 3600.0})
    async with started_app(quiet) as (app, http):
        await resources(app).jobs.lake.stop()  # type: ignore[union-attr]  (only the two below export)
        files = []
        for n in range(3):
            key = f"lake/pair-{n}.jsonl"
            put_jsonl(moto_url, quiet.s3_bucket_name, key, [{"file": n, "n": i} for i in range(10)])
            files.append(await ingest(http, key))
        detail = (await http.get(f"/ingestion/files/{files[0]}", headers=bearer())).json()
        assert detail["lake_export"]["status"] == "pending", detail
        first, second = LakeExporter(resources(app).db, quiet), LakeExporter(resources(app).db, quiet)
        done = await asyncio.gather(first.export_pending(), second.export_pending())
        assert sorted(done) == [0, 3], done  # one took the lock and every file, the other nothing
        assert await first.export_pending() == 0
        for file_id in files:
            assert await exported(app, file_id) is not None
            assert len(await asyncio.to_thread(lake_rows, quiet, file_id)) == 10
            detail = (await http.get(f"/ingestion/files/{file_id}", headers=bearer())).json()
            assert detail["lake_export"]["status"] == "exported", detail
            assert detail["lake_export"]["rows_exported"] == 10 and detail["lake_export"]["snapshot_id"]


async def test_with_the_lake_off_nothing_is_queued_and_its_libraries_are_not_imported(
    client: httpx.AsyncClient, app: FastAPI, s3: Any, bucket: str
) -> None:
    key = f"lake-off/{secrets.token_hex(4)}.jsonl"
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"n": 1}\n')
    file_id = await ingest(client, key)
    async with resources(app).db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM lake_exports WHERE file_id = $1", file_id) == 0
    probe = (
        "import sys, app.main, app.resources, app.cli; "
        "print(sorted(m for m in ('pyiceberg', 'pyarrow') if m in sys.modules))"
    )
    command = [sys.executable, "-c", probe]
    done = await asyncio.to_thread(subprocess.run, command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    imported = done.stdout.strip()
    assert imported == "[]"


@pytest.mark.parametrize("warehouse", ["lake-bucket/warehouse", "http://lake-bucket/x", "s3://Bad_Bucket/x"])
def test_a_warehouse_that_is_not_an_s3_location_is_refused_naming_the_setting(
    settings: Settings, warehouse: str
) -> None:
    with pytest.raises(ValidationError, match="lake_warehouse"):
        Settings.model_validate({**settings.model_dump(), "lake_warehouse": warehouse})


def lake_env(service_env: dict[str, str], settings: Settings) -> dict[str, str]:
    return {
        **service_env,
        "DATABASE_URL": str(settings.database_url),
        "S3_BUCKET_NAME": settings.s3_bucket_name,
        "LAKE_WAREHOUSE": settings.lake_warehouse or "",
        "LAKE_NAMESPACE": settings.lake_namespace,
    }


async def test_files_loaded_before_the_lake_was_on_are_backfilled_from_the_command_line(
    lake_settings: Settings, service_env: dict[str, str], moto_url: str, tmp_path: Any
) -> None:
    lake_off = lake_settings.model_copy(update={"lake_warehouse": None})
    async with started_app(lake_off) as (app, http):
        put_jsonl(moto_url, lake_settings.s3_bucket_name, "lake/before.jsonl", [{"n": n} for n in range(7)])
        file_id = await ingest(http, "lake/before.jsonl")
        assert await exported(app, file_id) is None

        env = lake_env(service_env, lake_settings)
        done = await asyncio.to_thread(run_cli, ["lake", "status"], env, tmp_path)
        assert (done.returncode, done.stderr.strip()) == (
            1,
            f"no lake table yet in {lake_settings.lake_namespace}: nothing has been exported",
        ), done.stderr
        done = await asyncio.to_thread(run_cli, ["lake", "backfill", "--since", "2000-01-01"], env, tmp_path)
        assert (done.returncode, done.stdout.strip()) == (
            0,
            "queued 1 file(s) loaded since 2000-01-01 for export",
        )
        done = await asyncio.to_thread(run_cli, ["lake", "backfill", "--since", "2000-01-01"], env, tmp_path)
        assert done.stdout.startswith("queued 0 "), done.stdout  # queued once
        done = await asyncio.to_thread(run_cli, ["lake", "export"], env, tmp_path)
        assert (done.returncode, done.stdout.strip()) == (0, "exported 1 file(s)"), done.stderr
        assert len(await asyncio.to_thread(lake_rows, lake_settings, file_id)) == 7
        done = await asyncio.to_thread(run_cli, ["lake", "status"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"table {lake_settings.lake_namespace}.processed_data\t" in done.stdout
        assert "records 7\t" in done.stdout and "exports: pending 0 (failing 0" in done.stdout
        done = await asyncio.to_thread(run_cli, ["lake", "show", "--file-id", str(file_id)], env, tmp_path)
        shown = [json.loads(line) for line in done.stdout.splitlines()]
        assert sorted(json.loads(row["record"])["n"] for row in shown) == list(range(7)), done.stderr
        done = await asyncio.to_thread(run_cli, ["lake", "compact"], env, tmp_path)
        assert done.returncode == 0 and done.stdout.startswith("compacted "), done.stderr

        off = {**env, "LAKE_WAREHOUSE": ""}
        done = await asyncio.to_thread(run_cli, ["lake", "status"], off, tmp_path)
        assert (done.returncode, done.stderr.strip()) == (2, "LAKE_WAREHOUSE is not set: the lake is off")


def test_a_warehouse_among_the_ingested_files_is_refused_unless_its_prefix_is_excluded(
    settings: Settings,
) -> None:
    inside = f"s3://{settings.s3_bucket_name}/lake"
    with pytest.raises(ValidationError, match="LAKE_WAREHOUSE is in S3_BUCKET_NAME"):
        Settings.model_validate({**settings.model_dump(), "lake_warehouse": inside})
    excluded = {
        **settings.model_dump(),
        "lake_warehouse": inside,
        "ingest_exclude_prefixes": ["reports/", "lake/"],
    }
    assert Settings.model_validate(excluded).lake_enabled


async def test_compaction_keeps_the_rows_and_the_exactly_once_check_while_cutting_the_file_count(
    lake_settings: Settings, moto_url: str
) -> None:
    quiet = lake_settings.model_copy(
        update={"lake_export_interval_seconds": 3600.0, "lake_export_batch_rows": 4}
    )
    async with started_app(quiet) as (app, http):
        await resources(app).jobs.lake.stop()  # type: ignore[union-attr]  (the test exports)
        files = []
        for n in range(4):
            key = f"lake/small-{n}.jsonl"
            put_jsonl(moto_url, quiet.s3_bucket_name, key, [{"file": n, "n": i} for i in range(10)])
            files.append(await ingest(http, key))
        exporter = LakeExporter(resources(app).db, quiet)
        assert await exporter.export_pending() == 4
        table = lake_table(open_catalog(quiet), quiet.lake_namespace, "processed_data")
        before = sorted(
            table.scan().to_arrow().to_pylist(), key=lambda row: (row["file_id"], row["record_index"])
        )
        files_before = len(table.inspect.files())
        assert files_before == 12  # 3 Parquet files of at most 4 rows for each 10-row file

        [result] = await exporter.compact_now()
        table.refresh()
        after = sorted(
            table.scan().to_arrow().to_pylist(), key=lambda row: (row["file_id"], row["record_index"])
        )
        assert after == before
        assert len(table.inspect.files()) == result.files_after < files_before
        assert (result.groups, result.files_before, result.rows) == (1, 12, 40)

        # A crash before the outbox update, found after compaction: still no duplicate.
        async with resources(app).db.acquire() as conn:
            await conn.execute("UPDATE lake_exports SET exported_at = NULL WHERE file_id = $1", files[1])
        assert await exporter.export_pending() == 1
        assert len(await asyncio.to_thread(lake_rows, quiet, files[1])) == 10


async def test_an_exporter_killed_between_the_lake_commit_and_the_outbox_update_duplicates_nothing(
    lake_settings: Settings, service_env: dict[str, str], moto_url: str, tmp_path: Any
) -> None:
    """A real `python -m app lake export` process, SIGKILLed after its Iceberg commit and before its outbox
    update lands: the test holds the outbox row's lock, so the exporter's update waits exactly there."""
    quiet = lake_settings.model_copy(update={"lake_export_interval_seconds": 3600.0})
    async with started_app(quiet) as (app, http):
        await resources(app).jobs.lake.stop()  # type: ignore[union-attr]  (the processes below export)
        put_jsonl(moto_url, quiet.s3_bucket_name, "lake/killed.jsonl", [{"n": n} for n in range(30)])
        file_id = await ingest(http, "lake/killed.jsonl")
        env = isolated_env(lake_env(service_env, quiet))
        async with resources(app).db.acquire() as holder, holder.transaction():
            await holder.execute("SELECT 1 FROM lake_exports WHERE file_id = $1 FOR UPDATE", file_id)
            exporter = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app",
                "lake",
                "export",
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                table = lake_table(open_catalog(quiet), quiet.lake_namespace, "processed_data")

                def committed() -> bool:
                    assert exporter.returncode is None, "the exporter ended before its outbox update"
                    table.refresh()
                    return any(
                        s.summary and s.summary.get(FILE_ID_PROPERTY) == str(file_id)
                        for s in table.snapshots()
                    )

                await eventually(
                    lambda: asyncio.to_thread(committed), message="the exporter's Iceberg commit"
                )
                waiting = (
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE query LIKE '%UPDATE lake_exports SET exported_at%' AND wait_event_type = 'Lock'"
                )
                update = await eventually(
                    lambda: holder.fetchval(waiting), message="its outbox update, waiting"
                )
            finally:
                exporter.kill()
                await exporter.wait()
            # That update, sent before the kill, would still complete once the lock is free: end its backend
            # too, so it never lands (the state of a crash before it was sent).
            assert await holder.fetchval("SELECT pg_terminate_backend($1)", update)
        assert await exported(app, file_id) is None  # the update never happened

        done = await asyncio.to_thread(run_cli, ["lake", "export"], lake_env(service_env, quiet), tmp_path)
        assert (done.returncode, done.stdout.strip()) == (0, "exported 1 file(s)"), done.stderr
        export = await exported(app, file_id)
        assert export is not None and export["rows_exported"] is None  # found in the lake, not appended
        assert len(await asyncio.to_thread(lake_rows, quiet, file_id)) == 30


async def test_the_glue_catalog_takes_an_export_too(lake_settings: Settings, moto_url: str) -> None:
    """A single-writer smoke test: moto's Glue does not check the table version on UpdateTable, so the
    concurrency tests above run on the SQL catalog."""
    glue = lake_settings.model_copy(update={"lake_catalog": "glue"})
    async with started_app(glue) as (app, http):
        put_jsonl(moto_url, glue.s3_bucket_name, "lake/glue.jsonl", [{"n": n} for n in range(12)])
        file_id = await ingest(http, "lake/glue.jsonl")
        await eventually(lambda: exported(app, file_id), message="the file's export")
        assert await asyncio.to_thread(lake_rows, glue, file_id) == await postgres_rows(app, file_id)
    tables = boto_client("glue", moto_url).get_tables(DatabaseName=glue.lake_namespace)["TableList"]
    assert [table["Name"] for table in tables] == ["processed_data"]
    assert tables[0]["Parameters"]["table_type"].upper() == "ICEBERG"


async def test_an_export_that_fails_is_counted_retried_and_does_not_hold_up_the_others(
    lake_settings: Settings, moto_url: str
) -> None:
    """The warehouse's bucket is gone (S3 answers NoSuchBucket): the file stays pending, its failed attempts
    and the error's class are on its detail, and the turn goes on."""
    gone = lake_settings.model_copy(
        update={
            "lake_warehouse": "s3://lake-no-such-bucket/warehouse",
            "lake_export_interval_seconds": 3600.0,
        }
    )
    async with started_app(gone) as (app, http):
        await resources(app).jobs.lake.stop()  # type: ignore[union-attr]  (the test exports)
        put_jsonl(moto_url, gone.s3_bucket_name, "lake/nowhere.jsonl", [{"n": 1}])
        file_id = await ingest(http, "lake/nowhere.jsonl")
        exporter = LakeExporter(resources(app).db, gone)
        assert await exporter.export_pending() == 0
        assert await exporter.export_pending() == 0
        detail = (await http.get(f"/ingestion/files/{file_id}", headers=bearer())).json()["lake_export"]
        assert detail["status"] == "pending" and detail["attempts"] == 2 and detail["last_error"], detail
