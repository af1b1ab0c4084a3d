"""The streaming parsers, fed from memory in chunks of 1 byte, 7 bytes and 64 KiB so that every chunk
boundary (inside a BOM, a gzip header, a UTF-8 sequence, a quoted field, a line) is crossed."""

import gzip
import hashlib
import tracemalloc
import zlib
from collections.abc import Iterator

import orjson
import pytest

from app.core.config import IngestSettings
from app.ingestion.parsers import (
    MAX_JSON_DEPTH,
    PIECE_BYTES,
    CsvOptions,
    FileFormat,
    ParseError,
    Record,
    RecordStream,
    detect_format,
    record_stream,
)

CHUNK_SIZES = [1, 7, 64 * 1024]
NO_LIMIT = 1 << 40
MIB = 1024 * 1024
BOM = b"\xef\xbb\xbf"


class MemorySource:
    """A ByteSource over bytes that hands out at most `chunk` bytes per read."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = memoryview(data)
        self._chunk = chunk
        self._at = 0

    async def read(self, n: int = -1) -> bytes:
        size = self._chunk if n < 0 else min(n, self._chunk)
        chunk = bytes(self._data[self._at : self._at + size])
        self._at += len(chunk)
        return chunk


class GeneratedSource:
    """A ByteSource that makes its bytes as they are read, so a large file never sits in the test."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks

    async def read(self, n: int = -1) -> bytes:
        return next(self._blocks, b"")


def stream(
    data: bytes,
    fmt: FileFormat,
    chunk: int = 7,
    *,
    max_bytes: int = NO_LIMIT,
    max_decompressed_bytes: int = NO_LIMIT,
    max_records: int = NO_LIMIT,
    max_record_bytes: int = NO_LIMIT,
    csv: CsvOptions = CsvOptions(),
) -> RecordStream:
    return RecordStream(
        MemorySource(data, chunk),
        fmt,
        max_bytes=max_bytes,
        max_decompressed_bytes=max_decompressed_bytes,
        max_records=max_records,
        max_record_bytes=max_record_bytes,
        csv=csv,
    )


async def parse(
    data: bytes, fmt: FileFormat, chunk: int = 7, *, csv: CsvOptions = CsvOptions(), **limits: int
) -> list[Record]:
    return [record async for record in stream(data, fmt, chunk, csv=csv, **limits)]


async def parse_error(
    data: bytes, fmt: FileFormat, chunk: int = 7, *, csv: CsvOptions = CsvOptions(), **limits: int
) -> ParseError:
    with pytest.raises(ParseError) as caught:
        await parse(data, fmt, chunk, csv=csv, **limits)
    return caught.value


def rows(records: list[Record]) -> list[tuple[int, dict[str, object] | None, str | None]]:
    return [(record.line, record.data, record.error) for record in records]


# JSON


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_json_array_of_objects_yields_each_item(chunk: int) -> None:
    data = b' [ {"a": 1, "b": "x"},\n  {"a": 2.5, "b": null}, {} ] \n'

    records = await parse(data, FileFormat.JSON, chunk)

    assert rows(records) == [(1, {"a": 1, "b": "x"}, None), (2, {"a": 2.5, "b": None}, None), (3, {}, None)]
    assert [record.index for record in records] == [0, 1, 2]
    assert records[0].canonical == b'{"a":1,"b":"x"}'
    assert records[0].row_hash == hashlib.sha256(b'{"a":1,"b":"x"}').hexdigest()


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_json_single_object_is_one_record(chunk: int) -> None:
    records = await parse(b'\n{"user_id": "u1", "name": "Ada"}\n', FileFormat.JSON, chunk)

    assert rows(records) == [(1, {"user_id": "u1", "name": "Ada"}, None)]


async def test_json_nested_structures_are_kept() -> None:
    document = {"id": 1, "address": {"city": "Oslo", "geo": [59.9, 10.7]}, "tags": [{"k": "v"}, [], None]}

    records = await parse(orjson.dumps([document]), FileFormat.JSON)

    assert records[0].data == document
    assert orjson.loads(records[0].canonical or b"") == document


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_json_non_object_item_is_rejected_with_its_item_number(chunk: int) -> None:
    records = await parse(b'[{"a": 1}, 42, ["x"], {"a": 2}]', FileFormat.JSON, chunk)

    assert rows(records) == [
        (1, {"a": 1}, None),
        (2, None, "item 2: not a JSON object"),
        (3, None, "item 3: not a JSON object"),
        (4, {"a": 2}, None),
    ]
    assert records[1].canonical is None
    assert records[1].row_hash is None


@pytest.mark.parametrize("document", [b"42", b'"text"', b"null", b"true", b"", b"  \n "])
async def test_json_top_level_scalar_is_a_parse_error(document: bytes) -> None:
    error = await parse_error(document, FileFormat.JSON)

    assert error.code == "parse_error"
    assert error.message == "a JSON file must hold an object or an array of objects"


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_json_syntax_error_is_a_parse_error_with_its_item_number(chunk: int) -> None:
    error = await parse_error(b'[{"a": 1}, {"a": 2}, {"secret": tru}]', FileFormat.JSON, chunk)

    assert (error.code, error.line, error.message) == ("parse_error", 3, "item 3: invalid JSON")


