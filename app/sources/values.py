"""A source's columns compiled into converters and checks: one parsed record (CSV strings or JSON values)
becomes a tuple of typed values for binary COPY, or the list of rules it broke.

Rule names are bounded (`RULES`): they label metrics and count rejections per column in the processing log.
"""

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any

import orjson

from app.core.errors import DomainError
from app.sources.spec import Column, CsvDialect, SourceSpec

RULES = ("shape", "required", "type", "min", "max", "max_length", "regex", "enum", "not_blank")
INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
MAX_INTEGER_CHARS = 21  # a sign and bigint's 19 digits, and a leading zero
TRUE = frozenset({"true", "t", "yes", "y", "1"})
FALSE = frozenset({"false", "f", "no", "n", "0"})
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")

Convert = Callable[[Any], Any]


class SourceError(DomainError):
    """A source that cannot be compiled or applied; the message says what to change."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "invalid-source"


@dataclass(frozen=True, slots=True)
class Broken:
    """A rule a value broke: `column: rule`, never the value (it may be personal data)."""

    column: str
    rule: str

    def __str__(self) -> str:
        return f"{self.column}: {self.rule}"


class _Rejected(Exception):
    def __init__(self, rule: str) -> None:
        self.rule = rule


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        text = str(value)
    else:
        raise _Rejected("type")
    if "\0" in text:  # PostgreSQL text cannot hold U+0000
        raise _Rejected("type")
    return text


def _integer(kind: str) -> Convert:
    low, high = INT_RANGES[kind]

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise _Rejected("type")
        if isinstance(value, str):
            value = value.strip()
            # (Python's int() refuses over 4,300 digits with a ValueError: far beyond bigint anyway.)
            if len(value) > MAX_INTEGER_CHARS or not _INTEGER.fullmatch(value):
                raise _Rejected("type")
            number = int(value)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        else:
            raise _Rejected("type")
        if not low <= number <= high:
            raise _Rejected("type")
        return number

    return convert


def _numeric(precision: int, scale: int, separator: str) -> Convert:
    step = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (precision - scale)

    def convert(value: Any) -> Decimal:
        if isinstance(value, bool):
            raise _Rejected("type")
        if isinstance(value, str):
            text = value.strip()
            if separator != ".":
                text = text.replace(separator, ".")
            if not _DECIMAL.fullmatch(text):
                raise _Rejected("type")
            number = Decimal(text)
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))  # the shortest text that reads back as the float
        else:
            raise _Rejected("type")
        try:  # PostgreSQL rounds to the scale too; a value it would refuse is rejected here instead
            rounded = number.quantize(step, rounding=ROUND_HALF_EVEN)
        except InvalidOperation:
            raise _Rejected("type") from None
        if not rounded.is_finite() or abs(rounded) >= limit:
            raise _Rejected("type")
        return rounded

    return convert


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE:
            return True
        if word in FALSE:
            return False
    raise _Rejected("type")


def _date(fmt: str | None) -> Convert:
    def convert(value: Any) -> date:
        if not isinstance(value, str):
            raise _Rejected("type")
        try:
            return datetime.strptime(value.strip(), fmt).date() if fmt else date.fromisoformat(value.strip())
        except ValueError:
            raise _Rejected("type") from None

    return convert


def _timestamp(fmt: str | None) -> Convert:
    def convert(value: Any) -> datetime:
        if not isinstance(value, str):
            raise _Rejected("type")
        try:
            moment = datetime.strptime(value.strip(), fmt) if fmt else datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Rejected("type") from None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)  # no zone: UTC
        try:  # in UTC, as it is sent: 0001-01-01T00:00+05:00 falls before the first year Python has
            return moment.astimezone(UTC)
        except OverflowError:
            raise _Rejected("type") from None

    return convert


def _jsonb(from_text: bool) -> Convert:
    def convert(value: Any) -> bytes:
        if from_text:
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise _Rejected("type") from None
        try:
            # orjson returns each result inside a buffer of 4 KiB or more; slicing off an appended newline
            # copies it into a bytes of its own size (a chunk of 20,000 rows held ~80 MB of buffers).
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)[:-1]
        except TypeError:
            raise _Rejected("type") from None
        if b"\\u0000" in text:  # jsonb cannot hold U+0000
            raise _Rejected("type")
        return text  # serialized already: the pool's jsonb codec sends bytes as they are

    return convert


def converter(column: Column, dialect: CsvDialect | None) -> Convert:
    """The function that types one raw value of `column`; `dialect` is set for CSV sources."""
    kind = column.column_type
    if kind.name == "text":
        return _text
    if kind.name in INT_RANGES:
        return _integer(kind.name)
    if kind.name == "numeric":
        return _numeric(kind.precision, kind.scale, dialect.decimal_separator if dialect else ".")
    if kind.name == "boolean":
        return _boolean
    if kind.name == "date":
        return _date(column.format)
    if kind.name == "timestamptz":
        return _timestamp(column.format)
    return _jsonb(from_text=dialect is not None)


def _pointer(path: str) -> Callable[[Any], Any]:
    """RFC 6901: `/a/b/0` -> record["a"]["b"][0]; a missing step gives None."""
    steps = [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]

    def get(record: Any) -> Any:
        value = record
        for step in steps:
            if isinstance(value, dict):
                value = value.get(step)
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                return None
        return value

    return get


@dataclass(frozen=True, slots=True)
class _Check:
    rule: str
    fails: Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class CompiledColumn:
    name: str
    get: Callable[[dict[str, Any]], Any]
    convert: Convert
    required: bool
    default: Any  # typed already
    checks: tuple[_Check, ...]
    from_text: bool  # CSV: its null strings are null


def _bound(column: Column, convert: Convert, value: Any, what: str, now: datetime) -> Any:
    if value == "now":
        if column.column_type.name == "date":
            return now.date()
        if column.column_type.name == "timestamptz":
            return now
    try:
        return convert(value)
    except _Rejected:
        raise SourceError(f"column {column.name}: {what} {value!r} is not a {column.type}") from None


def _compile_column(column: Column, dialect: CsvDialect | None, now: datetime) -> CompiledColumn:
    convert = converter(column, dialect)
    # The spec's own values (default, bounds, enum) are written as JSON, dates and times in ISO 8601.
    plain = converter(column.model_copy(update={"format": None}), None)
    default = None if column.default is None else _bound(column, plain, column.default, "default", now)
    rules = column.rules
    checks: list[_Check] = []
    if rules.min is not None:
        low = _bound(column, plain, rules.min, "min", now)
        checks.append(_Check("min", lambda value: bool(value < low)))
    if rules.max is not None:
        high = _bound(column, plain, rules.max, "max", now)
        checks.append(_Check("max", lambda value: bool(value > high)))
    if rules.max_length is not None:
        most = rules.max_length
        checks.append(_Check("max_length", lambda value: len(value) > most))
    if rules.regex is not None:
        pattern = re.compile(rules.regex)
        checks.append(_Check("regex", lambda value: pattern.fullmatch(value) is None))
    if rules.allowed is not None:
        if column.column_type.name == "jsonb":
            raise SourceError(f"column {column.name}: enum does not apply to jsonb")
        allowed = frozenset(_bound(column, plain, value, "enum value", now) for value in rules.allowed)
        checks.append(_Check("enum", lambda value: value not in allowed))
    if rules.not_blank:
        checks.append(_Check("not_blank", lambda value: not value.strip()))
    if dialect is not None:
        field = column.source or column.name
        get: Callable[[dict[str, Any]], Any] = lambda record: record.get(field)  # noqa: E731
    else:
        get = _pointer(column.source or f"/{column.name}")
    return CompiledColumn(
        column.name, get, convert, column.required, default, tuple(checks), from_text=dialect is not None
    )


@dataclass(frozen=True, slots=True)
class CompiledSource:
    spec: SourceSpec
    columns: tuple[CompiledColumn, ...]
    nulls: frozenset[str]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def typed(self, record: dict[str, Any]) -> tuple[Any, ...] | list[Broken]:
        """The record's values in column order, or every rule it broke."""
        values: list[Any] = []
        broken: list[Broken] = []
        nulls = self.nulls
        for column in self.columns:
            raw = column.get(record)
            # (Records posted to a CSV source are JSON: a value there may be a list or an object.)
            if raw is None or (column.from_text and isinstance(raw, str) and raw in nulls):
                value = column.default
                if value is None:
                    if column.required:
                        broken.append(Broken(column.name, "required"))
                    values.append(None)
                    continue
            else:
                try:
                    value = column.convert(raw)
                except _Rejected as exc:
                    broken.append(Broken(column.name, exc.rule))
                    values.append(None)
                    continue
            for check in column.checks:
                if check.fails(value):
                    broken.append(Broken(column.name, check.rule))
            values.append(value)
        return broken if broken else tuple(values)


def compile_source(spec: SourceSpec, now: datetime | None = None) -> CompiledSource:
    """Converters and checks for every column; SourceError if a default, bound or enum value does not fit
    its column's type. `now` is what a `now` bound means (the load's start)."""
    dialect = spec.csv if spec.format == "csv" else None
    moment = now or datetime.now(UTC)
    columns = tuple(_compile_column(column, dialect, moment) for column in spec.columns)
    return CompiledSource(spec, columns, frozenset(dialect.null_strings) if dialect else frozenset())


def row_hash(values: Sequence[Any]) -> str:
    """What tells two landed rows apart: sha256 of the typed values as JSON (decimals as text)."""
    return hashlib.sha256(orjson.dumps(list(values), default=_as_text)).hexdigest()


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
