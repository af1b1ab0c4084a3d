"""Command line: `python -m app serve | migrate | ingest | files | retry | redrive | report | token`.

Exit codes: 0 done, 1 the file failed (or a dry run found problems), 2 bad usage or settings,
3 a transient failure (retry later).
"""

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from app.core.config import (
    EXIT_CONFIG,
    EXIT_TRANSIENT,
    AuthSettings,
    DatabaseSettings,
    IngestSettings,
    Settings,
    SettingsError,
    load,
)
from app.core.security import SCOPES, mint_token

EXIT_OK = 0
EXIT_FAILURE = 1


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.core.logging import configure_logging

    settings = load(Settings)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_config=None,
        access_log=False,
    )
    return EXIT_OK


async def _migrate() -> list[str]:
    from app.core import db

    settings = load(DatabaseSettings)
    pool = await db.create_pool(settings)
    try:
        async with pool.acquire() as conn:
            return await db.apply_migrations(conn)
    finally:
        await pool.close()


def _token(args: argparse.Namespace) -> int:
    settings = load(AuthSettings)
    if settings.jwt_secret is None:
        raise SettingsError("invalid configuration: JWT_SECRET: required to mint a token")
    scopes = args.scopes.split()
    unknown = sorted(set(scopes) - SCOPES.keys())
    if unknown:
        print(f"unknown scopes: {' '.join(unknown)} (known: {' '.join(SCOPES)})", file=sys.stderr)
        return EXIT_CONFIG
    print(
        mint_token(
            settings.jwt_secret.get_secret_value(),
            subject=args.subject,
            scopes=scopes,
            ttl_seconds=args.ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return EXIT_OK


class _LocalFile:
    """A local file as a ByteSource for the parsers."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")

    async def read(self, n: int = -1) -> bytes:
        return self._file.read(n)

    def close(self) -> None:
        self._file.close()


def _print_dry_run(result: Any) -> int:
    print(f"records: {result.records}  rejected: {result.rejected}  sha256: {result.sha256}")
    for error in result.errors:
        print(f"  {error}")
    return EXIT_OK if result.rejected == 0 else EXIT_FAILURE


async def _ingest(args: argparse.Namespace) -> int:
    from app.ingestion.loader import dry_run
    from app.ingestion.parsers import ParseError

    source: str = args.source
    if not source.startswith("s3://"):
        if not args.dry_run:
            print("local files are only checked (--dry-run); upload them to ingest", file=sys.stderr)
            return EXIT_CONFIG
        local = _LocalFile(Path(source))
        try:
            # The path stands for the key: users/personal/x.csv is checked as a personal-records file.
            return _print_dry_run(await dry_run(local, Path(source).as_posix(), load(IngestSettings)))
        except ParseError as exc:
            print(f"{exc.code}: {exc.message}")
            return EXIT_FAILURE
        finally:
            local.close()
    bucket, _, key = source.removeprefix("s3://").partition("/")
    if not bucket or not key:
        print("expected s3://bucket/key", file=sys.stderr)
        return EXIT_CONFIG
    return await _ingest_s3(bucket, key, dry=args.dry_run)


@asynccontextmanager
async def _resources() -> AsyncIterator[tuple[Settings, Any, Any]]:
    """Settings, a database pool and the AWS clients, for commands that work like the service."""
    from app.core import aws, db

    settings = load(Settings)
    async with AsyncExitStack() as stack:
        clients = await aws.open_clients(settings, stack)
        pool = await db.create_pool(settings)
        stack.push_async_callback(pool.close)
        yield settings, pool, clients


async def _files(args: argparse.Namespace) -> int:
    from app.ingestion import repository

    async with _resources() as (_, pool, _clients), pool.acquire() as conn:
        rows = await repository.list_files(
            conn, status=args.status, key_prefix=args.key_prefix, since=None, after=None, limit=args.limit
        )
    for row in rows:
        print(
            f"{row.id}\t{row.status}\t{row.created_at:%Y-%m-%dT%H:%M:%S}\t{row.rows_inserted}\t"
            f"{row.error_code or '-'}\ts3://{row.bucket}/{row.key}"
        )
    return EXIT_OK


async def _retry(args: argparse.Namespace) -> int:
    from app.ingestion import repository
    from app.ingestion.envelopes import ObjectRef
    from app.ingestion.loader import Ingestor, IngestOutcome, Transient

    async with _resources() as (settings, pool, clients):
        async with pool.acquire() as conn:
            row = await repository.reopen_failed(conn, args.file_id)
        if row is None:
            print(f"file {args.file_id} does not exist or is not failed", file=sys.stderr)
            return EXIT_FAILURE
        ingestor = Ingestor(pool, lambda _bucket: clients.s3, settings)
        ref = ObjectRef(row.bucket, row.key, row.version_id, row.etag, row.size_bytes)
        try:
            claimed = await ingestor.claim(ref, "cli", resolve=False)
            outcome = claimed if isinstance(claimed, IngestOutcome) else await ingestor.load(claimed)
        except Transient as exc:
            print(f"transient failure, retry later: {exc}", file=sys.stderr)
            return EXIT_TRANSIENT
    print(f"{outcome.status} file_id={outcome.file_id} error_code={outcome.error_code}")
    return EXIT_FAILURE if outcome.status == "failed" else EXIT_OK


async def _redrive(args: argparse.Namespace) -> int:
    from app.ingestion import service
    from app.ingestion.consumer import find_dead_letter_queue

    async with _resources() as (settings, _pool, clients):
        source = str(settings.sqs_queue_url)
        dlq = await find_dead_letter_queue(clients.sqs, source)
        if dlq is None:
            print("the queue has no dead-letter queue (no RedrivePolicy)", file=sys.stderr)
            return EXIT_CONFIG
        result = await service.redrive(clients.sqs, source, dlq, args.limit)
    print(f"moved={result.moved} failed={result.failed}")
    return EXIT_OK if result.failed == 0 else EXIT_FAILURE


async def _report(args: argparse.Namespace) -> int:
    from app.ingestion import repository

    day = args.date or datetime.now(UTC).date()
    async with _resources() as (_, pool, _clients), pool.acquire() as conn:
        report = await repository.daily_report(conn, day)
    print(report.model_dump_json(indent=2))
    return EXIT_OK


async def _ingest_s3(bucket: str, key: str, *, dry: bool) -> int:
    from app.ingestion.envelopes import ObjectRef
    from app.ingestion.loader import Ingestor, Transient, dry_run
    from app.ingestion.parsers import ParseError

    async with _resources() as (settings, pool, clients):
        if dry:
            response = await clients.s3.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as _:
                try:
                    return _print_dry_run(await dry_run(response["Body"], key, settings))
                except ParseError as exc:
                    print(f"{exc.code}: {exc.message}")
                    return EXIT_FAILURE
        ingestor = Ingestor(pool, lambda _bucket: clients.s3, settings)
        try:
            outcome = await ingestor.ingest(ObjectRef(bucket, key, None, None, None), "cli")
        except Transient as exc:
            print(f"transient failure, retry later: {exc}", file=sys.stderr)
            return EXIT_TRANSIENT
    counts = outcome.counts
    print(
        f"{outcome.status} file_id={outcome.file_id} rows_read={counts.rows_read} "
        f"rows_inserted={counts.rows_inserted} rows_skipped={counts.rows_skipped} "
        f"rows_rejected={counts.rows_rejected} error_code={outcome.error_code}"
    )
    return EXIT_FAILURE if outcome.status == "failed" else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API and the consumer under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    serve.add_argument("--graceful-timeout", type=int, default=25)

    commands.add_parser("migrate", help="apply pending database migrations and exit")

    ingest = commands.add_parser(
        "ingest", help="ingest s3://bucket/key now (trigger cli), or check a file with --dry-run"
    )
    ingest.add_argument("source", help="s3://bucket/key, or a local path (with --dry-run)")
    ingest.add_argument("--dry-run", action="store_true", help="parse and validate; write nothing")

    files = commands.add_parser("files", help="list the processing log, newest first")
    files.add_argument("--status", choices=["pending", "processing", "completed", "failed", "skipped"])
    files.add_argument("--key-prefix")
    files.add_argument("--limit", type=int, default=50)

    retry = commands.add_parser("retry", help="re-run a failed file now")
    retry.add_argument("file_id", type=int)

    redrive = commands.add_parser("redrive", help="move dead-lettered messages back to the queue")
    redrive.add_argument("--limit", type=int, default=1000)

    report = commands.add_parser("report", help="the daily ingestion summary (UTC) as JSON")
    report.add_argument("--date", type=date.fromisoformat, help="YYYY-MM-DD, default today (UTC)")

    token = commands.add_parser("token", help="mint a development HS256 token from JWT_SECRET")
    token.add_argument("--scopes", default=" ".join(SCOPES), help="space-separated scopes")
    token.add_argument("--subject", default="dev-user")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        commands = {
            "ingest": _ingest,
            "files": _files,
            "retry": _retry,
            "redrive": _redrive,
            "report": _report,
        }
        if args.command in commands:
            return asyncio.run(commands[args.command](args))
        if args.command == "migrate":
            applied = asyncio.run(_migrate())
            print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
            return EXIT_OK
        return _token(args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