@pytest.mark.parametrize("number", [b"-9223372036854775807", b"9223372036854775807"])
async def test_json_integers_of_the_signed_64_bit_range_are_read_exactly(number: bytes) -> None:
    records = await parse(b'[{"n": ' + number + b"}]", FileFormat.JSON)

    assert records[0].data == {"n": int(number)}


@pytest.mark.parametrize("number", [b"-9223372036854775808", b"9223372036854775808"])
async def test_json_integer_yajl_cannot_hold_fails_the_file_it_is_not_rounded(number: bytes) -> None:
    # -2**63 too: yajl negates the magnitude, which overflows (README, "Parsing choices").
    error = await parse_error(b'[{"a": 1}, {"n": ' + number + b"}]", FileFormat.JSON)

    assert (error.code, error.message) == ("parse_error", "item 2: invalid JSON")


@pytest.mark.parametrize("document", [b'[{"a": 1}', b'[{"a": 1}] [', b'{"a": 1} {"b": 2}', b'[{"a": 1},]'])
async def test_json_truncated_or_trailing_content_is_a_parse_error(document: bytes) -> None:
    error = await parse_error(document, FileFormat.JSON)

    assert error.code == "parse_error"
    assert "invalid JSON" in error.message


@pytest.mark.parametrize("chunk", [64 * 1024, MIB])
@pytest.mark.parametrize("document", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000])
async def test_json_deeply_nested_is_a_parse_error_not_a_crash(document: bytes, chunk: int) -> None:
    tracemalloc.start()
    try:
        error = await parse_error(document, FileFormat.JSON, chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error.code == "parse_error"
    assert error.message == f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels"
    assert peak < 20 * MIB


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_json_brackets_and_escaped_quotes_inside_strings_do_not_count_as_nesting(chunk: int) -> None:
    tricky = '\\"[[[' + "[" * 3000 + '\\\\"'  # an escaped quote, many brackets, an escaped backslash
    document = [{"s": tricky, "t": "}" * 3000}, {"deep": [[[{"x": "]"}]]]}]

    records = await parse(orjson.dumps(document), FileFormat.JSON, chunk)

    assert [record.data for record in records] == document


async def test_json_nesting_orjson_cannot_store_is_a_rejected_record() -> None:
    deep = b"[" * 300 + b"]" * 300  # within MAX_JSON_DEPTH, beyond what orjson serializes
    records = await parse(b'[{"ok": 1}, {"deep": ' + deep + b"}]", FileFormat.JSON, 4096)

    assert records[0].error is None
    assert records[1].data is None
    assert (records[1].error or "").startswith("item 2: cannot be stored as JSON")


# JSON Lines


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_jsonl_skips_blank_lines_accepts_crlf_and_a_last_line_without_newline(chunk: int) -> None:
    data = b'{"a": 1}\r\n\r\n   \n{"a": 2}\n\t\n{"a": 3}'

    records = await parse(data, FileFormat.JSONL, chunk)

    assert rows(records) == [(1, {"a": 1}, None), (4, {"a": 2}, None), (6, {"a": 3}, None)]
    assert [record.index for record in records] == [0, 1, 2]


async def test_ndjson_key_parses_as_json_lines() -> None:
    records = await parse(b'{"a": 1}\n{"a": 2}\n', detect_format("events/2024/batch.NDJSON"))

    assert [record.data for record in records] == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_jsonl_invalid_line_is_a_parse_error_with_its_line_number(chunk: int) -> None:
    error = await parse_error(b'{"a": 1}\n\n{"a": 2}\n{"secret": "x",\n', FileFormat.JSONL, chunk)

    assert (error.code, error.line, error.message) == ("parse_error", 4, "line 4: invalid JSON")
    assert "secret" not in str(error)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_jsonl_non_object_line_is_rejected_with_its_line_number(chunk: int) -> None:
    records = await parse(b'{"a": 1}\n7\n["a"]\n"s"\n{"a": 2}\n', FileFormat.JSONL, chunk)

    assert rows(records) == [
        (1, {"a": 1}, None),
        (2, None, "line 2: not a JSON object"),
        (3, None, "line 3: not a JSON object"),
        (4, None, "line 4: not a JSON object"),
        (5, {"a": 2}, None),
    ]


async def test_jsonl_line_much_longer_than_a_chunk() -> None:
    long_value = "x" * (3 * MIB)
    data = b'{"a": 1}\n' + orjson.dumps({"long": long_value}) + b'\n{"a": 2}\n'

    records = await parse(data, FileFormat.JSONL, 64 * 1024)

    assert [record.line for record in records] == [1, 2, 3]
    assert records[1].data == {"long": long_value}


async def test_jsonl_nesting_orjson_cannot_store_is_a_rejected_record() -> None:
    deep = b"[" * 300 + b"]" * 300
    records = await parse(b'{"deep": ' + deep + b'}\n{"ok": 1}\n', FileFormat.JSONL)

    assert (records[0].error or "").startswith("line 1: cannot be stored as JSON")
    assert records[1].data == {"ok": 1}


# CSV


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_rows_become_dicts_of_strings(chunk: int) -> None:
    data = b"id,name,score\r\n1,Ada,9.5\r\n2,,\r\n"

    records = await parse(data, FileFormat.CSV, chunk)

    assert rows(records) == [
        (2, {"id": "1", "name": "Ada", "score": "9.5"}, None),
        (3, {"id": "2", "name": "", "score": ""}, None),
    ]
    assert records[0].canonical == b'{"id":"1","name":"Ada","score":"9.5"}'


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_quoted_commas_quotes_and_newlines_keep_start_lines(chunk: int) -> None:
    data = (
        b"id,note\n"
        b'1,"a, b"\n'
        b'2,"she said ""hi"""\n'
        b'3,"line one\n'
        b"line two\n"
        b'line three"\n'
        b"\n"
        b'4,"""quoted""\n,"\n'
        b"5,end"
    )

    records = await parse(data, FileFormat.CSV, chunk)

    assert rows(records) == [
        (2, {"id": "1", "note": "a, b"}, None),
        (3, {"id": "2", "note": 'she said "hi"'}, None),
        (4, {"id": "3", "note": "line one\nline two\nline three"}, None),
        (8, {"id": "4", "note": '"quoted"\n,'}, None),
        (10, {"id": "5", "note": "end"}, None),
    ]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_ragged_row_is_rejected_with_its_line_number(chunk: int) -> None:
    records = await parse(b"a,b,c,d,e\n1,2,3,4,5\n1,2,3\n1,2,3,4,5,6\n", FileFormat.CSV, chunk)

    assert rows(records) == [
        (2, {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}, None),
        (3, None, "line 3: 3 fields, header has 5"),
        (4, None, "line 4: 6 fields, header has 5"),
    ]


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (b"id,name,id", "line 1: header column 3 repeats an earlier name"),
        (b"id,,name", "line 1: header column 2 has no name"),
        (b"id, ", "line 1: header column 2 has no name"),
        (b'""', "line 1: header column 1 has no name"),
    ],
)
async def test_csv_duplicate_or_blank_header_is_a_parse_error(header: bytes, problem: str) -> None:
    error = await parse_error(header + b"\n1,2,3\n", FileFormat.CSV)

    assert (error.code, error.line, error.message) == ("parse_error", 1, problem)


