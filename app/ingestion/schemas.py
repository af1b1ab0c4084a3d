"""Models of the /ingestion routes: processing-log rows, pages, requests and the daily report."""

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FileStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class FileRow(BaseModel):
    id: int
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    sha256: str | None
    size_bytes: int | None
    content_type: str | None
    status: FileStatus
    attempts: int
    rows_read: int
    rows_inserted: int
    rows_skipped: int
    rows_rejected: int
    error_code: str | None
    error_message: str | None
    trigger: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    source_name: str | None = Field(default=None, description="the source that took the file, if any")
    source_version: int | None = Field(default=None, description="the version of the source that loaded it")
    rejected_by_rule: dict[str, int] = Field(
        default_factory=dict, description='rejected rows per broken rule, e.g. {"badge_id: regex": 2}'
    )


class LakeExport(BaseModel):
    """Where the file's rows stand on their way to the lake (LAKE_WAREHOUSE)."""

    status: Literal["pending", "exported"]
    table: str = Field(description="the Iceberg table, in LAKE_NAMESPACE")
    queued_at: datetime = Field(description="when the load committed (the export was queued with it)")
    exported_at: datetime | None
    snapshot_id: int | None = Field(description="the Iceberg snapshot that carries the file's rows")
    rows_exported: int | None = Field(description="null when an earlier attempt's commit was found")
    attempts: int = Field(description="failed attempts so far")
    last_error: str | None


class FileDetail(FileRow):
    lake_export: LakeExport | None = Field(
        default=None, description="null: the lake is off, or the file added no rows to export"
    )


class FilePage(BaseModel):
    items: list[FileRow]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # botocore refuses other characters before any call, which would surface as a 500.
    bucket: str | None = Field(
        default=None,
        min_length=3,
        max_length=63,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="default: S3_BUCKET_NAME",
    )
    key: str


class IngestAccepted(BaseModel):
    file_id: int | None
    status: str = Field(description="accepted (loading now), duplicate, busy or excluded")


class RedriveResult(BaseModel):
    moved: int
    failed: int


class SourceDay(BaseModel):
    """One source's files of the day."""

    source: str
    files: int
    files_failed: int
    rows_read: int
    rows_inserted: int
    rows_rejected: int
    rejected_by_rule: dict[str, int]


class DailyReport(BaseModel):
    date: date
    files: int
    files_by_status: dict[str, int]
    rows_read: int
    rows_inserted: int
    rows_rejected: int
    failures_by_error_code: dict[str, int]
    p50_duration_seconds: float | None
    p95_duration_seconds: float | None
    sources: list[SourceDay] = Field(default_factory=list, description="files of sources, per source")


class RuleCountRead(BaseModel):
    rule: str = Field(description='"column: rule", e.g. "badge_id: regex"')
    rows: int
    first_lines: list[int] = Field(description="the first offending line numbers (at most 5)")


class SourceCheckRead(BaseModel):
    source: str
    version: int
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    rejected_by_rule: list[RuleCountRead]
    file_problems: list[str] = Field(description="file rules the file breaks (it would fail as a whole)")
    error: str | None = Field(description="why the file cannot be read at all, if it cannot")
