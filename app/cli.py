"""Command line: `python -m app serve | migrate | token | ingest | files | retry | redrive | report |
reconcile | sources apply | sources validate | lake status | export | compact | show | backfill`.

Exit codes: 0 done, 1 the file failed (or a dry run found problems), 2 bad usage or settings,
3 a transient failure (retry later).
"""

import argparse
import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.config import (
    EXIT_CONFIG,
    EXIT_TRANSIENT,
    AuthSettings,
    DatabaseSettings,
    IngestSettings,
    Settings,
    SettingsError,
    SourcesSettings,
    load,
    reconcile_sources,
)
from app.core.security import SCOPES, mint_token

if TYPE_CHECKING:  # imported when a command runs, so `token` and `--help` stay fast
    from app.core.db import Database
    from app.resources import Resources

EXIT_OK = 0
EXIT_FAILURE = 1
# C0 and C1 controls and DEL: a terminal acts on them (escape sequences can rewrite the screen or title).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` for a terminal or a tab-separated line: control characters shown as \\xNN escapes."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.core import perf
    from app.core.logging import configure_logging

    settings = load(Settings)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "app.main:create_served_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=args.graceful_timeout,
        **perf.server_options(),
    )
    return EXIT_OK


async def _migrate() -> list[str]:
    from app.core import db

    database = await db.open_database(load(DatabaseSettings))
    try:
        async with database.acquire() as conn:
            return await db.apply_migrations(conn)
    finally:
        await database.close()


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
    from app.ingestion.dry_run import dry_run
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
    from app.files.keys import key_rule_broken

    bucket, _, key = source.removeprefix("s3://").partition("/")
    if not bucket or not key:
        print("expected s3://bucket/key", file=sys.stderr)
        return EXIT_CONFIG
    broken = key_rule_broken(key)
    if broken is not None:
        print(f"invalid key: {broken}", file=sys.stderr)
        return EXIT_CONFIG
    return await _ingest_s3(args, bucket, key)


@asynccontextmanager
async def _resources() -> AsyncIterator["Resources"]:
    """The service's resources (app/resources.py), for commands that work as the service does."""
    from app.resources import open_resources

    async with open_resources(load(Settings)) as resources:
        yield resources


