"""A streaming multipart/form-data reader: the `file` part flows to a sink chunk by chunk, never spooled."""

from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from app.core.errors import DomainError

MAX_FIELD_BYTES = 4096  # small text fields (key, overwrite); files go through the sink
FILE_FIELD = "file"


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

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        events.append(("header", bytes(header_name).lower() + b"\0" + bytes(header_value)))
        header_name.clear()
        header_value.clear()

    callbacks = {
        "on_part_begin": lambda: events.append(("begin", b"")),
        "on_part_data": lambda data, start, end: events.append(("data", bytes(data[start:end]))),
        "on_part_end": lambda: events.append(("end", b"")),
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": lambda: events.append(("headers_done", b"")),
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
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
        raise BadForm("The multipart body is malformed.") from None
    for event in events:
        await handle(*event)
    return fields, saw_file


def boundary_of(content_type: str) -> bytes | None:
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        return None
    return options.get(b"boundary") or None
