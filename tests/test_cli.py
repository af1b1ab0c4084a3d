"""`python -m app ingest`: local and S3 dry runs (which write nothing) and real ingests, by exit code."""

import gzip
import secrets
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("name", "content", "code", "expected"),
    [
        ("ok.csv", b"id,name\n1,Ada\n2,Grace\n", 0, "records: 2  rejected: 0"),
        ("ragged.csv", b"id,name\n1,Ada\n2\n", 1, "line 3: 1 fields, header has 2"),
        ("broken.jsonl", b'{"a": 1}\n{"a": \n', 1, "parse_error: line 2"),
        ("data.jsonl.gz", gzip.compress(b'{"a": 1}\n'), 0, "records: 1  rejected: 0"),
        (
            "users/personal/batch.csv",
            b"user_id,name,email\nu1,Ada,ada@example.com\nu2,B,bad\n",
            1,
            "line 3: email",
        ),
    ],
)
def test_local_dry_run_reports_counts_and_errors(
    tmp_path: Path, name: str, content: bytes, code: int, expected: str
) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    result = run_cli(["ingest", name, "--dry-run"], {}, tmp_path)
    assert result.returncode == code, result.stderr
    assert expected in result.stdout


def test_local_file_without_dry_run_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"a\n1\n")
    result = run_cli(["ingest", "a.csv"], {}, tmp_path)
    assert result.returncode == 2
    assert "--dry-run" in result.stderr


def test_bad_s3_source_is_a_usage_error(tmp_path: Path, service_env: dict[str, str]) -> None:
    result = run_cli(["ingest", "s3://only-bucket"], service_env, tmp_path)
    assert result.returncode == 2


