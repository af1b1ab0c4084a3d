"""One JSON object per log line (python-json-logger, encoded with orjson) with the request id; exception
text never logged."""

import logging
import sys
import traceback
from types import TracebackType

from asgi_correlation_id import CorrelationIdFilter
from pythonjsonlogger.orjson import OrjsonFormatter

# What `exc_info` holds: an exception, or nothing (exc_info=True outside an except block).
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

HANDLER_NAME = "app"
# Loggers that libraries configure on their own; they are routed to our root handler instead.
_LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asgi_correlation_id")


def _exception_without_message(ei: ExcInfo) -> str:
    # Exception messages can carry request data (a pydantic error echoes its input, a driver
    # error its parameters), so only the type and the stack are logged.
    exc_type, _, tb = ei
    if exc_type is None:  # exc_info=True outside an except block: what logging itself writes then
        return "NoneType: None"
    stack = "".join(traceback.format_tb(tb))
    return f"Traceback (most recent call last):\n{stack}{exc_type.__module__}.{exc_type.__qualname__}"


class _SafeJsonFormatter(OrjsonFormatter):
    # The time has whole seconds: it is formatted once a second, not for every line (strftime and a
    # localtime call were a third of an access line's formatting).
    _last: tuple[int, str] = (-1, "")  # (second, its text): one attribute, so threads see a pair

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, text = self._last
        if int(record.created) != second:
            text = super().formatTime(record, datefmt)
            self._last = (int(record.created), text)
        return text

    def formatException(self, ei: ExcInfo) -> str:
        return _exception_without_message(ei)


class _SafeTextFormatter(logging.Formatter):
    def formatException(self, ei: ExcInfo) -> str:
        return _exception_without_message(ei)


def configure_logging(level: str, fmt: str) -> None:
    """Install one stdout handler on the root logger; safe to call more than once."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(CorrelationIdFilter(default_value="-"))
    if fmt == "json":
        handler.setFormatter(
            _SafeJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
                rename_fields={
                    "asctime": "time",
                    "levelname": "level",
                    "name": "logger",
                    "correlation_id": "request_id",
                },
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(
            _SafeTextFormatter("%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s %(message)s")
        )
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler, so a test harness's capture handler survives.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != HANDLER_NAME] + [handler]
    root.setLevel(level)
    for name in _LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        library_logger.handlers[:] = []
        library_logger.propagate = True
    # Our own middleware logs each request with its route template; uvicorn's access line
    # would add the raw path, which can hold identifiers.
    logging.getLogger("uvicorn.access").disabled = True
    # botocore at DEBUG logs request bodies and headers.
    logging.getLogger("botocore").setLevel(max(logging.INFO, root.level))
