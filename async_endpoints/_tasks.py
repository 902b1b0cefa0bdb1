"""`cancel_and_wait`: stopping background tasks at shutdown, bounded; `consume`.

A single ``task.cancel()`` followed by ``await task`` hangs for ever when the task absorbs
its cancellation: code that turns a `CancelledError` into another exception (a timeout
that fired in the same instant, a library's error mapping) and then loops on. Shutdown
must end whatever a task does, so the cancel is repeated while the task runs, and a task
that outlives every repeat is abandoned with an error naming it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("async_endpoints")

#: Seconds between two cancels of a task that has not ended.
RECANCEL_EVERY = 1.0
#: Cancels a task gets before it is abandoned.
MOST_CANCELS = 10


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel ``tasks`` and wait until each has ended (their results and errors are
    dropped); one still running after a cancel is cancelled again every
    `RECANCEL_EVERY` seconds, and abandoned (logged) after `MOST_CANCELS`.

    The caller being cancelled meanwhile does not cut the wait short (it is a shutdown
    step: the rest of the shutdown must still run); its cancellation is not re-raised.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    cancels = 0
    while pending and cancels < MOST_CANCELS:
        for task in pending:
            task.cancel()
        cancels += 1
        try:
            _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY)
        except asyncio.CancelledError:
            continue  # the caller's cancel: the tasks are cancelled again, still awaited
        if pending and cancels == 1:
            names = ", ".join(sorted(task.get_name() for task in pending))
            logger.warning("task(s) %s did not end when cancelled; cancelling again", names)
    if pending:
        names = ", ".join(sorted(task.get_name() for task in pending))
        logger.error("task(s) %s never ended when cancelled; shutting down without them", names)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" noise


def consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished task's exception, so asyncio does not report it as unhandled
    (a done callback of a task nobody awaits any more)."""
    if not task.cancelled():
        task.exception()