async def test_s3_dry_run_writes_nothing_then_ingest_loads_once(
    app: Any, tmp_path: Path, service_env: dict[str, str], s3: Any, db: asyncpg.Connection
) -> None:
    bucket = f"cli-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/rows.jsonl", Body=b'{"a": 1}\n{"a": 2}\n')
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}
    checked = run_cli(["ingest", f"s3://{bucket}/in/rows.jsonl", "--dry-run"], env, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "records: 2  rejected: 0" in checked.stdout
    assert await db.fetchval("SELECT count(*) FROM file_processing_log WHERE bucket = $1", bucket) == 0

    loaded = run_cli(["ingest", f"s3://{bucket}/in/rows.jsonl"], env, tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("completed") and "rows_inserted=2" in loaded.stdout
    row = await db.fetchrow("SELECT status, trigger FROM file_processing_log WHERE bucket = $1", bucket)
    assert dict(row) == {"status": "completed", "trigger": "cli"}
    again = run_cli(["ingest", f"s3://{bucket}/in/rows.jsonl"], env, tmp_path)
    assert again.stdout.startswith("duplicate")
    assert await db.fetchval("SELECT count(*) FROM processed_data WHERE bucket = $1", bucket) == 2


async def test_files_retry_and_report_commands(
    app: Any, tmp_path: Path, service_env: dict[str, str], s3: Any, db: asyncpg.Connection
) -> None:
    bucket = f"cli-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}
    missing = run_cli(["ingest", f"s3://{bucket}/late.jsonl"], env, tmp_path)
    assert missing.returncode == 1
    assert "error_code=object_missing" in missing.stdout
    file_id = await db.fetchval("SELECT id FROM file_processing_log WHERE bucket = $1", bucket)

    listed = run_cli(["files", "--status", "failed", "--limit", "200"], env, tmp_path)
    assert listed.returncode == 0
    assert f"s3://{bucket}/late.jsonl" in listed.stdout

    s3.put_object(Bucket=bucket, Key="late.jsonl", Body=b'{"late": 1}\n')
    retried = run_cli(["retry", str(file_id)], env, tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"completed file_id={file_id}")
    assert run_cli(["retry", str(file_id)], env, tmp_path).returncode == 1  # not failed any more

    report = run_cli(["report"], env, tmp_path)
    assert report.returncode == 0
    assert '"files_by_status"' in report.stdout
    bad_date = run_cli(["report", "--date", "2026-02-30"], env, tmp_path)
    assert bad_date.returncode == 2
    assert "Traceback" not in bad_date.stderr


async def test_redrive_command_moves_dead_letters(
    app: Any, tmp_path: Path, service_env: dict[str, str], sqs: Any, aws_resources: dict[str, str]
) -> None:
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}
    sqs.send_message(
        QueueUrl=aws_resources["SQS_DLQ_URL"], MessageBody='{"Service": "Amazon S3", "Event": "s3:TestEvent"}'
    )
    result = run_cli(["redrive", "--limit", "1000"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    moved = int(result.stdout.split()[0].removeprefix("moved="))
    assert moved >= 1


async def test_ingest_shows_a_progress_bar_when_asked(
    app: Any, tmp_path: Path, service_env: dict[str, str], s3: Any
) -> None:
    bucket = f"cli-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    body = b"".join(b'{"n": %d}\n' % n for n in range(50_000))
    s3.put_object(Bucket=bucket, Key="big.jsonl", Body=body)
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}

    shown = run_cli(["ingest", f"s3://{bucket}/big.jsonl", "--progress"], env, tmp_path)

    assert shown.returncode == 0, shown.stderr
    assert "100%" in shown.stderr and "big.jsonl" in shown.stderr
    assert "rows_inserted=50000" in shown.stdout
    # Not a terminal and not asked: scripts get no bar.
    quiet = run_cli(["ingest", f"s3://{bucket}/big.jsonl"], env, tmp_path)
    assert quiet.stdout.startswith("duplicate") and quiet.stderr == ""


async def test_reconcile_command_ingests_what_no_event_announced(
    app: Any, tmp_path: Path, service_env: dict[str, str], s3: Any, db: asyncpg.Connection
) -> None:
    bucket = f"cli-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="lost/a.jsonl", Body=b'{"a": 1}\n')
    s3.put_object(Bucket=bucket, Key="lost/b.jsonl", Body=b"{oops\n")
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}

    swept = run_cli(["reconcile", f"s3://{bucket}/lost/", "--min-age", "0"], env, tmp_path)

    assert swept.returncode == 1, swept.stderr  # one of the files failed
    assert swept.stdout.strip() == "listed=2 unseen=2 completed=1 failed=1"
    rows = await db.fetch("SELECT status, trigger FROM file_processing_log WHERE bucket = $1", bucket)
    assert sorted(tuple(row) for row in rows) == [("completed", "reconcile"), ("failed", "reconcile")]
    again = run_cli(["reconcile", f"s3://{bucket}/lost/", "--min-age", "0"], env, tmp_path)
    assert (again.returncode, again.stdout.strip()) == (0, "listed=2 unseen=0")
    bad = run_cli(["reconcile", "s3://Not_A_Bucket/x"], env, tmp_path)
    assert bad.returncode == 2
    assert "expected s3://bucket/prefix" in bad.stderr


async def test_report_publish_writes_the_report_to_s3(
    app: Any, tmp_path: Path, service_env: dict[str, str], s3: Any, bucket: str
) -> None:
    env = {**service_env, "SQS_CONSUMER_ENABLED": "false"}

    published = run_cli(["report", "--date", "1998-07-01", "--publish"], env, tmp_path)

    assert published.returncode == 0, published.stderr
    assert '"files": 0' in published.stdout
    assert f"s3://{bucket}/reports/1998-07-01/ingestion-report.html" in published.stderr
    stored = s3.get_object(Bucket=bucket, Key="reports/1998-07-01/ingestion-report.json")
    assert b'"date": "1998-07-01"' in stored["Body"].read()


async def test_files_command_escapes_control_characters_in_keys(
    app: Any, tmp_path: Path, service_env: dict[str, str], db: asyncpg.Connection
) -> None:
    # A row from before events were checked: its key must not reach a terminal as escape sequences.
    bucket = f"cli-{secrets.token_hex(4)}"
    await db.execute(
        "INSERT INTO file_processing_log (bucket, key, etag, status, trigger) "
        "VALUES ($1, $2, 'e', 'failed', 'sqs')",
        bucket,
        "evil\x1b]0;pwned\x07\x9b31m.jsonl",
    )
    listed = run_cli(
        ["files", "--key-prefix", "evil"], {**service_env, "SQS_CONSUMER_ENABLED": "false"}, tmp_path
    )
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if bucket in line)
    assert line.endswith(f"s3://{bucket}/evil\\x1b]0;pwned\\x07\\x9b31m.jsonl")
    assert not any(ord(char) < 0x20 and char != "\t" for char in line)


def test_ingest_of_a_key_with_a_control_character_is_a_usage_error(
    tmp_path: Path, service_env: dict[str, str]
) -> None:
    result = run_cli(["ingest", "s3://some-bucket/bad\x01key.jsonl"], service_env, tmp_path)
    assert result.returncode == 2
    assert "control characters" in result.stderr