async def test_csv_without_a_header_is_a_parse_error() -> None:
    error = await parse_error(b"\n\n", FileFormat.CSV)

    assert (error.code, error.message) == ("parse_error", "line 1: the header row is missing")


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_nul_byte_is_a_parse_error(chunk: int) -> None:
    error = await parse_error(b"a,b\n1,2\n3,x\x00y\n", FileFormat.CSV, chunk)

    assert (error.code, error.line, error.message) == ("parse_error", 3, "line 3: NUL byte")


async def test_csv_unterminated_quote_is_a_parse_error() -> None:
    error = await parse_error(b'a,b\n1,"open\n2,3\n', FileFormat.CSV)

    assert error.code == "parse_error"
    assert error.line == 3


# CSV options: a source's dialect (delimiter, quote, header row or declared columns, encoding)

HEADERLESS = CsvOptions(header=False, columns=("id", "name"))


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_semicolon_delimiter_with_a_quoted_field_holding_a_semicolon_and_a_newline(
    chunk: int,
) -> None:
    data = b'id;note;n\r\n1;"a; b\nc";x\r\n2;plain, with a comma;"y"\r\n'

    records = await parse(data, FileFormat.CSV, chunk, csv=CsvOptions(delimiter=";"))

    assert rows(records) == [
        (2, {"id": "1", "note": "a; b\nc", "n": "x"}, None),
        (4, {"id": "2", "note": "plain, with a comma", "n": "y"}, None),
    ]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_custom_quote_doubles_inside_a_field_and_the_default_quote_is_plain_text(
    chunk: int,
) -> None:
    data = b"id,note\n1,'it''s \"fine\", really\nsecond line'\n2,'x'\n3,\"a\n"

    records = await parse(data, FileFormat.CSV, chunk, csv=CsvOptions(quote="'"))

    assert rows(records) == [
        (2, {"id": "1", "note": 'it\'s "fine", really\nsecond line'}, None),
        (4, {"id": "2", "note": "x"}, None),
        (5, {"id": "3", "note": '"a'}, None),
    ]


