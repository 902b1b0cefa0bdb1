"""`unless_disconnected`: a long wait ends when its client leaves, quietly, and what it
held is released; a wait that ends first answers as usual."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from async_endpoints._disconnect import unless_disconnected


def request_with(receive: Any) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": []}, receive)


async def test_a_wait_whose_client_leaves_returns_the_fallback_once_released() -> None:
    """The client disconnects during the wait: the fallback is returned (no exception
    reaches the server), after the wait was cancelled and had let go of what it held."""
    left, released = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def long_wait() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            released.set()
        return "never"

    answer = asyncio.create_task(unless_disconnected(request_with(receive), long_wait(), "gone"))
    await asyncio.sleep(0)
    left.set()
    assert await answer == "gone"
    assert released.is_set()


async def test_a_wait_that_ends_first_answers_its_result_or_its_error() -> None:
    """The client stays: the wait's own result is returned, or its exception raised."""
    stays = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await stays.wait()
        return {"type": "http.disconnect"}

    async def done() -> str:
        return "finished"

    async def broken() -> str:
        raise LookupError("store trouble")

    assert await unless_disconnected(request_with(receive), done(), "gone") == "finished"
    with pytest.raises(LookupError):
        await unless_disconnected(request_with(receive), broken(), "gone")
