"""Cluster failover: the master serving the store's slot SIGKILLed while jobs flow.

A real 3+3 Cluster (a replica per master, ``cluster-node-timeout`` 1 s), an API-only
uvicorn process submitting over HTTP and a worker process running the jobs. While the
replica takes over, redis-py fails in many ways (refused connections, ``CLUSTERDOWN``,
redirections, and plain ``AttributeError`` / ``KeyError`` from its nodes manager); each
one must reach clients as a 503, never as a 500, and no accepted job may be lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from pathlib import Path

import httpx
import pytest
from redis import crc
from redis import exceptions as redis_errors

from async_endpoints._errors import StoreUnavailableError
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._errors import mapped_errors
from tests.e2e.processes import Proc, start_api, start_worker
from tests.redis_servers import RedisClusterProcesses, RedisServer, _cli

from .figures import report
from .harness import wait_for, wait_terminal

pytestmark = pytest.mark.redis

RATE = 50  # submissions per second
FLOWING = 40  # jobs accepted before the kill, and again after the failover


class Traffic:
    """Submits short jobs at a steady rate and polls each accepted one once, noting every
    answer's status, until stopped."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.statuses: collections.Counter[int] = collections.Counter()
        self.without_retry_after = 0
        self.accepted: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                group.create_task(self._submit_and_poll())
                await asyncio.sleep(1 / RATE)

    async def _submit_and_poll(self) -> None:
        try:
            answer = self._note(await self.client.post("/work", json={"seconds": 0.02}))
            if answer.status_code == 202:
                job_id = answer.json()["id"]
                self.accepted.append(job_id)
                self._note(await self.client.get(f"/jobs/{job_id}"))
        except httpx.HTTPError:
            self.statuses[0] += 1  # no answer at all: counted as a status of its own

    def _note(self, answer: httpx.Response) -> httpx.Response:
        self.statuses[answer.status_code] += 1
        if answer.status_code == 503 and "retry-after" not in answer.headers:
            self.without_retry_after += 1
        return answer

    async def accepted_reach(self, count: int, timeout: float) -> None:
        async def enough() -> bool:
            return len(self.accepted) >= count

        await wait_for(enough, timeout, f"{count} jobs accepted")


