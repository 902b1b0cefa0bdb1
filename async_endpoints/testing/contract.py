"""The store contract suite: the tests every store passes, shipped for store authors.

The project runs this very suite against `InMemoryJobStore`, `RedisJobStore` and a
`RedisJobStore` on a Redis Cluster. To run it against your store, subclass
`JobStoreContract` in a test module (its name must start with ``Test``) and give it a
``kit`` fixture that returns a fresh, empty, started store in a `StoreKit`::

    # test_my_store.py
    import asyncio

    import pytest

    from async_endpoints.testing import StoreKit
    from async_endpoints.testing.contract import JobStoreContract


    class TestMyStore(JobStoreContract):
        @pytest.fixture
        async def kit(self):
            store = MyStore("mydb://localhost", namespace=random_name(), retention=1.0)
            await store.start()
            yield StoreKit(store, advance=asyncio.sleep, lease=1.0, retention=1.0)
            await store.aclose()

Every test method of the suite is inherited; ``pytest -k`` picks among them as usual.
The suite needs pytest and pytest-asyncio (``asyncio_mode = "auto"``; in strict mode
decorate the fixture with ``pytest_asyncio.fixture``). A store on a `ManualClock`
passes ``advance=`` a coroutine that calls ``clock.advance(seconds)``; a store whose
clock is a server's passes `asyncio.sleep`, and the suite then waits a few leases in
real time (keep ``lease`` and ``retention`` short, 1 s suits a local server). Give
``peer=`` a second store on the same data when your store spans processes, so that the
promises made across processes (cancel listeners, pause, races between two cancels or a
cancel and a completion, recovery run twice at once) are checked between two clients.

Capabilities: the core (`JobStore`) is always tested. The tests of an optional
capability run when the store implements it (`ControlStore`: cancel, requeue, pause;
`InspectionStore`: listing and counts; `ScheduleStore`: cron schedules; `BatchStore`:
batches and continuations; `ProgressStore` and `EventStore`: progress and job
watchers; `FollowUpStore`: follow-ups and webhook deliveries) and are otherwise
skipped, each skip naming the capability the store lacks. Hand-over (`wait_for_work`
with ``take``) is optional without a skip: a store that does not hand over returns ``[]``
and its jobs are claimed.

The suite checks the promises in the docstrings of `async_endpoints._store` (atomicity,
missing jobs, duplicates, lost claims), the orders of `async_endpoints._listing`, and
that every transition follows `async_endpoints._lifecycle.SOURCES` and ``TARGETS``.
"""

from __future__ import annotations

import pytest

from ._contract_batch_control import BatchControlContract
from ._contract_batches import BatchContract
from ._contract_cancel import CancelContract
from ._contract_core import CoreContract
from ._contract_due import DueTimeContract
from ._contract_events import EventsContract
from ._contract_follow_ups import FollowUpContract
from ._contract_give_back import GiveBackContract
from ._contract_lifecycle import LifecycleContract
from ._contract_listing import ListingContract
from ._contract_partition_control import PartitionControlContract
from ._contract_partitions import PartitionContract
from ._contract_pause import PauseContract
from ._contract_queues import QueueContract
from ._contract_races import RaceContract
from ._contract_requeue import RequeueContract
from ._contract_schedules import ScheduleContract
from ._contract_stats import StatsContract
from ._contract_tenants import TenantContract
from ._contract_waits import WaitContract
from ._kit import StoreKit as StoreKit

try:
    import pytest_asyncio  # noqa: F401
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the store contract suite runs its tests with pytest-asyncio: install it"
    ) from missing

__all__ = ["JobStoreContract", "StoreKit"]


@pytest.mark.asyncio
class JobStoreContract(
    CoreContract,
    WaitContract,
    DueTimeContract,
    QueueContract,
    PartitionContract,
    TenantContract,
    LifecycleContract,
    CancelContract,
    RequeueContract,
    PauseContract,
    RaceContract,
    ListingContract,
    StatsContract,
    PartitionControlContract,
    ScheduleContract,
    BatchContract,
    BatchControlContract,
    EventsContract,
    FollowUpContract,
    GiveBackContract,
):
    """The whole store contract; subclass it with a ``kit`` fixture (see the module
    docstring). Its parts, by capability:

    - core (`JobStore`): `CoreContract`, `WaitContract`, `QueueContract`,
      `PartitionContract`, `LifecycleContract` (cancel and requeue cases need
      `ControlStore`);
    - core, with `InspectionStore` for its listings: `TenantContract`;
    - core, the optional `Claim.due_at` (skipped, naming it, when the store leaves it
      None): `DueTimeContract` (a requeue case needs `ControlStore`);
    - `ControlStore`: `CancelContract`, `RequeueContract`, `PauseContract`,
      `RaceContract`;
    - `ControlStore` and `InspectionStore`: `PartitionControlContract`;
    - `InspectionStore`: `ListingContract`, `StatsContract`;
    - `ScheduleStore`: `ScheduleContract`;
    - `BatchStore`: `BatchContract`, `BatchControlContract` (with `ControlStore` and
      `InspectionStore` for their cancel, requeue and listing cases).
    - `ProgressStore` and `EventStore`: `EventsContract`.
    - `FollowUpStore`: `FollowUpContract` (with `ControlStore` and `BatchStore` for its
      cancel and batch cases).
    - `GiveBackStore`: `GiveBackContract` (with `ControlStore` for its cancel case).
    """
