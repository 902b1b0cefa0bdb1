"""Shard failover: the master of one of three shards SIGKILLed while jobs flow.

A real 3+3 Cluster on loopback (a replica per master, ``cluster-node-timeout`` 1 s, and
``cluster-require-full-coverage no``: by default every node answers ``CLUSTERDOWN`` for
every key while one master's slots have no server), the store with ``shards=3`` (one
shard on each master), an API-only uvicorn process taking submissions over HTTP and two
worker processes. One shard's master is SIGKILLed (a crash, not ``CLUSTER FAILOVER``);
the cluster notices and elects its replica by itself.

The rules:

- the other shards keep taking and completing jobs while the failed shard has no master
  (from the cluster's ``fail`` verdict to the replica's election, as the servers' logs
  time them: with full coverage no shard would serve then);
- the failed shard resumes by itself: jobs placed on it after the promotion complete;
- every job whose submission was acknowledged (a 202) is accounted for: Completed at the
  end, or, if its enqueue reached the killed master but not its replica (replication is
  asynchronous), missing: such jobs are counted apart, and each must have been
  acknowledged within the replication lag before the kill (no older job may go missing).

How much replication may lose is measured, not avoided: the test reads the killed
master's replication offset just before the kill and the promoted replica's offset at its
promotion (``second_repl_offset``); the bytes in between were acknowledged to clients and
never reached the replica (a lower bound: what the master wrote between that read and the
kill is not seen). ``WAIT`` is not used: it would make each write wait for the
replica (a round trip per write in the store), which is the cost this deployment does not
pay; the README's "Scaling out" states what that leaves at risk.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from async_endpoints import AsyncContext, AsyncEndpoints, Job, JobStatus
from async_endpoints._errors import StoreUnavailableError
from async_endpoints._job import NewJob
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_layout import ShardLayout
from async_endpoints_redis._shard_store import ShardedRedisJobStore
from tests.e2e.processes import Proc, start_api, start_worker
from tests.redis_servers import RedisClusterProcesses, RedisServer, start_cluster

from .figures import report
from .harness import TERMINAL, runs_of, wait_for
from .scale import current_scale

pytestmark = pytest.mark.redis

SHARDS = 3
#: Submissions per second; jobs accepted before the kill; jobs that must complete on the
#: failed shard after its replica took over.
RATE, BEFORE, RESUMED = (150, 300, 100) if current_scale().name == "full" else (50, 40, 15)
#: A missing job must have been acknowledged less than this long before the kill: the
#: replication lag on loopback is well under a millisecond.
LAG_BOUND = 0.5


@pytest.fixture
def shard_cluster() -> Iterator[RedisClusterProcesses]:
    """3 masters with a replica each (a cluster per test: each kills a master); a master
    silent for 1 s counts as failed; the other masters keep serving while one fails over."""
    cluster = start_cluster(replicas=1, node_timeout_ms=1000, full_coverage=False)
    yield cluster
    cluster.stop()


class Traffic:
    """Submits short jobs at a steady rate until stopped; notes every answer's status and,
    for each accepted job, when its 202 arrived."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.statuses: collections.Counter[int] = collections.Counter()
        self.accepted: dict[str, float] = {}  # job id -> unix time of its 202
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
                group.create_task(self._submit())
                await asyncio.sleep(1 / RATE)

    async def _submit(self) -> None:
        try:
            answer = await self.client.post("/work", json={"seconds": 0.02})
        except httpx.HTTPError:
            self.statuses[0] += 1  # no answer at all: counted as a status of its own
            return
        self.statuses[answer.status_code] += 1
        if answer.status_code == 202:
            self.accepted[answer.json()["id"]] = time.time()

    async def accepted_reach(self, count: int, timeout: float) -> None:
        async def enough() -> bool:
            return len(self.accepted) >= count

        await wait_for(enough, timeout, f"{count} jobs accepted")


