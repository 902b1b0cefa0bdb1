"""What `RedisJobStore` promises for follow-ups and webhook deliveries beyond the store
contract: every key in the store's hash slot and nothing left once all is done, nothing
stored for jobs without a webhook, a resent enqueue recognised, and batches whose pending
continuations an older version wrote still continuing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from async_endpoints._batch import NewBatch
from async_endpoints._errors import DuplicateJobError
from async_endpoints._job import Job, JobStatus, NewJob, WebhookState, WebhookStatus
from async_endpoints_redis import RedisJobStore
from tests.redis.support import drain, eventually, keys_of
from tests.redis.test_redis_hand_over import _listening, offering

pytestmark = pytest.mark.redis
StoreFactory = Callable[..., Awaitable[RedisJobStore]]


def with_delivery(parent: NewJob) -> NewJob:
    deliver = NewJob(uuid.uuid4(), "Deliver", 2, delivers_for=parent.id)
    return dataclasses.replace(parent, follow_up=deliver)


def new_parent() -> NewJob:
    return with_delivery(NewJob(uuid.uuid4(), "Echo", 0))


async def test_follow_ups_keep_to_the_hash_tag_and_leave_nothing_once_all_is_done(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """While jobs with webhooks are unfinished ``{prefix}:hooked`` counts them; once every
    job and delivery ended it is gone, and once the retention passed no job key is left."""
    store = await make_store(retention=0.5)
    parents = [new_parent() for _ in range(3)]
    batch_id = uuid.uuid4()
    member = dataclasses.replace(new_parent(), batch_id=batch_id)
    for parent in parents:
        await store.enqueue(parent)
    await store.create_batch(NewBatch(batch_id, [member]))
    tag = "{" + prefix + "}:"
    during = await keys_of(raw_redis, prefix)
    assert all(key.startswith(tag) for key in during)
    assert await raw_redis.get(f"{tag}hooked") == "4"
    ran = await drain(store)
    assert len(ran) == 8  # four jobs, then their four deliveries
    assert await raw_redis.get(f"{tag}hooked") is None
    for parent in [*parents, member]:
        job = await store.get(parent.id)
        assert job is not None and job.webhook == WebhookState(WebhookStatus.DELIVERED, 1)

    async def purged() -> bool:
        await store.recover()
        left = await keys_of(raw_redis, prefix)
        return not [key for key in left if ":job:" in key or ":batch" in key or "hooked" in key]

    await eventually(purged)


async def test_a_target_is_held_without_ttl_until_its_delivery_ends(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """The target's retention passes before its delivery runs: its hash stays, marked
    held and without a TTL, until the delivery ends, which deletes it; a target deleted
    otherwise is not created again by its delivery's claim or end."""
    store = await make_store(retention=0.3)
    parents = [new_parent(), new_parent()]
    for parent in parents:
        await store.enqueue(parent)
    for claim in await store.claim(2, lease=30):
        await store.complete(claim, None)
    held_key, deleted_key = ("{" + prefix + "}:job:" + str(parent.id) for parent in parents)

    async def held() -> bool:
        await store.recover()
        return await raw_redis.hget(held_key, "held") == "1"

    await eventually(held)
    assert await raw_redis.ttl(held_key) == -1
    await raw_redis.delete(deleted_key)
    deliveries = await store.claim(2, lease=30)
    assert len(deliveries) == 2 and not await raw_redis.exists(deleted_key)
    assert await raw_redis.hget(held_key, "webhook") == "Pending 1"
    for deliver in deliveries:
        await store.complete(deliver, None)
    assert not await raw_redis.exists(held_key)
    assert not await raw_redis.exists(deleted_key)


