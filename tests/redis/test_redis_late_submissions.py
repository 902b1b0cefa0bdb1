"""A submission Redis carries out only after its caller gave up on it stores nothing, on
a real server.

While the server is frozen (SIGSTOP) a submission waits in its socket; its caller gives
up at its deadline (``socket_timeout + socket_connect_timeout``) and is told the store is
unavailable (503 over HTTP), and closes the connection. Resumed, Redis reads what waited
and carries it out before it sees the connection closed: the submission must find its
caller gone and store nothing, or the job the client sends again would run twice. (A
``CLIENT PAUSE`` drops such a call instead: the paused server still reads the sockets and
frees the closed connection's client first.) A caller whose own reading of the elapsed
clock trails the clock (a host resumed from a suspension) is not refused for good: its call
is sent again with the clock the refusal carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from async_endpoints import JobStatus, StoreUnavailableError
from async_endpoints._batch import NewBatch
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._batches import CHUNK
from async_endpoints_redis._fence import budget, fence, give_up, giving_up
from async_endpoints_redis._lua_script import LuaScript
from async_endpoints_redis._shard_layout import ShardLayout, shard_prefixes
from tests.redis.support import eventually
from tests.redis.test_shards_frozen import frozen as stopped
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.redis

#: Each call gives up after socket_timeout + socket_connect_timeout = 0.8 s.
TIMEOUTS = {"socket_timeout": 0.4, "socket_connect_timeout": 0.4}
STORES = [pytest.param({}, id="plain"), pytest.param({"shards": 3}, id="sharded")]


def new_job(batch_id: uuid.UUID | None = None) -> NewJob:
    return NewJob(id=uuid.uuid4(), name="Job", max_retries=0, batch_id=batch_id)


def new_batch(prefix: str, shards: int) -> NewBatch:
    """Three jobs and a continuation, whose ids all fall in the batch id's shard: its one
    call is the script that stores it (no pointer to another shard is written first)."""
    layout = ShardLayout(prefix, shards)
    batch_id = uuid.uuid4()

    def member() -> NewJob:
        while layout.of_id((job := new_job(batch_id)).id) != layout.of_id(batch_id):
            pass
        return job

    return NewBatch(batch_id, [member() for _ in range(3)], [member()])


async def started(server: RedisServer, prefix: str, options: dict[str, Any]) -> RedisJobStore:
    store = RedisJobStore(server.url, prefix=prefix, **{**TIMEOUTS, **options})
    await store.start()
    await store.enqueue(new_job())  # every connection warm, every script loaded
    return store


async def job_keys(server: RedisServer, prefix: str, shards: int) -> list[str]:
    """The job hashes the store holds, on every shard."""
    found: list[str] = []
    async with Redis.from_url(server.url, decode_responses=True) as raw:
        for one in shard_prefixes(prefix, shards):
            found += [key async for key in raw.scan_iter(match=f"{{{one}}}:job:*")]
    return found


@contextlib.asynccontextmanager
async def frozen(server: RedisServer) -> AsyncIterator[None]:
    """The server frozen (SIGSTOP) inside, then resumed; on the way out, waits until it
    has carried out a script call held in the freeze (the submission's: this store's are
    the only calls), and checks that no call failed (a script not loaded yet would fail
    with NOSCRIPT, and the caller, gone, would never send it again: nothing to test)."""
    async with Redis.from_url(server.url) as admin:
        calls, failed = await script_calls(admin)
        async with stopped(server):
            yield

        async def carried_out() -> tuple[int, int] | None:
            now = await script_calls(admin)
            return now if now[0] > calls else None

        assert (await eventually(carried_out))[1] == failed


async def script_calls(raw: Redis) -> tuple[int, int]:
    """How many EVALSHA and EVAL calls the server has carried out, and how many of them
    failed."""
    stats = await raw.info("commandstats")
    kinds = [stats.get(f"cmdstat_{name}", {}) for name in ("evalsha", "eval")]
    return sum(kind.get("calls", 0) for kind in kinds), sum(
        kind.get("failed_calls", 0) for kind in kinds
    )


@pytest.mark.parametrize("options", STORES)
async def test_a_submission_carried_out_after_its_caller_gave_up_stores_nothing(
    own_redis_server: RedisServer, prefix: str, options: dict[str, Any]
) -> None:
    """The enqueue waits in the frozen server past its deadline: StoreUnavailableError.
    Resumed, the server carries it out, and no job is stored: the store holds the
    warm-up's job alone. A submission sent then is stored."""
    store = await started(own_redis_server, prefix, options)
    shards = options.get("shards", 1)
    try:
        before = await job_keys(own_redis_server, prefix, shards)
        late = new_job()
        async with frozen(own_redis_server):
            with pytest.raises(StoreUnavailableError):
                await store.enqueue(late)
        assert await job_keys(own_redis_server, prefix, shards) == before
        assert await store.get(late.id) is None
        assert await store.count_waiting() == 1
        after = await store.enqueue(new_job())  # a submission sent now is stored
        assert await store.get(after.id) is not None
    finally:
        await store.aclose()


