"""Service settings from environment variables or `.env` (pydantic-settings), validated at start-up."""

import re
from datetime import time
from functools import lru_cache
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    PostgresDsn,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.cross_account import BucketRolesSetting, is_bucket_name

EXIT_CONFIG = 2  # a bad setting: fix the environment, restarting will not help
EXIT_TRANSIENT = 3  # a dependency failed for now: the same command may work later
MIN_HS256_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key must be at least 256 bits


class SettingsError(Exception):
    """A missing or malformed setting; the message is one line naming the variable."""


def _one_line(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        problems.append(f"{name}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)


class DatabaseSettings(_Base):
    """What `python -m app migrate` needs."""

    database_url: PostgresDsn
    db_pool_min_size: int = Field(default=1, ge=0)
    db_pool_max_size: int = Field(default=20, ge=1)
    db_command_timeout_seconds: float = Field(default=30.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # The longest anything waits for a pooled connection (requests: 5 s); then it fails as an outage does.
    db_pool_wait_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _pool_bounds(self) -> "DatabaseSettings":
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        return self


def _empty_is_unset(value: object) -> object:
    # `JWT_ISSUER=` as in .env.example means no issuer, not an issuer that is the empty string.
    return None if value == "" else value


class AuthSettings(_Base):
    """What token verification and `python -m app token` need."""

    jwt_secret: SecretStr | None = None
    jwt_jwks_url: AnyHttpUrl | None = None
    # Validated when unset too: JWKS mode requires them. Declared after JWT_JWKS_URL, which they read.
    jwt_issuer: Annotated[str | None, BeforeValidator(_empty_is_unset)] = Field(
        default=None, validate_default=True
    )
    jwt_audience: Annotated[str | None, BeforeValidator(_empty_is_unset)] = Field(
        default=None, validate_default=True
    )
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwks_cache_seconds: int = Field(default=300, ge=0)

    @field_validator("jwt_secret")
    @classmethod
    def _secret_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_HS256_SECRET_BYTES} bytes")
        return value

    @field_validator("jwt_issuer", "jwt_audience")
    @classmethod
    def _required_with_jwks(cls, value: str | None, info: ValidationInfo) -> str | None:
        # An identity provider signs tokens for all its applications with the same keys: without both
        # checks, a token minted for another of them would pass here.
        if value is None and info.data.get("jwt_jwks_url") is not None:
            raise ValueError("required when JWT_JWKS_URL is set")
        return value

    @model_validator(mode="after")
    def _some_key(self) -> "AuthSettings":
        if self.jwt_secret is None and self.jwt_jwks_url is None:
            raise ValueError("set JWT_SECRET (HS256) or JWT_JWKS_URL (RS256)")
        return self


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _hh_mm(value: object) -> object:
    if value == "":
        return None
    if isinstance(value, str):
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("expected HH:MM (UTC), e.g. 02:30")
        return time(int(value[:2]), int(value[3:]))
    return value


def reconcile_sources(entries: list[str], *, default_bucket: str) -> list[tuple[str, str]]:
    """(bucket, prefix) pairs from `s3://bucket/prefix` or plain-prefix entries; none: the whole bucket."""
    sources = []
    for entry in entries or [""]:
        if not entry.startswith("s3://"):
            sources.append((default_bucket, entry))
            continue
        bucket, _, prefix = entry.removeprefix("s3://").partition("/")
        if not is_bucket_name(bucket):
            raise ValueError(f"{entry!r}: expected s3://bucket/prefix or a prefix of S3_BUCKET_NAME")
        sources.append((bucket, prefix))
    return sources


class IngestSettings(_Base):
    """How files are ingested; all that `python -m app ingest --dry-run` of a local file needs."""

    ingest_lease_seconds: int = Field(default=300, ge=10)
    ingest_max_file_bytes: int = Field(default=2 * 1024**3, ge=1)
    ingest_max_decompressed_bytes: int = Field(default=8 * 1024**3, ge=1)
    ingest_max_records: int = Field(default=50_000_000, ge=1)
    # One JSON Lines line, CSV record or JSON item is held whole while it is parsed: this bounds that memory.
    ingest_max_record_bytes: int = Field(default=16 * 1024**2, ge=1)
    ingest_error_policy: Literal["reject_file", "skip_rows"] = "reject_file"
    ingest_exclude_prefixes: Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)] = Field(
        default_factory=lambda: ["reports/"]
    )


