"""Partition keys and tenants as options: on submit, on routes (constant or per POST), in
the handler's context and on JobSpec; bad values are refused before anything is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobSpec,
)
from async_endpoints.testing import ManualClock

#: Empty, too long, not text, and text with a lone surrogate (no UTF-8 form: no store
#: outside the process could keep it).
BAD_LABELS = ["", "k" * 256, 7, b"bytes", "acme\ud800"]


class Update(BaseModel):
    account: str
    amount: int = 0


@pytest.fixture
async def endpoints() -> AsyncIterator[AsyncEndpoints]:
    engine = AsyncEndpoints(store=InMemoryJobStore(clock=ManualClock()))
    seen: list[tuple[str | None, str | None]] = []

    async def apply(ctx: AsyncContext[Update]) -> list[str | None]:
        seen.append((ctx.partition_key, ctx.tenant))
        return [ctx.partition_key, ctx.tenant, None if ctx.batch_id is None else "batch"]

    engine.add_handler(apply)
    async with engine.running(workers=False):
        yield engine


async def test_submit_stores_the_partition_key_and_tenant_and_the_handler_sees_them(
    endpoints: AsyncEndpoints,
) -> None:
    """submit(partition_key=, tenant=): on the job, in its JSON and in ctx."""
    job = await endpoints.submit("apply", {"account": "a"}, partition_key="acct-1", tenant="acme")
    assert (job.partition_key, job.tenant) == ("acct-1", "acme")
    assert job.to_json()["partitionKey"] == "acct-1" and job.to_json()["tenant"] == "acme"
    await endpoints.drain()
    done = await endpoints.get_job(job.id)
    assert done is not None and done.result == ["acct-1", "acme", None]


async def test_a_key_of_255_characters_is_accepted(endpoints: AsyncEndpoints) -> None:
    """The limit is inclusive: 255 characters (not bytes) of any text."""
    key = "ü" * 255
    job = await endpoints.submit("apply", {"account": "a"}, partition_key=key, tenant=key)
    assert job.partition_key == key == job.tenant


@pytest.mark.parametrize("bad", BAD_LABELS)
@pytest.mark.parametrize("option", ["partition_key", "tenant"])
async def test_a_bad_key_or_tenant_on_submit_is_a_value_error_and_stores_nothing(
    endpoints: AsyncEndpoints, option: str, bad: Any
) -> None:
    """Empty, over 255 characters, not a string, or holding a lone surrogate: ValueError
    naming the option."""
    with pytest.raises(ValueError, match=option):
        await endpoints.submit("apply", {"account": "a"}, **{option: bad})
    assert (await endpoints.queue_stats())[0].queued == 0


@pytest.mark.parametrize("bad", BAD_LABELS)
async def test_listing_by_a_bad_tenant_is_a_value_error(
    endpoints: AsyncEndpoints, bad: Any
) -> None:
    """list_jobs(tenant=...) checks the tenant as submit does."""
    with pytest.raises(ValueError, match="tenant"):
        await endpoints.list_jobs(tenant=bad)


# ---------------------------------------------------------------------------------------
# Over HTTP: constant or computed per POST.
# ---------------------------------------------------------------------------------------


def keyed_app(**options: Any) -> tuple[FastAPI, AsyncEndpoints]:
    app = FastAPI()
    engine = AsyncEndpoints(app, run_workers=False)

    @engine.map_async_post("/updates", name="ApplyUpdate", **options)
    async def apply_update(ctx: AsyncContext[Update]) -> None:
        return None

    engine.map_job_details()
    return app, engine


async def test_constant_route_options_label_every_posted_job(http_client_for) -> None:
    """map_async_post(partition_key="k", tenant="t"): the 202 shows both."""
    app, _ = keyed_app(partition_key="ledger", tenant="acme")
    async with http_client_for(app) as client:
        job = (await client.post("/updates", json={"account": "a"})).json()
    assert job["partitionKey"] == "ledger" and job["tenant"] == "acme"


async def test_option_functions_see_the_request_and_the_body(http_client_for) -> None:
    """A sync key function and an async tenant function are called per POST with the
    request and the validated body; None means no key (or no tenant)."""

    def account_of(request: Request, body: Update) -> str | None:
        return None if body.account == "-" else f"account:{body.account}"

    async def tenant_of(request: Request, body: Update) -> str:
        return request.headers["x-tenant"]

    app, _ = keyed_app(partition_key=account_of, tenant=tenant_of)
    async with http_client_for(app) as client:
        keyed = await client.post("/updates", json={"account": "7"}, headers={"x-tenant": "a"})
        free = await client.post("/updates", json={"account": "-"}, headers={"x-tenant": "b"})
    assert keyed.status_code == free.status_code == 202
    assert (keyed.json()["partitionKey"], keyed.json()["tenant"]) == ("account:7", "a")
    assert (free.json()["partitionKey"], free.json()["tenant"]) == (None, "b")


@pytest.mark.parametrize("bad", BAD_LABELS)
@pytest.mark.parametrize("option", ["partition_key", "tenant"])
async def test_a_bad_value_from_an_option_function_answers_422_and_stores_nothing(
    http_client_for, option: str, bad: Any
) -> None:
    """A function giving an empty, too long or non-string value: 422 JSON, nothing stored."""
    app, engine = keyed_app(**{option: lambda request, body: bad})
    async with http_client_for(app) as client:
        response = await client.post("/updates", json={"account": "a"})
        stats = await engine.queue_stats()
    assert response.status_code == 422 and option in str(response.json()["detail"])
    assert stats[0].queued == stats[0].scheduled == 0


@pytest.mark.parametrize("bad", BAD_LABELS)
@pytest.mark.parametrize("option", ["partition_key", "tenant"])
def test_a_bad_constant_route_option_is_a_configuration_error(option: str, bad: Any) -> None:
    """A constant that could never be stored is refused when mapping; nothing registered."""
    app = FastAPI()
    engine = AsyncEndpoints(app)

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    with pytest.raises(ConfigurationError, match=option):
        engine.add_async_post("/work", work, **{option: bad})
    assert engine.handlers == {}


# ---------------------------------------------------------------------------------------
# JobSpec: the same options, checked when the spec is made.
# ---------------------------------------------------------------------------------------


def test_a_job_spec_keeps_its_options() -> None:
    """JobSpec(name, body, ...) holds what submit takes, and gives its placement."""
    spec = JobSpec("apply", {"account": "a"}, delay=5, queue="q", partition_key="k", tenant="t")
    placement = spec.placement()
    assert (placement.delay, placement.queue) == (5.0, "q")
    assert (placement.partition_key, placement.tenant) == ("k", "t")


def test_a_job_specs_options_after_the_body_are_keywords_only() -> None:
    """As API.md writes it: JobSpec(name, body=None, *, delay=None, ...): a delay given
    as a third positional argument is a TypeError, not a silently placed option."""
    with pytest.raises(TypeError):
        JobSpec("apply", {"account": "a"}, 5)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"partition_key": ""}, "partition_key"),
        ({"tenant": "t" * 256}, "tenant"),
        ({"delay": -1}, "delay"),
        ({"delay": 1, "run_at": None, "queue": ""}, "queue"),
    ],
)
def test_a_job_spec_with_bad_options_is_a_value_error(
    options: dict[str, Any], message: str
) -> None:
    """A spec that could never be submitted is refused when made."""
    with pytest.raises(ValueError, match=message):
        JobSpec("apply", **options)


def test_a_job_spec_is_refused_without_a_name() -> None:
    """The handler's name is required and non-empty."""
    with pytest.raises(ValueError, match="name"):
        JobSpec("")
