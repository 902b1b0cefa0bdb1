"""Writes Redis refuses: for good (a result longer than it accepts) or for memory.

A refusal for good fails the job at once with its real cause and touches no other job
settled with it; a Redis that is out of memory refuses new work (submissions answer 503,
claims take nothing) while the jobs already running still renew and settle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    JobSpec,
    JobStatus,
    ResultRefusedError,
    StoreUnavailableError,
)
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis import _settling as settling_module
from tests.redis_servers import RedisServer, start_server

from .test_redis_store import new_job

pytestmark = pytest.mark.redis

BIG = "x" * (2 * 1024 * 1024)  # over a proto-max-bulk-len of 1 MiB


@pytest.fixture(scope="module")
def strict_redis() -> AsyncIterator[RedisServer]:
    """A server accepting no argument longer than 1 MiB (the smallest it allows)."""
    server = start_server("--proto-max-bulk-len", "1mb")
    yield server
    server.stop()


async def test_a_result_redis_refuses_fails_the_job_at_once_with_its_cause(
    strict_redis: RedisServer, prefix: str
) -> None:
    """One attempt, then Failed as ResultTooLarge (not retried, not ClaimExpired)."""
    endpoints = AsyncEndpoints(store=RedisJobStore(strict_redis.url, prefix=prefix))
    runs = 0

    async def big(ctx: AsyncContext[None]) -> str:
        nonlocal runs
        runs += 1
        return BIG

    endpoints.add_handler(big, name="Big")
    async with endpoints.running():
        job = await endpoints.submit("Big")
        done = await endpoints.wait_for(job.id, timeout=20)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.type == "ResultTooLarge"
    assert "bulk length" in done.error.message
    assert (runs, done.retry_count) == (1, 0)


@pytest.mark.parametrize("batched", [False, True], ids=["sent-alone", "batched"])
async def test_a_refused_result_changes_no_other_completion_settled_with_it(
    strict_redis: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch, batched: bool
) -> None:
    """Completions made in the same loop turn land; only the refused one raises."""
    if batched:  # even in one script call with the others, only its own job fails
        monkeypatch.setattr(settling_module, "_ALONE_OVER", 10 * len(BIG))
    store = RedisJobStore(strict_redis.url, prefix=prefix)
    try:
        for _ in range(3):
            await store.enqueue(new_job())
        first, second, third = await store.claim(3, lease=30)
        settled = await asyncio.gather(
            store.complete(first, 1),
            store.complete(second, BIG),
            store.complete(third, 3),
            return_exceptions=True,
        )
        assert [getattr(job, "result", None) for job in (settled[0], settled[2])] == [1, 3]
        assert isinstance(settled[1], ResultRefusedError)
        assert settled[1].error_type == "ResultTooLarge"
        assert (await store.get(second.job.id)).status is JobStatus.IN_PROGRESS
    finally:
        await store.aclose()


@pytest.fixture
async def full_redis(own_redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A raw client of a server of this test alone; `fill` it to make it refuse writes."""
    client = Redis.from_url(own_redis_server.url)
    yield client
    await client.config_set("maxmemory", 0)
    await client.aclose()


async def _fill(client: Redis) -> None:
    await client.set("ballast", b"\0" * (4 * 1024 * 1024))
    used = (await client.info("memory"))["used_memory"]
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", used - 1024 * 1024)


