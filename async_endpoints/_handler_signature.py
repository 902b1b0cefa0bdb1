"""What a handler function's signature must be: async, called with its `AsyncContext`
alone (any other parameter has a default), asking FastAPI for nothing (a dependency or a
request value would never be resolved for a job); and the name messages call it by."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, get_type_hints

from ._context import AsyncContext
from ._errors import ConfigurationError

HandlerFunction = Callable[[AsyncContext[Any]], Awaitable[Any]]


def called_with_context_alone(function: HandlerFunction, label: str) -> list[str]:
    """The names of ``function``'s parameters (``label`` its name in messages), checked to
    take one positional argument (the context) and nothing else the worker would not give.

    Raises:
        ConfigurationError: no parameter takes the context, another one needs a value, or
            one asks for a FastAPI dependency or request parameter (nothing would resolve it).
    """
    parameters = list(inspect.signature(function).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not parameters or parameters[0].kind not in (*positional, inspect.Parameter.VAR_POSITIONAL):
        raise ConfigurationError(f"job handler {label} takes no AsyncContext")
    hints = _hints_if_resolvable(function)
    for parameter in parameters[1:]:
        annotation = hints.get(parameter.name, parameter.annotation)
        # First: FastAPI's own form, Annotated[Session, Depends(get_db)], has no default.
        if _is_request_marker(parameter.default, annotation):
            raise _asks_fastapi(label, parameter.name)
        variadic = parameter.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if not variadic and parameter.default is inspect.Parameter.empty:
            raise ConfigurationError(
                f"job handler {label} is called with its AsyncContext alone: "
                f"its parameter {parameter.name!r} needs a default"
            )
    return [parameter.name for parameter in parameters]


def label_of(function: HandlerFunction, name: str | None) -> str:
    """What messages call the handler: its function's name, else the ``name`` given.

    Raises:
        ConfigurationError: it has neither (a ``functools.partial`` given no name).
    """
    label = getattr(function, "__name__", None)
    if isinstance(label, str):
        return label
    if name is None:
        raise ConfigurationError(
            f"job handler {function!r} has no __name__: give it a name (name=...)"
        )
    return name


def _hints_if_resolvable(function: HandlerFunction) -> dict[str, Any]:
    """``function``'s annotations with their ``Annotated`` extras, resolved (``from
    __future__ import annotations`` makes them strings); none when they cannot be (the
    annotations' check says why, later)."""
    try:
        return get_type_hints(unwrapped(function), include_extras=True)
    except Exception:  # unresolvable: reported with the other annotations
        return {}


def _is_request_marker(default: Any, annotation: Any) -> bool:
    """Whether a parameter is declared with FastAPI's ``Depends``, ``Security``,
    ``Query``, ``Header``, ``Body``... (as its ``default``, or in an ``Annotated``
    ``annotation``)."""
    try:
        from fastapi import params
    except ImportError:  # pragma: no cover - FastAPI is optional
        return False
    markers = (params.Depends, params.Param, params.Body)
    found = [default, *getattr(annotation, "__metadata__", ())]
    return any(isinstance(value, markers) for value in found)


def _asks_fastapi(label: str, parameter: str) -> ConfigurationError:
    return ConfigurationError(
        f"job handler {label}'s parameter {parameter!r} asks FastAPI for a dependency or "
        "a request value, which nothing resolves for a job: a handler is called with its "
        "AsyncContext alone (take resources from ctx.state, set by the app's lifespan, and "
        "give the route its dependencies with dependencies=[...])"
    )


def unwrapped(function: HandlerFunction) -> Any:
    """The function whose annotations ``function`` has: itself, or the one a
    ``functools.partial`` wraps (at any depth)."""
    while isinstance(function, functools.partial):
        function = function.func
    return function


def check_context_annotated(function: HandlerFunction, label: str) -> None:
    """Refuse an endpoint's handler whose context parameter has no annotation: it would
    take no body, and a client's body would be dropped without a word.

    Raises:
        ConfigurationError: the first parameter is not annotated.
    """
    parameters = list(inspect.signature(function).parameters.values())
    if parameters and parameters[0].annotation is inspect.Parameter.empty:
        name = parameters[0].name
        raise ConfigurationError(
            f"job handler {label}'s parameter {name!r} needs an annotation on an endpoint: "
            f"{name}: AsyncContext[Model] takes a JSON body (read as {name}.request), "
            f"{name}: AsyncContext takes none"
        )