@pytest.mark.parametrize("shift", [-2, -1, 0, 1])
async def test_csv_custom_quote_with_a_newline_on_a_piece_boundary(shift: int) -> None:
    # 64 KiB chunks make pieces of exactly PIECE_BYTES: the quoted field's newline is the byte before,
    # at or after the boundary, so one piece ends inside the quotes (with an odd count of them so far).
    first = b"id,note\n1,"
    opening = b"2,'it''s"
    pad = PIECE_BYTES + shift - len(first) - 1 - len(opening)
    data = first + b"p" * pad + b"\n" + opening + b"\nnext line'\n3,end\n"
    assert data.index(b"\nnext") == PIECE_BYTES + shift

    records = await parse(data, FileFormat.CSV, PIECE_BYTES, csv=CsvOptions(quote="'"))

    assert rows(records) == [
        (2, {"id": "1", "note": "p" * pad}, None),
        (3, {"id": "2", "note": "it's\nnext line"}, None),
        (5, {"id": "3", "note": "end"}, None),
    ]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_without_a_header_row_keys_every_row_by_the_columns(chunk: int) -> None:
    data = b'1,Ada\n\n2\n"3","multi\nline"\n4,Bob,extra\n5,Cy'
    parsed = stream(data, FileFormat.CSV, chunk, csv=HEADERLESS)

    records = [record async for record in parsed]

    assert rows(records) == [
        (1, {"id": "1", "name": "Ada"}, None),
        (3, None, "line 3: 1 fields, expected 2"),
        (4, {"id": "3", "name": "multi\nline"}, None),
        (6, None, "line 6: 3 fields, expected 2"),
        (7, {"id": "5", "name": "Cy"}, None),
    ]
    assert [record.index for record in records] == [0, 1, 2, 3, 4]
    assert parsed.header == ["id", "name"]


@pytest.mark.parametrize("data", [b"", b"\n\n"])
async def test_csv_without_a_header_row_may_be_empty(data: bytes) -> None:
    assert await parse(data, FileFormat.CSV, csv=HEADERLESS) == []


async def test_csv_without_a_header_row_counts_the_first_row_against_max_records() -> None:
    error = await parse_error(b"1,a\n2,b\n3,c\n", FileFormat.CSV, csv=HEADERLESS, max_records=2)

    assert (error.code, error.message) == ("too_many_records", "the file has more than 2 records")


async def test_csv_header_is_none_until_the_header_row_is_read_and_then_a_copy() -> None:
    parsed = stream(b"id,name\n1,a\n2,b\n", FileFormat.CSV, 7)  # record 2 is parsed after the first batch
    assert parsed.header is None

    batches = parsed.batches(1)
    first = await anext(batches)
    assert parsed.header == ["id", "name"]
    parsed.header[0] = "changed"  # the caller's list: the records go on with the file's names
    rest = [batch async for batch in batches]

    assert [record.data for batch in [first, *rest] for record in batch] == [
        {"id": "1", "name": "a"},
        {"id": "2", "name": "b"},
    ]


async def test_csv_header_is_the_columns_from_the_start_when_there_is_no_header_row() -> None:
    parsed = stream(b"1,a\n", FileFormat.CSV, csv=CsvOptions(header=False, columns=("x", "y")))

    assert parsed.header == ["x", "y"]


@pytest.mark.parametrize(
    ("fmt", "data"), [(FileFormat.JSON, b'[{"a": 1}]'), (FileFormat.JSONL, b'{"a": 1}\n')]
)
async def test_json_files_have_no_header(fmt: FileFormat, data: bytes) -> None:
    parsed = stream(data, fmt, csv=HEADERLESS)  # the CSV options do not apply

    records = [record async for record in parsed]

    assert [record.data for record in records] == [{"a": 1}]
    assert parsed.header is None


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("encoding", "data", "expected"),
    [
        ("latin-1", b'id,name\n1,Jos\xe9\n2,"na\xefve\n\xe9t\xe9"\n', ["José", "naïve\nété"]),
        ("cp1252", b'id,name\n1,\x80 5\n2,"\x93q\x94\n"\n', ["€ 5", "\u201cq\u201d\n"]),
        ("utf-16", 'id,name\n1,José\n2,"a\nb"\n'.encode("utf-16"), ["José", "a\nb"]),
        ("utf-16-le", '\ufeffid,name\n1,José\n2,"a\nb"\n'.encode("utf-16-le"), ["José", "a\nb"]),
        ("UTF8", BOM + 'id,name\n1,José\n2,"a\nb"\n'.encode(), ["José", "a\nb"]),
        ("utf-8-sig", BOM + 'id,name\n1,José\n2,"a\nb"\n'.encode(), ["José", "a\nb"]),
    ],
    ids=["latin-1", "cp1252", "utf-16", "utf-16-le", "UTF8", "utf-8-sig"],
)
async def test_csv_declared_encoding_is_decoded(
    encoding: str, data: bytes, expected: list[str], chunk: int
) -> None:
    records = await parse(data, FileFormat.CSV, chunk, csv=CsvOptions(encoding=encoding))

    assert rows(records) == [
        (2, {"id": "1", "name": expected[0]}, None),
        (3, {"id": "2", "name": expected[1]}, None),
    ]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("encoding", "data", "line", "message"),
    [
        ("ascii", b'id,name\n1,ok\n2,"multi\nline"\n3,Jos\xe9\n', 5, "line 5: not valid ascii"),
        (
            "cp1252",
            b"id,name\n1,ok\n\n2,\x81\n",
            4,
            "line 4: not valid cp1252",
        ),  # 0x81: no character in cp1252
        # U+010A is 0x0A 0x01 in UTF-16-LE: only newlines in the decoded text count.
        (
            "utf-16-le",
            "id\n1\n\u010a\n".encode("utf-16-le") + b"\x00\xdc\n\x00",
            4,
            "line 4: not valid utf-16-le",
        ),
        ("utf-16", "id\n1\n2\n".encode("utf-16")[:-1], 3, "line 3: not valid utf-16 (cut short)"),
    ],
    ids=["ascii", "cp1252", "utf-16-le", "utf-16-cut-short"],
)
async def test_csv_bytes_invalid_in_the_declared_encoding_are_an_encoding_error_with_the_line(
    encoding: str, data: bytes, line: int, message: str, chunk: int
) -> None:
    error = await parse_error(data, FileFormat.CSV, chunk, csv=CsvOptions(encoding=encoding))

    assert (error.code, error.line, error.message) == ("encoding", line, message)


