"""A sharded store on a 3-master Cluster while one shard's master is frozen (SIGSTOP: it
takes connections and answers nothing, so each call to it waits for the socket timeout):
the other shards' submissions and claims are not held up by it (under a queue limit, with
a client-chosen id), and what the frozen shard's claims took once it thaws is neither
lost, nor run twice, nor counted as an attempt, nor left waiting for its lease to run
out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from async_endpoints._errors import StoreUnavailableError
from async_endpoints._idempotency import by_request_id
from async_endpoints._job import Job, JobStatus, NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_layout import ShardLayout
from tests.redis.support import eventually
from tests.redis_servers import RedisClusterProcesses, RedisServer, start_cluster

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]

SHARDS = 3
FROZEN = 1  # the shard whose master is frozen
#: The stores' socket timeout: how long a call to the frozen master waits.
SOCKET_TIMEOUT = 2.0
#: Longer than any call to a live shard takes, even on a loaded machine; far shorter
#: than the socket timeout a call to the frozen shard waits.
PROMPT = 1.0
#: The claims' lease: every job below is claimed again long before it could run out.
LEASE = 60.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcesses]:
    """3 masters, no replica; the others keep serving while one is frozen."""
    cluster = start_cluster(full_coverage=False)
    yield cluster
    cluster.stop()


async def started_store(cluster: RedisClusterProcesses, prefix: str) -> RedisJobStore:
    """A started store of ``SHARDS`` shards, one on each master."""
    tags = [f"{{{one}}}" for one in ShardLayout(prefix, SHARDS).prefixes]
    assert len({cluster.primary_for(tag).port for tag in tags}) == SHARDS, "a master each"
    store = RedisJobStore(
        cluster.primary_for(tags[0]).url,
        prefix=prefix,
        shards=SHARDS,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=0.5,
    )
    await store.start()
    return store


@pytest.fixture
async def store(cluster: RedisClusterProcesses, prefix: str) -> AsyncIterator[RedisJobStore]:
    """A started store of ``SHARDS`` shards, one on each master."""
    store = await started_store(cluster, prefix)
    yield store
    await store.aclose()


def master_of(cluster: RedisClusterProcesses, prefix: str, shard: int) -> RedisServer:
    return cluster.primary_for(f"{{{ShardLayout(prefix, SHARDS).prefixes[shard]}}}")


def job_in(prefix: str, shard: int, **options: object) -> NewJob:
    """A new job (no key: its id's shard) placed in ``shard``, with no retry: an attempt
    counted that it never made would fail it."""
    layout = ShardLayout(prefix, SHARDS)
    job_id = next(one for one in iter(uuid.uuid4, None) if layout.of_id(one) == shard)
    return NewJob(job_id, "Echo", 0, **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def frozen(server: RedisServer) -> AsyncIterator[None]:
    """The server stopped (SIGSTOP) inside the block; never left stopped."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


async def test_a_frozen_master_holds_up_no_submission_to_another_shard_under_a_queue_limit(
    store: RedisJobStore, cluster: RedisClusterProcesses, prefix: str
) -> None:
    """With ``max_waiting`` set, while one shard's master is frozen, every submission to
    another shard is stored promptly, for longer than several reads of the frozen
    shard's count take to time out (it counts as last read meanwhile), and one to the
    frozen shard fails within one socket timeout (its own call's), not two."""
    for shard in range(SHARDS):  # every count read once
        await store.enqueue(job_in(prefix, shard), max_waiting=100)
    slowest, live = 0.0, itertools.cycle(set(range(SHARDS)) - {FROZEN})
    async with frozen(master_of(cluster, prefix, FROZEN)):
        until = time.monotonic() + 2 * SOCKET_TIMEOUT
        while time.monotonic() < until:
            started = time.monotonic()
            await store.enqueue(job_in(prefix, next(live)), max_waiting=100)
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await store.enqueue(job_in(prefix, FROZEN), max_waiting=100)
        refused_in = time.monotonic() - started
    assert slowest < PROMPT
    assert refused_in < SOCKET_TIMEOUT + PROMPT


def chosen_id_keyed_on(prefix: str, shard: int) -> uuid.UUID:
    """A chosen id whose job lives in a shard other than ``shard``, while the crc32 of
    its idempotency key (`by_request_id`) names ``shard``."""
    layout = ShardLayout(prefix, SHARDS)
    return next(
        one
        for one in iter(uuid.uuid4, None)
        if layout.of_id(one) != shard and layout.of_label(by_request_id(one, "", 1).key) == shard
    )


async def test_a_chosen_id_submission_depends_on_its_jobs_shard_alone(
    store: RedisJobStore, cluster: RedisClusterProcesses, prefix: str
) -> None:
    """Submissions with a client-chosen id (``X-Async-Request-Id``) while the master of
    another shard, the one the crc32 of their key names, is frozen: two concurrent first
    ones store one job, promptly; a repeat answers it, and one with other content gets
    the first's fingerprint (a 409 over HTTP)."""
    another = await started_store(cluster, prefix)  # another process's
    job_id = chosen_id_keyed_on(prefix, FROZEN)

    async def submit(through: RedisJobStore, fingerprint: str) -> tuple[Job, str | None]:
        new_job = NewJob(job_id, "Echo", 0)
        return await through.enqueue_once(new_job, by_request_id(job_id, fingerprint, 60))

    async with frozen(master_of(cluster, prefix, FROZEN)):
        started = time.monotonic()
        try:
            firsts = await asyncio.gather(submit(store, "fp-1"), submit(another, "fp-1"))
            took = time.monotonic() - started
            again = await submit(another, "fp-1")
            clash = await submit(store, "fp-2")
        finally:
            await another.aclose()
    assert took < PROMPT
    assert sorted(earlier or "" for _, earlier in firsts) == ["", "fp-1"]
    assert {job.id for job, _ in [*firsts, again, clash]} == {job_id}
    assert (again[1], clash[1]) == ("fp-1", "fp-1")


async def claim_each_once(store: RedisJobStore, made: set[uuid.UUID], room: int) -> None:
    """Claim (``room`` at a time) and complete until every job of ``made`` has run, each
    claimed once and never handed more than asked; each ends Completed with no attempt
    counted but its own (they have no retry: a lost attempt would fail them)."""
    taken: list[uuid.UUID] = []

    async def all_taken() -> bool:
        claims = await store.claim(room, lease=LEASE)
        assert len(claims) <= room
        for claim in claims:
            taken.append(claim.job.id)
            assert claim.job.retry_count == 0
            assert await store.complete(claim, "done") is not None
        return set(taken) == made

    await eventually(all_taken, timeout=3 * SOCKET_TIMEOUT)
    assert sorted(taken) == sorted(made), "each job claimed once"
    for job_id in made:
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED


@pytest.mark.parametrize("frozen_for", [1.5, 2.5], ids=["answers-late", "times-out"])
async def test_a_frozen_master_holds_up_no_claim_and_its_jobs_run_once_thawed(
    store: RedisJobStore, cluster: RedisClusterProcesses, prefix: str, frozen_for: float
) -> None:
    """While one shard's master is frozen (thawed before or after the socket timeout of
    the claim left waiting on it), every claim answers promptly with the other shards'
    jobs; once thawed, every job is claimed exactly once, long before any lease ends."""
    made = [(await store.enqueue(job_in(prefix, shard))).id for shard in range(3) for _ in range(4)]
    taken: list[uuid.UUID] = []
    slowest = 0.0
    async with frozen(master_of(cluster, prefix, FROZEN)):
        thaw_at = time.monotonic() + frozen_for
        while time.monotonic() < thaw_at:
            started = time.monotonic()
            for claim in await store.claim(1, lease=LEASE):
                taken.append(claim.job.id)
                assert await store.complete(claim, "done") is not None
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.05)
    live = {one for one in made if ShardLayout(prefix, SHARDS).of_id(one) != FROZEN}
    assert sorted(taken) == sorted(live), "the live shards' jobs, while it was frozen"
    assert slowest < PROMPT
    await claim_each_once(store, set(made) - live, room=1)


