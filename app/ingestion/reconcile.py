"""The reconcile sweep (SPEC 7), the safety net for lost events: list the configured prefixes and ingest
each object whose current version the processing log has not seen (trigger `reconcile`).

One sweep runs at a time across all replicas (an advisory lock); a replica that finds the lock taken
skips its turn. Objects younger than RECONCILE_MIN_AGE_SECONDS are left to their event, which is most
likely still on its way; a `pending` row (a released claim that may have no message left) counts as
unseen, so the sweep finishes what a shutdown interrupted.
"""

import logging
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import ClientError as HttpError
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from app.core import aws
from app.core.config import Settings
from app.core.db import REQUEST_WAIT_SECONDS, Database
from app.core.jobs import BackgroundJob
from app.files.keys import key_rule_broken
from app.ingestion import repository
from app.ingestion.envelopes import ObjectRef
from app.ingestion.ingestor import Ingestor
from app.ingestion.outcomes import Transient
from app.ingestion.source import S3ClientFor

logger = logging.getLogger(__name__)

RECONCILE_LOCK_KEY = 7_301_843_563  # one sweep at a time across replicas
RETRY_AFTER_FAILURE_SECONDS = 60.0  # a sweep that hit an outage tries again this soon

RECONCILED = Counter(
    "reconcile_objects_total", "Unseen objects the reconcile sweep ingested, by outcome", ["outcome"]
)
SWEEPS = Counter("reconcile_sweeps_total", "Reconcile sweeps by result", ["result"])


@dataclass(slots=True)
class SweepResult:
    listed: int = 0  # current object versions under the prefixes, old enough to judge
    outcomes: Tally[str] = field(default_factory=Tally)  # ingest outcome -> objects, for the unseen ones

    @property
    def unseen(self) -> int:
        return sum(self.outcomes.values())


class SweepBusy(Exception):
    """Another replica is sweeping right now."""


class Reconciler:
    def __init__(
        self, database: Database, ingestor: Ingestor, s3_for: S3ClientFor, settings: Settings
    ) -> None:
        self._db = database
        self._ingestor = ingestor
        self._s3_for = s3_for
        self._settings = settings

    async def sweep(
        self,
        sources: list[tuple[str, str]] | None = None,
        *,
        min_age_seconds: int | None = None,
        on_object: Callable[[str], None] | None = None,
    ) -> SweepResult:
        """Ingest the unseen objects under `sources` ((bucket, prefix) pairs; default: the settings).

        `on_object` is called with each unseen object's outcome (the CLI's progress). Raises SweepBusy
        when another replica holds the sweep, Transient when S3 or the database is out.
        """
        settings = self._settings
        age = settings.reconcile_min_age_seconds if min_age_seconds is None else min_age_seconds
        cutoff = datetime.now(UTC) - timedelta(seconds=age)
        result = SweepResult()
        async with self._db.exclusive(RECONCILE_LOCK_KEY) as mine:
            if not mine:
                raise SweepBusy
            for bucket, prefix in sources or settings.reconcile_sources:
                async for refs in self._current_versions(bucket, prefix, cutoff):
                    result.listed += len(refs)
                    for ref in await self._unseen(bucket, refs):
                        outcome = await self._ingestor.ingest(ref, "reconcile")
                        result.outcomes[outcome.status] += 1
                        RECONCILED.labels(outcome.status).inc()
                        if on_object is not None:
                            on_object(outcome.status)
        if result.unseen:
            logger.info("reconcile sweep ingested unseen objects", extra=dict(result.outcomes))
        return result

    async def _current_versions(
        self, bucket: str, prefix: str, cutoff: datetime
    ) -> AsyncIterator[list[ObjectRef]]:
        """Pages of the current version of each object under the prefix, as of `cutoff`."""
        excluded = tuple(self._settings.ingest_exclude_prefixes)
        paginator = self._s3_for(bucket).get_paginator("list_object_versions")
        try:
            async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                versions = page.get("Versions", [])
                refused = [version for version in versions if key_rule_broken(version["Key"]) is not None]
                if refused:
                    # As an event naming them would be: a control character cannot be stored or shown.
                    RECONCILED.labels("invalid_key").inc(len(refused))
                    logger.warning("objects with invalid keys not ingested", extra={"count": len(refused)})
                yield [
                    ObjectRef(
                        bucket,
                        version["Key"],
                        # "null": an object written while the bucket was unversioned; the log then
                        # knows it by its ETag, as the event path does.
                        None if version.get("VersionId") in (None, "null") else version["VersionId"],
                        version["ETag"].strip('"'),
                        version["Size"],
                    )
                    for version in versions
                    if version.get("IsLatest")
                    and version not in refused
                    and version["LastModified"] <= cutoff
                    and not version["Key"].startswith(excluded)
                    and not version["Key"].endswith("/")  # a console "folder"
                ]
        except Exception as exc:
            if _is_transient_listing_failure(exc):
                raise Transient(f"listing s3://{bucket}/{prefix}: {type(exc).__name__}") from exc
            raise

    async def _unseen(self, bucket: str, refs: list[ObjectRef]) -> list[ObjectRef]:
        if not refs:
            return []
        async with self._db.acquire(REQUEST_WAIT_SECONDS) as conn:
            positions = await repository.unseen_versions(
                conn, bucket, [(ref.key, ref.version_id or ref.etag or "") for ref in refs]
            )
        return [refs[position] for position in positions]


def _is_transient_listing_failure(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        return aws.is_transient(exc)
    return isinstance(exc, BotoCoreError | HttpError | OSError)


class ReconcileLoop(BackgroundJob):
    """Sweeps every RECONCILE_INTERVAL_SECONDS in the background, starting at start-up."""

    name = "reconcile sweep"

    def __init__(self, reconciler: Reconciler, interval_seconds: float) -> None:
        super().__init__()
        self._reconciler = reconciler
        self._interval = interval_seconds
        self.retry_after_failure_seconds = min(interval_seconds, RETRY_AFTER_FAILURE_SECONDS)

    async def turn(self) -> float:
        try:
            await self._reconciler.sweep()
        except SweepBusy:
            SWEEPS.labels("busy").inc()
        except Exception:
            SWEEPS.labels("failed").inc()
            raise
        else:
            SWEEPS.labels("completed").inc()
        return self._interval
