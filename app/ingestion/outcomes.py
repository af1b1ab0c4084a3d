"""What ingesting one object version can end in, and the failures that decide it: shared by the parts of
ingestion (source, claims, loaders, ingestor) and by those who call it."""

from dataclasses import dataclass, field
from typing import Literal

from app.core.errors import BackingServiceDown
from app.ingestion.repository import Counts

Status = Literal["completed", "failed", "skipped", "duplicate", "busy", "throttled", "excluded"]


class Transient(BackingServiceDown):
    """A failure worth retrying later (a dependency is down or throttling); the claim is released."""


class PermanentFailure(Exception):
    """The file cannot be loaded as it is: it ends `failed` (or `skipped`) with a code a data owner can act
    on, and a message that names positions and rules, never record contents."""

    def __init__(
        self, code: str, message: str, *, status: str = "failed", counts: Counts | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.counts = counts or Counts()


class Throttled(Exception):
    """The file's tenant has `max_in_flight` files loading already (across replicas): the file waits, its
    claim released uncounted, and is tried again later. Never a failure."""


class LeaseLost(Exception):
    """Another worker took the file over (this one's lease had expired): this load must roll back."""


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    status: Status
    file_id: int | None = None
    retry_after: float | None = None  # busy: when the holder's lease runs out; throttled: when to look again
    counts: Counts = field(default_factory=Counts)
    error_code: str | None = None