async def test_what_a_claim_given_up_on_a_frozen_shard_took_runs_once_uncounted(
    store: RedisJobStore, cluster: RedisClusterProcesses, prefix: str
) -> None:
    """A claim of 4 on a frozen shard (4 jobs there, none elsewhere) answers [] promptly,
    giving up on that shard's call; once thawed, Redis may run that call (what it was
    sent), taking the 4 jobs: claims of 1 then get each of them once, uncounted, with no
    wait for a lease to end (the shard's next claim sends the call's token base again and
    is handed 1 of them; the other 3 go back to the queue)."""
    made = {(await store.enqueue(job_in(prefix, FROZEN))).id for _ in range(4)}
    async with frozen(master_of(cluster, prefix, FROZEN)):
        started = time.monotonic()
        assert await store.claim(4, lease=LEASE) == []
        took = time.monotonic() - started
        await asyncio.sleep(1.0)
    assert took < PROMPT
    await claim_each_once(store, made, room=1)


async def test_a_claim_resent_after_its_reply_was_lost_is_handed_no_more_than_it_asked_for(
    store: RedisJobStore, prefix: str
) -> None:
    """A claim of 4 whose reply was lost (a socket timeout: Redis ran it) is sent again by
    the shard's next claim, whose script returns the 4 it took (the claim memo): a claim
    with room for 1 is handed 1 of them, and the other 3 go back uncounted, run once each."""
    made = {(await store.enqueue(job_in(prefix, FROZEN))).id for _ in range(4)}
    shard = store._shards[FROZEN]  # type: ignore[attr-defined]
    lost = await shard.claim(4, lease=LEASE)
    assert {claim.job.id for claim in lost} == made
    shard._unanswered.append((lost[0].token.rpartition(".")[0], ""))  # as a timeout leaves it
    await claim_each_once(store, made, room=1)


