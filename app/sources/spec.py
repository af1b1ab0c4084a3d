"""A source: the declarative contract of the files under one bucket prefix (format, typed columns, rules,
natural key, error policy, tenant limit). Written as YAML or JSON by a data owner, validated here, stored
as a version in `ingestion_sources`."""

import codecs
import re
from datetime import date, datetime
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A PostgreSQL identifier that needs no quoting, short; never starting with _ like the service's own columns.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_COLUMNS = 200
MAX_REGEX_CHARS = 500
MAX_ENUM_VALUES = 1000
# Keys under these prefixes are never a source's: the typed users/ files, quarantined rows, reports, and
# the processing log's names of records posted to the API.
RESERVED_PREFIXES = ("users/", "quarantine/", "reports/", "api-records/")
QUARANTINE_PREFIX = "quarantine/"
_NUMERIC = re.compile(r"^numeric\((\d{1,4}),(\d{1,4})\)$")
SIMPLE_TYPES = ("text", "integer", "bigint", "boolean", "date", "timestamptz", "jsonb")

ColumnName = Annotated[str, Field(pattern=NAME_PATTERN, description="lower-case identifier")]


def as_text_if_date(value: object) -> object:
    """YAML reads an unquoted 2026-01-31 as a date: the spec keeps it as the ISO text it was."""
    return value.isoformat() if isinstance(value, date | datetime) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnType:
    """A column's PostgreSQL type: one of SIMPLE_TYPES or numeric(p,s)."""

    def __init__(self, spelled: str) -> None:
        text = spelled.replace(" ", "").lower()
        self.precision = 0  # numeric(p,s) only
        self.scale = 0
        if found := _NUMERIC.match(text):
            self.precision, self.scale = int(found[1]), int(found[2])
            if not 1 <= self.precision <= 1000 or self.scale > self.precision:
                raise ValueError(f"numeric({self.precision},{self.scale}) needs 1 <= p <= 1000 and s <= p")
            self.name = "numeric"
        elif text in SIMPLE_TYPES:
            self.name = text
        else:
            raise ValueError(f"type {spelled!r} is not one of {', '.join(SIMPLE_TYPES)} or numeric(p,s)")

    @property
    def sql(self) -> str:
        return f"numeric({self.precision},{self.scale})" if self.name == "numeric" else self.name

    def widens_to(self, other: "ColumnType") -> bool:
        """Whether every value of this type fits `other` unchanged (the table can be altered in place)."""
        if self.sql == other.sql:
            return True
        integer_digits = {"integer": 10, "bigint": 19}
        if other.name == "numeric":
            digits = other.precision - other.scale
            if self.name in integer_digits:
                return digits >= integer_digits[self.name]
            if self.name == "numeric":
                return other.scale >= self.scale and digits >= self.precision - self.scale
        return (self.name, other.name) == ("integer", "bigint")


Bound = int | float | str  # converted with the column's own type when the source is compiled


class Rules(_Strict):
    """Checks of a column's value once it has its type; a null value is only checked by `required`."""

    min: Bound | None = Field(default=None, description="numbers, dates, timestamps: the smallest allowed")
    max: Bound | None = Field(
        default=None, description="numbers, dates, timestamps: the largest allowed; `now`: not in the future"
    )
    max_length: int | None = Field(default=None, ge=1, description="text: most characters")
    regex: str | None = Field(default=None, max_length=MAX_REGEX_CHARS, description="text: must match whole")
    allowed: list[Bound | bool] | None = Field(
        default=None, alias="enum", min_length=1, max_length=MAX_ENUM_VALUES, description="the only values"
    )
    not_blank: bool = Field(default=False, description="text: not empty or only whitespace")

    @field_validator("min", "max", mode="before")
    @classmethod
    def _dates_as_text(cls, value: object) -> object:
        return as_text_if_date(value)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class Column(_Strict):
    name: ColumnName
    type: str = Field(
        description="text, integer, bigint, numeric(p,s), boolean, date, timestamptz, jsonb",
        examples=["text", "numeric(18,10)", "timestamptz"],
    )
    source: str | None = Field(
        default=None,
        alias="from",
        description="CSV: the header column (default: the name); JSON: a JSON pointer such as /a/b "
        "(default: /name)",
    )
    required: bool = False
    default: Any = Field(default=None, description="used when the value is missing or null")
    format: str | None = Field(
        default=None, description="date / timestamptz: a strptime format (default: ISO 8601)"
    )
    rules: Rules = Rules()

    @property
    def column_type(self) -> ColumnType:
        return ColumnType(self.type)

    @field_validator("default", mode="before")
    @classmethod
    def _date_default_as_text(cls, value: object) -> object:
        return as_text_if_date(value)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return ColumnType(value).sql

    @model_validator(mode="after")
    def _rules_fit_type(self) -> Self:
        kind = self.column_type.name
        rules = self.rules
        if (rules.min is not None or rules.max is not None) and kind not in (
            "integer",
            "bigint",
            "numeric",
            "date",
            "timestamptz",
        ):
            raise ValueError(
                f"column {self.name}: min/max apply to numbers, dates and timestamps, not {kind}"
            )
        if (rules.max_length or rules.regex or rules.not_blank) and kind != "text":
            raise ValueError(f"column {self.name}: max_length, regex and not_blank apply to text only")
        if self.format is not None and kind not in ("date", "timestamptz"):
            raise ValueError(f"column {self.name}: format applies to date and timestamptz only")
        if self.source is not None and not self.source:
            raise ValueError(f"column {self.name}: from must not be empty")
        return self


