"""Replies with which a live Redis refuses a command for now, not for good: BUSY (another
client's script has run past ``busy-reply-threshold``), NOREPLICAS (fewer replicas in
sync than ``min-replicas-to-write``), MISCONF, MASTERDOWN. Each is an outage of the store
(`StoreUnavailableError`: 503 with Retry-After, a settlement sent again), never a refusal
of the request (`JobStoreError`: a 500, a result dropped and the job run twice)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from async_endpoints import AsyncContext, AsyncEndpoints, JobStatus, StoreUnavailableError
from async_endpoints._errors import JobStoreError
from async_endpoints.testing._contract_support import new_job
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._errors import mapped_errors
from tests.redis.support import eventually
from tests.redis_servers import RedisServer
from tests.serving import served

pytestmark = pytest.mark.redis


@pytest.mark.parametrize(
    "reply",
    [
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        "NOREPLICAS Not enough good replicas to write.",
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
        "persist to disk.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "Error running script (call to f_0a1b): @user_script:12: -NOREPLICAS Not enough good "
        "replicas to write.",
        "Command # 1 (EXISTS a) of pipeline caused error: BUSY Redis is busy running a "
        "script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    ],
    ids=["busy", "noreplicas", "misconf", "masterdown", "noreplicas-in-a-script", "in-a-pipeline"],
)
def test_a_reply_refusing_a_command_for_now_is_the_store_unavailable(reply: str) -> None:
    unavailable = pytest.raises(StoreUnavailableError, match="Redis is unavailable")
    with unavailable as raised, mapped_errors("complete"):
        raise redis_errors.ResponseError(reply)
    assert raised.value.retry_after is not None


@pytest.mark.parametrize(
    "reply",
    [
        "BUSYGROUP Consumer Group name already exists",
        "BUSYKEY Target key name already exists.",
        "ERR Error running script: attempt to compare nil with number",
        "NOPERM this user has no permissions to run the 'evalsha' command",
        "NOPERM User svc-BUSY has no permissions to run the 'evalsha' command",
        "Error running script (call to f_0a1b): @user_script:3: user error -BUSY is a word",
    ],
    ids=["busygroup", "busykey", "script-error", "noperm", "noperm-of-a-user-so-named", "word"],
)
def test_other_refusals_stay_refusals(reply: str) -> None:
    with pytest.raises(JobStoreError) as raised, mapped_errors("complete"):
        raise redis_errors.ResponseError(reply)
    assert not isinstance(raised.value, StoreUnavailableError)


@contextlib.asynccontextmanager
async def busy(server: RedisServer) -> AsyncIterator[None]:
    """Redis answers BUSY to every other client inside the block: a script of another
    client loops past ``busy-reply-threshold`` (lowered to 50 ms) until ``SCRIPT KILL``."""
    blocker, killer = Redis.from_url(server.url), Redis.from_url(server.url)
    await killer.config_set("busy-reply-threshold", 50)
    looping = asyncio.create_task(blocker.eval("while true do end", 0))

    async def answers_busy() -> bool:
        try:
            await killer.ping()
        except redis_errors.ResponseError as exc:
            return str(exc).startswith("BUSY")
        return False

    try:
        await eventually(answers_busy)
        yield
    finally:
        with contextlib.suppress(redis_errors.ResponseError):
            await killer.script_kill()
        with contextlib.suppress(redis_errors.ResponseError):
            await looping
        await blocker.aclose()
        await killer.aclose()


async def test_a_busy_redis_is_unavailable_and_what_was_sent_then_stored_nothing(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """While another client's script keeps Redis busy, a submission and a read raise
    `StoreUnavailableError`; nothing was stored, and once the script is killed both work."""
    store = RedisJobStore(own_redis_server.url, prefix=prefix)
    try:
        await store.count_waiting()  # scripts loaded, connection open
        async with busy(own_redis_server):
            with pytest.raises(StoreUnavailableError, match="BUSY"):
                await store.enqueue(new_job())
            with pytest.raises(StoreUnavailableError, match="BUSY"):
                await store.count_waiting()
        assert await store.count_waiting() == 0
        await store.enqueue(new_job())
        assert await store.count_waiting() == 1
    finally:
        await store.aclose()


async def test_a_busy_redis_answers_503_with_retry_after_over_http(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """A POST and a GET of the job while Redis is busy: 503 with Retry-After and a JSON
    body (not a 500); the POST stored nothing."""
    app = FastAPI()
    store = RedisJobStore(own_redis_server.url, prefix=prefix)
    endpoints = AsyncEndpoints(app, store=store, run_workers=False)
    endpoints.map_job_details()

    @endpoints.map_async_post("/work")
    async def work(ctx: AsyncContext[None]) -> str:
        return "done"

    async with served(app) as base, httpx.AsyncClient(base_url=base) as client:
        accepted = await client.post("/work")
        assert accepted.status_code == 202
        async with busy(own_redis_server):
            for answer in (
                await client.post("/work"),
                await client.get(accepted.headers["location"]),
            ):
                assert answer.status_code == 503, answer.text
                assert "retry-after" in answer.headers and "detail" in answer.json()
        assert await store.count_waiting() == 1


class NotingRefusals(RedisJobStore):
    """A Redis store that sets ``refused`` when a completion fails as unavailable."""

    refused: asyncio.Event

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().complete(*args, **kwargs)
        except StoreUnavailableError:
            self.refused.set()
            raise


async def test_a_result_settled_while_redis_is_busy_is_kept_and_the_handler_runs_once(
    own_redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler returns while Redis is busy: its completion is refused BUSY and sent
    again until Redis answers, so the job is Completed from its one attempt (retry count
    0, the handler run once), not dropped and run again by recovery."""
    monkeypatch.setattr("async_endpoints._recovery.RETRY_PAUSE", 0.05)
    store = NotingRefusals(own_redis_server.url, prefix=prefix)
    store.refused = asyncio.Event()
    engine = AsyncEndpoints(store=store, claim_timeout=30)
    runs: list[int] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def report(ctx: AsyncContext[None]) -> str:
        runs.append(ctx.retry_count)
        started.set()
        await release.wait()
        return "done"

    engine.add_handler(report)
    async with engine.running():
        job = await engine.submit("report")
        await started.wait()
        async with busy(own_redis_server):
            release.set()
            async with asyncio.timeout(10):
                await store.refused.wait()
        done = await engine.wait_for(job.id, timeout=20)
    assert done.status is JobStatus.COMPLETED and done.result == "done"
    assert done.retry_count == 0 and runs == [0]


