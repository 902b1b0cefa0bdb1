"""Running one job after another in a single task, each as if it had a task of its own."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from async_endpoints._slots import _in_context

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def sets_and_waits(value: str) -> str:
    before = SEEN.get()
    SEEN.set(value)
    await asyncio.sleep(0)  # a step boundary: the value must survive it
    await asyncio.sleep(0.01)
    return f"{before}->{SEEN.get()}"


async def test_each_step_runs_in_the_given_context_and_the_result_comes_back() -> None:
    """Values set inside stay inside, across suspensions; the caller's context is untouched."""
    SEEN.set("caller")
    context = contextvars.copy_context()
    assert await _in_context(context.copy(), sets_and_waits("first")) == "caller->first"
    assert await _in_context(context.copy(), sets_and_waits("second")) == "caller->second"
    assert SEEN.get() == "caller"


async def test_an_exception_from_the_coroutine_reaches_the_caller() -> None:
    """What the coroutine raises, the await raises."""

    async def fails() -> None:
        await asyncio.sleep(0)
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        await _in_context(contextvars.copy_context(), fails())


async def test_cancelling_the_task_cancels_the_coroutine_inside() -> None:
    """A cancellation thrown into the task reaches the coroutine, which may clean up."""
    cleaned = asyncio.Event()
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    async def runner() -> None:
        await _in_context(contextvars.copy_context(), waits())

    task = asyncio.create_task(runner())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()
