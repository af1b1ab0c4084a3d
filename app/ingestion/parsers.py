"""Streaming parsers: the bytes of an S3 object (JSON, JSON Lines or CSV, gzipped or not) become records
with a canonical form and its hash, in memory that does not grow with the file."""

import codecs
import csv
import hashlib
import io
import re
import zlib
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from enum import StrEnum
from itertools import accumulate, count
from operator import sub
from typing import Any, Literal, Protocol

import ijson
import orjson

from app.core.config import IngestSettings

PIECE_BYTES = 64 * 1024  # the unit of decompression and parsing: what one step holds besides its records
BATCH_MAX_BYTES = 8 * 1024 * 1024  # a batch is cut by input size too, so large records cannot pile up
DEFAULT_BATCH_SIZE = 1000  # measured: 5000 is ~10% slower, its records living on into older GC generations
MAX_JSON_DEPTH = 1024  # orjson's limit for JSON Lines; also bounds ijson's path bookkeeping (depth squared)
GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream
JSON_WHITESPACE = b" \t\n\r"
NOT_RECORDS = "a JSON file must hold an object or an array of objects"
# orjson returns each result inside a buffer of 4 KiB or more. Slicing off an appended newline copies the
# sorted-key JSON into a bytes of its own size, so a batch of held records costs what it holds.
CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE

ParseErrorCode = Literal[
    "unsupported_format", "parse_error", "encoding", "file_too_large", "too_many_records", "record_too_large"
]


class FileFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


_SUFFIXES = {
    ".json": FileFormat.JSON,
    ".jsonl": FileFormat.JSONL,
    ".ndjson": FileFormat.JSONL,
    ".csv": FileFormat.CSV,
}


