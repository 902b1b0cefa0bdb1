"""A Redis ACL user lacking a permission the store needs: the log names the refusal.

Neither refusal stops the start (an API instance may still serve what it can, and the
operations refused answer for themselves: see tests/test_security.py), but an operator
reading the log at start-up learns what Redis refused and what follows from it.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as redis

from async_endpoints import AsyncContext, AsyncEndpoints, JobStatus
from async_endpoints_redis import RedisJobStore
from tests.redis.support import user_without
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.redis


async def test_a_user_not_allowed_to_subscribe_is_named_and_workers_poll_instead(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The start warns that Redis refused the subscription, with its reason; workers
    then poll for jobs, so a submitted job still completes."""
    url = await user_without(own_redis_server, "no-pubsub", "subscribe", "psubscribe")
    store = RedisJobStore(url, socket_timeout=0.5)
    engine = AsyncEndpoints(store=store, polling_interval=0.1)

    async def work(ctx: AsyncContext[None]) -> str:
        return "ran"

    engine.add_handler(work)
    with caplog.at_level(logging.WARNING, logger="async_endpoints_redis"):
        async with engine.running():
            job = await engine.submit("work")
            done = await engine.wait_for(job.id, timeout=10)
    assert done.status is JobStatus.COMPLETED
    messages = [record.getMessage() for record in caplog.records]
    refused = [message for message in messages if "subscription refused" in message]
    assert len(refused) == 1 and "NoPermissionError" in refused[0], refused
    assert "'subscribe' command" in refused[0]
    start = [message for message in messages if "no pub/sub subscription yet" in message]
    assert start and "NoPermissionError" in start[0], start


async def test_a_refused_subscription_does_not_hold_up_the_start(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal will not pass by itself: the start stops waiting for the subscription
    when Redis refuses it, not after the store's deadline (here 62 s: socket_timeout 60
    plus the connect timeout), and the workers poll meanwhile."""
    url = await user_without(own_redis_server, "no-pubsub-start", "subscribe", "psubscribe")
    store = RedisJobStore(url, socket_timeout=60)
    try:
        with caplog.at_level(logging.WARNING, logger="async_endpoints_redis"):
            async with asyncio.timeout(30):  # far below the deadline, far above a start
                await store.start()
    finally:
        await store.aclose()
    messages = [record.getMessage() for record in caplog.records]
    assert any("no pub/sub subscription yet (NoPermissionError" in text for text in messages)


async def test_a_user_not_allowed_to_run_scripts_is_named_at_start(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The start reads the store's clock with a script: refused, the warning says that
    every operation runs scripts and will be refused alike."""
    url = await user_without(own_redis_server, "no-scripts", "evalsha", "eval", "script")
    store = RedisJobStore(url, socket_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="async_endpoints_redis"):
        await store.start()
        await store.aclose()
    (warning,) = [r.getMessage() for r in caplog.records if "store's clock" in r.getMessage()]
    assert "no permissions" in warning.lower() and "will fail alike" in warning


async def test_a_user_limited_to_the_stores_own_keys_and_channels_runs_jobs(
    own_redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The grant the README gives (``~{prefix}* &{prefix}* +@all``) is enough: a job is
    submitted, handed over or claimed, and completed, and nothing is refused."""
    pattern = "{" + prefix + "}*"
    async with redis.Redis.from_url(own_redis_server.url) as admin:
        await admin.acl_setuser(
            "own-keys",
            enabled=True,
            reset_channels=True,  # Redis 6.2 grants every channel to a new user by default
            passwords=["+pw"],
            keys=[pattern],
            channels=[pattern],
            commands=["+@all"],
        )
    url = f"redis://own-keys:pw@127.0.0.1:{own_redis_server.port}/0"
    engine = AsyncEndpoints(store=RedisJobStore(url, prefix=prefix))

    async def work(ctx: AsyncContext[None]) -> str:
        return "ran"

    engine.add_handler(work)
    with caplog.at_level(logging.WARNING):
        async with engine.running():
            jobs = [await engine.submit("work") for _ in range(5)]
            done = [await engine.wait_for(job.id, timeout=10) for job in jobs]
    assert [job.status for job in done] == [JobStatus.COMPLETED] * 5
    refusals = [r.getMessage() for r in caplog.records if "permission" in r.getMessage().lower()]
    assert refusals == []
