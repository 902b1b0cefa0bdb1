"""The shipped store contract suite against `RedisJobStore(..., shards=3)` on a real
3-master Redis Cluster (one shard per master), with a peer on the same prefix and shard
count. (The same suite passes with shards=3 on one redis-server, where the three tags
live together: ``sharded_kit_on`` takes any URL. It is not run by default, to keep the
whole test suite within its time budget; the sharded store's own tests in tests/redis
run on one server.)

A sharded store keeps its claim orders (oldest first, strict queue priority, tenant
turns, a key's lane) within each shard, and a claim takes from the shards in turn (see
`async_endpoints_redis._shard_store`), since a global order would cost every claim a
visit to every shard: the kit's ``order_group`` is the shard a job was placed in, so the
suite checks each order within each shard, and that claims take every due job of every
shard. tests/redis/test_shards_order.py checks what holds across shards in more detail.
A follow-up stored away from its id's shard reserves its id there (a pointer), so another
job enqueued under that id is refused; the suite accepts that or a skipped follow-up.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Hashable

import pytest

from async_endpoints import Job
from async_endpoints.testing import StoreKit
from async_endpoints.testing._contract_batches import BatchContract
from async_endpoints.testing._contract_cancel import CancelContract
from async_endpoints.testing._contract_core import CoreContract
from async_endpoints.testing._contract_events import EventsContract
from async_endpoints.testing._contract_give_back import GiveBackContract
from async_endpoints.testing._contract_partitions import PartitionContract
from async_endpoints.testing._contract_races import RaceContract
from async_endpoints_redis import RedisJobStore
from async_endpoints_redis._shard_layout import ShardLayout
from tests.contract.conftest import RETENTION
from tests.contract.test_store_contract import ProjectStore
from tests.redis_servers import RedisClusterProcesses

SHARDS = 3


def shard_of(prefix: str) -> Callable[[Job], Hashable]:
    """The shard a fresh store of ``prefix`` places a job in (`_shard_layout`'s rules for
    the jobs the suite's order tests make: by partition key, else by id)."""
    layout = ShardLayout(prefix, SHARDS)

    def shard(job: Job) -> Hashable:
        if job.partition_key is not None:
            return layout.of_key(job.partition_key)
        return layout.of_id(job.id)

    return shard


async def sharded_kit_on(url: str) -> AsyncIterator[StoreKit]:
    prefix = f"contract-{uuid.uuid4().hex[:8]}"
    store = RedisJobStore(url, prefix=prefix, retention=RETENTION, shards=SHARDS)
    peer = RedisJobStore(url, prefix=prefix, retention=RETENTION, shards=SHARDS)
    await store.start()
    await peer.start()
    yield StoreKit(
        store,
        asyncio.sleep,
        lease=1.0,
        retention=RETENTION,
        peer=peer,
        order_group=shard_of(prefix),
    )
    await peer.aclose()
    await store.aclose()


@pytest.mark.redis
class TestShardedRedisJobStoreOnACluster(ProjectStore):
    @pytest.fixture
    async def kit(self, redis_cluster: RedisClusterProcesses) -> AsyncIterator[StoreKit]:
        async for kit in sharded_kit_on(redis_cluster.url):
            yield kit


@pytest.mark.redis
@pytest.mark.slow
class TestShardedRedisJobStoreOnAValkeyCluster(
    CoreContract,
    PartitionContract,
    BatchContract,
    CancelContract,
    RaceContract,
    EventsContract,
    GiveBackContract,
):
    """shards=3 on a 3-master Valkey cluster, one shard per master: the parts of the
    suite whose scripts differ most (claims, lanes, batches, cancels, races, events, give
    back; 102 tests). The whole suite passed there too (243, 47 s), and runs on a Valkey
    server and on a Redis Cluster; the rest is left out to keep CI within its time."""

    @pytest.fixture
    async def kit(self, valkey_cluster: RedisClusterProcesses) -> AsyncIterator[StoreKit]:
        async for kit in sharded_kit_on(valkey_cluster.url):
            yield kit