async def test_csv_a_byte_invalid_in_a_later_piece_has_its_line_in_the_file() -> None:
    data = b"id\n" + b"x\xe9\n" * PIECE_BYTES + b"\x81\n"  # 3 pieces of valid cp1252 text before it

    error = await parse_error(data, FileFormat.CSV, PIECE_BYTES, csv=CsvOptions(encoding="cp1252"))

    assert (error.code, error.line) == ("encoding", PIECE_BYTES + 2)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_declared_dialect_of_a_gzipped_file(chunk: int) -> None:
    text = b"1;'Jos\xe9; ''Pepe''';x\n2;'two\nlines';y\n3;z\n"
    data = gzip.compress(text[:10]) + gzip.compress(text[10:])
    options = CsvOptions(
        delimiter=";", quote="'", header=False, columns=("id", "name", "tag"), encoding="latin-1"
    )
    parsed = stream(data, FileFormat.CSV, chunk, csv=options)

    records = [record async for record in parsed]

    assert rows(records) == [
        (1, {"id": "1", "name": "José; 'Pepe'", "tag": "x"}, None),
        (2, {"id": "2", "name": "two\nlines", "tag": "y"}, None),
        (4, None, "line 4: 2 fields, expected 3"),
    ]
    assert parsed.gzipped
    assert (parsed.raw_bytes, parsed.decompressed_bytes) == (len(data), len(text))
    assert parsed.header == ["id", "name", "tag"]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_record_limit_counts_newlines_inside_the_declared_quotes(chunk: int) -> None:
    note = b"n" * 40 + b"\n" + b"''" + b"n" * (LIMIT - 47)  # the record is LIMIT bytes; with one more, over
    ok = b"id,note\n3,'" + note + b"'\n4,e\n"
    over = b"id,note\n1,a\n3,'n" + note + b"'\n4,e\n"
    options = CsvOptions(quote="'")

    records = await parse(ok, FileFormat.CSV, chunk, csv=options, max_record_bytes=LIMIT)
    error = await parse_error(over, FileFormat.CSV, chunk, csv=options, max_record_bytes=LIMIT)

    assert [(record.line, record.error) for record in records] == [(2, None), (4, None)]
    assert (error.code, error.line) == ("record_too_large", 3)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_record_limit_is_in_utf8_bytes_whatever_the_encoding(chunk: int) -> None:
    data = b"id,note\n1," + b"\xe9" * (LIMIT // 2) + b"\n"  # 52 bytes in Latin-1, 102 in UTF-8
    options = CsvOptions(encoding="latin-1")

    error = await parse_error(data, FileFormat.CSV, chunk, csv=options, max_record_bytes=LIMIT)

    assert (error.code, error.line) == ("record_too_large", 2)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (CsvOptions(delimiter=""), "the CSV delimiter must be exactly one character, not ''"),
        (CsvOptions(delimiter=";;"), "the CSV delimiter must be exactly one character, not ';;'"),
        (CsvOptions(quote=""), "the CSV quote must be exactly one character, not ''"),
        (CsvOptions(quote="''"), "the CSV quote must be exactly one character, not \"''\""),
        (CsvOptions(delimiter="\n"), "the CSV delimiter must not be a line break"),
        (CsvOptions(quote="\r"), "the CSV quote must not be a line break"),
        (CsvOptions(delimiter="'", quote="'"), 'the CSV delimiter and quote must differ (both are "\'")'),
        (CsvOptions(header=False), "a CSV without a header row needs columns: the field names in file order"),
        (CsvOptions(header=False, columns=("a", " ")), "CSV column 2 has no name"),
        (CsvOptions(header=False, columns=("a", "b", "a")), "CSV column 3 repeats an earlier name ('a')"),
        (
            CsvOptions(encoding="no-such-codec"),
            "the CSV encoding 'no-such-codec' is not a known text encoding",
        ),
        (CsvOptions(encoding="hex"), "the CSV encoding 'hex' is not a known text encoding"),
    ],
)
def test_csv_options_are_checked_when_the_stream_is_made(options: CsvOptions, problem: str) -> None:
    settings = IngestSettings.model_construct()

    with pytest.raises(ValueError) as made:
        stream(b"", FileFormat.CSV, csv=options)
    with pytest.raises(ValueError) as from_settings:
        record_stream(MemorySource(b"", 7), FileFormat.CSV, settings, csv=options)

    assert str(made.value) == str(from_settings.value) == problem


