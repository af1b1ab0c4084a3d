"""A source's spec and its compiled columns: what a data owner may declare, and how one record's values are
typed and checked (no database needed)."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.sources.service import parse_spec
from app.sources.spec import ColumnType, SourceSpec
from app.sources.values import Broken, SourceError, compile_source


def spec(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "things",
        "tenant": "acme",
        "prefix": "things/",
        "format": "csv",
        "columns": [
            {"name": "id", "type": "integer", "required": True},
            {"name": "label", "type": "text"},
        ],
        "key": ["id"],
    }
    document.update(changes)
    return document


def compiled(columns: list[dict[str, Any]], fmt: str = "csv", **changes: Any) -> Any:
    return compile_source(SourceSpec.model_validate(spec(columns=columns, key=[], format=fmt, **changes)))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": "Bad-Name"}, "name"),
        ({"prefix": "users/personal/"}, "overlaps users/"),
        ({"prefix": "quarantine/x/"}, "overlaps quarantine/"),
        ({"key": ["label"]}, "key column label must be required"),
        ({"key": ["nope"]}, "key column nope is not a column"),
        ({"columns": [{"name": "_file_id", "type": "text"}]}, "columns.0.name: String should match pattern"),
        ({"columns": [{"name": "a", "type": "varchar"}], "key": []}, "is not one of"),
        ({"columns": [{"name": "a", "type": "text", "rules": {"min": 1}}], "key": []}, "min/max apply"),
        (
            {"columns": [{"name": "a", "type": "text", "rules": {"regex": "("}}], "key": []},
            "regular expression",
        ),
        ({"csv": {"header": False}}, "column_order"),
        ({"csv": {"delimiter": ";", "quote": ";"}}, "must differ"),
        ({"csv": {"encoding": "klingon"}}, "unknown encoding"),
        ({"csv": {"encoding": "rot13"}}, "not a text encoding"),
        ({"csv": {"delimiter": "\n"}}, "must not be a line break"),
        (
            {"format": "jsonl", "columns": [{"name": "a", "type": "text", "from": "a"}], "key": []},
            "JSON pointer",
        ),
        ({"unknown_field": 1}, "unknown_field"),
        ({"on_error": "ignore"}, "on_error"),
        ({"max_in_flight": 0}, "max_in_flight"),
    ],
)
def test_an_invalid_spec_is_refused_naming_what_is_wrong(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(SourceError) as refused:
        parse_spec(spec(**changes), where="things.yaml")
    assert problem in str(refused.value)
    assert str(refused.value).startswith("things.yaml: ")


@pytest.mark.parametrize(
    ("column", "problem"),
    [
        ({"name": "n", "type": "integer", "default": "many"}, "default 'many' is not a integer"),
        ({"name": "d", "type": "date", "rules": {"max": "yesterday"}}, "max 'yesterday'"),
        ({"name": "r", "type": "text", "rules": {"enum": [{"a": 1}]}}, "enum"),
        ({"name": "j", "type": "jsonb", "rules": {"enum": ["a"]}}, "enum does not apply to jsonb"),
    ],
)
def test_a_default_bound_or_enum_value_must_fit_its_column(column: dict[str, Any], problem: str) -> None:
    with pytest.raises(SourceError) as refused:
        parse_spec(spec(columns=[column], key=[]), where="x")
    assert problem in str(refused.value)


def test_csv_values_are_typed_and_null_strings_are_null() -> None:
    source = compiled(
        [
            {"name": "n", "type": "bigint", "required": True},
            {"name": "amount", "type": "numeric(8,2)"},
            {"name": "ok", "type": "boolean", "default": True},
            {"name": "day", "type": "date", "format": "%d/%m/%Y", "rules": {"min": "2026-01-01"}},
            {"name": "at", "type": "timestamptz"},
            {"name": "tags", "type": "jsonb", "from": "Tags"},
        ],
        csv={"null_strings": ["", "NULL"], "decimal_separator": ","},
    )
    row = {
        "n": " 42 ",
        "amount": "1234,565",
        "ok": "",
        "day": "31/01/2026",
        "at": "2026-01-31T10:00:00",
        "Tags": '{"b":1,"a":[2]}',
    }
    assert source.typed(row) == (
        42,
        Decimal("1234.56"),  # rounded half to even at the column's scale, as PostgreSQL would
        True,  # the default stands in for a null string
        date(2026, 1, 31),
        datetime(2026, 1, 31, 10, tzinfo=UTC),  # no zone given: UTC
        b'{"a":[2],"b":1}',
    )
    assert source.typed({**row, "amount": "NULL", "at": "2026-01-31T10:00:00+02:00"})[1] is None


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ({"type": "integer"}, "12.5", "type"),
        ({"type": "integer"}, "99999999999", "type"),  # beyond int4: PostgreSQL would refuse the whole COPY
        ({"type": "integer"}, "١٢", "type"),  # Arabic-Indic digits: int() takes them, PostgreSQL does not
        ({"type": "bigint"}, "9" * 5000, "type"),  # int() itself raises on over 4,300 digits
        ({"type": "timestamptz"}, "0001-01-01T00:00:00+05:00", "type"),  # before year 1 in UTC
        ({"type": "numeric(4,2)"}, "100.00", "type"),  # two integer digits at most
        ({"type": "numeric(4,2)"}, "NaN", "type"),
        ({"type": "boolean"}, "maybe", "type"),
        ({"type": "date"}, "2026-02-30", "type"),
        ({"type": "text"}, "a\x00b", "type"),  # PostgreSQL text cannot hold U+0000
        ({"type": "jsonb"}, "{not json", "type"),
        ({"type": "jsonb"}, '{"a": "\\u0000"}', "type"),
        ({"type": "integer", "rules": {"min": 1, "max": 10}}, "0", "min"),
        ({"type": "integer", "rules": {"min": 1, "max": 10}}, "11", "max"),
        ({"type": "date", "rules": {"max": "now"}}, "2999-01-01", "max"),
        ({"type": "text", "rules": {"max_length": 3}}, "abcd", "max_length"),
        ({"type": "text", "rules": {"regex": "[A-Z]{2}[0-9]{4}"}}, "AB12345", "regex"),  # the whole value
        ({"type": "text", "rules": {"enum": ["a", "b"]}}, "c", "enum"),
        ({"type": "text", "rules": {"not_blank": True}}, " \t", "not_blank"),
        ({"type": "text", "required": True}, "", "required"),
    ],
)
def test_each_rule_rejects_a_value_that_breaks_it(column: dict[str, Any], value: str, rule: str) -> None:
    source = compiled([{"name": "v", **column}])
    assert source.typed({"v": value}) == [Broken("v", rule)]


def test_every_broken_rule_of_a_record_is_reported_without_its_values() -> None:
    source = compiled(
        [
            {"name": "a", "type": "integer", "required": True},
            {"name": "b", "type": "text", "rules": {"enum": ["x"], "max_length": 1}},
        ]
    )
    broken = source.typed({"b": "secret-value"})
    assert broken == [Broken("a", "required"), Broken("b", "max_length"), Broken("b", "enum")]
    assert "secret" not in ", ".join(map(str, broken))


def test_json_values_are_picked_with_pointers() -> None:
    source = compiled(
        [
            {"name": "id", "type": "text", "from": "/id", "required": True},
            {"name": "version", "type": "text", "from": "/context/app/version"},
            {"name": "first_tag", "type": "text", "from": "/tags/0"},
            {"name": "slashed", "type": "integer", "from": "/a~1b"},
            {"name": "amount", "type": "numeric(6,2)", "from": "/amount"},
            {"name": "props", "type": "jsonb", "from": "/props"},
        ],
        fmt="jsonl",
    )
    record = {
        "id": 7,
        "context": {"app": {"version": "3.1"}},
        "tags": ["x"],
        "a/b": 5,
        "amount": 0.1,
        "props": {"k": [1]},
    }
    assert source.typed(record) == ("7", "3.1", "x", 5, Decimal("0.10"), b'{"k":[1]}')
    assert source.typed({"id": "1", "context": "flat", "tags": []})[1:5] == (None, None, None, None)
    assert source.typed({"id": True}) == [Broken("id", "type")]  # a boolean is not text


def test_type_widening() -> None:
    assert ColumnType("integer").widens_to(ColumnType("bigint"))
    assert ColumnType("bigint").widens_to(ColumnType("numeric(19,0)"))
    assert ColumnType("numeric(10,2)").widens_to(ColumnType("numeric(12,4)"))
    assert not ColumnType("numeric(10,2)").widens_to(ColumnType("numeric(10,4)"))  # fewer integer digits
    assert not ColumnType("bigint").widens_to(ColumnType("integer"))
    assert not ColumnType("text").widens_to(ColumnType("integer"))
    assert not ColumnType("date").widens_to(ColumnType("timestamptz"))