class SourcesSettings(DatabaseSettings):
    """What `python -m app sources apply` needs: the database, and the bucket a source names by default."""

    s3_bucket_name: str = Field(min_length=3, max_length=63)


class Settings(DatabaseSettings, AuthSettings, IngestSettings):
    """Every setting of the running service; `.env.example` documents each one."""

    s3_bucket_name: str = Field(min_length=3, max_length=63)
    sns_topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$")
    sqs_queue_url: AnyHttpUrl

    aws_region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    aws_endpoint_url: AnyHttpUrl | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None

    # The SQS consumer (SPEC 7).
    sqs_consumer_enabled: bool = True
    sqs_wait_time_seconds: int = Field(default=20, ge=0, le=20)
    sqs_batch_size: int = Field(default=10, ge=1, le=10)
    sqs_max_in_flight: int = Field(default=16, ge=1, le=100)
    # In-flight messages are kept invisible in steps of this many seconds, one every SQS_HEARTBEAT_SECONDS:
    # the message of a worker that died reappears at most one step later.
    sqs_visibility_timeout_seconds: int = Field(default=30, ge=10, le=43_200)
    sqs_heartbeat_seconds: int = Field(default=10, ge=1, le=43_200)
    sqs_backoff_base_seconds: int = Field(default=5, ge=0, le=43_200)
    sqs_backoff_max_seconds: int = Field(default=900, ge=0, le=43_200)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=3_600)
    # Loads started by POST /ingestion/files, /retry and the SNS webhook at once (429 / 503 beyond).
    ingest_max_api_loads: int = Field(default=4, ge=1, le=100)

    # Cross-account sources: bucket name -> the IAM role its files are read with.
    s3_bucket_roles: BucketRolesSetting = Field(default_factory=dict)

    # How often each replica looks for files whose worker died mid-load and loads them (0: never; their
    # messages, a retry or the reconcile sweep still bring them back).
    ingest_recovery_interval_seconds: int = Field(default=5, ge=0, le=3_600)
    # Reconcile sweep (SPEC 7), the safety net for lost events: off while the interval is 0.
    reconcile_interval_seconds: int = Field(default=0, ge=0, le=7 * 86_400)
    reconcile_prefixes: Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)] = Field(
        default_factory=list
    )
    reconcile_min_age_seconds: int = Field(default=300, ge=0, le=7 * 86_400)
    # Daily ingestion report to S3 and SNS, at this UTC time (HH:MM); off when unset.
    report_daily_at_utc: Annotated[time | None, BeforeValidator(_hh_mm)] = None

    # The lake (SPEC 11): off unless LAKE_WAREHOUSE (s3://bucket/prefix) is set.
    lake_warehouse: Annotated[str | None, BeforeValidator(_empty_is_unset)] = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$"
    )
    # glue: AWS Glue (production); sql: a SQL catalog in the service's own PostgreSQL (local, tests).
    lake_catalog: Literal["glue", "sql"] = "sql"
    # The Glue database / Iceberg namespace of the tables (Athena: lowercase letters, digits, underscores).
    lake_namespace: str = Field(default="aws_s3_service", pattern=r"^[a-z_][a-z0-9_]{0,254}$")
    lake_export_interval_seconds: float = Field(default=10.0, gt=0, le=3_600)
    # Rows read from PostgreSQL and written as one Parquet file at a time: bounds the exporter's memory.
    lake_export_batch_rows: int = Field(default=20_000, ge=1, le=5_000_000)
    # Small data files rewritten into ~128 MiB ones, and old snapshots expired, this often (0: never).
    lake_compact_interval_seconds: int = Field(default=3_600, ge=0, le=7 * 86_400)
    # Snapshots (time travel, and readers still planning on them) are kept this long after they are replaced.
    lake_snapshot_retention_hours: float = Field(default=168.0, gt=0, le=24 * 365)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_upload_bytes: int = Field(default=104_857_600, ge=1024)
    s3_max_json_bytes: int = Field(default=10_485_760, ge=1024)
    # JSON bytes the /s3 and user-file routes parse at once (unset: S3_MAX_JSON_BYTES): bounds their memory.
    s3_json_budget_bytes: int | None = Field(default=None, ge=1024)

    # SNS HTTP(S) subscriptions. Certificate and subscribe URLs must be https on exactly the SNS host of
    # the message topic's region, unless this pattern is set (an emulator): then they must match it.
    sns_trusted_url_pattern: str | None = None
    # Only these topics are accepted (empty: SNS_TOPIC_ARN alone).
    sns_webhook_topic_arns: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # SignatureVersion 1 signs with SHA-1; only for a topic whose SignatureVersion cannot be set to 2.
    sns_allow_signature_v1: bool = False
    ready_check_timeout_seconds: float = Field(default=2.0, gt=0)
    migrate_on_startup: bool = True

    @field_validator("sns_webhook_topic_arns", mode="before")
    @classmethod
    def _topic_list(cls, value: object) -> object:
        return _comma_separated(value)

    @field_validator("sns_trusted_url_pattern", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # `SNS_TRUSTED_URL_PATTERN=` is unset, not the empty pattern (which matches every URL).
        return None if value == "" else value

    @field_validator("sns_trusted_url_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _backoff_bounds(self) -> "Settings":
        if self.sqs_backoff_base_seconds > self.sqs_backoff_max_seconds:
            raise ValueError("SQS_BACKOFF_BASE_SECONDS must not exceed SQS_BACKOFF_MAX_SECONDS")
        return self

    @model_validator(mode="after")
    def _heartbeat_inside_the_step(self) -> "Settings":
        # A beat must land before the step it extends runs out (with room for a slow call).
        if self.sqs_heartbeat_seconds * 2 > self.sqs_visibility_timeout_seconds:
            raise ValueError("SQS_HEARTBEAT_SECONDS must be at most half of SQS_VISIBILITY_TIMEOUT_SECONDS")
        return self

    @model_validator(mode="after")
    def _lake_outside_the_ingested_files(self) -> "Settings":
        # The lake writes Parquet, Avro and JSON files: in the service's own bucket, the consumer would
        # be told of each one and ingest the lake into itself.
        if self.lake_warehouse is None:
            return self
        bucket, _, prefix = self.lake_warehouse.removeprefix("s3://").partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        if bucket == self.s3_bucket_name and not any(
            prefix.startswith(excluded) for excluded in self.ingest_exclude_prefixes if excluded
        ):
            raise ValueError(
                "LAKE_WAREHOUSE is in S3_BUCKET_NAME: use another bucket, or a prefix listed in "
                "INGEST_EXCLUDE_PREFIXES (the consumer would ingest the lake's own files)"
            )
        return self

    @field_validator("reconcile_prefixes")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        reconcile_sources(value, default_bucket="")
        return value

    @property
    def reconcile_sources(self) -> list[tuple[str, str]]:
        """(bucket, prefix) pairs the sweep lists; the whole of S3_BUCKET_NAME when none is set."""
        return reconcile_sources(self.reconcile_prefixes, default_bucket=self.s3_bucket_name)

    @property
    def lake_enabled(self) -> bool:
        return self.lake_warehouse is not None

    @property
    def json_budget_bytes(self) -> int:
        return self.s3_json_budget_bytes or self.s3_max_json_bytes

    @property
    def accepted_topic_arns(self) -> frozenset[str]:
        return frozenset(self.sns_webhook_topic_arns or [self.sns_topic_arn])

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load(cls: type[SettingsT]) -> SettingsT:
    """Build settings from the environment, turning validation errors into one clear line."""
    try:
        return cls()
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None


@lru_cache
def get_settings() -> Settings:
    return load(Settings)
