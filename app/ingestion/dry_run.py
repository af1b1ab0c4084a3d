"""What ingesting a file would do, without writing anything: `python -m app ingest --dry-run`, and a file
checked against a source (`python -m app sources validate`, POST /ingestion/sources/{name}/validate)."""

from dataclasses import dataclass, field

from pydantic import ValidationError

from app.core.config import IngestSettings
from app.ingestion.loaders import MAX_REPORTED_ERRORS, record_problem, validation_reason
from app.ingestion.loaders.typed import csv_options, file_problems, missing_columns, typed_record
from app.ingestion.parsers import ByteSource, FileFormat, ParseError, detect_format, record_stream
from app.sources.values import CompiledSource
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


FIRST_LINES = 5  # offending line numbers reported per rule


@dataclass(slots=True)
class RuleCount:
    rule: str  # "column: rule"
    rows: int = 0
    first_lines: list[int] = field(default_factory=list)


@dataclass(slots=True)
class SourceCheck:
    """What loading a file into a source would accept and reject, per rule; nothing is written."""

    source: str
    version: int
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rejected_by_rule: dict[str, RuleCount] = field(default_factory=dict)
    file_problems: list[str] = field(default_factory=list)  # file rules the file breaks
    error: str | None = None  # the file cannot be read at all (parse error, bad encoding...)


async def check_source_file(
    body: ByteSource, source: CompiledSource, version: int, settings: IngestSettings
) -> SourceCheck:
    """Read a file as the source's loader would (same parser options, types and rules) and count."""
    spec = source.spec
    check = SourceCheck(spec.name, version)
    stream = record_stream(body, FileFormat(spec.format), settings, csv=csv_options(spec))
    try:
        async for batch in stream.batches():
            for record in batch:
                check.rows_read += 1
                typed = typed_record(record, source)
                if isinstance(typed, tuple):
                    check.rows_accepted += 1
                    continue
                check.rows_rejected += 1
                for broken in typed:
                    count = check.rejected_by_rule.setdefault(str(broken), RuleCount(str(broken)))
                    count.rows += 1
                    if len(count.first_lines) < FIRST_LINES:
                        count.first_lines.append(record.line)
    except ParseError as exc:
        check.error = f"{exc.code}: {exc.message}"
        return check
    if missing := missing_columns(stream, spec.file_rules.expected_columns):
        check.file_problems.append(f"the header lacks the expected columns {', '.join(missing)}")
    check.file_problems += file_problems(spec, check.rows_read, check.rows_rejected)
    return check