def _progress_bar(args: argparse.Namespace, **options: Any) -> Any:
    """A progress bar on stderr: on a terminal, or always with --progress."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=None if args.progress is None else not args.progress, **options)


def _byte_progress(bar: Any) -> Any:
    def update(read: int, size: int) -> None:
        bar.total = size
        bar.update(read - bar.n)

    return update


async def _files(args: argparse.Namespace) -> int:
    from app.ingestion import repository

    async with _resources() as resources, resources.db.acquire() as conn:
        rows = await repository.list_files(
            conn, status=args.status, key_prefix=args.key_prefix, since=None, after=None, limit=args.limit
        )
    for row in rows:
        print(
            f"{row.id}\t{row.status}\t{row.created_at:%Y-%m-%dT%H:%M:%S}\t{row.rows_inserted}\t"
            f"{row.error_code or '-'}\t{_file_source(row)}\ts3://{row.bucket}/{printable(row.key)}"
        )
    return EXIT_OK


def _file_source(row: Any) -> str:
    """`-`, or the source and version that took the file and its rejected rows per rule."""
    if row.source_name is None:
        return "-"
    rejected = ",".join(f"{rule}={count}" for rule, count in sorted(row.rejected_by_rule.items()))
    return f"{row.source_name}@v{row.source_version}" + (f"[{rejected}]" if rejected else "")


def _print_outcome(outcome: Any) -> int:
    counts = outcome.counts
    print(
        f"{outcome.status} file_id={outcome.file_id} rows_read={counts.rows_read} "
        f"rows_inserted={counts.rows_inserted} rows_skipped={counts.rows_skipped} "
        f"rows_rejected={counts.rows_rejected} error_code={outcome.error_code}"
    )
    return EXIT_FAILURE if outcome.status == "failed" else EXIT_OK


async def _retry(args: argparse.Namespace) -> int:
    from app.ingestion import repository
    from app.ingestion.envelopes import ObjectRef
    from app.ingestion.outcomes import IngestOutcome, Transient

    async with _resources() as resources:
        async with resources.db.acquire() as conn:
            row = await repository.reopen_for_retry(conn, args.file_id)
        if row is None:
            print(
                f"file {args.file_id} does not exist, or is neither failed nor pending"
                " nor held by a dead worker",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        ref = ObjectRef(row.bucket, row.key, row.version_id, row.etag, row.size_bytes)
        with _progress_bar(args, unit="B", unit_scale=True, desc=printable(row.key[-40:])) as bar:
            ingestor = resources.ingestor
            try:
                claimed = await ingestor.claim(ref, "cli", resolve=False)
                if isinstance(claimed, IngestOutcome):
                    outcome = claimed
                else:
                    outcome = await ingestor.load(claimed, progress=_byte_progress(bar))
            except Transient as exc:
                print(f"transient failure, retry later: {exc}", file=sys.stderr)
                return EXIT_TRANSIENT
    return _print_outcome(outcome)


async def _redrive(args: argparse.Namespace) -> int:
    from app.ingestion import operations
    from app.ingestion.consumer import find_dead_letter_queue

    async with _resources() as resources:
        sqs = resources.aws.sqs
        source = str(resources.settings.sqs_queue_url)
        dlq = await find_dead_letter_queue(sqs, source)
        if dlq is None:
            print("the queue has no dead-letter queue (no RedrivePolicy)", file=sys.stderr)
            return EXIT_CONFIG
        depth = await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        total = min(args.limit, int(depth["Attributes"]["ApproximateNumberOfMessages"]))
        with _progress_bar(args, total=total, unit="msg", desc="redrive") as bar:
            result = await operations.redrive(sqs, source, dlq, args.limit, on_batch=bar.update)
    print(f"moved={result.moved} failed={result.failed}")
    return EXIT_OK if result.failed == 0 else EXIT_FAILURE


async def _report(args: argparse.Namespace) -> int:
    from app.ingestion import reports, repository

    day = args.date or datetime.now(UTC).date()
    async with _resources() as resources:
        if args.publish:
            clients = resources.aws
            published = await reports.publish(resources.db, clients.s3, clients.sns, resources.settings, day)
            report = published.report
            written = f"s3://{resources.settings.s3_bucket_name}/{published.html_key}"
            print(f"written to {written}", file=sys.stderr)
        else:
            async with resources.db.acquire() as conn:
                report = await repository.daily_report(conn, day)
    print(report.model_dump_json(indent=2))
    return EXIT_OK


async def _reconcile(args: argparse.Namespace) -> int:
    from app.ingestion.outcomes import Transient
    from app.ingestion.reconcile import SweepBusy

    async with _resources() as resources:
        settings = resources.settings
        try:
            sources = reconcile_sources(args.source, default_bucket=settings.s3_bucket_name)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG
        if not args.source:
            sources = settings.reconcile_sources
        with _progress_bar(args, unit="file", desc="reconcile") as bar:
            try:
                result = await resources.reconciler.sweep(
                    sources,
                    min_age_seconds=args.min_age,
                    on_object=lambda _status: bar.update(1),
                )
            except SweepBusy:
                print("another reconcile sweep is running; try again later", file=sys.stderr)
                return EXIT_TRANSIENT
            except Transient as exc:
                print(f"transient failure, retry later: {exc}", file=sys.stderr)
                return EXIT_TRANSIENT
    outcomes = " ".join(f"{status}={n}" for status, n in sorted(result.outcomes.items()))
    print(f"listed={result.listed} unseen={result.unseen} {outcomes}".rstrip())
    return EXIT_FAILURE if result.outcomes["failed"] else EXIT_OK


async def _ingest_s3(args: argparse.Namespace, bucket: str, key: str) -> int:
    from app.ingestion.dry_run import dry_run
    from app.ingestion.envelopes import ObjectRef
    from app.ingestion.outcomes import Transient
    from app.ingestion.parsers import ParseError

    async with _resources() as resources:
        if args.dry_run:
            response = await resources.bucket_clients.client_for(bucket).get_object(Bucket=bucket, Key=key)
            async with response["Body"] as _:
                try:
                    return _print_dry_run(await dry_run(response["Body"], key, resources.settings))
                except ParseError as exc:
                    print(f"{exc.code}: {exc.message}")
                    return EXIT_FAILURE
        with _progress_bar(args, unit="B", unit_scale=True, desc=key[-40:]) as bar:
            try:
                outcome = await resources.ingestor.ingest(
                    ObjectRef(bucket, key, None, None, None), "cli", progress=_byte_progress(bar)
                )
            except Transient as exc:
                print(f"transient failure, retry later: {exc}", file=sys.stderr)
                return EXIT_TRANSIENT
    return _print_outcome(outcome)


class _PlanOnly(Exception):
    """Rolls back an apply that was only to print its plan."""


async def _sources(args: argparse.Namespace) -> int:
    from app.core import db
    from app.sources import service
    from app.sources.values import SourceError

    settings = load(SourcesSettings)
    try:
        specs = [service.read_spec(path) for root in args.paths for path in service.spec_files(Path(root))]
    except (SourceError, OSError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    names = [spec.name for spec in specs]
    if duplicated := sorted({name for name in names if names.count(name) > 1}):
        print(f"more than one file defines source {', '.join(duplicated)}", file=sys.stderr)
        return EXIT_FAILURE
    database = await db.open_database(settings)
    applied: list[service.Applied] = []
    try:
        async with database.acquire() as conn, conn.transaction():  # all of them, or none
            for spec in specs:
                applied.append(await service.apply(conn, spec, default_bucket=settings.s3_bucket_name))
            if args.plan:
                raise _PlanOnly
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    except service.SourceBusy as exc:
        print(exc, file=sys.stderr)
        return EXIT_TRANSIENT
    except _PlanOnly:
        pass
    finally:
        await database.close()
    for result in applied:
        print(f"{result.action}\t{result.name}\tversion {result.version}")
        for statement in result.ddl:
            print(f"\t{' '.join(statement.split())}")
    if args.plan:
        print("(plan only: nothing was applied)")
    return EXIT_OK


async def _validate_source(args: argparse.Namespace) -> int:
    from app.core.errors import DomainError
    from app.files.keys import key_rule_broken
    from app.ingestion.dry_run import SourceCheck, check_source_file
    from app.ingestion.operations import check_object
    from app.sources import repository
    from app.sources.values import compile_source

    target: str = args.file
    bucket, _, key = target.removeprefix("s3://").partition("/")
    if target.startswith("s3://") and (not bucket or not key or key_rule_broken(key)):
        print(f"expected s3://bucket/key: {key_rule_broken(key) or 'bucket or key missing'}", file=sys.stderr)
        return EXIT_CONFIG
    async with _resources() as resources:
        async with resources.db.acquire() as conn:
            stored = await repository.get(conn, args.source)
        if stored is None:
            print(f"no source named {args.source}", file=sys.stderr)
            return EXIT_FAILURE
        check: SourceCheck
        if target.startswith("s3://"):
            try:
                check = await check_object(resources.ingestor, stored, bucket, key, resources.settings)
            except DomainError as exc:
                print(exc.detail, file=sys.stderr)
                return EXIT_FAILURE
        else:
            try:
                local = _LocalFile(Path(target))
            except OSError as exc:
                print(f"cannot read {target}: {exc.strerror}", file=sys.stderr)
                return EXIT_CONFIG
            try:
                compiled = compile_source(stored.spec)
                check = await check_source_file(local, compiled, stored.version, resources.settings)
            finally:
                local.close()
    print(
        f"source {check.source} version {check.version}: rows {check.rows_read}  "
        f"accepted {check.rows_accepted}  rejected {check.rows_rejected}"
    )
    for count in check.rejected_by_rule.values():
        print(f"  {count.rule}: {count.rows} (lines {', '.join(map(str, count.first_lines))})")
    for problem in check.file_problems:
        print(f"  file: {problem}")
    if check.error:
        print(f"  cannot read the file: {check.error}")
    return EXIT_OK if not (check.rows_rejected or check.file_problems or check.error) else EXIT_FAILURE


async def _sources_command(args: argparse.Namespace) -> int:
    return await (_validate_source(args) if args.sources_command == "validate" else _sources(args))


async def _lake(args: argparse.Namespace) -> int:
    settings = load(Settings)
    if not settings.lake_enabled:
        print("LAKE_WAREHOUSE is not set: the lake is off", file=sys.stderr)
        return EXIT_CONFIG
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    from app.core import db

    database = await db.open_database(settings)
    try:
        return await _lake_command(args, settings, database)
    except (NoSuchNamespaceError, NoSuchTableError):
        print(f"no lake table yet in {settings.lake_namespace}: nothing has been exported", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await database.close()


async def _lake_command(args: argparse.Namespace, settings: Settings, database: "Database") -> int:
    from app.lake import repository
    from app.lake.catalog import open_catalog
    from app.lake.exporter import LakeExporter, describe, show

    if args.lake_command == "backfill":
        since = datetime.combine(args.since, datetime.min.time(), UTC)
        async with database.acquire() as conn:
            queued = await repository.backfill(conn, since)
        print(f"queued {queued} file(s) loaded since {args.since} for export")
        return EXIT_OK
    if args.lake_command == "show":
        catalog = await asyncio.to_thread(open_catalog, settings)
        for row in await asyncio.to_thread(
            show, catalog, settings.lake_namespace, args.table, args.file_id, args.limit
        ):
            print(json.dumps(row, default=str, ensure_ascii=False))
        return EXIT_OK
    if args.lake_command == "compact":
        for result in await LakeExporter(database, settings).compact_now():
            print(
                f"compacted {result.groups} group(s): {result.files_before} data files -> "
                f"{result.files_after}, {result.rows} rows; "
                f"{result.snapshots_expired} snapshot(s) expired"
            )
        return EXIT_OK
    if args.lake_command == "export":
        exported = await LakeExporter(database, settings).export_pending()
        print(f"exported {exported} file(s)")
        return EXIT_OK
    async with database.acquire() as conn:
        outbox = await repository.counts(conn)
    catalog = await asyncio.to_thread(open_catalog, settings)
    tables = await asyncio.to_thread(describe, catalog, settings.lake_namespace)
    print(f"warehouse {settings.lake_warehouse}  catalog {settings.lake_catalog}", end="  ")
    print(f"namespace {settings.lake_namespace}")
    for table in tables:
        print(
            f"table {table.name}\tsnapshots {table.snapshots}\tcurrent {table.current_snapshot_id}"
            f"\trecords {table.records}\tdata files {table.data_files}"
        )
    oldest = f"{outbox.oldest_pending_seconds:.0f} s"
    print(f"exports: pending {outbox.pending} (failing {outbox.failing}, oldest {oldest})", end="  ")
    print(f"exported {outbox.exported}")
    return EXIT_OK


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _progress_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API and the consumer under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    serve.add_argument("--graceful-timeout", type=int, default=25)
    serve.add_argument("--workers", type=_positive, default=1, help="uvicorn worker processes")

    commands.add_parser("migrate", help="apply pending database migrations and exit")

    ingest = commands.add_parser(
        "ingest", help="ingest s3://bucket/key now (trigger cli), or check a file with --dry-run"
    )
    ingest.add_argument("source", help="s3://bucket/key, or a local path (with --dry-run)")
    ingest.add_argument("--dry-run", action="store_true", help="parse and validate; write nothing")
    _progress_option(ingest)

    files = commands.add_parser("files", help="list the processing log, newest first")
    files.add_argument("--status", choices=["pending", "processing", "completed", "failed", "skipped"])
    files.add_argument("--key-prefix")
    files.add_argument("--limit", type=int, default=50)

    retry = commands.add_parser("retry", help="re-run a failed file now")
    retry.add_argument("file_id", type=int)
    _progress_option(retry)

    redrive = commands.add_parser("redrive", help="move dead-lettered messages back to the queue")
    redrive.add_argument("--limit", type=_positive, default=1000)
    _progress_option(redrive)

    report = commands.add_parser("report", help="the daily ingestion summary (UTC) as JSON")
    report.add_argument("--date", type=date.fromisoformat, help="YYYY-MM-DD, default today (UTC)")
    report.add_argument(
        "--publish", action="store_true", help="also write it to reports/{date}/ in S3 and announce it on SNS"
    )

    reconcile = commands.add_parser(
        "reconcile", help="ingest objects under the reconcile prefixes that the log has not seen"
    )
    reconcile.add_argument(
        "source", nargs="*", help="s3://bucket/prefix, or a prefix of S3_BUCKET_NAME (default: the setting)"
    )
    reconcile.add_argument(
        "--min-age", type=int, default=None, help="seconds an object must have existed (default: the setting)"
    )
    _progress_option(reconcile)

    sources = commands.add_parser("sources", help="manage sources (per-prefix contracts for typed tables)")
    source_commands = sources.add_subparsers(dest="sources_command", required=True)
    apply = source_commands.add_parser(
        "apply", help="apply source files (YAML or JSON, one source each): all of them, or none"
    )
    apply.add_argument("paths", nargs="+", help="a source file, or a folder of them (*.yaml, *.yml, *.json)")
    apply.add_argument("--plan", action="store_true", help="print what would change; apply nothing")
    validate = source_commands.add_parser(
        "validate",
        help="dry-run a file against a source: rows accepted and rejected per rule; writes nothing",
    )
    validate.add_argument("--source", required=True, help="the source's name")
    validate.add_argument("file", help="a local file, or s3://bucket/key")

    lake = commands.add_parser(
        "lake", help="the Iceberg lake (LAKE_WAREHOUSE): status, export, compact, show, backfill"
    )
    lake_commands = lake.add_subparsers(dest="lake_command", required=True)
    lake_commands.add_parser("status", help="tables and snapshots, pending and failing exports")
    lake_commands.add_parser("export", help="export the pending files now (as the background exporter does)")
    lake_commands.add_parser(
        "compact", help="rewrite small data files into ~128 MiB ones and expire old snapshots, now"
    )
    show = lake_commands.add_parser("show", help="rows of a lake table's current snapshot, as JSON lines")
    show.add_argument("--table", default="processed_data")
    show.add_argument("--file-id", type=int, help="only this file's rows")
    show.add_argument("--limit", type=_positive, default=10)
    backfill = lake_commands.add_parser(
        "backfill", help="queue for export the files loaded since a day (e.g. before the lake was turned on)"
    )
    backfill.add_argument("--since", type=date.fromisoformat, required=True, help="YYYY-MM-DD (UTC)")

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
            "reconcile": _reconcile,
            "sources": _sources_command,
            "lake": _lake,
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
