"""Loaders land a file's records in PostgreSQL inside the file's transaction: `rows` in processed_data (any
file), `users` in the users_* tables (users/{type}/ files of the service's own bucket)."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from app.ingestion.outcomes import PermanentFailure
from app.ingestion.parsers import Record
from app.ingestion.repository import Counts

MAX_REPORTED_ERRORS = 5  # rejected-record reasons kept in the processing log
JSONB_NUL = b"\\u0000"  # PostgreSQL's jsonb cannot store U+0000
ErrorPolicy = Literal["reject_file", "skip_rows"]


@dataclass(slots=True)
class Tally:
    """What a loader did with a file's records."""

    policy: ErrorPolicy
    read: int = 0
    rejected: int = 0
    changed: int = 0
    errors: list[str] = field(default_factory=list)
    by_rule: Counter[str] = field(default_factory=Counter)  # typed sources: "column: rule" -> records

    def reject(self, reason: str, rules: Iterable[str] = ()) -> None:
        """Count a record refused for `reason` (and each rule it broke); under reject_file the whole file
        fails here."""
        self.rejected += 1
        self.by_rule.update(rules)
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(reason)
        if self.policy == "reject_file":
            raise PermanentFailure("validation_error", f"record rejected: {reason}", counts=self.counts())

    def counts(self) -> Counts:
        valid = self.read - self.rejected
        return Counts(self.read, self.changed, valid - self.changed, self.rejected)


def record_problem(record: Record) -> str | None:
    """Why a parsed record cannot be stored as a JSONB row, or None."""
    if record.error is not None:
        return record.error
    if record.canonical is None or JSONB_NUL in record.canonical:
        return f"line {record.line}: contains U+0000, which PostgreSQL's jsonb cannot store"
    return None


def validation_reason(line: int, exc: ValidationError) -> str:
    # Field names and rule messages only: the rejected values may be personal data.
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'record'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )
    return f"line {line}: {problems}"
