"""Shutdown ends whatever the background tasks do: a task that absorbs its cancellation
(a store call turning CancelledError into another error and its loop going on) is
cancelled again until it ends, and one that never ends is abandoned with an error; the
app's shutdown never hangs on it."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from async_endpoints import AsyncEndpoints, InMemoryJobStore, _tasks
from async_endpoints._tasks import cancel_and_wait


class RecoveryAbsorbingACancel(InMemoryJobStore):
    """A store whose recovery call, cancelled, answers as if nothing happened (once)."""

    def __init__(self) -> None:
        super().__init__()
        self.recovering = asyncio.Event()
        self.absorbed = 0

    async def recover(self) -> list[uuid.UUID]:
        self.recovering.set()
        if self.absorbed:
            return await super().recover()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.absorbed += 1  # swallowed: the recovery loop goes on
        return []


async def test_leaving_running_ends_although_the_recovery_loop_absorbed_its_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RecoveryAbsorbingACancel()
    engine = AsyncEndpoints(store=store, recovery_interval=0.05)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        async with asyncio.timeout(10):  # without the repeated cancel: hangs for ever
            async with engine.running():
                await store.recovering.wait()
    assert store.absorbed == 1
    assert "did not end when cancelled; cancelling again" in caplog.text


async def test_a_task_that_never_ends_is_abandoned_with_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_tasks, "RECANCEL_EVERY", 0.01)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)  # it runs up to its first await
    with caplog.at_level(logging.ERROR, logger="async_endpoints"):
        await cancel_and_wait([task])
    assert not task.done()
    assert "stubborn never ended when cancelled" in caplog.text
    release.set()
    task.cancel()
    await task


async def test_tasks_that_end_when_cancelled_end_at_the_first_cancel_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        await cancel_and_wait(tasks)
    assert all(task.cancelled() for task in tasks)
    assert not caplog.records


class GiveBackHanging(InMemoryJobStore):
    """A store whose give-back never answers (a store frozen as the worker stops)."""

    def __init__(self) -> None:
        super().__init__()
        self.giving_back = asyncio.Event()

    async def give_back(self, claim, *, retry_in):  # type: ignore[no-untyped-def]
        self.giving_back.set()
        await asyncio.Event().wait()


async def test_a_second_signal_during_the_give_back_still_ends_the_pools_loops() -> None:
    """The pool stops past its grace period and gives back a running job to a store that
    does not answer; the stop is cancelled then (a second signal): lease renewal and
    recovery end all the same, and no give-back call is left running."""
    store = GiveBackHanging()
    engine = AsyncEndpoints(store=store, shutdown_grace_period=0.05, claim_timeout=60)
    started = asyncio.Event()

    async def endless(ctx) -> None:  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.Event().wait()

    engine.add_handler(endless)

    async def serve() -> None:
        async with engine.running():
            await engine.submit("endless")
            await started.wait()

    serving = asyncio.create_task(serve())
    async with asyncio.timeout(10):
        await store.giving_back.wait()
    serving.cancel()  # the second signal
    with pytest.raises(asyncio.CancelledError):
        await serving
    left = {task.get_name() for task in asyncio.all_tasks()} - {
        asyncio.current_task().get_name()  # type: ignore[union-attr]
    }
    assert not {name for name in left if name.startswith("async-endpoints")}, left
    await asyncio.sleep(0)  # the give-back call's cancellation has run
    calls = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith(".give_back")]
    assert calls == []


async def test_a_grace_period_cut_short_says_so_for_the_jobs_it_gives_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker's second signal cuts the grace period short (`end_grace`): the record of a
    job given back says the period was cut, not that the job outlived it."""
    engine = AsyncEndpoints(store=InMemoryJobStore(), shutdown_grace_period=30)
    started = asyncio.Event()

    async def long(ctx) -> None:  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(60)

    engine.add_handler(long)

    async def cut_when_started() -> None:
        await started.wait()
        await asyncio.sleep(0.05)  # the pool is stopping, within its grace period
        engine.pool.end_grace()

    async with asyncio.timeout(10):
        async with engine.running():
            await engine.submit("long")
            await started.wait()
            cutting = asyncio.create_task(cut_when_started())
        await cutting
    messages = [record.getMessage() for record in caplog.records]
    assert any("when the grace period was cut short" in m for m in messages), messages
    assert not any("outlived the shutdown grace period" in m for m in messages), messages
