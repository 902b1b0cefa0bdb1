"""taskiq with taskiq-redis: the benchmark's job and how it is produced.

Worker process (taskiq's CLI, as its docs prescribe; one worker child process)::

    taskiq worker taskiq_app:broker --workers 1 --max-async-tasks 100 --log-level WARNING

The broker and result backend are the ones taskiq-redis's README shows:
`RedisStreamBroker` (acknowledged delivery, XREADGROUP) with `RedisAsyncResultBackend`,
results expiring after an hour as the README recommends. ``wait_result`` polls every
0.2 s (its default).
"""

from __future__ import annotations

import os
from typing import Any

import _probe
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

broker = RedisStreamBroker(url=URL).with_result_backend(
    RedisAsyncResultBackend(redis_url=URL, result_ex_time=3600)
)


@broker.task
async def noop(i: int) -> float:
    return _probe.hit(i)


class Producer:
    async def start(self) -> None:
        await broker.startup()

    async def stop(self) -> None:
        await broker.shutdown()

    async def enqueue(self, i: int) -> Any:
        return await noop.kiq(i)

    async def result(self, handle: Any, timeout: float) -> Any:
        outcome = await handle.wait_result(timeout=timeout)
        return outcome.return_value