async def outcomes(client: httpx.AsyncClient, ids: list[str], timeout: float) -> dict[str, Any]:
    """Poll each job until it is terminal or answers 404 (its record is gone); the job
    JSON, or None for a missing job."""
    settled: dict[str, Any] = {}
    gate = asyncio.Semaphore(32)

    async def one(job_id: str) -> None:
        async with gate:
            answer = await client.get(f"/jobs/{job_id}")
        if answer.status_code == 404:
            settled[job_id] = None
        elif answer.status_code == 200 and answer.json()["status"] in TERMINAL:
            settled[job_id] = answer.json()

    async def all_settled() -> bool:
        pending = [job_id for job_id in ids if job_id not in settled]
        await asyncio.gather(*(one(job_id) for job_id in pending))
        return len(settled) == len(ids)

    await wait_for(all_settled, timeout, f"{len(ids)} jobs terminal or missing", every=0.2)
    return settled


def offsets(port: int) -> dict[str, int]:
    """``master_repl_offset`` and ``second_repl_offset`` of a node (INFO replication)."""
    with redis.Redis(host="127.0.0.1", port=port) as client:
        info = client.info("replication")
    return {name: int(info[name]) for name in ("master_repl_offset", "second_repl_offset")}


async def failover(cluster: RedisClusterProcesses, replica: RedisServer) -> tuple[float, float]:
    """Wait until ``replica`` has taken over from its dead master; when (unix time, from
    the servers' logs) the cluster marked the master failed (the first node to reach the
    quorum) and when the replica won its election. In between, the shard has no master
    (and, with full coverage, no node would serve any key)."""

    async def promoted() -> bool:
        return await asyncio.to_thread(lambda: replica in cluster.masters())

    await wait_for(promoted, 30, "the replica promoted", every=0.05)
    marks = [node.logged_at("as failing (quorum reached)") for node in cluster.live_nodes()]
    won = replica.logged_at("Failover election won")
    assert won is not None and any(marks), "no failure verdict or election in the logs"
    return min(mark for mark in marks if mark is not None), won