class CsvDialect(_Strict):
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str = Field(default='"', min_length=1, max_length=1)
    header: bool = Field(default=True, description="false: no header row; give column_order")
    column_order: list[str] | None = Field(
        default=None, description="the fields of each row in file order, when there is no header row"
    )
    encoding: str = "utf-8"
    null_strings: list[str] = Field(default_factory=lambda: [""], description="values read as null")
    decimal_separator: Literal[".", ","] = "."

    @field_validator("delimiter", "quote")
    @classmethod
    def _not_a_line_break(cls, value: str) -> str:
        if value in "\r\n":
            raise ValueError("must not be a line break")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            name = codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        try:
            b"\n".decode(name)
        except LookupError:  # a codec that is not a text encoding (hex, rot13)
            raise ValueError(f"{value!r} is not a text encoding") from None
        except UnicodeError:
            pass  # a lone newline byte is not text in UTF-16, say: the encoding itself is fine
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.delimiter == self.quote:
            raise ValueError("delimiter and quote must differ")
        if not self.header and not self.column_order:
            raise ValueError("a CSV without a header row needs column_order")
        if self.column_order and len(set(self.column_order)) != len(self.column_order):
            raise ValueError("column_order repeats a name")
        return self


class FileRules(_Strict):
    min_rows: int = Field(default=0, ge=0, description="fewer valid and rejected rows fail the file")
    max_rejected_share: float | None = Field(
        default=None, ge=0, le=1, description="a larger share of rejected rows fails the file"
    )
    expected_columns: list[str] = Field(
        default_factory=list, description="CSV: header columns that must be present"
    )


OnError = Literal["reject_file", "skip_rows", "quarantine"]


class SourceSpec(_Strict):
    """One source, as its owner writes it (YAML or JSON, one per file)."""

    name: ColumnName
    tenant: str = Field(pattern=TENANT_PATTERN)
    bucket: str | None = Field(
        default=None,
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]+$",
        description="default: S3_BUCKET_NAME",
    )
    prefix: str = Field(min_length=1, max_length=512)
    glob: str | None = Field(default=None, max_length=200, description="matched against the key after prefix")
    description: str | None = Field(default=None, max_length=2000)
    format: Literal["json", "jsonl", "csv"]
    csv: CsvDialect = CsvDialect()
    columns: list[Column] = Field(min_length=1, max_length=MAX_COLUMNS)
    key: list[ColumnName] = Field(default_factory=list, description="natural key: upsert; none: append")
    file_rules: FileRules = FileRules()
    on_error: OnError = "reject_file"
    max_in_flight: int | None = Field(default=None, ge=1, le=100, description="the tenant's files at once")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [column.name for column in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("two columns have the same name")
        by_name = {column.name: column for column in self.columns}
        for part in self.key:
            if part not in by_name:
                raise ValueError(f"key column {part} is not a column")
            if not by_name[part].required:
                raise ValueError(f"key column {part} must be required")
        if len(set(self.key)) != len(self.key):
            raise ValueError("the key repeats a column")
        for reserved in RESERVED_PREFIXES:
            if self.prefix.startswith(reserved) or reserved.startswith(self.prefix):
                raise ValueError(f"prefix {self.prefix!r} overlaps {reserved}, which the service keeps")
        if self.format != "csv" and self.csv != CsvDialect():
            raise ValueError("csv options are for format csv only")
        for column in self.columns:
            if self.format == "csv":
                continue
            if column.source is not None and not column.source.startswith("/"):
                raise ValueError(
                    f"column {column.name}: from must be a JSON pointer (/a/b) for {self.format}"
                )
        if self.format == "csv" and self.csv.column_order is not None:
            for column in self.columns:
                if (column.source or column.name) not in self.csv.column_order:
                    raise ValueError(f"column {column.name}: its field is not in column_order")
        return self

    def matches(self, key: str) -> bool:
        return key.startswith(self.prefix) and (
            self.glob is None or fnmatchcase(key[len(self.prefix) :], self.glob)
        )

    def resolved(self, default_bucket: str) -> "SourceSpec":
        """The spec with its bucket filled in: what is stored."""
        return self if self.bucket else self.model_copy(update={"bucket": default_bucket})

    def stored(self) -> dict[str, Any]:
        """The canonical JSON form (aliases, no defaults left implicit): compared to tell a change."""
        return self.model_dump(mode="json", by_alias=True)
