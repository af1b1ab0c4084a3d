"""Claim recovery: the files whose worker died in the middle of loading them are loaded again by a live
replica within seconds, without waiting for their message to come back (which may never happen, if it was
deleted or lost).

A claim is alive while the session that made it is (claims.py); every INGEST_RECOVERY_INTERVAL_SECONDS
each replica looks for `processing` rows whose claim lock no session holds and takes them over through the
same claim as any other path, so two replicas that look at once load such a file once.
"""

import logging

from prometheus_client import Counter

from app.core.db import Database
from app.core.jobs import BackgroundJob
from app.ingestion import repository
from app.ingestion.envelopes import ObjectRef
from app.ingestion.ingestor import Ingestor
from app.ingestion.outcomes import IngestOutcome, Transient

logger = logging.getLogger(__name__)

BATCH = 10  # dead claims looked at per turn; the rest wait for the next turn
# The trigger recorded if the row were new; a dead claim's row exists, and keeps its first trigger.
TRIGGER = "reconcile"

RECOVERED = Counter(
    "ingest_claims_recovered_total", "Files taken over from workers that died while loading them", ["outcome"]
)


class ClaimRecovery(BackgroundJob):
    """Loads the files of dead workers, one at a time, every `interval_seconds`."""

    name = "claim recovery"

    def __init__(self, database: Database, ingestor: Ingestor, interval_seconds: float) -> None:
        super().__init__()
        self._db = database
        self._ingestor = ingestor
        self._interval = interval_seconds
        self.retry_after_failure_seconds = max(interval_seconds, 10.0)

    async def turn(self) -> float:
        await self.recover()
        return self._interval

    async def recover(self) -> list[IngestOutcome]:
        """Take over and load each dead claim found now; what became of each file this replica took."""
        async with self._db.acquire() as conn:
            dead = await repository.dead_claims(conn, BATCH)
        outcomes = []
        for row in dead:
            ref = ObjectRef(row.bucket, row.key, row.version_id, row.etag, row.size_bytes)
            claimed = await self._ingestor.claim(ref, TRIGGER, resolve=False)
            if isinstance(claimed, IngestOutcome):
                continue  # another replica was first, or the worker was not dead after all
            logger.warning("taking over the file of a worker that died", extra={"file_id": row.id})
            try:
                outcome = await self._ingestor.load(claimed)
            except Transient:
                # Released (`pending`): its message, a retry or the reconcile sweep brings it back.
                RECOVERED.labels("transient").inc()
                raise
            RECOVERED.labels(outcome.status).inc()
            outcomes.append(outcome)
        return outcomes