async def test_writes_refused_for_want_of_replicas_are_the_store_unavailable(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """With ``min-replicas-to-write 1`` and no replica, Redis refuses every write
    (NOREPLICAS, inside the submission's script): `StoreUnavailableError`, nothing
    stored; once the setting is lifted the same submission is stored."""
    store = RedisJobStore(own_redis_server.url, prefix=prefix)
    admin = Redis.from_url(own_redis_server.url)
    try:
        await store.count_waiting()
        await admin.config_set("min-replicas-to-write", 1)
        with pytest.raises(StoreUnavailableError, match="NOREPLICAS"):
            await store.enqueue(new_job())
        await admin.config_set("min-replicas-to-write", 0)
        assert await store.count_waiting() == 0
        await store.enqueue(new_job())
        assert await store.count_waiting() == 1
    finally:
        await admin.aclose()
        await store.aclose()


async def test_a_pipeline_meeting_a_busy_redis_is_the_store_unavailable(
    own_redis_server: RedisServer,
) -> None:
    """redis-py words a pipeline command's error its own way ("Command # 1 (...) of
    pipeline caused error: BUSY ..."; the sharded store's keyed submissions and recovery
    use pipelines): that BUSY, from a real server, is an outage too."""
    client = Redis.from_url(own_redis_server.url)
    try:
        async with busy(own_redis_server):
            with pytest.raises(StoreUnavailableError, match="BUSY"), mapped_errors("enqueue"):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.exists("a")
                    pipe.exists("b")
                    await pipe.execute()
    finally:
        await client.aclose()
