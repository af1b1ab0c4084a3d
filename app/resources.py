"""The composition root: every long-lived resource of the service, built by one function that the lifespan,
the CLI and the benchmarks all use, and the background jobs (built here, started by the lifespan only).

Route dependencies read it from `app.state.resources` through small protocols of their own packages
(`app/core/deps.py`, `app/*/deps.py`), so no package imports this module.
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx

from app.core import aws
from app.core.aws import AwsClients
from app.core.config import Settings
from app.core.cross_account import S3ClientsByBucket
from app.core.db import Database, open_database
from app.core.jobs import BackgroundJob
from app.core.security import TokenVerifier
from app.files.budget import ByteBudget
from app.files.deps import KeyPolicy
from app.ingestion.consumer import Consumer
from app.ingestion.dispatcher import Dispatcher, sns_handler
from app.ingestion.ingestor import Ingestor
from app.ingestion.operations import BackgroundLoads
from app.ingestion.reconcile import ReconcileLoop, Reconciler
from app.ingestion.recovery import ClaimRecovery
from app.ingestion.reports import DailyReportJob
from app.notifications.sns_verification import HandledMessageIds, NotificationHandler, SnsMessageVerifier
from app.ops.router import Readiness
from app.users.service import UserKeys

OUTBOUND_HTTP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Jobs:
    """The background work of a serving process, each present when its setting turns it on."""

    consumer: Consumer | None
    reconcile: ReconcileLoop | None
    reports: DailyReportJob | None
    recovery: ClaimRecovery | None
    lake: BackgroundJob | None  # the lake exporter (app/lake/exporter.py)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Started, then stopped in reverse order: the consumer last in, first out, so its in-flight files
        still have the pool and the clients while they finish."""
        async with AsyncExitStack() as stack:
            jobs: list[BackgroundJob | Consumer] = [
                job for job in (self.recovery, self.reconcile, self.reports, self.lake) if job
            ]
            if self.consumer is not None:
                jobs.append(self.consumer)
            for job in jobs:
                job.start()
                stack.push_async_callback(job.stop)
            yield


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    db: Database
    aws: AwsClients
    bucket_clients: S3ClientsByBucket  # the S3 client each bucket is read with (S3_BUCKET_ROLES)
    http: httpx.AsyncClient  # outbound HTTP: SNS certificates and subscription confirmations
    token_verifier: TokenVerifier
    json_budget: ByteBudget
    key_policy: KeyPolicy  # users/ keys through the /s3 routes
    ingestor: Ingestor
    background_loads: BackgroundLoads
    dispatcher: Dispatcher
    reconciler: Reconciler
    sns_verifier: SnsMessageVerifier
    handled_sns_ids: HandledMessageIds
    notification_handler: NotificationHandler
    readiness: Readiness
    jobs: Jobs


def _lake_exporter(database: Database, settings: Settings) -> BackgroundJob:
    """The exporter; its module needs pyiceberg and pyarrow, imported only when the lake is on."""
    from app.lake.exporter import LakeExporter

    return LakeExporter(database, settings)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Everything opened in one exit stack, closed in reverse order."""
    async with AsyncExitStack() as stack:
        database = await open_database(settings)
        stack.push_async_callback(database.close)
        clients = await aws.open_clients(settings, stack)
        bucket_clients = await aws.open_bucket_clients(settings, clients, stack)
        # Never follows redirects, so a trusted URL cannot bounce the service to an untrusted one.
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=OUTBOUND_HTTP_TIMEOUT_SECONDS, follow_redirects=False)
        )
        ingestor = Ingestor(
            database,
            bucket_clients.client_for,
            settings,
            own_bucket=settings.s3_bucket_name,
            lake=settings.lake_enabled,
        )
        loads = BackgroundLoads(ingestor, settings.ingest_max_api_loads)
        stack.push_async_callback(loads.stop)
        dispatcher = Dispatcher(ingestor, clients.s3, settings.s3_bucket_name)
        reconciler = Reconciler(database, ingestor, bucket_clients.client_for, settings)
        jobs = Jobs(
            consumer=Consumer(clients.sqs, dispatcher, settings) if settings.sqs_consumer_enabled else None,
            reconcile=(
                ReconcileLoop(reconciler, settings.reconcile_interval_seconds)
                if settings.reconcile_interval_seconds
                else None
            ),
            reports=(
                DailyReportJob(database, clients.s3, clients.sns, settings, settings.report_daily_at_utc)
                if settings.report_daily_at_utc is not None
                else None
            ),
            recovery=(
                ClaimRecovery(database, ingestor, settings.ingest_recovery_interval_seconds)
                if settings.ingest_recovery_interval_seconds
                else None
            ),
            lake=_lake_exporter(database, settings) if settings.lake_enabled else None,
        )
        yield Resources(
            settings=settings,
            db=database,
            aws=clients,
            bucket_clients=bucket_clients,
            http=http,
            token_verifier=TokenVerifier(settings),
            json_budget=ByteBudget(settings.json_budget_bytes),
            key_policy=UserKeys(),
            ingestor=ingestor,
            background_loads=loads,
            dispatcher=dispatcher,
            reconciler=reconciler,
            sns_verifier=SnsMessageVerifier(
                settings.sns_trusted_url_pattern,
                http,
                accepted_topic_arns=settings.accepted_topic_arns,
                allow_signature_v1=settings.sns_allow_signature_v1,
            ),
            handled_sns_ids=HandledMessageIds(),
            notification_handler=sns_handler(dispatcher, loads),
            readiness=Readiness(jobs.consumer),
            jobs=jobs,
        )