def unix(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("failed", [0, 1], ids=["shard0", "shard1"])
async def test_killing_one_shards_master_stops_no_other_shard_and_loses_only_unreplicated_jobs(
    failed: int,
    shard_cluster: RedisClusterProcesses,
    env: dict[str, str],
    procs: list[Proc],
    records: redis.asyncio.Redis,
    tmp_path: Path,
) -> None:
    """One of three shards' master SIGKILLed mid-traffic: the other shards keep completing
    jobs, the failed one resumes on its promoted replica, every accepted job completes
    (or, had replication not carried its enqueue yet, is counted lost). Shard 0 (the
    store's own tag, which also keeps the schedules and is read for paused queues) and
    another one."""
    cluster, layout = shard_cluster, ShardLayout(env["AE_PREFIX"], SHARDS)
    tags = [f"{{{prefix}}}" for prefix in layout.prefixes]
    victim = cluster.primary_for(tags[failed])
    assert len({cluster.primary_for(tag).port for tag in tags}) == SHARDS, "a master each"
    replica = cluster.replica_of(victim)
    store_url = cluster.primary_for(tags[0]).url
    env = {**env, "STORE_URL": store_url, "SHARDS": str(SHARDS)}
    procs.append(api := start_api({**env, "RUN_WORKERS": "0"}, tmp_path))
    procs.extend(start_worker(env, tmp_path, f"worker{n}") for n in range(2))

    def shard_of(job_id: str) -> int:
        return layout.of_id(uuid.UUID(job_id))

    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        async with Traffic(client) as traffic:
            await traffic.accepted_reach(BEFORE, timeout=30)
            before = await asyncio.to_thread(offsets, victim.port)
            victim.stop()  # SIGKILL
            killed_at = time.time()
            failed_at, promoted_at = await failover(cluster, replica)
            promoted = await asyncio.to_thread(offsets, replica.port)

            async def resumed() -> bool:
                later = [i for i, at in traffic.accepted.items() if at > promoted_at]
                return sum(shard_of(i) == failed for i in later) >= RESUMED

            await wait_for(resumed, 30, f"{RESUMED} jobs accepted on the failed shard")
        accepted = dict(traffic.accepted)
        jobs = await outcomes(client, list(accepted), timeout=60)
    runs = await runs_of(records, env["AE_PREFIX"], accepted)

    missing = sorted(job_id for job_id, job in jobs.items() if job is None)
    completed_without_master = collections.Counter(
        shard_of(job_id)
        for job_id, job in jobs.items()
        if job is not None and failed_at < unix(job["completedAt"]) < promoted_at
    )
    resumed_done = sum(
        shard_of(job_id) == failed and job is not None and job["status"] == "Completed"
        for job_id, job in jobs.items()
        if accepted[job_id] > promoted_at
    )
    live = [shard for shard in range(SHARDS) if shard != failed]
    steady = sum(
        shard_of(job_id) in live and killed_at - 1 < unix(job["completedAt"]) < killed_at
        for job_id, job in jobs.items()
        if job is not None
    )  # jobs of the live shards completed in the second before the kill
    accepted_without_master = collections.Counter(
        shard_of(job_id) for job_id, at in accepted.items() if failed_at < at < promoted_at
    )
    report(
        f"shard-failover-{failed}",
        responses=dict(sorted(traffic.statuses.items())),
        accepted=len(accepted),
        accepted_per_shard=[sum(shard_of(i) == n for i in accepted) for n in range(SHARDS)],
        marked_failed_after_s=round(failed_at - killed_at, 2),
        promoted_after_s=round(promoted_at - killed_at, 2),
        accepted_without_master_per_shard=[accepted_without_master[n] for n in range(SHARDS)],
        completed_without_master_per_shard=[completed_without_master[n] for n in range(SHARDS)],
        live_shards_completed_per_s_before_kill=steady,
        live_shards_completed_per_s_without_master=round(
            sum(completed_without_master[n] for n in live) / (promoted_at - failed_at), 1
        ),
        resumed_completed=resumed_done,
        run_twice=sum(len(pids) > 1 for pids in runs.values()),
        lost_acknowledged=len(missing),
        lost_acknowledged_age_ms=[round((killed_at - accepted[i]) * 1e3, 1) for i in missing],
        unreplicated_bytes_at_kill=max(
            0, before["master_repl_offset"] - (promoted["second_repl_offset"] - 1)
        ),
    )
    assert set(traffic.statuses) <= {202, 503}, f"answers: {traffic.statuses}"
    assert accepted_without_master[failed] == 0, "a shard without master took jobs?"
    for shard in range(SHARDS):
        if shard != failed:
            assert accepted_without_master[shard] > 0, f"shard {shard} took no job meanwhile"
            assert completed_without_master[shard] > 0, f"shard {shard} ran no job meanwhile"
    assert resumed_done >= RESUMED, "the failed shard did not resume on its replica"
    not_completed = {
        job_id: job["status"]
        for job_id, job in jobs.items()
        if job is not None and job["status"] != "Completed"
    }
    assert not_completed == {}
    too_old = [i for i in missing if killed_at - accepted[i] > LAG_BOUND]
    assert too_old == [], "jobs acknowledged well before the kill went missing"
    assert all(shard_of(i) == failed for i in missing), "a job of a live shard went missing"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("restart", [False, True], ids=["after_a_failed_call", "after_aclose"])
async def test_a_client_refresh_while_the_lowest_slots_master_is_dead_fails_no_live_shard(
    restart: bool,
) -> None:
    """redis-py's cluster client refreshes its topology at the next call after a call
    failed on a node, and closes itself first after some failures (``CLUSTERDOWN``, an
    uncovered slot, repeated MOVED, a failed pipeline). The shards share that client: the
    refresh must not ask the dead master anything (it once reloaded the command table
    from the client's default node, the master of the lowest slots, so every shard's
    calls failed with its error), and after a close each call still goes to its slot's
    node (it once went to the default node the refresh picked: the dead master)."""
    cluster = start_cluster(full_coverage=False)  # no replicas: the master stays dead
    try:
        prefix = f"refresh-{uuid.uuid4().hex[:8]}"
        layout = ShardLayout(prefix, SHARDS)
        tags = [f"{{{one}}}" for one in layout.prefixes]
        dead = cluster.masters()[0]  # the lowest slots: the client's default node
        live = [n for n, tag in enumerate(tags) if cluster.primary_for(tag).port != dead.port]
        assert len(live) == SHARDS - 1, "one shard on each master"
        store = RedisJobStore(cluster.primary_for(tags[live[0]]).url, prefix=prefix, shards=SHARDS)

        def new_job(shard: int) -> NewJob:
            job_id = next(i for i in iter(uuid.uuid4, None) if layout.of_id(i) == shard)
            return NewJob(id=job_id, name="work", max_retries=0)

        try:
            for shard in range(SHARDS):  # every node has the enqueue script now
                await store.enqueue(new_job(shard))
            dead.stop()
            assert isinstance(store, ShardedRedisJobStore)
            client = store._client
            assert isinstance(client, redis.asyncio.RedisCluster)
            if restart:
                await client.aclose()  # as redis-py does itself; the next call refreshes
            else:
                client._initialize = True  # as a call failed on the dead master leaves it
            for shard in live:
                job = await store.enqueue(new_job(shard))
                assert await store.get(job.id) == job, f"shard {shard} answers"
        finally:
            await store.aclose()
    finally:
        cluster.stop()


#: The lease of the per-shard renewal test: short, so that several pass in seconds, but
#: long enough that the renewals of the live shards (every third of it) are not starved
#: for a whole lease on a loaded 2-core machine (the fast suite runs two workers): a
#: run with a 1 s lease failed once there under load.
LEASE = 2.0


async def jobs_in_every_shard(engine: AsyncEndpoints, layout: ShardLayout, each: int) -> list[Job]:
    """Jobs of handler "hold", submitted until every shard holds ``each`` of them (a job
    without a key goes to its random id's shard: a fixed number could leave one empty)."""
    jobs: list[Job] = []
    held: collections.Counter[int] = collections.Counter()
    while len(held) < layout.count or min(held.values()) < each:
        job = await engine.submit("hold")
        held[layout.of_id(job.id)] += 1
        jobs.append(job)
    return jobs


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("fault", "lease", "timeouts"),
    [
        ("killed", LEASE, {}),
        ("frozen", LEASE, {}),
        # A frozen shard's calls fail between a half and two thirds of a lease: the
        # renewals wait for it, then send it again in time to wait again.
        ("frozen", 1.3, {"socket_timeout": 0.7, "socket_connect_timeout": 0.1}),
    ],
)
async def test_a_shard_down_fences_only_its_own_handlers_the_others_renew_and_run_on(
    fault: str, lease: float, timeouts: dict[str, float]
) -> None:
    """Lease renewal is per shard: while one shard's master is dead (SIGKILL: its calls
    fail at once) or frozen (SIGSTOP: its calls hang until the socket timeout, longer
    than a lease), the handlers of jobs in the other shards keep their claims renewed and
    run past several leases (their results are accepted, on the first attempt), and only
    the down shard's handlers are fenced when their lease runs out unrenewed (its claims
    are neither renewed nor known lost)."""
    cluster = start_cluster(full_coverage=False)  # no replica: the shard stays down
    try:
        prefix = f"renew-{uuid.uuid4().hex[:8]}"
        layout = ShardLayout(prefix, SHARDS)
        tags = [f"{{{one}}}" for one in layout.prefixes]
        dead_shard = 1
        dead = cluster.primary_for(tags[dead_shard])
        store = RedisJobStore(
            cluster.primary_for(tags[0]).url, prefix=prefix, shards=SHARDS, **timeouts
        )
        engine = AsyncEndpoints(
            store=store,
            claim_timeout=lease,
            recovery_interval=3600,
            max_retries=0,
            max_concurrency=64,  # every job at once (about 11; see jobs_in_every_shard)
        )
        running: dict[int, set[uuid.UUID]] = {n: set() for n in range(SHARDS)}
        fenced: dict[int, set[uuid.UUID]] = {n: set() for n in range(SHARDS)}
        release = asyncio.Event()

        async def hold(ctx: AsyncContext[None]) -> None:
            shard = layout.of_id(ctx.job_id)  # a job without a key: its id's shard
            running[shard].add(ctx.job_id)
            try:
                await release.wait()
            except asyncio.CancelledError:
                fenced[shard].add(ctx.job_id)
                raise

        engine.add_handler(hold)
        async with engine.running():
            jobs = await jobs_in_every_shard(engine, layout, each=3)

            async def every_job_runs() -> bool:
                return sum(map(len, running.values())) == len(jobs)

            await wait_for(every_job_runs, 10, "every job running")
            assert all(running.values()), "a job in every shard"
            if fault == "killed":
                dead.stop()  # SIGKILL
            else:
                assert dead.process is not None
                dead.process.send_signal(signal.SIGSTOP)
            killed_at = time.monotonic()

            async def dead_shard_fenced() -> bool:
                return fenced[dead_shard] == running[dead_shard]

            await wait_for(dead_shard_fenced, 5 * lease, "the dead shard's handlers fenced")
            # Several leases pass with the shard down: the others' handlers run on.
            while time.monotonic() < killed_at + 4 * lease:
                assert not any(fenced[n] for n in range(SHARDS) if n != dead_shard)
                await asyncio.sleep(lease / 10)
            release.set()
            live = [job for job in jobs if layout.of_id(job.id) != dead_shard]
            done = [await engine.wait_for(job.id, timeout=10) for job in live]
            if fault == "frozen":  # thawed, so that shutting down waits for no timeout
                dead.process.send_signal(signal.SIGCONT)
        assert {job.status for job in done} == {JobStatus.COMPLETED}
        assert {job.retry_count for job in done} == {0}
    finally:
        cluster.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["killed", "frozen"])
