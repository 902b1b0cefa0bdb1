"""The shipped store contract suite (`async_endpoints.testing.contract`), run against every
store of the project as a store author runs it against theirs (kits in conftest.py)."""

from __future__ import annotations

import pytest

from async_endpoints._store import ControlStore, InspectionStore
from async_endpoints._store_features import BatchStore, ScheduleStore
from async_endpoints.testing import StoreKit
from async_endpoints.testing.contract import JobStoreContract


class ProjectStore(JobStoreContract):
    """The project's stores implement every optional capability, so none of the suite's
    tests may be skipped for them."""

    async def test_the_store_has_every_optional_capability(self, kit: StoreKit) -> None:
        """Control, inspection, schedules and batches, on the store and on its peer."""
        for store in (kit.store, kit.other):
            assert isinstance(store, ControlStore)
            assert isinstance(store, InspectionStore)
            assert isinstance(store, ScheduleStore)
            assert isinstance(store, BatchStore)


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
class TestRedisJobStoreOnACluster(ProjectStore):
    @pytest.fixture
    def kit(self, cluster_kit: StoreKit) -> StoreKit:
        return cluster_kit
