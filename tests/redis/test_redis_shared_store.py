"""One store object shared by several AsyncEndpoints of a process stays open until the
last of them stops: the first to stop does not close it under the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    JobStatus,
    JobStore,
    JobStoreError,
)
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._connection import Connection
from tests.redis.support import eventually
from tests.redis_servers import RedisServer


async def ok(ctx: AsyncContext[None]) -> str:
    return "ok"


def store_of(kind: str, server: RedisServer, prefix: str) -> JobStore:
    return RedisJobStore(server.url, prefix=prefix) if kind == "redis" else InMemoryJobStore()


async def no_connection_left(server: RedisServer) -> None:
    """Wait until no client but the one asking is connected to ``server``."""
    client = Redis.from_url(server.url)

    async def only_this_client() -> bool:
        return len(await client.client_list()) == 1

    await eventually(only_this_client)
    await client.aclose()


def two_on(store: JobStore) -> tuple[AsyncEndpoints, AsyncEndpoints]:
    pair = AsyncEndpoints(Starlette(), store=store), AsyncEndpoints(Starlette(), store=store)
    for endpoints in pair:
        endpoints.add_handler(ok, name="Ok")
    return pair


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_the_store_stays_open_for_the_others_when_one_stops(
    redis_server: RedisServer, prefix: str, kind: str
) -> None:
    make: Callable[[], JobStore] = (
        (lambda: RedisJobStore(redis_server.url, prefix=prefix))
        if kind == "redis"
        else InMemoryJobStore
    )
    store = make()
    first, second = two_on(store)
    async with second.running():
        async with first.running():
            both = await second.submit("Ok")
            assert (await second.wait_for(both.id, timeout=10)).status is JobStatus.COMPLETED
        after = await second.submit("Ok")  # the first stopped: the store is still open
        assert (await second.wait_for(after.id, timeout=10)).result == "ok"
    if isinstance(store, RedisJobStore):  # the last one out closed it
        assert store._connection.closed


async def test_a_start_that_failed_leaves_the_store_to_close_with_its_next_user(
    own_redis_server: RedisServer,
) -> None:
    """The credentials refused at the first start (a password being rotated): the store's
    next start and stop, once the server takes them, close it (no user left counted)."""
    host = own_redis_server.url.removeprefix("redis://")
    admin = Redis.from_url(own_redis_server.url)
    await admin.config_set("requirepass", "old")
    await admin.aclose()
    store = RedisJobStore(f"redis://:rotated@{host}")
    endpoints = AsyncEndpoints(Starlette(), store=store)
    with pytest.raises(JobStoreError, match="credentials"):
        async with endpoints.running(workers=False):
            pass
    admin = Redis.from_url(f"redis://:old@{host}")
    await admin.config_set("requirepass", "rotated")
    await admin.aclose()
    async with endpoints.running(workers=False):
        assert not store._connection.closed
    assert store._connection.closed


def second_start_refused(first: AsyncEndpoints, second: AsyncEndpoints) -> str:
    """While ``first`` runs, start ``second`` in another loop (a thread's); return what
    refused it, once ``first`` has still run a job."""
    refused: list[BaseException] = []

    async def start_second() -> None:
        try:
            async with second.running():
                pass
        except RuntimeError as exc:
            refused.append(exc)

    async def main() -> str:
        async with first.running():
            await asyncio.to_thread(asyncio.run, start_second())
            job = await first.submit("Ok")
            return str((await first.wait_for(job.id, timeout=10)).result)

    assert asyncio.run(main()) == "ok"
    assert len(refused) == 1
    return str(refused[0])


def test_running_entered_from_another_event_loop_is_refused_and_the_first_goes_on(
    prefix: str, redis_server: RedisServer
) -> None:
    """Two lifespans of one app at once, each in an event loop of its own (two TestClient
    blocks open together): the store's connections and the pool belong to the first loop,
    so the second is refused, saying so, and the first still runs jobs."""
    first, _ = two_on(RedisJobStore(redis_server.url, prefix=prefix))
    assert "running already, in another event loop" in second_start_refused(first, first)


def test_a_loop_closed_while_running_does_not_hold_running_for_ever() -> None:
    """running() entered in a loop closed without leaving it (a test's loop torn down
    hard): a later running(), in a new loop, starts."""
    endpoints, _ = two_on(InMemoryJobStore())
    abandoned = asyncio.new_event_loop()
    abandoned.run_until_complete(endpoints.running(workers=False).__aenter__())
    abandoned.close()

    async def again() -> str:
        async with endpoints.running():
            job = await endpoints.submit("Ok")
            return str((await endpoints.wait_for(job.id, timeout=10)).result)

    assert asyncio.run(again()) == "ok"


def test_a_store_running_in_one_loop_is_refused_to_another_apps_loop(
    prefix: str, redis_server: RedisServer
) -> None:
    """Two apps on one store object, each with its own loop at once (a TestClient per
    app): the store's connections serve the first loop, so the second app's start is
    refused, saying so, rather than answering 503 with futures of another loop."""
    first, second = two_on(RedisJobStore(redis_server.url, prefix=prefix))
    said = second_start_refused(first, second)
    assert "store object is in use in another event loop" in said


async def test_running_with_workers_inside_a_block_with_workers_keeps_the_outer_pool(
    prefix: str, redis_server: RedisServer
) -> None:
    """Two lifespans of one app nested in one loop, both with workers: when the inner
    ends, the outer block's pool still runs jobs."""
    endpoints, _ = two_on(RedisJobStore(redis_server.url, prefix=prefix))
    async with endpoints.running():
        async with endpoints.running():
            inner = await endpoints.submit("Ok")
            assert (await endpoints.wait_for(inner.id, timeout=10)).result == "ok"
        outer = await endpoints.submit("Ok")
        assert (await endpoints.wait_for(outer.id, timeout=10)).result == "ok"


async def test_a_nested_block_leaves_the_outer_pools_queues_as_they_were(
    prefix: str, redis_server: RedisServer
) -> None:
    store = RedisJobStore(redis_server.url, prefix=prefix)
    endpoints = AsyncEndpoints(Starlette(), store=store, queues=("a", "b"))
    endpoints.add_handler(ok, name="Ok")
    async with endpoints.running(queues=["a"]):
        async with endpoints.running(queues=["b"]):
            pass
        async with endpoints.running(workers=False):
            pass
        assert endpoints.pool.queues == ("a",)


async def test_an_inner_blocks_queues_end_with_it(prefix: str, redis_server: RedisServer) -> None:
    """running(workers=False) serving every queue; inside it a block with workers of one
    queue: once it ends, drain() serves every queue again."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    endpoints = AsyncEndpoints(Starlette(), store=store, queues=("a", "b"))
    endpoints.add_handler(ok, name="Ok")
    async with endpoints.running(workers=False):
        async with endpoints.running(queues=["a"]):
            assert endpoints.pool.queues == ("a",)
        assert endpoints.pool.queues == ("a", "b")


async def test_a_nested_block_leaves_the_webhook_client_to_the_outermost() -> None:
    """A delivery on its way from the outer block's pool keeps its HTTP client when a
    block nested in it ends; the outermost block's end closes it."""
    endpoints = AsyncEndpoints(
        Starlette(),
        store=InMemoryJobStore(),
        webhook_secret="whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        webhook_allowed_hosts=["127.0.0.1"],
    )
    sender = endpoints.webhooks
    assert sender is not None
    async with endpoints.running():
        client = sender._http()
        async with endpoints.running(workers=False):
            pass
        assert sender._client is client and not client.is_closed
    assert client.is_closed


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_blocks_overlapping_in_two_tasks_keep_the_pool_until_the_last_one_ends(
    kind: str, prefix: str, redis_server: RedisServer
) -> None:
    """Two tasks each in a `running` block of one AsyncEndpoints, not nested: the block
    that started the pool ends first. The pool stops with the last block, not with the
    one that started it, so the other task's jobs still run; after both, it is stopped."""
    store = (
        RedisJobStore(redis_server.url, prefix=prefix) if kind == "redis" else InMemoryJobStore()
    )
    endpoints, _ = two_on(store)
    first_in, second_in, first_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with endpoints.running():
            first_in.set()
            await second_in.wait()
        first_out.set()

    async def second() -> object:
        await first_in.wait()
        async with endpoints.running():
            second_in.set()
            await first_out.wait()
            assert endpoints.pool.serving
            job = await endpoints.submit("Ok")
            return (await endpoints.wait_for(job.id, timeout=10)).result

    _, result = await asyncio.wait_for(asyncio.gather(first(), second()), timeout=30)
    assert result == "ok"
    assert not endpoints.pool.serving


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"workers": True, "queues": ["a"]}, {"workers": True}),
        ({"workers": False, "queues": ["a"]}, {"workers": True}),
        ({"workers": True}, {"workers": False, "queues": ["a"]}),
    ],
    ids=["pool-of-a-then-pool", "a-then-pool", "pool-then-a"],
)
async def test_blocks_ending_out_of_order_leave_the_queues_of_the_setting(
    first: dict[str, object], second: dict[str, object]
) -> None:
    """Whatever order two overlapping blocks end in, once both have ended `drain`
    serves every queue of the setting again (a job of the other queue runs)."""
    endpoints = AsyncEndpoints(Starlette(), store=InMemoryJobStore(), queues=("a", "b"))
    endpoints.add_handler(ok, name="Ok")
    first_in, second_in, first_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def one() -> None:
        async with endpoints.running(**first):  # type: ignore[arg-type]
            first_in.set()
            await second_in.wait()
        first_out.set()

    async def other() -> None:
        await first_in.wait()
        async with endpoints.running(**second):  # type: ignore[arg-type]
            second_in.set()
            await first_out.wait()

    await asyncio.wait_for(asyncio.gather(one(), other()), timeout=30)
    assert endpoints.pool.queues == ("a", "b")
    async with endpoints.running(workers=False):
        job = await endpoints.submit("Ok", queue="b")
        assert await endpoints.drain() == 1
        assert (await endpoints.get_job(job.id)).status is JobStatus.COMPLETED