async def test_a_full_redis_refuses_new_work_and_lets_running_jobs_settle(
    own_redis_server: RedisServer, full_redis: Redis, prefix: str, http_client_for
) -> None:
    """Over maxmemory: a POST answers 503 with Retry-After and stores nothing, a queued
    job is not claimed (no cycling), and a running job still renews and completes."""
    store = RedisJobStore(own_redis_server.url, prefix=prefix)
    app = Starlette()
    endpoints = AsyncEndpoints(app, store=store, run_workers=False)

    @endpoints.map_async_post("/work", name="Work")
    async def work(ctx: AsyncContext[None]) -> None:
        return None

    async with http_client_for(app) as client:
        running = await store.enqueue(new_job())
        (claim,) = await store.claim(1, lease=30)
        waiting = await store.enqueue(new_job())
        await _fill(full_redis)
        keys_before = await full_redis.dbsize()
        response = await client.post("/work")
        assert response.status_code == 503
        assert response.headers["retry-after"] and "detail" in response.json()
        assert await full_redis.dbsize() == keys_before
        with pytest.raises(StoreUnavailableError):
            await store.claim(1, lease=30)
        assert (await store.get(waiting.id)).status is JobStatus.QUEUED
        assert await store.renew([claim], lease=30) == set()
        completed = await store.complete(claim, {"ok": True})
        assert completed is not None and completed.status is JobStatus.COMPLETED
        assert (await store.get(running.id)).result == {"ok": True}
        await full_redis.config_set("maxmemory", 0)
        (taken,) = await store.claim(1, lease=30)
        assert taken.job.id == waiting.id


async def test_a_full_redis_refuses_a_new_batch_and_jobs_appended_to_one(
    own_redis_server: RedisServer, full_redis: Redis, prefix: str
) -> None:
    """Over maxmemory, `submit_batch` and `append_to_batch` are refused as a single
    submission is (StoreUnavailableError) and store nothing: new work in bulk is new work."""
    store = RedisJobStore(own_redis_server.url, prefix=prefix)
    endpoints = AsyncEndpoints(store=store, run_workers=False)

    async def resize(ctx: AsyncContext[None]) -> None:
        return None

    endpoints.add_handler(resize, name="Resize")
    try:
        batch = await endpoints.submit_batch([JobSpec("Resize") for _ in range(3)])
        await _fill(full_redis)
        keys_before = await full_redis.dbsize()
        with pytest.raises(StoreUnavailableError):
            await endpoints.submit_batch([JobSpec("Resize") for _ in range(50)])
        with pytest.raises(StoreUnavailableError):
            await endpoints.append_to_batch(batch.id, [JobSpec("Resize") for _ in range(5)])
        assert await full_redis.dbsize() == keys_before
        assert (await endpoints.get_batch(batch.id)).total == 3
        await full_redis.config_set("maxmemory", 0)
        appended = await endpoints.append_to_batch(batch.id, [JobSpec("Resize")])
        assert appended.total == 4
    finally:
        await store.aclose()


async def test_a_batch_sent_in_chunks_that_a_full_redis_refuses_leaves_no_staged_chunk(
    own_redis_server: RedisServer,
    full_redis: Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch sent in chunks whose commit a Redis over maxmemory refuses (it filled up
    once the first chunks were staged) is refused whole, and the chunks staged are
    dropped at once rather than kept for their ten minutes, which would keep it full."""
    monkeypatch.setattr("async_endpoints_redis._batches.CHUNK", 10)
    store = RedisJobStore(own_redis_server.url, prefix=prefix)
    endpoints = AsyncEndpoints(store=store, run_workers=False)

    async def resize(ctx: AsyncContext[None]) -> None:
        return None

    endpoints.add_handler(resize, name="Resize")
    staged = 0
    stage = store._script

    async def staging_then_full(
        operation: str, name: str, args: list[str | int], **options: bool
    ) -> object:
        nonlocal staged
        answer = await stage(operation, name, args, **options)
        if name == "batch_stage" and args[2] != 0:
            staged += 1
            if staged == 2:  # the last chunk goes with the commit, over maxmemory
                await _fill(full_redis)
        return answer

    monkeypatch.setattr(store, "_script", staging_then_full)
    try:
        with pytest.raises(StoreUnavailableError):
            await endpoints.submit_batch([JobSpec("Resize") for _ in range(25)])
        assert staged == 2
        assert [key async for key in full_redis.scan_iter(match="*staged*")] == []
        assert [key async for key in full_redis.scan_iter(match="*job*")] == []
    finally:
        await store.aclose()
