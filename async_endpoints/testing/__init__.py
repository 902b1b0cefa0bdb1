"""Helpers for testing apps built on async-endpoints and for authors of job stores.

`ManualClock` drives the in-memory store's time in tests; `StoreKit` is what the store
contract suite (`async_endpoints.testing.contract`, which needs pytest) is given. This
package itself imports without pytest.
"""

import pkgutil
import sys

from ._clock import ManualClock as ManualClock
from ._kit import StoreKit as StoreKit

if "pytest" in sys.modules:
    # Plain asserts in the shipped suite then explain their failures as in a test module.
    # Every module of the suite: the contract and its _contract_* parts.
    sys.modules["pytest"].register_assert_rewrite(
        *(
            f"{__name__}.{module.name}"
            for module in pkgutil.iter_modules(__path__)
            if module.name == "contract" or module.name.startswith("_contract")
        )
    )

__all__ = ["ManualClock", "StoreKit"]
