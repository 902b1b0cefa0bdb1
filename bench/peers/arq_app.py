"""arq: the benchmark's job and how it is produced.

Worker process (arq's CLI, as its docs prescribe)::

    arq arq_app.WorkerSettings --custom-log-dict arq_app.LOG_CONFIG

Defaults except ``max_jobs=100`` (concurrency); arq's worker polls its queue every
``poll_delay`` (0.5 s) and ``Job.result`` polls every 0.5 s; both left at their defaults.
The log config only drops arq's per-job INFO lines (every library runs at WARNING).
"""

from __future__ import annotations

import os
from typing import Any

import _probe
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LOG_CONFIG = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}


async def noop(ctx: dict[str, Any], i: int) -> float:
    return _probe.hit(i)


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 (arq reads class attributes)
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "100"))


class Producer:
    pool: ArqRedis

    async def start(self) -> None:
        self.pool = await create_pool(RedisSettings.from_dsn(URL))

    async def stop(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, i: int) -> Job:
        job = await self.pool.enqueue_job("noop", i)
        assert job is not None
        return job

    async def result(self, handle: Job, timeout: float) -> Any:
        return await handle.result(timeout=timeout)
