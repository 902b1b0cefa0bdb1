"""Helpers for testing apps built on async-endpoints and for authors of job stores.

`ManualClock` drives the in-memory store's time in tests; `StoreKit` is what the store
contract suite (`async_endpoints.testing.contract`, which needs pytest) is given. This
package itself imports without pytest.
"""

import sys

from ._clock import ManualClock as ManualClock
from ._kit import StoreKit as StoreKit

if "pytest" in sys.modules:
    # Plain asserts in the shipped suite then explain their failures as in a test module.
    sys.modules["pytest"].register_assert_rewrite(
        *(
            f"{__name__}.{module}"
            for module in (
                "contract",
                "_contract_batch_control",
                "_contract_batches",
                "_contract_cancel",
                "_contract_core",
                "_contract_lifecycle",
                "_contract_listing",
                "_contract_partition_control",
                "_contract_partitions",
                "_contract_pause",
                "_contract_queues",
                "_contract_races",
                "_contract_requeue",
                "_contract_schedules",
                "_contract_stats",
                "_contract_support",
                "_contract_tenants",
                "_contract_waits",
            )
        )
    )

__all__ = ["ManualClock", "StoreKit"]
