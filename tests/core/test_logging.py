"""The log formatters: exception lines without their message, whatever logging hands them."""

import logging

import pytest

from app.core.logging import HANDLER_NAME, configure_logging


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_exc_info_outside_an_except_block_is_formatted_not_lost(fmt: str) -> None:
    # logging passes (None, None, None) then; the formatter crashed on it and the line was lost.
    configure_logging("INFO", fmt)
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME)
    record = logging.getLogger("test").makeRecord(
        "test", logging.ERROR, __file__, 1, "no exception here", (), exc_info=(None, None, None)
    )
    assert handler.filter(record)  # sets the request id field the formats name
    assert "NoneType: None" in handler.format(record)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_an_exception_is_logged_by_type_and_stack_without_its_message(fmt: str) -> None:
    configure_logging("INFO", fmt)
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME)
    personal = "jane.doe" + "@example.com"  # not in this file's text, which the stack lines quote
    try:
        raise ValueError(personal)  # as a validation error quotes its input
    except ValueError as exc:
        record = logging.getLogger("test").makeRecord(
            "test", logging.ERROR, __file__, 1, "failed", (), exc_info=(type(exc), exc, exc.__traceback__)
        )
    assert handler.filter(record)
    line = handler.format(record)
    assert "builtins.ValueError" in line
    assert "jane.doe" not in line