async def test_blocks_entered_at_once_give_the_pool_the_queues_of_the_block_that_starts_it(
    prefix: str, redis_server: RedisServer
) -> None:
    """Two tasks enter `running` together (both wait for the store's start): the pool
    serves the queues of the block that asked for workers, not the other's."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    endpoints = AsyncEndpoints(Starlette(), store=store, queues=("a", "b"))
    endpoints.add_handler(ok, name="Ok")
    both_in = asyncio.Barrier(2)

    async def with_workers() -> tuple[str, ...]:
        async with endpoints.running(queues=["a"]):
            await both_in.wait()
            return endpoints.pool.queues

    async def without() -> None:
        async with endpoints.running(workers=False):
            await both_in.wait()

    served, _ = await asyncio.wait_for(asyncio.gather(with_workers(), without()), 30)
    assert served == ("a",)


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_a_cancel_while_the_last_block_drains_its_pool_still_closes_the_store(
    kind: str, prefix: str, redis_server: RedisServer
) -> None:
    """The task of the last block is cancelled while its pool waits for a running job
    (within the grace period), as a lifespan's shutdown timeout does: the block's end
    still closes the store and counts the block out, so a later block starts afresh."""
    store = (
        RedisJobStore(redis_server.url, prefix=prefix) if kind == "redis" else InMemoryJobStore()
    )
    endpoints = AsyncEndpoints(Starlette(), store=store, shutdown_grace_period=30)
    started = asyncio.Event()

    async def slow(ctx: AsyncContext[None]) -> None:
        started.set()
        await asyncio.sleep(60)

    endpoints.add_handler(slow, name="Slow")
    leaving = asyncio.Event()

    async def block() -> None:
        async with endpoints.running():
            await endpoints.submit("Slow")
            await started.wait()
            leaving.set()

    task = asyncio.create_task(block())
    await leaving.wait()
    await asyncio.sleep(0.2)  # the pool is draining now: its grace period runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert endpoints._runs == 0 and not endpoints.pool.serving
    if isinstance(store, RedisJobStore):
        assert store._connection.closed
    async with endpoints.running(workers=False):  # starts again, and ends cleanly
        assert (await endpoints.queue_stats())[0].name == "default"


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_a_block_entered_while_the_pool_stops_waits_and_its_jobs_run(
    kind: str, prefix: str, redis_server: RedisServer
) -> None:
    """Task A's block ends while a job of its pool runs (the pool drains it); task B
    enters a block with workers meanwhile: B's pool starts once that stop is over, so the
    stop's end cancels none of B's jobs, and nothing of either pool is left after."""
    endpoints = AsyncEndpoints(
        Starlette(), store=store_of(kind, redis_server, prefix), shutdown_grace_period=30
    )
    running, release, first_left = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow(ctx: AsyncContext[None]) -> str:
        running.set()
        await release.wait()
        return "slow"

    async def later(ctx: AsyncContext[None]) -> str:
        await first_left.wait()  # still running when the first block's stop ends
        return "later"

    endpoints.add_handler(slow, name="Slow")
    endpoints.add_handler(later, name="Later")

    async def first() -> None:
        async with endpoints.running():
            await endpoints.submit("Slow")
            await running.wait()
        first_left.set()

    async def second() -> object:
        await running.wait()
        await asyncio.sleep(0.05)  # the first block is leaving: its pool drains the job
        async with endpoints.running():
            job = await endpoints.submit("Later")
            return (await endpoints.wait_for(job.id, timeout=10)).result

    async def release_later() -> None:
        await running.wait()
        await asyncio.sleep(0.3)  # the second block is entering meanwhile
        release.set()

    _, result, _ = await asyncio.wait_for(
        asyncio.gather(first(), second(), release_later()), timeout=30
    )
    assert result == "later"
    assert not endpoints.pool.serving
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("async-endpoints")]


@pytest.mark.parametrize("shards", [1, 2])
async def test_a_cancel_while_the_store_closes_lets_the_close_end_and_the_store_start_again(
    shards: int, prefix: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block's task is cancelled while its store's `aclose` runs: the close still
    ends (no connection left open), and the next block starts the store anew."""
    store = RedisJobStore(redis_server.url, prefix=prefix, shards=shards)
    endpoints, _ = two_on(store)
    closing = asyncio.Event()
    aclose = type(store).aclose

    async def watched(self: RedisJobStore) -> None:
        closing.set()
        await aclose(self)

    monkeypatch.setattr(type(store), "aclose", watched)

    async def block() -> None:
        async with endpoints.running():
            await endpoints.wait_for((await endpoints.submit("Ok")).id, timeout=10)

    task = asyncio.create_task(block())
    await closing.wait()
    await asyncio.sleep(0)  # the close is under way, at its first wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.undo()
    await no_connection_left(redis_server)
    async with endpoints.running():
        job = await endpoints.wait_for((await endpoints.submit("Ok")).id, timeout=10)
        assert job.result == "ok"


