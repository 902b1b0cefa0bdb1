"""Hooks checked for their call shape where they are given, not at their first call.

A hook the library calls as ``authorize(request, job)`` but written as ``def
authorize(request)`` would pass every type check that ``**settings`` allows and then
answer every request with a 500. `check_hook` asks `inspect.signature` whether the hook
takes the positional arguments it will be given, and raises `ConfigurationError` naming
the hook and what it must accept when it does not. The signature read is the hook's own
(a decorator's wrapper, not the function it wraps). A callable whose signature cannot be
read (some builtins, annotations that fail to evaluate) is taken as it is.
"""

from __future__ import annotations

import inspect

from ._errors import ConfigurationError


def check_hook(hook: object, what: str, parameters: str) -> None:
    """Raise `ConfigurationError` unless ``hook`` is callable with the positional
    arguments ``parameters`` names (``"request, job"``).

    Args:
        hook: The function given (None is not checked: callers check it first).
        what: The option's name, as the message says it (``"authorize"``).
        parameters: The arguments it is called with, comma-separated.
    """
    shape = f"{what}({parameters})"
    if not callable(hook):
        raise ConfigurationError(f"{what} must be a function {shape}, not {hook!r}")
    try:
        # The hook's own (a decorator's wrapper is what is called, not what it wraps).
        signature = inspect.signature(hook, follow_wrapped=False)
    except Exception:  # no signature to read: taken as it is
        # A builtin has none; on Python 3.14 reading one evaluates its annotations, and a
        # name imported for type checking only raises NameError.
        return
    count = len([name for name in parameters.split(",") if name.strip()])
    try:
        signature.bind(*range(count))
    except TypeError as exc:
        name = getattr(hook, "__qualname__", None) or type(hook).__qualname__
        raise ConfigurationError(
            f"{what} is called as {shape}, but {name}{signature} cannot be: {exc}"
        ) from None