class ParseError(Exception):
    """A permanent, file-level failure. The message names positions and the kind of problem, never
    record contents (they can be personal data)."""

    def __init__(self, code: ParseErrorCode, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code: ParseErrorCode = code
        self.message = message
        self.line = line


def detect_format(key: str) -> FileFormat:
    """The format named by the key's suffix after an optional `.gz` (gzip itself is told by the bytes)."""
    name = key.lower().removesuffix(".gz")
    dot = name.rfind(".")
    fmt = _SUFFIXES.get(name[dot:]) if dot >= 0 else None
    if fmt is None:
        raise ParseError(
            "unsupported_format", "the key does not end in .json, .jsonl, .ndjson or .csv (optionally + .gz)"
        )
    return fmt


@dataclass(slots=True)
class Record:
    index: int  # 0-based position in the file
    line: int  # JSONL: the line; CSV: the line the record starts on; JSON: the item number (1-based)
    data: dict[str, Any] | None  # None when rejected
    canonical: bytes | None  # sorted-key JSON: what is stored as JSONB
    row_hash: str | None  # sha256 hex of `canonical`
    error: str | None  # why the record is rejected; None if it is fine


class ByteSource(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """A CSV file's dialect, as its source declares it. RecordStream checks it (ValueError)."""

    delimiter: str = ","  # one character
    quote: str = '"'  # one character; doubled inside a quoted field (RFC 4180)
    header: bool = True  # False: no header row; records are keyed by `columns`
    columns: tuple[str, ...] = ()  # the field names in file order when header is False (ignored otherwise)
    encoding: str = "utf-8"  # any Python text codec; a UTF-8 byte order mark is skipped for utf-8


def _checked(options: CsvOptions) -> CsvOptions:
    for name, char in (("delimiter", options.delimiter), ("quote", options.quote)):
        if not isinstance(char, str) or len(char) != 1:
            raise ValueError(f"the CSV {name} must be exactly one character, not {char!r}")
        if char in "\r\n":
            raise ValueError(f"the CSV {name} must not be a line break")
    if options.delimiter == options.quote:
        raise ValueError(f"the CSV delimiter and quote must differ (both are {options.quote!r})")
    if not options.header:
        if not options.columns:
            raise ValueError("a CSV without a header row needs columns: the field names in file order")
        names: set[str] = set()
        for column, name in enumerate(options.columns, start=1):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"CSV column {column} has no name")
            if name in names:
                raise ValueError(f"CSV column {column} repeats an earlier name ({name!r})")
            names.add(name)
    try:
        codecs.lookup(options.encoding)
        b"\n".decode(options.encoding)  # a codec that is not a text encoding (hex, rot13) refuses bytes
    except LookupError:
        raise ValueError(f"the CSV encoding {options.encoding!r} is not a known text encoding") from None
    except UnicodeError:
        pass  # a lone newline byte is not text in UTF-16, say: the encoding itself is fine
    return options


def _is_utf8(encoding: str) -> bool:
    """UTF-8 with or without a byte order mark: both take the UTF-8 path, which skips one."""
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _record(index: int, line: int, data: object, where: str) -> Record:
    if not isinstance(data, dict):
        return Record(index, line, None, None, None, f"{where} {line}: not a JSON object")
    try:
        canonical = orjson.dumps(data, option=CANONICAL)[:-1]
    except orjson.JSONEncodeError as exc:  # nesting beyond orjson's 254 levels; its message is generic
        return Record(index, line, None, None, None, f"{where} {line}: cannot be stored as JSON ({exc})")
    return Record(index, line, data, canonical, hashlib.sha256(canonical).hexdigest(), None)


class RecordStream:
    """The records of one file, in file order, read once from `source`.

    Iterate it (or `batches()`) once; `sha256`, `raw_bytes`, `decompressed_bytes` and `gzipped` describe
    the file after the iteration has completed. `header` is a CSV file's field names: its header row once
    that has been read (so after the first batch), or `csv.columns` when there is no header row; None for
    JSON and JSON Lines.

    `max_record_bytes` counts a record's bytes as UTF-8 text (a CSV record's newline not included), whatever
    the file's encoding: the same record is refused or not whether it comes in UTF-8 or in Latin-1.
    """

    def __init__(
        self,
        source: ByteSource,
        fmt: FileFormat,
        *,
        max_bytes: int,
        max_decompressed_bytes: int,
        max_records: int,
        max_record_bytes: int,
        chunk_size: int = 1024 * 1024,
        csv: CsvOptions = CsvOptions(),
    ) -> None:
        self._csv_options = _checked(csv)
        self._source = source
        self._format = fmt
        self._max_bytes = max_bytes
        self._max_decompressed_bytes = max_decompressed_bytes
        self._max_records = max_records
        self._max_record_bytes = max_record_bytes
        self._chunk_size = chunk_size
        self._hash = hashlib.sha256()
        self.raw_bytes = 0
        self.decompressed_bytes = 0
        self.gzipped = False
        self.header: list[str] | None = None
        if fmt is FileFormat.CSV and not csv.header:
            self.header = list(csv.columns)

    @property
    def sha256(self) -> str:
        """Hex sha256 of the raw bytes as stored (compressed if gzipped)."""
        return self._hash.hexdigest()

    def __aiter__(self) -> AsyncIterator[Record]:
        return self._records()

    async def batches(self, size: int = DEFAULT_BATCH_SIZE) -> AsyncIterator[list[Record]]:
        """Lists of `size` records in file order; fewer in the last one, or when large records have
        already filled BATCH_MAX_BYTES."""
        batch: list[Record] = []
        start = 0  # decompressed bytes when the batch began
        async for records in self._parse():
            batch += records
            if len(batch) >= size:
                full = len(batch) - len(batch) % size
                for at in range(0, full, size):
                    yield batch[at : at + size]
                batch = batch[full:]
                start = self.decompressed_bytes
            if batch and self.decompressed_bytes - start >= BATCH_MAX_BYTES:
                yield batch
                batch = []
                start = self.decompressed_bytes
        if batch:
            yield batch

    async def _records(self) -> AsyncIterator[Record]:
        async for records in self._parse():
            for record in records:
                yield record

    def _parse(self) -> AsyncIterator[list[Record]]:
        """The records of each piece of input, as the format's parser makes them."""
        parsers = {FileFormat.JSON: self._json, FileFormat.JSONL: self._jsonl, FileFormat.CSV: self._csv}
        return parsers[self._format]()

    def _too_many(self) -> ParseError:
        return ParseError("too_many_records", f"the file has more than {self._max_records} records")

    def _too_large(self, line: int) -> ParseError:
        return ParseError("record_too_large", f"line {line}: {self._too_large_problem()}", line)

    def _too_large_problem(self) -> str:
        return f"the record is larger than {self._max_record_bytes} bytes"

    # Bytes: raw -> decompressed -> text without a byte order mark, in pieces of at most PIECE_BYTES.

    async def _raw(self) -> AsyncIterator[bytes]:
        while chunk := await self._source.read(self._chunk_size):
            self.raw_bytes += len(chunk)
            if self.raw_bytes > self._max_bytes:
                raise ParseError("file_too_large", f"the file is larger than {self._max_bytes} bytes")
            self._hash.update(chunk)
            yield chunk

    async def _decompressed(self) -> AsyncIterator[bytes]:
        raw = self._raw()
        head = await _peek(raw, len(GZIP_MAGIC))
        self.gzipped = head.startswith(GZIP_MAGIC)
        pieces = _gunzip(_prepend(head, raw)) if self.gzipped else _split(_prepend(head, raw))
        async for piece in pieces:
            self.decompressed_bytes += len(piece)
            if self.decompressed_bytes > self._max_decompressed_bytes:
                limit = self._max_decompressed_bytes
                raise ParseError("file_too_large", f"the file is larger than {limit} bytes uncompressed")
            yield piece

    async def _text(self) -> AsyncIterator[bytes]:
        pieces = self._decompressed()
        head = await _peek(pieces, len(codecs.BOM_UTF8))
        async for piece in _prepend(head.removeprefix(codecs.BOM_UTF8), pieces):
            yield piece

    # JSON Lines

    async def _lines(self) -> AsyncIterator[list[bytes]]:
        """Complete lines without their `\\n`, a list per piece; a line spanning pieces is joined once.

        A line longer than the record limit is refused as soon as its pieces add up to more, before they
        are joined. Only a line that spans pieces is measured (once per piece); the lines inside one piece
        are too only when the limit is below the piece size, as nothing shorter can be over it.
        """
        limit = self._max_record_bytes
        pending: list[bytes] = []
        pending_bytes = 0
        number = 0  # lines yielded so far
        async for piece in self._text():
            lines = piece.split(b"\n")
            tail = lines.pop()
            if lines:
                if pending:
                    pending_bytes += len(lines[0])
                    if pending_bytes > limit:
                        raise self._too_large(number + 1)
                    pending.append(lines[0])
                    lines[0] = b"".join(pending)
                    pending.clear()
                    pending_bytes = 0
                if len(piece) > limit and max(map(len, lines)) > limit:
                    at = next(at for at, line in enumerate(lines) if len(line) > limit)
                    if at:  # parsed first, so that an error in one of them is the one reported
                        yield lines[:at]
                    raise self._too_large(number + at + 1)
                number += len(lines)
                yield lines
            if tail:
                pending_bytes += len(tail)
                if pending_bytes > limit:
                    raise self._too_large(number + 1)
                pending.append(tail)
        if pending:
            yield [b"".join(pending)]

    async def _jsonl(self) -> AsyncIterator[list[Record]]:
        # Inlined per-line work, names bound locally: this loop is the ingestion hot path.
        loads, dumps, sha256 = orjson.loads, orjson.dumps, hashlib.sha256
        max_records = self._max_records
        number = 0
        index = 0
        async for lines in self._lines():
            records: list[Record] = []
            for line in lines:
                number += 1
                try:
                    data = loads(line)
                except orjson.JSONDecodeError:
                    if not line.strip():  # a blank line: no record, but it counts for line numbers
                        continue
                    raise _bad_line(line, number) from None
                if index == max_records:
                    raise self._too_many()
                if isinstance(data, dict):
                    try:
                        canonical = dumps(data, option=CANONICAL)[:-1]
                    except orjson.JSONEncodeError:
                        record = _record(index, number, data, "line")
                    else:
                        record = Record(index, number, data, canonical, sha256(canonical).hexdigest(), None)
                else:
                    record = _record(index, number, data, "line")
                records.append(record)
                index += 1
            yield records

    # JSON: an array of objects or one object, parsed by ijson (yajl) as the pieces arrive.

    async def _json_values(self) -> AsyncIterator[list[object]]:
        """The array's items (or the single object) completed by each piece. The list is reused: it is
        cleared when the consumer asks for the next one."""
        pieces = self._text()
        first = b""
        async for piece in pieces:
            first = piece.lstrip(JSON_WHITESPACE)
            if first:
                break
        if first[:1] not in (b"[", b"{"):
            raise ParseError("parse_error", NOT_RECORDS)
        found: list[object] = ijson.sendable_list()
        # ijson is untyped (pyproject.toml): its coroutine takes the document's bytes through send().
        parser: Generator[None, bytes, None] = ijson.items_coro(
            found, "item" if first[:1] == b"[" else "", use_float=True
        )
        guard = _DepthGuard()
        taken = 0  # items yielded before `found`
        carry = b""  # an incomplete UTF-8 sequence at the end of the previous piece
        # ijson builds the item (or the single object) whole. It does not say where an item ends, so what is
        # counted is the bytes fed since the last piece that completed one: an item's parts in the pieces
        # it starts and ends in are not, and what ijson holds stays under the limit plus two pieces.
        limit = self._max_record_bytes
        fed = 0

        def invalid(code: ParseErrorCode, problem: str) -> ParseError:
            number = taken + len(found) + 1  # the item being parsed
            return ParseError(code, f"item {number}: {problem}", number)

        def feed(data: bytes) -> None:
            try:
                parser.send(data)
            except ijson.JSONError:  # its message quotes the document: not for the processing log
                raise invalid("parse_error", "invalid JSON") from None

        async for piece in _prepend(first, pieces):
            data = carry + piece if carry else piece
            valid, bad_byte = _utf8_prefix(data)
            if valid:  # (an empty send would tell ijson that the document has ended)
                guard.feed(data[:valid])
                feed(data[:valid])
            if bad_byte:  # raised after the valid part was parsed, so the item number is right
                raise invalid("encoding", "not valid UTF-8")
            carry = data[valid:]
            if found:
                yield found
                taken += len(found)
                found.clear()
                fed = 0
            else:
                fed += valid
                if fed > limit:
                    raise invalid("record_too_large", self._too_large_problem())
        if carry:
            raise invalid("encoding", "not valid UTF-8 (cut short)")
        try:
            parser.close()
        except ijson.JSONError:
            raise invalid("parse_error", "invalid JSON") from None
        if found:
            yield found

    async def _json(self) -> AsyncIterator[list[Record]]:
        # Unlike JSON Lines, not worth inlining: ijson's parsing takes most of the time.
        max_records = self._max_records
        index = 0
        async for items in self._json_values():
            records: list[Record] = []
            for item in items:
                if index == max_records:
                    raise self._too_many()
                records.append(_record(index, index + 1, item, "item"))
                index += 1
            yield records

    # CSV: the stdlib reader, fed texts that end at a record boundary.

    async def _decoded(self) -> AsyncIterator[tuple[str, int, int]]:
        """Texts, each with its size in UTF-8 bytes and the count of newlines before it (a UTF-8 file)."""
        carry = b""
        lines = 0  # newlines before the current piece (a carried incomplete sequence holds none)
        async for piece in self._text():
            data = carry + piece if carry else piece
            try:
                text, used = codecs.utf_8_decode(data, "strict", False)
            except UnicodeDecodeError as exc:
                line = lines + data.count(b"\n", 0, exc.start) + 1
                raise ParseError("encoding", f"line {line}: not valid UTF-8", line) from None
            carry = data[used:]
            yield text, used, lines
            lines += piece.count(b"\n")
        if carry:
            raise ParseError("encoding", f"line {lines + 1}: not valid UTF-8 (cut short)", lines + 1)

    async def _decoded_as(self, encoding: str) -> AsyncIterator[tuple[str, int, int]]:
        """As `_decoded`, for a file in another encoding: its newlines are counted in the decoded text
        (in UTF-16, say, a 0x0A byte can be half of another character), and sizes are those of the text
        in UTF-8. No UTF-8 byte order mark is skipped (in Latin-1 it is the text "ï»¿"); a codec's own
        (UTF-16's) is, and so is a U+FEFF that begins the text (UTF-16-LE's byte order mark, say)."""
        decoder = codecs.getincrementaldecoder(encoding)("strict")
        pieces = self._decompressed()
        lines = 0  # newlines in the texts before the current one
        first = True
        while True:
            piece = await anext(pieces, None)  # None: the end, where the decoder must hold nothing back
            state = decoder.getstate()
            try:
                text = decoder.decode(piece or b"", piece is None)
            except UnicodeDecodeError as exc:
                # The newlines of what decoded before the error, from the state the decoder began this
                # piece in: exc.object is the bytes it held back from the last piece, then this piece.
                before = codecs.getincrementaldecoder(encoding)("replace")
                before.setstate((b"", state[1]))
                line = lines + before.decode(exc.object[: exc.start]).count("\n") + 1
                cut_short = "" if piece is not None else " (cut short)"
                raise ParseError("encoding", f"line {line}: not valid {encoding}{cut_short}", line) from None
            if first and text:
                text = text.removeprefix("\ufeff")
                first = False
            if text:
                yield text, _utf8_size(text, lines, encoding), lines
                lines += text.count("\n")
            if piece is None:
                return

    async def _csv_texts(self) -> AsyncIterator[str]:
        """Texts cut after a newline where the count of quote characters (`"` by default) so far is even.
        RFC 4180 doubles a quote inside a quoted field, so an odd count means a quoted field (maybe holding
        newlines) is still open.

        A record longer than the record limit (an unterminated quote makes the rest of the file one record)
        is refused as soon as its texts add up to more, before they are joined. Records are measured only
        when the text and the record it continues could together exceed the limit, which in the normal
        case (small records, a limit well above the piece size) is never.
        """
        limit = self._max_record_bytes
        quote = self._csv_options.quote
        # The texts are decoded whatever the file's encoding, and measured against the limit in UTF-8
        # (`data` below): the quote is looked for there as UTF-8 too, never as the file's bytes.
        utf8_quote = quote.encode()
        encoding = self._csv_options.encoding
        texts = self._decoded() if _is_utf8(encoding) else self._decoded_as(encoding)
        pending: list[str] = []
        pending_bytes = 0  # UTF-8 bytes in `pending`: the start of the record the next text continues
        odd = False  # parity of the quotes in `pending`
        async for text, size, lines in texts:
            if pending_bytes + size > limit:
                data = text.encode()
                start = _csv_record_over(data, odd, -pending_bytes, limit, utf8_quote)
                if start is not None:
                    if start > 0:  # the records before it are parsed first, an error in one is reported
                        pending.append(data[:start].decode())
                        yield "".join(pending)
                        line = lines + data.count(b"\n", 0, start) + 1
                    else:
                        line = lines - sum(part.count("\n") for part in pending) + 1
                    raise self._too_large(line)
            end_odd = odd ^ bool(text.count(quote) & 1)
            cut = text.rfind("\n") + 1
            cut_odd = end_odd ^ bool(text.count(quote, cut) & 1)
            while cut and cut_odd:
                previous = text.rfind("\n", 0, cut - 1) + 1
                cut_odd ^= bool(text.count(quote, previous, cut) & 1)
                cut = previous
            if not cut:
                pending.append(text)
                pending_bytes += size
                odd = end_odd
                continue
            pending.append(text[:cut])
            yield "".join(pending)
            rest = text[cut:]
            pending = [rest]
            pending_bytes = len(rest) if rest.isascii() else len(rest.encode())
            odd = end_odd
        if tail := "".join(pending):
            yield tail

    async def _csv(self) -> AsyncIterator[list[Record]]:
        dumps, sha256 = orjson.dumps, hashlib.sha256
        max_records = self._max_records
        options = self._csv_options
        # Without a header row, the declared columns are the header and the first row is a record.
        header: list[str] | None = None if options.header else list(options.columns)
        width = len(header) if header else 0
        expected = "header has" if options.header else "expected"
        lines = 0  # physical lines in the texts before the current one
        index = 0
        async for text in self._csv_texts():
            nul = text.find("\0")
            if nul >= 0:
                line = lines + text.count("\n", 0, nul) + 1
                raise ParseError("parse_error", f"line {line}: NUL byte", line)
            # strict: a quote out of place, or a text ending inside a quoted field, is an error, not a guess.
            reader = csv.reader(
                io.StringIO(text, newline="\n"),
                delimiter=options.delimiter,
                quotechar=options.quote,
                strict=True,
            )
            records: list[Record] = []
            read = 0  # lines the reader had read before the current row
            try:
                for row in reader:
                    number = lines + read + 1
                    read = reader.line_num
                    if not row:
                        continue
                    if header is None:
                        header = _header(row, number)
                        width = len(header)
                        self.header = list(header)  # a copy: the caller's cannot change the records' keys
                        continue
                    if index == max_records:
                        raise self._too_many()
                    if len(row) == width:
                        # The lengths were just compared (strict=True would check again, at a cost); the
                        # values are strings only, which orjson cannot fail on: no try as for JSON.
                        data = dict(zip(header, row, strict=False))
                        canonical = dumps(data, option=CANONICAL)[:-1]
                        record = Record(index, number, data, canonical, sha256(canonical).hexdigest(), None)
                    else:
                        problem = f"line {number}: {len(row)} fields, {expected} {width}"
                        record = Record(index, number, None, None, None, problem)
                    records.append(record)
                    index += 1
            except csv.Error as exc:
                line = lines + reader.line_num
                raise ParseError("parse_error", f"line {line}: {exc}", line) from None
            lines += reader.line_num
            yield records
        if header is None:
            raise ParseError("parse_error", "line 1: the header row is missing", 1)


def _csv_record_over(data: bytes, odd: bool, start: int, limit: int, quote: bytes = b'"') -> int | None:
    """Where the first record longer than `limit` bytes (its newline not counted) begins, relative to
    `data`, or None. The record open when `data` begins began at `start` (<= 0), inside quotes if `odd`;
    the record `data` leaves open counts with what it holds so far. `data` is UTF-8 and `quote` the quote
    character in UTF-8 (a multi-byte one is found whole: no UTF-8 sequence holds another)."""
    at = 0
    while (newline := data.find(b"\n", at)) >= 0:
        odd ^= bool(data.count(quote, at, newline) & 1)
        at = newline + 1
        if not odd:
            if newline - start > limit:
                return start
            start = at
    return start if len(data) - start > limit else None


def record_stream(
    source: ByteSource, fmt: FileFormat, settings: IngestSettings, *, csv: CsvOptions = CsvOptions()
) -> RecordStream:
    """A file's records within the limits the settings give (INGEST_MAX_*); a CSV file's in `csv`'s
    dialect (ValueError if the options are not valid)."""
    return RecordStream(
        source,
        fmt,
        max_bytes=settings.ingest_max_file_bytes,
        max_decompressed_bytes=settings.ingest_max_decompressed_bytes,
        max_records=settings.ingest_max_records,
        max_record_bytes=settings.ingest_max_record_bytes,
        csv=csv,
    )


def _bad_line(line: bytes, number: int) -> ParseError:
    try:
        line.decode()
    except UnicodeDecodeError:
        return ParseError("encoding", f"line {number}: not valid UTF-8", number)
    return ParseError("parse_error", f"line {number}: invalid JSON", number)


def _utf8_prefix(data: bytes) -> tuple[int, bool]:
    """How many leading bytes are complete UTF-8, and whether an invalid sequence follows them."""
    try:
        return codecs.utf_8_decode(data, "strict", False)[1], False
    except UnicodeDecodeError as exc:
        return exc.start, True


def _utf8_size(text: str, lines: int, encoding: str) -> int:
    """The bytes of `text` in UTF-8. A codec can decode to a lone surrogate (unicode_escape does for
    `\\ud800`), which neither UTF-8 nor JSON can hold: the file is refused as not valid text."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError as exc:
        line = lines + text.count("\n", 0, exc.start) + 1
        raise ParseError("encoding", f"line {line}: not valid {encoding} (a lone surrogate)", line) from None


def _header(row: list[str], line: int) -> list[str]:
    names: set[str] = set()
    for column, name in enumerate(row, start=1):
        if not name.strip():
            problem = "has no name"
        elif name in names:
            problem = "repeats an earlier name"
        else:
            names.add(name)
            continue
        raise ParseError("parse_error", f"line {line}: header column {column} {problem}", line)
    return row


async def _peek(chunks: AsyncIterator[bytes], n: int) -> bytes:
    """At least the first `n` bytes (fewer only at the end), however small the chunks are."""
    head = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= n:
            break
    return head


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk


async def _split(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        for start in range(0, len(chunk), PIECE_BYTES):
            yield chunk[start : start + PIECE_BYTES]


async def _gunzip(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Inflates gzip members one after another (`cat a.gz b.gz` is valid gzip), never producing more
    than PIECE_BYTES at once, so the caller's size limit stops a bomb before it materializes."""
    inflater = zlib.decompressobj(GZIP_WBITS)
    async for data in chunks:
        while True:
            if inflater.eof:
                inflater = zlib.decompressobj(GZIP_WBITS)
            try:
                piece = inflater.decompress(data, PIECE_BYTES)
            except zlib.error:
                raise ParseError("parse_error", "the file is not valid gzip") from None
            if piece:
                yield piece
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            # A full piece may leave output inside zlib even when all input is consumed: ask again.
            if not data and (inflater.eof or len(piece) < PIECE_BYTES):
                break
    if not inflater.eof:
        raise ParseError("parse_error", "the file is not valid gzip: it ends in the middle of the data")


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_PAIR = re.compile(rb"[\[{][\]}]")
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_QUICK_PASSES = 4


class _DepthGuard:
    """Refuses JSON nested deeper than MAX_JSON_DEPTH before ijson sees it: ijson keeps a path string per
    level, so memory grows with depth squared (100 000 levels of `[` would take tens of GB)."""

    def __init__(self) -> None:
        self._depth = 0
        self._in_string = False
        self._escaped = False  # the previous piece ended with a backslash that escapes our first byte

    def feed(self, data: bytes) -> None:
        if self._escaped:
            data = data[1:]
            self._escaped = False
        if b"\\" in data:
            trailing = len(data) - len(data.rstrip(b"\\"))
            if trailing % 2:
                data = data[:-1]
                self._escaped = True
            data = _ESCAPE.sub(b"", data)
        marks = data.translate(None, _NOT_STRUCTURE)
        if self._in_string:
            marks = b'"' + marks
        # Dropping two adjacent quotes keeps every other mark inside or outside a string as it was; it
        # removes most strings (those without brackets) at C speed before the regular expression.
        marks = marks.replace(b'""', b"")
        if b'"' in marks:
            marks = _STRING.sub(b"", marks)
        quote = marks.find(b'"')
        self._in_string = quote >= 0
        brackets = marks[:quote] if self._in_string else marks
        start = self._depth
        opens = brackets.count(b"[") + brackets.count(b"{")
        self._depth = start + 2 * opens - len(brackets)
        # Cheap bound first: once innermost pairs have been removed `passes` times and none are left, what
        # remains is `]...][...[`, so the deepest point is at most the higher end plus `passes`.
        rest = brackets
        passes = 0
        while passes < _QUICK_PASSES:
            shorter = _PAIR.sub(b"", rest)
            if len(shorter) == len(rest):
                if max(start, self._depth) + passes <= MAX_JSON_DEPTH:
                    return
                break
            rest = shorter
            passes += 1
        # The exact walk: depth after i brackets = (sum of the first i steps, 2 per `[{` and 0 per `]}`) - i.
        deepest = max(map(sub, accumulate(brackets.translate(_STEP), initial=0), count()))
        if start + deepest > MAX_JSON_DEPTH:
            raise ParseError("parse_error", f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
