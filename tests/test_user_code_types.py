"""User code type-checks as the README writes it (mypy --strict over a user's module):
a bare ``AsyncContext`` is ``AsyncContext[None]``, ``AsyncContext[Model]`` gives the
model, and a validator that cannot take (request, body), a misspelt or wrongly typed
setting and an ``authorize`` of the wrong shape are type errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api

pytestmark = pytest.mark.slow

USER_CODE = textwrap.dedent(
    """
    from pydantic import BaseModel
    from starlette.applications import Starlette
    from starlette.requests import Request

    from async_endpoints import AsyncContext, AsyncEndpoints

    class Order(BaseModel):
        sku: str

    endpoints = AsyncEndpoints(Starlette())

    async def nightly(ctx: AsyncContext) -> None:
        reveal_type(ctx.request)

    async def place(ctx: AsyncContext[Order]) -> str:
        reveal_type(ctx.request)
        return ctx.request.sku

    def only_request(request: Request) -> None:
        return None

    endpoints.add_handler(nightly)
    endpoints.add_handler(place, validator=only_request)

    def by_owner(request: Request) -> bool:
        return True

    AsyncEndpoints(max_concurency=4)
    AsyncEndpoints(max_retries="3")
    AsyncEndpoints(authorize=by_owner)
    AsyncEndpoints(max_retries=3, authorize=lambda request, job: job.owner is None)
    """
)


def test_user_code_reads_as_the_readme_says_under_mypy_strict(tmp_path: Path) -> None:
    """Under --strict: the bare context's request is None with no missing-type-argument
    error, the model's is the model; the one-argument validator, the misspelt setting,
    the text for an int and the one-argument authorize are the errors, and nothing
    else (the last, well-formed construction passes)."""
    module = tmp_path / "user_app.py"
    module.write_text(USER_CODE)
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(module)]
    )
    lines = [line.split(": ", 1)[1] for line in out.splitlines() if ": " in line]
    assert 'note: Revealed type is "None"' in lines, out
    assert 'note: Revealed type is "user_app.Order"' in lines, out
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 4, out
    assert '"validator"' in errors[0] and '"max_concurency"' in errors[1], out
    assert '"max_retries"' in errors[2] and '"authorize"' in errors[3], out
    assert status == 1 and not err