async def test_a_live_shard_runs_a_script_it_never_ran_while_another_master_is_down(
    fault: str,
) -> None:
    """A script a live shard's server has not run yet (here: enqueue, after the start)
    runs while another shard's master is dead or frozen: it is loaded on the shard's own
    node only (redis-py's SCRIPT LOAD goes to every master, and failed or hung on the
    down one, so the live shard could not run it until the failover)."""
    cluster = start_cluster(full_coverage=False)  # no replica: the shard stays down
    try:
        prefix = f"noscript-{uuid.uuid4().hex[:8]}"
        layout = ShardLayout(prefix, SHARDS)
        tags = [f"{{{one}}}" for one in layout.prefixes]
        down = cluster.primary_for(tags[1])
        store = RedisJobStore(cluster.primary_for(tags[0]).url, prefix=prefix, shards=SHARDS)
        try:
            await store.start()
            if fault == "killed":
                down.stop()  # SIGKILL
            else:
                assert down.process is not None
                down.process.send_signal(signal.SIGSTOP)
            for shard in (0, 2):
                job_id = next(i for i in iter(uuid.uuid4, None) if layout.of_id(i) == shard)
                job = await store.enqueue(NewJob(id=job_id, name="work", max_retries=0))
                assert await store.get(job.id) == job, f"shard {shard} answers"
        finally:
            if down.process is not None:
                down.process.send_signal(signal.SIGCONT)
            await store.aclose()
    finally:
        cluster.stop()


