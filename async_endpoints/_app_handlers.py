"""The library's refusals on a FastAPI app with exception handlers of its own.

The library's routes answer their refusals themselves, as JSON ``{"detail": ...}`` (the
shape FastAPI's default handlers give). A FastAPI app that registered its own handler for
``RequestValidationError`` or ``HTTPException`` reshapes its own routes' errors with it,
and expects the same of every route it serves: so, on such an app, a refusal is raised as
that exception instead (a 422 whose detail is pydantic's list of errors as
``RequestValidationError``, any other as ``HTTPException``), and the app's handler answers
it (a Starlette app's own ``HTTPException`` handler too). Without one (a plain Starlette
app's default handler would answer plain text) the library answers itself.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ._responses import error_response

#: The module of FastAPI's own default exception handlers.
_DEFAULTS = "fastapi.exception_handlers"


def refusal(
    request: Request, status_code: int, detail: Any, headers: dict[str, str] | None = None
) -> Response:
    """The answer refusing ``request`` with ``status_code`` and ``detail``.

    Raises:
        fastapi.exceptions.RequestValidationError: a 422 with a list of errors, on a
            FastAPI app with a handler of its own for it.
        HTTPException: any other refusal, on an app with a handler of its own for
            ``HTTPException``.
    """
    handlers = getattr(request.scope.get("app"), "exception_handlers", None)
    if handlers:
        if status_code == 422 and isinstance(detail, list):
            invalid = _request_validation_error()
            if invalid is not None and _own_handler(handlers, invalid):
                raise invalid(detail)
        else:
            refused = _http_exception()
            if _own_handler(handlers, refused):
                raise refused(status_code, detail=detail, headers=headers)
    return error_response(status_code, detail, headers=headers)


def _request_validation_error() -> Any:
    try:
        from fastapi.exceptions import RequestValidationError
    except ImportError:  # pragma: no cover - FastAPI is optional
        return None
    return RequestValidationError


def _http_exception() -> Any:
    """FastAPI's HTTPException when FastAPI is installed (a handler registered for it or
    for Starlette's, its base, picks it up), else Starlette's."""
    try:
        from fastapi import HTTPException
    except ImportError:  # pragma: no cover - FastAPI is optional
        return StarletteHTTPException
    return HTTPException


def _own_handler(handlers: dict[Any, Any], raised: type[BaseException]) -> bool:
    """Whether the handler the app would pick for ``raised`` (the first of its classes
    that has one) is the app's own, not FastAPI's default."""
    for cls in raised.__mro__:
        if cls is Exception:  # a catch-all (error reporting) is no handler of refusals
            return False
        if cls in handlers:
            return getattr(handlers[cls], "__module__", "") != _DEFAULTS
    return False
