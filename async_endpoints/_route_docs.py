"""What a FastAPI user gives a route besides its job options: ``tags``, ``summary``,
``description``, ``deprecated``, ``operation_id``, ``include_in_schema`` (its OpenAPI
entry) and
``dependencies`` (``Depends(...)`` run before the submission, as on any FastAPI route: an
``HTTPException`` one raises is the answer and nothing is stored).

`route_docs` checks them when the route is mapped; `add_submit_route` hands them to
FastAPI's ``add_api_route``. A plain Starlette app has no dependencies nor OpenAPI
document of FastAPI's: those options are refused there (``include_in_schema`` is
Starlette's too, and kept).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import ConfigurationError

#: The route options of this module, and what each must be.
ROUTE_DOC_OPTIONS = {
    "tags": "a list of str",
    "summary": "a str",
    "description": "a str",
    "deprecated": "True or False",
    "operation_id": "a non-blank str",
    "include_in_schema": "True or False",
    "dependencies": "a list of Depends(...)",
}
#: Those a plain Starlette app cannot honour.
_FASTAPI_ONLY = frozenset(ROUTE_DOC_OPTIONS) - {"include_in_schema"}


def route_docs(options: Mapping[str, Any], *, fastapi: bool) -> dict[str, Any]:
    """The route options of ``options`` (those not None), checked.

    Raises:
        ConfigurationError: an option of the wrong type, or one only FastAPI honours on a
            plain Starlette app.
    """
    given = {
        name: options[name]
        for name in ROUTE_DOC_OPTIONS
        if name in options and options[name] is not None
    }
    for name, value in given.items():
        if not _fits(name, value):
            raise ConfigurationError(f"{name} must be {ROUTE_DOC_OPTIONS[name]}, not {value!r}")
    if not fastapi:
        refused = sorted(set(given) & _FASTAPI_ONLY)
        if refused:
            raise ConfigurationError(
                f"{', '.join(refused)} need a FastAPI app (a Starlette route has no "
                "dependencies nor OpenAPI entry of FastAPI's)"
            )
    if "tags" in given:
        given["tags"] = list(given["tags"])
    if "dependencies" in given:
        given["dependencies"] = list(given["dependencies"])
    return given


def _fits(name: str, value: Any) -> bool:
    if name in ("tags", "dependencies"):
        items = isinstance(value, Sequence) and not isinstance(value, str | bytes)
        return items and (name != "tags" or all(isinstance(tag, str) for tag in value))
    if name in ("deprecated", "include_in_schema"):
        return isinstance(value, bool)
    if name == "operation_id":
        return isinstance(value, str) and bool(value.strip())
    return isinstance(value, str)