async def test_a_held_submission_to_a_frozen_shard_is_refused_within_its_own_deadline() -> None:
    """A submission to a shard whose master is frozen, made while an earlier one's call
    there is under way, is refused (503) within the store's deadline of its own: it waits
    for the call under way (one call per shard, `_batch.Turn`) a moment at most, not for
    the whole of that call's deadline first (twice the deadline the README states)."""
    cluster = start_cluster(full_coverage=False)  # no replica: the shard stays frozen
    try:
        prefix = f"held-{uuid.uuid4().hex[:8]}"
        layout = ShardLayout(prefix, SHARDS)
        frozen = cluster.primary_for(f"{{{layout.prefixes[1]}}}")
        store = RedisJobStore(
            cluster.primary_for(f"{{{layout.prefixes[0]}}}").url,
            prefix=prefix,
            shards=SHARDS,
            socket_timeout=1,
            socket_connect_timeout=1,
        )

        def in_frozen_shard() -> NewJob:
            job_id = next(i for i in iter(uuid.uuid4, None) if layout.of_id(i) == 1)
            return NewJob(id=job_id, name="work", max_retries=0)

        async def refused_at() -> float:
            with pytest.raises(StoreUnavailableError):
                await store.enqueue(in_frozen_shard())
            return time.monotonic()

        try:
            await store.enqueue(in_frozen_shard())  # the shard's script is loaded
            assert frozen.process is not None
            frozen.process.send_signal(signal.SIGSTOP)
            began = time.monotonic()
            first = asyncio.ensure_future(refused_at())
            await asyncio.sleep(0)  # its call is under way (sent alone)
            second = asyncio.ensure_future(refused_at())
            first_at, second_at = await asyncio.gather(first, second)
            deadline = first_at - began  # what the first was given
            assert second_at - first_at < deadline / 2, "not held for the first's deadline"
        finally:
            if frozen.process is not None:
                frozen.process.send_signal(signal.SIGCONT)
            await store.aclose()
    finally:
        cluster.stop()