async def test_a_block_cancelled_while_waiting_for_a_close_leaves_one_close_in_turn(
    prefix: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's store close is slow and A is cancelled in it; B enters, waits for that close,
    and is cancelled while waiting (then closes the store as its last user); C enters.
    The closes run one after the other and C waits for both: the first one's end does not
    close the store under C, whose jobs run, and nothing is left open after."""
    store = RedisJobStore(redis_server.url, prefix=prefix)
    endpoints, _ = two_on(store)
    aclose, calls, closing = Connection.aclose, [0], asyncio.Event()

    async def slow_first(self: Connection) -> None:  # its listener slow to end, say
        calls[0] += 1
        closing.set()
        await asyncio.sleep(0.5 if calls[0] == 1 else 0)
        await aclose(self)

    monkeypatch.setattr(Connection, "aclose", slow_first)

    async def empty_block() -> None:
        async with endpoints.running(workers=False):
            pass

    first = asyncio.create_task(empty_block())
    await closing.wait()
    first.cancel()
    second = asyncio.create_task(empty_block())
    await asyncio.sleep(0.1)  # the second waits for the first close
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    async with endpoints.running():
        await asyncio.sleep(0.6)  # the first close has ended meanwhile
        async with endpoints.running(workers=False):  # starts nothing anew under it
            job = await endpoints.submit("Ok")
        assert (await endpoints.wait_for(job.id, timeout=10)).result == "ok"
    monkeypatch.undo()
    await no_connection_left(redis_server)


async def test_a_close_that_fails_after_its_block_was_cancelled_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nobody awaits the close of a cancelled block: its failure is logged, not lost."""
    failed = asyncio.Event()

    class Failing(InMemoryJobStore):
        async def aclose(self) -> None:
            await asyncio.sleep(0.1)
            failed.set()
            raise RuntimeError("the close failed")

    endpoints = AsyncEndpoints(Starlette(), store=Failing())

    async def block() -> None:
        async with endpoints.running(workers=False):
            pass

    task = asyncio.create_task(block())
    await asyncio.sleep(0.05)  # the block has ended: its store closes
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await failed.wait()
    await asyncio.sleep(0)
    assert any(
        record.message == "closing the job store failed" and record.exc_info
        for record in caplog.records
    )


async def test_a_block_entered_while_the_webhook_client_closes_waits_for_the_stores_close(
    prefix: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last block's end closes the webhook client, then the store: a block entering
    during the first already waits for the second, instead of starting a store that is
    about to close under it."""
    endpoints = AsyncEndpoints(
        Starlette(),
        store=RedisJobStore(redis_server.url, prefix=prefix),
        webhook_secret="whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        webhook_allowed_hosts=["127.0.0.1"],
    )
    endpoints.add_handler(ok, name="Ok")
    sender = endpoints.webhooks
    assert sender is not None
    closing_client = asyncio.Event()
    aclose = type(sender).aclose

    async def slow_aclose(self: object) -> None:
        closing_client.set()
        await asyncio.sleep(0.2)
        await aclose(self)  # type: ignore[arg-type]

    monkeypatch.setattr(type(sender), "aclose", slow_aclose)

    async def first() -> None:
        async with endpoints.running(workers=False):
            pass

    async def second() -> object:
        await closing_client.wait()
        async with endpoints.running():
            await asyncio.sleep(0.3)  # past the webhook client's close
            job = await endpoints.submit("Ok")
            return (await endpoints.wait_for(job.id, timeout=10)).result

    _, result = await asyncio.wait_for(asyncio.gather(first(), second()), timeout=30)
    assert result == "ok"