async def test_record_stream_passes_the_csv_options_on() -> None:
    source = MemorySource(b"a;b\n1;2\n", 7)
    parsed = record_stream(source, FileFormat.CSV, IngestSettings.model_construct(), csv=CsvOptions(";"))

    assert [record.data async for record in parsed] == [{"a": "1", "b": "2"}]


# Encodings


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("fmt", "data", "expected"),
    [
        (FileFormat.JSON, b'[{"k": "\xc3\xa9"}]', {"k": "é"}),
        (FileFormat.JSONL, b'{"k": "\xc3\xa9"}\n', {"k": "é"}),
        (FileFormat.CSV, b"k\n\xc3\xa9\n", {"k": "é"}),
    ],
)
async def test_byte_order_mark_is_skipped(
    fmt: FileFormat, data: bytes, expected: dict[str, str], chunk: int
) -> None:
    records = await parse(BOM + data, fmt, chunk)

    assert [record.data for record in records] == [expected]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("fmt", "data", "line"),
    [
        (FileFormat.JSON, b'[{"a": "ok"}, {"a": "\xc3\xa9"}, {"a": "\xff"}]', 3),
        (FileFormat.JSONL, b'{"a": "ok"}\n\n{"a": "\xe2\x82"}\n', 3),
        (FileFormat.CSV, b'a\nok\n"multi\nline"\n\xc3\n', 5),
        (FileFormat.CSV, b"a\nok\n\xe2\x82", 3),
    ],
)
async def test_invalid_utf8_is_an_encoding_error_with_its_position(
    fmt: FileFormat, data: bytes, line: int, chunk: int
) -> None:
    error = await parse_error(data, fmt, chunk)

    assert (error.code, error.line) == ("encoding", line)


# gzip


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("key", "compress"),
    [("drop/data.jsonl", True), ("drop/data.jsonl.gz", False), ("drop/data.jsonl.gz", True)],
)
async def test_gzip_is_detected_by_magic_bytes_not_the_key(key: str, compress: bool, chunk: int) -> None:
    text = b'{"a": 1}\n{"a": 2}\n'
    data = gzip.compress(text) if compress else text
    parsed = stream(data, detect_format(key), chunk)

    records = [record async for record in parsed]

    assert [record.data for record in records] == [{"a": 1}, {"a": 2}]
    assert parsed.gzipped is compress
    assert (parsed.raw_bytes, parsed.decompressed_bytes) == (len(data), len(text))


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_multi_member_gzip_is_read_to_the_end(chunk: int) -> None:
    data = gzip.compress(b"id,n\n1,a\n") + gzip.compress(b"") + gzip.compress(b"2,b\n3,")
    data += gzip.compress(b"c\n")

    records = await parse(data, FileFormat.CSV, chunk)

    assert [record.data for record in records] == [
        {"id": "1", "n": "a"},
        {"id": "2", "n": "b"},
        {"id": "3", "n": "c"},
    ]


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(b'{"a": 1}\n' * 1000)[:-20],  # cut short
        gzip.compress(b'{"a": 1}\n')[:12],  # inside the deflate stream
        b"\x1f\x8b",  # the magic bytes only
        gzip.compress(b'{"a": 1}\n') + b"trailing garbage",
        b"\x1f\x8b\x08\x00" + b"\xff" * 40,  # a corrupt header and body
    ],
)
async def test_truncated_or_corrupt_gzip_is_a_parse_error(data: bytes) -> None:
    error = await parse_error(data, FileFormat.JSONL)

    assert error.code == "parse_error"
    assert "not valid gzip" in error.message


async def test_gzip_bomb_stops_at_the_decompressed_limit_without_inflating_it() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    bomb = b"".join(deflater.compress(zeros) for _ in range(100)) + deflater.flush()  # 100 MiB of zeros
    parsed = stream(bomb, FileFormat.JSONL, 64 * 1024, max_decompressed_bytes=MIB)

    tracemalloc.start()
    try:
        with pytest.raises(ParseError) as caught:
            async for _ in parsed:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert caught.value.code == "file_too_large"
    assert parsed.decompressed_bytes <= MIB + PIECE_BYTES
    assert parsed.raw_bytes < len(bomb)
    assert peak < 20 * MIB


# Limits, hashes and batches


async def test_max_bytes_is_enforced_on_the_raw_bytes() -> None:
    data = b'{"a": 1}\n' * 100

    error = await parse_error(data, FileFormat.JSONL, 64, max_bytes=len(data) - 1)
    records = await parse(data, FileFormat.JSONL, 64, max_bytes=len(data))

    assert error.code == "file_too_large"
    assert len(records) == 100


