"""What ingesting a file would do, without writing anything: `python -m app ingest --dry-run`."""

from dataclasses import dataclass, field

from pydantic import ValidationError

from app.core.config import IngestSettings
from app.ingestion.loaders import MAX_REPORTED_ERRORS, record_problem, validation_reason
from app.ingestion.parsers import ByteSource, detect_format, record_stream
from app.users.files import record_type_of
from app.users.schemas import FILE_RECORD_MODELS


@dataclass(slots=True)
class DryRun:
    records: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    sha256: str = ""


async def dry_run(source: ByteSource, key: str, settings: IngestSettings) -> DryRun:
    """Parse and validate a file as ingestion would (same parser, schemas and rules); raises ParseError.
    A users/{type}/ key is checked as user records of that type."""
    stream = record_stream(source, detect_format(key), settings)
    kind = record_type_of(key)
    result = DryRun()
    async for batch in stream.batches():
        for record in batch:
            result.records += 1
            reason = record_problem(record)
            if reason is None and kind is not None:
                try:
                    FILE_RECORD_MODELS[kind].model_validate(record.data)
                except ValidationError as exc:
                    reason = validation_reason(record.line, exc)
            if reason is not None:
                result.rejected += 1
                if len(result.errors) < MAX_REPORTED_ERRORS:
                    result.errors.append(reason)
    result.sha256 = stream.sha256
    return result