async def test_a_delivery_handed_to_an_idle_worker_counts_the_attempts_that_started(
    make_store: StoreFactory, raw_redis: Redis, prefix: str
) -> None:
    """A delivery handed straight to an idle worker is a claim (+1); one handed over but
    never started, put back by the worker's next claim, is no attempt (-1) until claimed."""
    worker, api = await make_store(), await make_store()
    await eventually(lambda: _listening(worker))
    seen = worker._notifications.generation  # the store's own wiring
    target = await api.enqueue(NewJob(uuid.uuid4(), "Echo", 0, queue="elsewhere"))
    await eventually(lambda: wake_heard(worker, seen))  # before the offer, not during it
    waiting = await offering(worker, raw_redis, prefix, take=2)
    first = await api.enqueue(NewJob(uuid.uuid4(), "Deliver", 0, delivers_for=target.id))
    async with asyncio.timeout(5):
        [started] = await waiting
    assert started.job.id == first.id
    assert (await store_job(api, target.id)).webhook == WebhookState(WebhookStatus.PENDING, 1)
    await api.enqueue(NewJob(uuid.uuid4(), "Deliver", 0, delivers_for=target.id))
    assert (await store_job(api, target.id)).webhook == WebhookState(WebhookStatus.PENDING, 2)
    claims = await worker.claim(5, lease=30)  # puts the second back, then claims it
    assert [claim.job.name for claim in claims] == ["Deliver"]
    assert (await store_job(api, target.id)).webhook == WebhookState(WebhookStatus.PENDING, 2)


async def wake_heard(store: RedisJobStore, seen: int) -> bool:
    return store._notifications.generation != seen


async def store_job(store: RedisJobStore, job_id: uuid.UUID) -> Job:
    job = await store.get(job_id)
    assert job is not None
    return job


async def test_a_job_without_a_webhook_stores_no_webhook_field(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """Only jobs with a follow-up keep one (``follow``, ``webhook``), only deliveries a
    target (``for``); the follow-up leaves the hash when it is stored; no counter is kept
    for plain jobs."""
    plain = NewJob(uuid.uuid4(), "Echo", 0)
    parent = new_parent()
    await store.enqueue(plain)
    assert await raw_redis.get("{" + prefix + "}:hooked") is None
    await store.enqueue(parent)
    job_key = "{" + prefix + "}:job:"
    assert not {"follow", "webhook", "for"} & set(await raw_redis.hkeys(job_key + str(plain.id)))
    assert {"follow", "webhook"} <= set(await raw_redis.hkeys(job_key + str(parent.id)))
    await drain(store)
    assert parent.follow_up is not None
    kept = set(await raw_redis.hkeys(job_key + str(parent.id)))
    assert "follow" not in kept and "webhook" in kept
    assert "for" in set(await raw_redis.hkeys(job_key + str(parent.follow_up.id)))


async def test_a_resent_enqueue_of_a_job_with_a_follow_up_returns_the_job(
    store: RedisJobStore,
) -> None:
    """The same submission again (as redis-py resends a command whose reply was lost) is
    the stored job, webhook Pending; another job under its id is a duplicate; either way
    the follow-up is stored once."""
    parent = new_parent()
    first = await store.enqueue(parent)
    again = await store.enqueue(parent)
    assert again.id == first.id and again.webhook == WebhookState(WebhookStatus.PENDING, 0)
    with pytest.raises(DuplicateJobError):
        await store.enqueue(dataclasses.replace(parent, name="Other"))
    assert await store.follow_up_of(parent.id) == parent.follow_up
    ran = await drain(store)
    assert parent.follow_up is not None and ran == [parent.id, parent.follow_up.id]


async def test_continuations_pending_in_the_older_form_still_continue(
    store: RedisJobStore, raw_redis: Redis, prefix: str
) -> None:
    """A batch whose pending continuations an older version wrote (8-value tuples, no
    width first) stores them when it finishes."""
    batch_id = uuid.uuid4()
    job = NewJob(uuid.uuid4(), "Job", 0, batch_id=batch_id)
    then = NewJob(uuid.uuid4(), "Then", 0, batch_id=batch_id)
    await store.create_batch(NewBatch(batch_id, [job], [then]))
    batch_key = "{" + prefix + "}:batch:" + str(batch_id)
    pending = json.loads(await raw_redis.hget(batch_key, "pending"))
    assert pending[0] == 10 and len(pending) == 11
    await raw_redis.hset(batch_key, "pending", json.dumps(pending[1:9]))
    assert await drain(store) == [job.id, then.id]
    stored = await store.get(then.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED
    assert stored.batch_id == batch_id