async def test_max_decompressed_bytes_applies_to_plain_files_too() -> None:
    error = await parse_error(b'{"a": 1}\n' * 100, FileFormat.JSONL, max_decompressed_bytes=100)

    assert error.code == "file_too_large"


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        (FileFormat.JSON, b'[{"a": 1}, 2, {"a": 3}, {"a": 4}]'),
        (FileFormat.JSONL, b'{"a": 1}\n2\n{"a": 3}\n\n{"a": 4}\n'),
        (FileFormat.CSV, b"a\n1\n2\n\n3\n4\n"),
    ],
)
async def test_max_records_counts_rejected_records_too(fmt: FileFormat, data: bytes) -> None:
    error = await parse_error(data, fmt, max_records=3)
    records = await parse(data, fmt, max_records=4)

    assert (error.code, error.message) == ("too_many_records", "the file has more than 3 records")
    assert len(records) == 4


# One record's size (max_record_bytes): refused while it is read, before it is held whole

LIMIT = 100  # below a piece, so that a record can cross it inside one piece as well as across pieces


def padded(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    return b'{"pad": "' + b"x" * (size - 11) + b'"}'


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize("end", [b"\n{}\n", b""], ids=["lines-follow", "last-line"])
async def test_jsonl_line_over_the_record_limit_fails_with_its_line_number(chunk: int, end: bytes) -> None:
    data = b'{"a": 1}\n\n' + padded(LIMIT + 1) + end

    error = await parse_error(data, FileFormat.JSONL, chunk, max_record_bytes=LIMIT)

    assert (error.code, error.line) == ("record_too_large", 3)
    assert error.message == "line 3: the record is larger than 100 bytes"


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_jsonl_lines_of_exactly_the_record_limit_load(chunk: int) -> None:
    data = padded(LIMIT) + b"\n" + padded(LIMIT - 1) + b"\r\n" + padded(LIMIT)  # a newline is not counted

    records = await parse(data, FileFormat.JSONL, chunk, max_record_bytes=LIMIT)

    assert [record.line for record in records if record.error is None] == [1, 2, 3]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        (FileFormat.JSONL, b'{"a": 1}\n{"a": \n' + padded(LIMIT + 1) + b"\n"),
        (FileFormat.CSV, b'id\n1\n"x"y\n' + b"z" * (LIMIT + 1) + b"\n"),
    ],
)
async def test_an_invalid_record_before_a_long_one_is_reported_first(
    fmt: FileFormat, data: bytes, chunk: int
) -> None:
    error = await parse_error(data, fmt, chunk, max_record_bytes=LIMIT)

    assert (error.code, error.line) == ("parse_error", 2 if fmt is FileFormat.JSONL else 3)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize("over", [1, 50])
