"""Integers too large for JSON readers: past what a double holds.

A JSON reader that reads numbers as IEEE-754 doubles (JavaScript's, .NET's ``double``,
most others by default) reads an integer of magnitude beyond about 1.8e308 as Infinity,
or refuses it: such an integer has no JSON form any more than Infinity has, and a result
or progress value holding one is refused alike. Smaller integers past 2**53 (a 64-bit id,
say) are kept: they lose precision in a double, but readers that keep integers exact
(Python's, .NET's ``long`` and ``decimal``) read them whole.
"""

from __future__ import annotations

import re
from typing import Any

#: Why such a value is refused, for error messages.
HUGE_INTEGER = "an integer past a double's range (about 1.8e308), which JSON readers cannot read"

#: A run of digits long enough to be past a double's range (its largest is 309 digits).
_LONG_DIGITS = re.compile(r"\d{309}")


def huge_integer_in(text: str, data: Any) -> bool:
    """Whether ``data`` (plain JSON data, whose JSON is ``text``) holds an integer past a
    double's range. The text is searched first, so most values cost one regex scan."""
    return _LONG_DIGITS.search(text) is not None and _holds_huge(data)


def _holds_huge(data: Any) -> bool:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            try:
                float(value)
            except OverflowError:
                return True
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False
