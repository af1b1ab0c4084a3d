"""A streaming multipart/form-data reader: the `file` part flows to a sink chunk by chunk, never spooled."""

from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from app.core.errors import DomainError

if TYPE_CHECKING:  # python-multipart declares its callback types for type checkers only
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 4096  # small text fields (key, overwrite); files go through the sink
MAX_PART_HEADER_BYTES = 8192  # one part's headers in all: a browser's are ~150 bytes; nginx allows 8 KiB
MAX_PART_HEADERS = 8  # Content-Disposition, Content-Type and a client's extras (python-multipart's default)
MAX_FORM_PARTS = 16  # the form is `key` and `file`: room for fields a client adds, not for thousands
FILE_FIELD = "file"
BAD_HEADERS = (
    f"A form part's headers are malformed or over the limits ({MAX_PART_HEADERS} headers, "
    f"{MAX_PART_HEADER_BYTES} bytes in all)."
)


class BadForm(DomainError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "bad-form"


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.data = bytearray()


FileStart = Callable[[str | None, dict[str, str]], Awaitable[Callable[[bytes], Awaitable[None]]]]


async def read_form(
    boundary: bytes, stream: AsyncIterator[bytes], on_file: FileStart
) -> tuple[dict[str, str], bool]:
    """Parse the form; `on_file(filename, fields so far)` returns the sink for the file's bytes.

    Returns the text fields and whether a file part was seen. Fields must precede the file part
    to be visible to `on_file` (browsers and Swagger UI send them in the order declared).
    """
    fields: dict[str, str] = {}
    events: list[tuple[str, bytes]] = []
    header_name = bytearray()
    header_value = bytearray()
    # The envelope is counted as the parser calls back, so it stops growing inside one large chunk too.
    parts = 0
    header_bytes = 0  # of the current part
    in_headers = False

    def on_part_begin() -> None:
        nonlocal parts, header_bytes, in_headers
        parts += 1
        if parts > MAX_FORM_PARTS:
            raise BadForm(f"The form has more than {MAX_FORM_PARTS} parts.")
        header_bytes = 0
        in_headers = True
        events.append(("begin", b""))

    def count_header_bytes(start: int, end: int) -> None:
        nonlocal header_bytes
        header_bytes += end - start
        if header_bytes > MAX_PART_HEADER_BYTES:
            raise BadForm(BAD_HEADERS)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        count_header_bytes(start, end)
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        count_header_bytes(start, end)
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        events.append(("header", bytes(header_name).lower() + b"\0" + bytes(header_value)))
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal in_headers
        in_headers = False
        events.append(("headers_done", b""))

    callbacks: MultipartCallbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": lambda data, start, end: events.append(("data", bytes(data[start:end]))),
        "on_part_end": lambda: events.append(("end", b"")),
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
    # The parser checks each header line (and the count) itself, before the callbacks see the bytes: a
    # single line over the limit fails there, named below; the callbacks add the limit over all lines.
    parser = MultipartParser(
        boundary,
        callbacks,
        max_header_count=MAX_PART_HEADERS,
        max_header_size=MAX_PART_HEADER_BYTES,
    )
    part = _Part()
    sink: Callable[[bytes], Awaitable[None]] | None = None
    saw_file = False

    async def handle(kind: str, payload: bytes) -> None:
        nonlocal part, sink, saw_file
        if kind == "begin":
            part = _Part()
            sink = None
        elif kind == "header":
            name, _, value = payload.partition(b"\0")
            part.headers[name] = value
        elif kind == "headers_done":
            _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
            part.name = options.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in options:
                part.filename = options[b"filename"].decode("utf-8", "replace")
            if part.name == FILE_FIELD:
                if saw_file:
                    raise BadForm("Send exactly one `file` part.")
                saw_file = True
                sink = await on_file(part.filename, dict(fields))
        elif kind == "data":
            if sink is not None:
                await sink(payload)
            else:
                part.data.extend(payload)
                if len(part.data) > MAX_FIELD_BYTES:
                    raise BadForm(f"Form field `{part.name}` is longer than {MAX_FIELD_BYTES} bytes.")
        elif kind == "end" and sink is None:
            try:
                fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise BadForm(f"Form field `{part.name}` is not UTF-8 text.") from None

    try:
        async for chunk in stream:
            parser.write(chunk)
            for event in events:
                await handle(*event)
            events.clear()
        parser.finalize()
    except MultipartParseError:
        raise BadForm(BAD_HEADERS if in_headers else "The multipart body is malformed.") from None
    for event in events:
        await handle(*event)
    return fields, saw_file


def boundary_of(content_type: str) -> bytes | None:
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        return None
    return options.get(b"boundary") or None
