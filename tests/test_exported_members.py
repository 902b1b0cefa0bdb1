"""The public surface: everything in __all__ is importable and documented."""

from __future__ import annotations

import async_endpoints
import async_endpoints.testing


def test_all_exports_exist_and_are_sorted() -> None:
    """__all__ names real attributes, sorted (constants first), with no private names."""
    for module in (async_endpoints, async_endpoints.testing):
        assert all(hasattr(module, name) for name in module.__all__)
        constants_first = sorted(module.__all__, key=lambda name: (not name.isupper(), name))
        assert list(module.__all__) == constants_first
        assert not [name for name in module.__all__ if name.startswith("_")]


def test_every_public_name_has_a_docstring() -> None:
    """Each exported class or function explains itself."""
    for name in async_endpoints.__all__:
        member = getattr(async_endpoints, name)
        if callable(member):
            assert member.__doc__, name


def test_the_api_names_of_the_contract_are_exported() -> None:
    """The names API.md promises are importable from the package root."""
    promised = {"AsyncEndpoints", "AsyncContext", "InMemoryJobStore", "Job", "JobStatus"}
    promised |= {"JobPage", "QueueStats", "InvalidTransitionError", "JobSpec"}
    assert promised <= set(async_endpoints.__all__)
