"""Handlers that use ``asyncio.TaskGroup``: a child's failure is the handler's own.

On Python 3.11 and early 3.12, a task group whose body does not await and whose child
fails leaves its task's cancellation count raised after it ends (a CPython bug,
fixed in later releases). The count is how an attempt tells a cancellation from elsewhere
(a shutdown, a lost claim, a cancel), so such a handler looked cancelled: its job sat
InProgress until its lease ran out and then failed as ClaimExpired, its result or error
thrown away, and so did the jobs its task ran next.
"""

from __future__ import annotations

import asyncio
import contextlib

from async_endpoints import AsyncContext, AsyncEndpoints, Job, JobStatus, JobStore


async def _broken_child() -> None:
    raise ValueError("the child broke")


async def _failing_group() -> None:
    """A task group whose body does not await and whose one child fails (in the calling
    task: what leaves its cancellation count raised on Python 3.11)."""
    async with asyncio.TaskGroup() as group:
        group.create_task(_broken_child())


def engine_on(store: JobStore) -> AsyncEndpoints:
    """An engine whose handlers use task groups; no retries, a long lease (a job lost to
    it would show as a wait for ``wait_for``'s timeout)."""
    engine = AsyncEndpoints(store=store, max_retries=0, claim_timeout=60.0)

    async def fans_out(ctx: AsyncContext[None]) -> str:
        await _failing_group()
        return "unreachable"

    async def handles_it(ctx: AsyncContext[None]) -> str:
        try:
            await _failing_group()
        except ExceptionGroup:
            return "handled the child's error"
        return "unreachable"

    async def plain(ctx: AsyncContext[None]) -> str:
        return "plain"

    async def handles_it_then_overruns(ctx: AsyncContext[None]) -> None:
        with contextlib.suppress(ExceptionGroup):
            await _failing_group()
        await asyncio.Event().wait()  # past its job_timeout

    async def handles_it_then_cancels_itself(ctx: AsyncContext[None]) -> None:
        with contextlib.suppress(ExceptionGroup):
            await _failing_group()
        waiting = asyncio.ensure_future(asyncio.Event().wait())
        waiting.cancel()
        await waiting  # its CancelledError is the handler's own failure

    for handler in (fans_out, handles_it, plain, handles_it_then_cancels_itself):
        engine.add_handler(handler)
    engine.add_handler(handles_it_then_overruns, job_timeout=0.1)
    return engine


async def ended(store: JobStore, name: str) -> Job:
    """Job ``name`` run on a fresh engine on ``store``, as it ended."""
    engine = engine_on(store)
    async with engine.running():
        job = await engine.submit(name)
        return await engine.wait_for(job.id, timeout=10)


async def test_a_task_groups_failure_fails_the_attempt_with_its_exception_group(
    store: JobStore,
) -> None:
    ended_job = await ended(store, "fans_out")
    assert ended_job.status is JobStatus.FAILED
    assert ended_job.error is not None and ended_job.error.type == "ExceptionGroup"


async def test_a_handler_that_handles_its_task_groups_failure_completes(store: JobStore) -> None:
    ended_job = await ended(store, "handles_it")
    assert ended_job.status is JobStatus.COMPLETED
    assert ended_job.result == "handled the child's error"


async def test_the_jobs_run_after_a_task_groups_failure_are_not_taken_for_cancelled(
    store: JobStore,
) -> None:
    """A job task may run several short jobs in a row: those after the task group's run
    as any other."""
    engine = engine_on(store)
    async with engine.running():
        jobs = [await engine.submit(name) for name in ("handles_it", "plain", "plain")]
        finished = [await engine.wait_for(job.id, timeout=10) for job in jobs]
    assert [job.status for job in finished] == [JobStatus.COMPLETED] * 3
    assert [job.result for job in finished] == ["handled the child's error", "plain", "plain"]


async def test_a_handler_overrunning_its_timeout_after_a_task_groups_failure_times_out(
    store: JobStore,
) -> None:
    """The deadline's own cancellation on top of the count a task group left: the attempt
    fails as JobTimeout, not as a cancellation from elsewhere (lost until its lease ran
    out)."""
    ended_job = await ended(store, "handles_it_then_overruns")
    assert ended_job.status is JobStatus.FAILED
    assert ended_job.error is not None and ended_job.error.type == "JobTimeout"


async def test_a_handler_cancelling_itself_after_a_task_groups_failure_fails_as_itself(
    store: JobStore,
) -> None:
    """A handler that lets out a CancelledError nobody asked for fails with it (as without
    a task group before), not as a cancellation from elsewhere."""
    ended_job = await ended(store, "handles_it_then_cancels_itself")
    assert ended_job.status is JobStatus.FAILED
    assert ended_job.error is not None and ended_job.error.type == "CancelledError"