@pytest.mark.parametrize("options", STORES)
async def test_a_batch_carried_out_after_its_caller_gave_up_stores_nothing(
    own_redis_server: RedisServer, prefix: str, options: dict[str, Any]
) -> None:
    """create_batch waits in the frozen server past its deadline: StoreUnavailableError.
    Resumed, the server carries it out, and neither the batch nor any of its jobs or
    continuations is stored."""
    store = await started(own_redis_server, prefix, options)
    shards = options.get("shards", 1)
    try:
        await store.create_batch(new_batch(prefix, shards))  # the script loaded
        before = await job_keys(own_redis_server, prefix, shards)
        batch = new_batch(prefix, shards)
        async with frozen(own_redis_server):
            with pytest.raises(StoreUnavailableError):
                await store.create_batch(batch)
        assert await store.get_batch(batch.id) is None
        assert await job_keys(own_redis_server, prefix, shards) == before
        assert await store.count_waiting() == 1 + 3
    finally:
        await store.aclose()


async def test_a_submission_whose_reading_trails_the_clock_is_stored_once(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """The store's clock is a minute ahead of this process's reading (as after its host
    was suspended for a minute): the enqueue is refused once (two script calls), sent
    again with the clock the refusal carried, and stored once, Queued."""
    store = await started(own_redis_server, prefix, {})
    try:
        async with Redis.from_url(own_redis_server.url, decode_responses=True) as raw:
            clock_key = f"{{{prefix}}}:clock"
            await raw.set(clock_key, int(await raw.get(clock_key)) + 60_000)
            calls, _ = await script_calls(raw)
            job = await store.enqueue(new_job())
            assert (await script_calls(raw))[0] - calls == 2
        stored = await store.get(job.id)
        assert stored is not None and stored.status is JobStatus.QUEUED
        assert await store.count_waiting() == 2
    finally:
        await store.aclose()


async def test_a_large_batch_refused_while_its_caller_waits_is_stored_whole_when_sent_again(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """A batch of more than one chunk whose last call is refused (the reading trails the
    clock by a minute) keeps its staged chunks for the resend: stored whole."""
    store = await started(own_redis_server, prefix, {})
    try:
        async with Redis.from_url(own_redis_server.url, decode_responses=True) as raw:
            clock_key = f"{{{prefix}}}:clock"
            await raw.set(clock_key, int(await raw.get(clock_key)) + 60_000)
        batch_id = uuid.uuid4()
        batch = NewBatch(batch_id, [new_job(batch_id) for _ in range(CHUNK + 1)])
        stored = await store.create_batch(batch)
        assert stored.total == CHUNK + 1
        assert await store.count_waiting() == 1 + CHUNK + 1
    finally:
        await store.aclose()


async def test_a_step_of_the_redis_hosts_wall_clock_holds_submissions_one_burst_only(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """The Redis host's wall clock steps 10 s forward (made so by moving the wall-clock
    half of the clock's records 10 s back): the submissions that follow are refused as
    if held in a 10 s stall, for the 2 s a stall's burst is trusted, and no longer: a
    store whose calls give up after 4 s (a second of it kept for the reply) stores the
    job."""
    store = await started(
        own_redis_server, prefix, {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    )
    try:
        async with Redis.from_url(own_redis_server.url, decode_responses=True) as raw:
            for record in ("clock:anchor", "clock:at"):
                key = f"{{{prefix}}}:{record}"
                clock, wall = (await raw.get(key)).split()
                await raw.set(key, f"{clock} {int(wall) - 10_000}")
        job = await store.enqueue(new_job())
        assert await store.get(job.id) is not None
    finally:
        await store.aclose()


async def test_a_call_keeps_its_whole_reply_margin_however_little_time_is_left() -> None:
    """A submission may be carried out until its caller's give-up moment less the reply
    margin (a second, or half the shorter of the deadline and the socket timeout), never
    less: with 0.8 s left of a 5 s deadline nothing is left to send it with (a resend
    then, stored in time, could be answered after its caller, busy with a burst, gave
    up); of a 1 s deadline, 0.3 s; and a send is given up on after the socket timeout
    (the client sends it again), so with 0.5 s of it, 0.25 s."""
    loop = asyncio.get_running_loop()
    assert math.isinf(budget())  # outside a call: no fence
    given = give_up.set(giving_up(loop.time() + 0.8, 5.0, math.inf))
    try:
        assert budget() <= -0.2
        give_up.set(giving_up(loop.time() + 0.8, 1.0, math.inf))
        assert 0.2 < budget() <= 0.3
        assert fence(10_000, budget()) <= 10_300
        give_up.set(giving_up(loop.time() + 0.8, 1.0, 0.5))
        assert 0.2 < budget() <= 0.25
    finally:
        give_up.reset(given)


async def test_a_submissions_fence_ends_before_its_client_gives_up_on_the_send(
    own_redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With socket_timeout 0.5 s (and a 1 s deadline) the client stops reading a send's
    reply after 0.5 s and sends it again: the enqueue's fence (ARGV[3], a reading of the
    elapsed clock) lets Redis carry it out for at most 0.25 s after its reading, so its
    reply has the other 0.25 s to come back before that."""
    fences: list[int] = []
    call = LuaScript.__call__

    async def spied(self: LuaScript, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        if args and int(args[2]):
            fences.append(int(args[2]) - int(args[0]))
        return await call(self, keys, args, client)

    monkeypatch.setattr(LuaScript, "__call__", spied)
    store = await started(own_redis_server, prefix, {})
    try:
        await store.enqueue(new_job())
    finally:
        await store.aclose()
    assert fences and all(0 < ms <= 250 for ms in fences), fences


async def test_a_submission_held_in_a_second_stall_after_a_quiet_spell_stores_nothing(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """Two freezes a few seconds apart with no call in between (the first stall's burst
    record has run out, and nobody moved the clock on since): the submission held in the
    second is carried out after its caller gave up, and stores nothing either."""
    store = await started(own_redis_server, prefix, {})
    try:
        before = await job_keys(own_redis_server, prefix, 1)
        for _ in range(2):
            # A plain read (no script: the clock stays as it is) leaves a connection open
            # for the submission (the freeze before closed the ones it held).
            await store.get(uuid.uuid4())
            async with frozen(own_redis_server):
                with pytest.raises(StoreUnavailableError):
                    await store.enqueue(new_job())
            assert await job_keys(own_redis_server, prefix, 1) == before
            # Quiet: the stall's 2 s burst ends with no call (a fixed wait on purpose: the
            # rule under test is about the server's wall-clock time passing).
            await asyncio.sleep(2.5)
    finally:
        await store.aclose()


async def test_a_submission_with_no_time_left_beyond_the_reply_margin_is_not_sent(
    own_redis_server: RedisServer, prefix: str
) -> None:
    """A submission whose caller gives up in less than the reply margin (it waited that
    long for a free connection) is not sent at all: StoreUnavailableError saying nothing
    was stored, no script call reaches Redis, no job is stored."""
    store = await started(own_redis_server, prefix, {})
    try:
        scripts = await store._connection.start()
        job = new_job()
        async with Redis.from_url(own_redis_server.url) as admin:
            calls, _ = await script_calls(admin)
            loop = asyncio.get_running_loop()
            given = give_up.set(giving_up(loop.time() + 0.2, 1.0, 0.5))
            try:
                with pytest.raises(StoreUnavailableError, match="nothing stored"):
                    await scripts.enqueue_many([(job, None, None)])
            finally:
                give_up.reset(given)
            assert (await script_calls(admin))[0] == calls
        assert await store.get(job.id) is None
    finally:
        await store.aclose()
