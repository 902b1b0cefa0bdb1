"""Integers too large for JSON readers: outside the range every reader reads exactly.

The interoperable profile of JSON (I-JSON, RFC 7493) keeps integers within
[-(2**53)+1, 2**53-1]: a reader that reads numbers as IEEE-754 doubles (JavaScript's
``JSON.parse``, most others by default) rounds a larger one silently (a 64-bit id comes
back as another number) or, past about 1.8e308, reads it as Infinity. API.md's list of
values with no JSON form (NaN and Infinity, a lone surrogate, an integer too large for
JSON parsers) is I-JSON's, so a result or progress value holding such an integer is
refused as one with NaN is. Return such a number as a string.
"""

from __future__ import annotations

import re
from typing import Any

#: The largest magnitude of an integer every JSON reader reads exactly (2**53 - 1).
MAX_SAFE_INTEGER = 2**53 - 1

#: Why such a value is refused, for error messages.
HUGE_INTEGER = (
    "an integer beyond 2**53 - 1 in magnitude, which JSON readers that use doubles"
    " (JavaScript's) cannot read exactly (send it as a string)"
)

#: A run of digits long enough for an integer beyond the range (2**53 has 16 digits).
_LONG_DIGITS = re.compile(r"\d{16}")


def huge_integer_in(text: str, data: Any) -> bool:
    """Whether ``data`` (plain JSON data, whose JSON is ``text``) holds an integer beyond
    `MAX_SAFE_INTEGER` in magnitude. The text is searched first, so most values cost one
    regex scan."""
    return _LONG_DIGITS.search(text) is not None and _holds_huge(data)


def _holds_huge(data: Any) -> bool:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                return True
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False
