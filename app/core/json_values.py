"""JSON values as the API accepts them: RFC 8259 JSON, which has no NaN or Infinity.

Python's json module (which FastAPI parses bodies with) reads `NaN`, `Infinity` and `-Infinity` as floats;
stored in S3 or published, they would make documents no other JSON reader accepts.
"""

import math
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator

T = TypeVar("T")


def finite(value: T) -> T:
    """`value` itself, or ValueError when a float in it is NaN or infinite."""
    stack: list[object] = [value]  # iterative: bodies may nest deeply, and their depth is checked elsewhere
    while stack:
        node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise ValueError("NaN and Infinity are not JSON numbers")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return value


FiniteJson = Annotated[Any, AfterValidator(finite)]
