"""The shipped store contract suite against `RedisJobStore(..., shards=3)`: on one
redis-server (the three hash tags live together there) and on a real 3-master Redis
Cluster (one shard per master), each with a peer on the same prefix and shard count.

The suite's tests of a claim order *across jobs that sit in different shards* (oldest
first, strict queue priority, tenant turns, a batch's job claimed before another's) are
expected to fail at random here: a sharded store keeps those orders within each shard,
and a claim takes from the shards in turn (see `async_endpoints_redis._shard_store`),
since a global order would cost every claim a visit to every shard. They are marked
``xfail`` (not strict: they pass when their jobs happen to share a shard); every other
test of the suite must pass. tests/redis/test_shards_order.py checks those orders within
one shard, and what holds across shards. The two tests of a follow-up whose id another
job took are marked too (see `FOLLOW_UP_SQUATTERS`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from async_endpoints.testing import StoreKit
from async_endpoints_redis import RedisJobStore
from tests.contract.conftest import RETENTION
from tests.contract.test_store_contract import ProjectStore
from tests.redis_servers import RedisClusterProcesses, RedisServer

SHARDS = 3

#: The suite's tests that check one order across every job (see the module docstring).
ACROSS_SHARDS = {
    "test_a_busy_key_holds_up_no_other_job_and_no_claim_puts_a_job_back",
    "test_a_claim_fills_its_limit_down_the_queues_in_priority_order",
    "test_a_job_handed_to_a_waiter_that_gave_up_goes_back_to_the_head",
    "test_a_retried_job_takes_its_tenants_turn",
    "test_append_to_a_finished_or_cancelled_batch_is_a_value_error",
    "test_claim_takes_from_the_first_queue_that_has_a_due_job",
    "test_each_key_has_a_lane_of_its_own",
    "test_jobs_without_a_tenant_take_turns_as_one_tenant",
    "test_one_tenants_backlog_does_not_hold_up_another_tenants_job",
    "test_queued_jobs_are_listed_by_queue_priority_then_oldest_first",
    "test_strict_queue_priority_comes_before_tenant_turns",
    "test_tenants_take_turns_one_job_each_oldest_first",
    "test_the_order_of_the_queues_given_is_the_priority",
    "test_terminal_jobs_expire_after_the_retention",
    "test_claim_hands_out_the_oldest_jobs_first_up_to_the_limit",
    "test_queued_jobs_waiting_behind_their_key_are_listed_in_order",
    "test_a_completed_job_keeps_only_the_owner_of_its_request",
    "test_requeue_of_a_failed_job_queues_it_at_the_tail_with_its_error_kept",
}


#: The suite's tests of a follow-up whose id another job took meanwhile: the parent's
#: script sees only its own shard, so a squatter stored in the follow-up id's shard (when
#: that is another) is not seen and the follow-up is stored too. No client can do it
#: through the engine: a delivery's id is chosen by the engine and known to nobody before
#: the delivery is stored.
FOLLOW_UP_SQUATTERS = {
    "test_a_follow_up_whose_id_is_taken_is_skipped",
    "test_a_skipped_follow_up_leaves_the_webhook_failed",
}


@pytest.fixture(autouse=True)
def _claim_order_is_per_shard(request: pytest.FixtureRequest) -> None:
    if request.node.originalname in ACROSS_SHARDS:
        request.applymarker(
            pytest.mark.xfail(
                reason="a claim order across shards: kept within each shard only",
                strict=False,
            )
        )
    if request.node.originalname in FOLLOW_UP_SQUATTERS:
        request.applymarker(
            pytest.mark.xfail(
                reason="a follow-up id taken in another shard is not seen by its parent",
                strict=False,
            )
        )


async def sharded_kit_on(url: str) -> AsyncIterator[StoreKit]:
    prefix = f"contract-{uuid.uuid4().hex[:8]}"
    store = RedisJobStore(url, prefix=prefix, retention=RETENTION, shards=SHARDS)
    peer = RedisJobStore(url, prefix=prefix, retention=RETENTION, shards=SHARDS)
    await store.start()
    await peer.start()
    yield StoreKit(store, asyncio.sleep, lease=1.0, retention=RETENTION, peer=peer)
    await peer.aclose()
    await store.aclose()


@pytest.mark.redis
class TestShardedRedisJobStore(ProjectStore):
    @pytest.fixture
    async def kit(self, redis_server: RedisServer) -> AsyncIterator[StoreKit]:
        async for kit in sharded_kit_on(redis_server.url):
            yield kit


@pytest.mark.redis
class TestShardedRedisJobStoreOnACluster(ProjectStore):
    @pytest.fixture
    async def kit(self, redis_cluster: RedisClusterProcesses) -> AsyncIterator[StoreKit]:
        async for kit in sharded_kit_on(redis_cluster.url):
            yield kit
