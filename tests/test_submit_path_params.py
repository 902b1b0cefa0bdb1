"""A job submitted in code for a route with path parameters is "queued like a POST would
be" (API.md): its handler finds every path parameter of its route in ``ctx.route_params``,
``""`` for those the call did not give, so a handler written for the route runs (API.md's
own example submits to ``/api/process-data/{tenant}`` with no route parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore, JobSpec, JobStatus
from async_endpoints.testing import ManualClock


class DataRequest(BaseModel):
    data: str
    processing_priority: int = 1


class ProcessResult(BaseModel):
    processed_data: str
    character_count: int


def api_md_app(seen: list[Mapping[str, str]], store: InMemoryJobStore) -> AsyncEndpoints:
    """API.md's "Wiring an app", its handler noting the route parameters it reads."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store)

    @endpoints.map_async_post("/api/process-data/{tenant}", name="ProcessData")
    async def process_data(ctx: AsyncContext[DataRequest]) -> ProcessResult:
        tenant = ctx.route_params["tenant"]
        seen.append({"tenant": tenant, **ctx.route_params})
        return ProcessResult(
            processed_data=ctx.request.data.upper(), character_count=len(ctx.request.data)
        )

    return endpoints


async def test_api_md_programmatic_example_completes() -> None:
    """``submit("ProcessData", DataRequest(data="x"))``, then ``wait_for``: Completed with
    the handler's result; the handler read ``tenant`` as ``""``."""
    seen: list[Mapping[str, str]] = []
    endpoints = api_md_app(seen, InMemoryJobStore())
    async with endpoints.running():
        job = await endpoints.submit("ProcessData", DataRequest(data="x"))
        job = await endpoints.wait_for(job.id, timeout=10)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"processed_data": "X", "character_count": 1}
    assert seen == [{"tenant": ""}]


async def test_route_params_given_to_submit_are_kept_and_the_missing_ones_read_empty() -> None:
    seen: list[Mapping[str, str]] = []
    endpoints = AsyncEndpoints(FastAPI(), store=InMemoryJobStore())
    router = APIRouter(prefix="/orgs/{org}")

    @endpoints.map_async_post("/items/{item_id:int}/{tenant}", router=router)
    async def item(ctx: AsyncContext[None]) -> None:
        seen.append(ctx.route_params)

    async with endpoints.running(workers=False):
        await endpoints.submit("item", route_params={"tenant": "acme", "item_id": 7})
        await endpoints.drain()
    assert seen == [{"org": "", "item_id": "7", "tenant": "acme"}]


async def test_a_handler_without_a_route_gets_only_the_route_params_given() -> None:
    seen: list[Mapping[str, str]] = []
    endpoints = AsyncEndpoints(store=InMemoryJobStore())

    @endpoints.add_handler
    async def plain(ctx: AsyncContext[None]) -> None:
        seen.append(ctx.route_params)

    async with endpoints.running(workers=False):
        await endpoints.submit("plain")
        await endpoints.submit("plain", route_params={"anything": "x"})
        await endpoints.drain()
    assert sorted(map(dict, seen), key=len) == [{}, {"anything": "x"}]


async def test_batch_jobs_and_cron_cycles_read_their_routes_path_params_as_empty() -> None:
    """A batch's jobs and a schedule's cycles come from no request either: their handler,
    written for its route, runs."""
    seen: list[Mapping[str, str]] = []
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    endpoints = api_md_app(seen, InMemoryJobStore(clock=clock))
    async with endpoints.running(workers=False):
        batch = await endpoints.submit_batch([JobSpec("ProcessData", DataRequest(data="ab"))])
        await endpoints.upsert_schedule(
            "every-10s", "ProcessData", "*/10 * * * * *", body={"data": "c"}
        )
        clock.advance(10)
        scheduler = endpoints.scheduler()
        assert scheduler is not None
        await scheduler.tick()
        assert await endpoints.drain() == 2
        jobs = await endpoints.list_jobs(limit=10)
    assert seen == [{"tenant": ""}, {"tenant": ""}]
    assert {job.status for job in jobs.jobs} == {JobStatus.COMPLETED}
    assert batch.total == 1
