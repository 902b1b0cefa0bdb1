"""`CallCount`: how many times one async method of an object was called in a test."""

from __future__ import annotations

from typing import Any

import pytest


class CallCount:
    """Replaces ``target.name`` (an async method) for the test with one that counts its
    calls in `count` and otherwise does the same."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
        self.count = 0
        method = getattr(target, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await method(*args, **kwargs)

        monkeypatch.setattr(target, name, counted)
