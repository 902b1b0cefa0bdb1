"""The shipped store contract suite (`async_endpoints.testing.contract`), run against every
store of the project as a store author runs it against theirs (kits in conftest.py)."""

from __future__ import annotations

import uuid

import pytest

from async_endpoints._job import NewJob
from async_endpoints._store import ControlStore, InspectionStore
from async_endpoints._store_features import (
    BatchStore,
    EventStore,
    FollowUpStore,
    GiveBackStore,
    IdempotentStore,
    PendingContinuationStore,
    ProgressStore,
    ScheduleStore,
)
from async_endpoints.testing import StoreKit
from async_endpoints.testing._contract_batches import batches, closed_batches, member
from async_endpoints.testing.contract import JobStoreContract


class ProjectStore(JobStoreContract):
    """The project's stores implement every optional capability, so none of the suite's
    tests may be skipped for them."""

    async def test_the_store_has_every_optional_capability(self, kit: StoreKit) -> None:
        """Every optional capability, on the store and on its peer: the suite's capability
        gates (`require`) never skip a test of the project's stores."""
        for store in (kit.store, kit.other):
            for capability in (
                ControlStore,
                InspectionStore,
                ScheduleStore,
                BatchStore,
                ProgressStore,
                EventStore,
                IdempotentStore,
                FollowUpStore,
                PendingContinuationStore,
                GiveBackStore,
            ):
                assert isinstance(store, capability), capability.__name__

    async def test_the_store_reports_when_a_claimed_job_became_due(self, kit: StoreKit) -> None:
        """The optional `Claim.due_at` is reported, so the suite's due-time tests
        (`DueTimeContract`) never skip for the project's stores."""
        await kit.store.enqueue(NewJob(uuid.uuid4(), "Echo", 0))
        (claim,) = await kit.store.claim(1, lease=kit.lease)
        assert claim.due_at is not None

    async def test_an_append_refused_names_the_batch_status(self, kit: StoreKit) -> None:
        """Appending to a batch that is no longer Running raises a ValueError that says
        what the batch is (Finished, Canceled), the same words on every store."""
        store = batches(kit)
        finished, cancelled = await closed_batches(kit)
        for spec, status in ((finished, "Finished"), (cancelled, "Canceled")):
            message = f"batch {spec.id} is {status}: it takes no more jobs"
            with pytest.raises(ValueError, match=message):
                await store.append_to_batch(spec.id, [member(spec.id)])


class TestInMemoryJobStore(ProjectStore):
    @pytest.fixture
    def kit(self, memory_kit: StoreKit) -> StoreKit:
        return memory_kit


@pytest.mark.redis
class TestRedisJobStore(ProjectStore):
    @pytest.fixture
    def kit(self, redis_kit: StoreKit) -> StoreKit:
        return redis_kit


@pytest.mark.redis
class TestRedisJobStoreOnValkey(ProjectStore):
    """The Redis store on Valkey 8 (the fork many hosts now run): every script and
    command it sends behaves the same there."""

    @pytest.fixture
    def kit(self, valkey_kit: StoreKit) -> StoreKit:
        return valkey_kit


@pytest.mark.redis
class TestRedisJobStoreOnACluster(ProjectStore):
    @pytest.fixture
    def kit(self, cluster_kit: StoreKit) -> StoreKit:
        return cluster_kit