async def test_a_claim_no_shard_answers_in_time_asks_again_and_waits(
    store: RedisJobStore, cluster: RedisClusterProcesses, prefix: str
) -> None:
    """Every master frozen for a second (the whole store slow: no other shard to hold
    up): a claim that no shard answered in time asks again, waiting as long as each
    takes, and is handed jobs, as a claim of one shard would be; every job runs once."""
    made = {(await store.enqueue(job_in(prefix, shard))).id for shard in range(3) for _ in range(2)}
    masters = [master_of(cluster, prefix, shard) for shard in range(SHARDS)]
    async with contextlib.AsyncExitStack() as stack:
        for master in masters:
            await stack.enter_async_context(frozen(master))
        claiming = asyncio.ensure_future(store.claim(2, lease=LEASE))
        await asyncio.sleep(1.0)
    first = await claiming
    assert len(first) == 2 and {claim.job.id for claim in first} <= made
    for claim in first:
        assert await store.complete(claim, "done") is not None
    await claim_each_once(store, made - {claim.job.id for claim in first}, room=1)


def shard_of(store: RedisJobStore, prefix: str, job_id: uuid.UUID) -> RedisJobStore:
    """The shard (a plain store) that holds job ``job_id``."""
    shards: list[RedisJobStore] = store._shards  # type: ignore[attr-defined]
    return shards[ShardLayout(prefix, SHARDS).of_id(job_id)]


async def test_a_frozen_master_holds_up_no_other_shards_recovery(
    store: RedisJobStore, cluster: RedisClusterProcesses, prefix: str
) -> None:
    """A recovery pass while one shard's master is frozen puts the other shards' jobs whose
    claims expired back in their queues promptly (a waiting worker can take them at once),
    whichever shard comes first; the pass returns their ids once the frozen shard's call
    has timed out."""
    made = [NewJob(job_in(prefix, shard).id, "Echo", 1) for shard in range(SHARDS)]  # a retry
    for new_job in made:
        await store.enqueue(new_job)
    claims = await store.claim(SHARDS, lease=0.2)
    assert {claim.job.id for claim in claims} == {new_job.id for new_job in made}
    await asyncio.sleep(0.4)  # every lease has run out
    live = [
        new_job.id for new_job in made if ShardLayout(prefix, SHARDS).of_id(new_job.id) != FROZEN
    ]
    async with frozen(master_of(cluster, prefix, FROZEN)):
        started = time.monotonic()
        recovering = asyncio.ensure_future(store.recover())

        async def live_ones_queued() -> bool:  # read from their own shards only
            jobs = [await shard_of(store, prefix, job_id).get(job_id) for job_id in live]
            return all(job is not None and job.status is JobStatus.QUEUED for job in jobs)

        await eventually(live_ones_queued, timeout=3 * SOCKET_TIMEOUT)
        took = time.monotonic() - started
        recovered = await recovering
    assert took < PROMPT
    assert sorted(recovered) == sorted(live)


async def test_a_submission_held_by_a_frozen_master_stores_nothing_when_it_thaws(
    store: RedisJobStore, cluster: RedisClusterProcesses, prefix: str
) -> None:
    """A submission to the frozen shard waits in its master past its deadline:
    StoreUnavailableError. Thawed, the master carries it out (the script ran, and
    failed nothing) and stores no job: the client, told the store was unavailable, may
    send it again without it running twice."""
    from redis.asyncio import Redis

    from tests.redis.test_redis_late_submissions import script_calls

    for shard in range(SHARDS):  # every shard's connections warm, its scripts loaded
        await store.enqueue(job_in(prefix, shard))
    master = master_of(cluster, prefix, FROZEN)
    late = job_in(prefix, FROZEN)
    async with Redis.from_url(master.url) as admin:
        calls, failed = await script_calls(admin)
        async with frozen(master):
            with pytest.raises(StoreUnavailableError):
                await store.enqueue(late)

        async def carried_out() -> tuple[int, int] | None:
            now = await script_calls(admin)
            return now if now[0] > calls else None

        assert (await eventually(carried_out))[1] == failed
    assert await store.get(late.id) is None