async def test_csv_record_over_the_record_limit_fails_with_the_line_it_starts_on(
    chunk: int, over: int
) -> None:
    # Record 3 starts on line 4 and runs through line 5 inside its quotes: LIMIT + `over` bytes in all.
    note = b"n" * 40 + b"\n" + b"n" * (LIMIT + over - 45)
    data = b"id,note\n1,a\n2,b\n" + b'3,"' + note + b'"\n4,d\n'

    error = await parse_error(data, FileFormat.CSV, chunk, max_record_bytes=LIMIT)

    assert (error.code, error.line) == ("record_too_large", 4)
    assert error.message == "line 4: the record is larger than 100 bytes"


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_records_of_exactly_the_record_limit_load(chunk: int) -> None:
    note = b"n" * 40 + b"\n" + b'""' + b"n" * (LIMIT - 47)  # quotes and newlines inside a field count
    data = b"id,note\n" + b'3,"' + note + b'"\n' + b"4," + b"n" * (LIMIT - 2) + b"\n" + b"5,e"

    records = await parse(data, FileFormat.CSV, chunk, max_record_bytes=LIMIT)

    assert [(record.line, record.error) for record in records] == [(2, None), (4, None), (5, None)]
    assert records[0].data == {"id": "3", "note": "n" * 40 + '\n"' + "n" * (LIMIT - 47)}


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_csv_a_multibyte_record_is_measured_in_bytes_not_characters(chunk: int) -> None:
    data = b"id,note\n1," + "é".encode() * (LIMIT // 2) + b"\n"  # 52 characters, 102 bytes

    error = await parse_error(data, FileFormat.CSV, chunk, max_record_bytes=LIMIT)

    assert (error.code, error.line) == ("record_too_large", 2)


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_json_item_over_the_record_limit_fails_with_its_item_number(chunk: int) -> None:
    # ijson is not asked where an item ends: the pieces it starts and ends in are slack, not counted.
    over = padded(LIMIT + 4 * min(chunk, PIECE_BYTES))
    data = b'[{"a": 1}, ' + over + b', {"a": 2}]'

    error = await parse_error(data, FileFormat.JSON, chunk, max_record_bytes=LIMIT)
    single = await parse_error(over, FileFormat.JSON, chunk, max_record_bytes=LIMIT)

    assert (error.code, error.line) == ("record_too_large", 2)
    assert error.message == "item 2: the record is larger than 100 bytes"
    assert (single.code, single.message) == (
        "record_too_large",
        "item 1: the record is larger than 100 bytes",
    )


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
async def test_json_items_under_the_record_limit_load(chunk: int) -> None:
    item = padded(LIMIT - 8)  # the separator before an item can be counted with it

    records = await parse(
        b"[" + b", ".join([item] * 5) + b"]", FileFormat.JSON, chunk, max_record_bytes=LIMIT
    )
    single = await parse(padded(LIMIT), FileFormat.JSON, chunk, max_record_bytes=LIMIT)

    assert [record.line for record in records if record.error is None] == [1, 2, 3, 4, 5]
    assert len(single) == 1


@pytest.mark.parametrize(
    ("fmt", "start"),
    [
        (FileFormat.JSONL, b'{"a": 1}\n{"pad": "'),
        (FileFormat.CSV, b'id,note\n1,"an open quote'),
        (FileFormat.JSON, b'[{"a": 1}, {"pad": "'),
    ],
    ids=["jsonl", "csv-open-quote", "json"],
)
async def test_a_record_that_never_ends_fails_at_the_limit_not_at_the_end_of_the_file(
    fmt: FileFormat, start: bytes
) -> None:
    def blocks() -> Iterator[bytes]:
        yield start
        for _ in range(64):
            yield b"x" * MIB

    parsed = RecordStream(
        GeneratedSource(blocks()),
        fmt,
        max_bytes=NO_LIMIT,
        max_decompressed_bytes=NO_LIMIT,
        max_records=NO_LIMIT,
        max_record_bytes=MIB,
    )
    tracemalloc.start()
    try:
        with pytest.raises(ParseError) as caught:
            async for _ in parsed:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (caught.value.code, caught.value.line) == ("record_too_large", 2)
    assert parsed.decompressed_bytes < 2 * MIB  # stopped at the limit: 62 MiB of the file were never read
    assert peak < 8 * MIB


@pytest.mark.parametrize("compress", [False, True])
async def test_sha256_is_of_the_raw_bytes_as_stored(compress: bool) -> None:
    text = b"id\n" + b"".join(b"%d\n" % n for n in range(10_000))
    data = gzip.compress(text) if compress else text
    parsed = stream(data, FileFormat.CSV, 4096)

    count = sum([len(batch) async for batch in parsed.batches()])

    assert count == 10_000
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.raw_bytes == len(data)


async def test_row_hash_is_the_same_for_the_same_object_in_any_key_order() -> None:
    data = b'{"b": [1, {"y": 2, "x": 1}], "a": "v"}\n{"a": "v", "b": [1, {"x": 1, "y": 2}]}\n{"a": "w"}\n'

    first, second, third = await parse(data, FileFormat.JSONL)

    assert first.canonical == second.canonical == b'{"a":"v","b":[1,{"x":1,"y":2}]}'
    assert first.row_hash == second.row_hash == hashlib.sha256(first.canonical or b"").hexdigest()
    assert third.row_hash != first.row_hash


async def test_batches_keep_file_order_and_size() -> None:
    data = b"".join(b'{"n": %d}\n' % n for n in range(2_500))

    batches = [batch async for batch in stream(data, FileFormat.JSONL, 64 * 1024).batches(1000)]

    assert [len(batch) for batch in batches] == [1000, 1000, 500]
    assert [record.data for batch in batches for record in batch] == [{"n": n} for n in range(2_500)]
    assert [record.index for batch in batches for record in batch] == list(range(2_500))


async def test_large_jsonl_parses_in_constant_memory() -> None:
    records = 200_000

    def blocks() -> Iterator[bytes]:
        for start in range(0, records, 250):
            yield b"".join(
                b'{"id": %d, "name": "user %d", "email": "user%d@example.com", "notes": "%s"}\n'
                % (n, n, n, b"lorem ipsum " * 10)
                for n in range(start, start + 250)
            )

    parsed = RecordStream(
        GeneratedSource(blocks()),
        FileFormat.JSONL,
        max_bytes=NO_LIMIT,
        max_decompressed_bytes=NO_LIMIT,
        max_records=NO_LIMIT,
        max_record_bytes=NO_LIMIT,
    )
    seen = 0
    tracemalloc.start()
    try:
        async for batch in parsed.batches():
            seen += len(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert seen == records
    assert parsed.raw_bytes > 35 * MIB
    assert peak < 10 * MIB


@pytest.mark.parametrize(
    ("key", "fmt"),
    [
        ("a.json", FileFormat.JSON),
        ("dir/A.JSON", FileFormat.JSON),
        ("x.json.gz", FileFormat.JSON),
        ("x.jsonl", FileFormat.JSONL),
        ("x.ndjson.GZ", FileFormat.JSONL),
        ("reports/2024 q1.csv", FileFormat.CSV),
        ("x.CSV.gz", FileFormat.CSV),
    ],
)
def test_detect_format_reads_the_suffix_after_an_optional_gz(key: str, fmt: FileFormat) -> None:
    assert detect_format(key) is fmt


@pytest.mark.parametrize("key", ["a.txt", "a.gz", "json", "a.json.zip", "a.csv/", "a.json.gz.gz", ""])
def test_detect_format_refuses_other_suffixes(key: str) -> None:
    with pytest.raises(ParseError) as caught:
        detect_format(key)

    assert caught.value.code == "unsupported_format"