async def failed_over(cluster: RedisClusterProcesses, key: str, dead: RedisServer) -> float:
    """Wait until another node serves ``key`` and the cluster is healthy; the seconds."""

    def done() -> bool:
        try:
            return cluster.primary_for(key) is not dead and cluster.healthy()
        except LookupError:  # the dead master is suspected, no replica promoted yet
            return False

    async def promoted() -> bool:
        return await asyncio.to_thread(done)

    return await wait_for(promoted, 30, "a replica promoted", every=0.1)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_killing_the_master_of_the_stores_slot_loses_no_job_and_answers_2xx_or_503(
    redis_cluster_with_replicas: RedisClusterProcesses,
    env: dict[str, str],
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    """Master SIGKILLed mid-traffic: every answer 2xx or 503, every accepted job completes."""
    cluster, prefix = redis_cluster_with_replicas, env["AE_PREFIX"]
    key = f"{{{prefix}}}:queue"
    master = cluster.primary_for(key)
    other = next(node for node in cluster.live_nodes() if node is not master)
    env = {**env, "STORE_URL": other.url}
    api = start_api({**env, "RUN_WORKERS": "0"}, tmp_path)
    procs.append(api)
    procs.append(start_worker(env, tmp_path))
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        async with Traffic(client) as traffic:
            await traffic.accepted_reach(FLOWING, timeout=30)
            master.stop()  # SIGKILL
            killed_at = len(traffic.accepted)
            failover_s = await failed_over(cluster, key, master)
            await traffic.accepted_reach(len(traffic.accepted) + FLOWING, timeout=30)
        jobs = await wait_terminal(client, api, traffic.accepted, timeout=60)
    lost = [job_id for job_id, job in jobs.items() if job["status"] != "Completed"]
    report(
        "cluster-failover",
        responses=dict(sorted(traffic.statuses.items())),
        accepted=len(traffic.accepted),
        accepted_before_kill=killed_at,
        lost=len(lost),
        failover_s=round(failover_s, 2),
    )
    assert traffic.statuses[503] > 0, "the failover went unnoticed: no outage was tested"
    assert set(traffic.statuses) <= {200, 202, 503}, f"answers: {traffic.statuses}"
    assert traffic.without_retry_after == 0
    assert lost == []


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_store_starting_after_a_failover_still_hears_the_live_stores_clock(
    redis_cluster_with_replicas: RedisClusterProcesses,
) -> None:
    """A manual failover (CLUSTER FAILOVER) leaves a live store's subscription on the
    demoted node, where the new primary's PUBLISH does not count it. A store starting
    when the clock looks an hour unset (its ``clock:at`` an hour back, as after a step of
    the server's wall clock) still waits for the live store's answer: the clock keeps the
    live store's reading instead of leaping the hour."""
    cluster = redis_cluster_with_replicas
    prefix, replica = _prefix_with_a_replica(cluster)
    key = f"{{{prefix}}}:clock"
    url = cluster.live_nodes()[0].url  # the module's other test may have killed a node
    live = RedisJobStore(url, prefix=prefix)
    starting = RedisJobStore(url, prefix=prefix)
    try:
        await live.start()
        await live.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
        _cli("cluster", "failover", port=replica.port)
        await wait_for(
            lambda: _now_serving(cluster, key, replica), 30, "the replica promoted", every=0.1
        )
        client = live._connection.client
        await wait_for(lambda: _answers(live), 30, "the live store follows the failover")
        clock, wall = (await client.get(f"{key}:at")).split()
        await client.set(f"{key}:at", f"{int(clock)} {int(wall) - 3_600_000}")
        reading = live._connection.elapsed.reading()
        await starting.start()
        moved = int(await client.get(key)) - reading
    finally:
        for store in (live, starting):
            await store.aclose()
    assert moved < 60_000, f"the clock leapt {moved} ms past the live store's reading"


def _prefix_with_a_replica(cluster: RedisClusterProcesses) -> tuple[str, RedisServer]:
    """A fresh prefix whose slot's master has a live replica (a test before may have
    killed one), and that replica."""
    for _ in range(100):
        prefix = f"failover-{uuid.uuid4().hex[:8]}"
        master = cluster.primary_for(f"{{{prefix}}}:clock")
        with contextlib.suppress(LookupError):
            return prefix, cluster.replica_of(master)
    raise AssertionError("no master with a live replica")


async def _now_serving(cluster: RedisClusterProcesses, key: str, node: RedisServer) -> bool:
    return cluster.primary_for(key) is node


async def _answers(store: RedisJobStore) -> bool:
    with contextlib.suppress(StoreUnavailableError):
        await store.count_waiting()
        return True
    return False


# ---------------------------------------------------------------------------------------
# The rule behind it: whatever redis-py raises is a store failure, our own bugs are not.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        redis_errors.ConnectionError("Connection refused"),
        redis_errors.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis_errors.MovedError("3999 127.0.0.1:7001"),
        redis_errors.AskError("3999 127.0.0.1:7001"),
        redis_errors.ClusterError("TTL exhausted."),
        redis_errors.SlotNotCoveredError('Slot "3999" is not covered by the cluster.'),
        redis_errors.ReadOnlyError("You can't write against a read only replica."),
    ],
    ids=lambda failure: type(failure).__name__,
)
def test_redis_py_failures_of_a_failover_are_store_unavailable(failure: Exception) -> None:
    """Refused connections, CLUSTERDOWN, MOVED/ASK, TTL exhausted, uncovered slots: 503s."""
    with pytest.raises(StoreUnavailableError) as raised, mapped_errors("get"):
        raise failure
    assert raised.value.__cause__ is failure


def test_an_exception_of_any_type_raised_inside_redis_py_is_store_unavailable() -> None:
    """A KeyError or AttributeError from redis-py's internals is a 503, chained to it (the
    AttributeError is raised by real redis-py code; the KeyError from a frame of a redis-py
    module, as which of its internals raise one changes between releases)."""
    with pytest.raises(StoreUnavailableError) as raised, mapped_errors("claim"):
        _raise_in_module("redis.asyncio.cluster", "{}['127.0.0.1:7000']")
    assert isinstance(raised.value.__cause__, KeyError)
    with pytest.raises(StoreUnavailableError) as raised, mapped_errors("claim"):
        crc.key_slot(None)  # type: ignore[arg-type]
    assert isinstance(raised.value.__cause__, AttributeError)


def _raise_in_module(module: str, expression: str) -> None:
    """Evaluate ``expression`` in a frame that belongs to ``module`` (which of redis-py's
    internals raise a bare KeyError changes between its releases)."""
    exec(compile(expression, f"<{module}>", "exec"), {"__name__": module})


def test_a_programming_error_of_our_own_code_is_not_mapped() -> None:
    """An AttributeError raised outside redis-py passes through unchanged."""
    with pytest.raises(AttributeError), mapped_errors("get"):
        _ = None.job  # type: ignore[attr-defined]
