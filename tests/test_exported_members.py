"""The public surface: everything in __all__ is importable and documented."""

from __future__ import annotations

import inspect
import typing

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


def test_every_exported_exception_derives_from_the_librarys_root_error() -> None:
    """``except AsyncEndpointsError`` catches every exception the library exports (those
    that were ValueErrors still are)."""
    import async_endpoints_redis

    outside = []
    for module in (async_endpoints, async_endpoints_redis):
        for name in module.__all__:
            member = getattr(module, name)
            exception = isinstance(member, type) and issubclass(member, BaseException)
            if exception and not issubclass(member, async_endpoints.AsyncEndpointsError):
                outside.append(name)
    assert outside == []
    assert issubclass(async_endpoints.IdempotencyConflictError, ValueError)
    assert issubclass(async_endpoints.InvalidTransitionError, ValueError)


def test_the_api_names_of_the_contract_are_exported() -> None:
    """The names API.md promises are importable from the package root."""
    promised = {"AsyncEndpoints", "AsyncContext", "InMemoryJobStore", "Job", "JobStatus"}
    promised |= {"JobPage", "QueueStats", "InvalidTransitionError", "JobSpec"}
    assert promised <= set(async_endpoints.__all__)


def _classes_named_in(hint: object) -> set[type]:
    found = {hint} if isinstance(hint, type) else set()
    for argument in typing.get_args(hint):
        found |= _classes_named_in(argument)
    return found


def test_every_type_a_store_protocol_names_is_exported() -> None:
    """A third-party store can implement every exported store protocol from the public
    names alone: each class of ours in their methods' signatures is exported too."""
    unexported = set()
    for name in async_endpoints.__all__:
        protocol = getattr(async_endpoints, name)
        if not (isinstance(protocol, type) and name.endswith("Store")):
            continue
        for method_name, method in vars(protocol).items():
            if method_name.startswith("_") or not callable(method):
                continue
            for hint in typing.get_type_hints(method).values():
                for cls in _classes_named_in(hint):
                    ours = cls.__module__.startswith("async_endpoints")
                    if ours and cls.__name__ not in async_endpoints.__all__:
                        unexported.add(f"{name}.{method_name}: {cls.__name__}")
    assert not unexported


#: Methods whose hints name a class of an optional extra, imported only when it is used
#: (JobMetrics needs prometheus-client): they resolve once that module is imported.
NAMES_AN_EXTRAS_CLASS = {"AsyncEndpoints.enable_metrics", "AsyncEndpoints.map_metrics"}


def test_the_type_hints_of_every_public_method_resolve_at_run_time() -> None:
    """Tools that read annotations at run time (typing.get_type_hints: pydantic, IDE
    helpers, documentation builders) resolve the methods each public class defines here,
    the route options of map_async_post and its siblings included."""
    from async_endpoints._mapping import RouteOptions

    unresolved = []
    targets: list[tuple[str, object]] = [("RouteOptions", RouteOptions)]
    for name in async_endpoints.__all__:
        member = getattr(async_endpoints, name)
        if isinstance(member, type):
            targets += [
                (f"{name}.{method_name}", method)
                for method_name, method in inspect.getmembers(member, inspect.isfunction)
                if (not method_name.startswith("_") or method_name == "__init__")
                and method.__module__.startswith("async_endpoints")
                and f"{name}.{method_name}" not in NAMES_AN_EXTRAS_CLASS
            ]
    for label, target in targets:
        try:
            typing.get_type_hints(target)
        except Exception as error:
            unresolved.append(f"{label}: {type(error).__name__}: {error}")
    assert not unresolved


def test_the_settings_keywords_type_is_every_setting_with_its_type() -> None:
    """`SettingsOptions` (the type of AsyncEndpoints' keyword arguments) names every
    setting, each with the type `Settings` gives it: a new setting cannot be left out of
    what type checkers check."""
    options = typing.get_type_hints(async_endpoints.SettingsOptions)
    settings = typing.get_type_hints(async_endpoints.Settings)
    assert options == settings
    assert async_endpoints.SettingsOptions.__required_keys__ == frozenset()
