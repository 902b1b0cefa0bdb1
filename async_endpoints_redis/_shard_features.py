"""`ShardFeatures`: control, events, schedules and follow-ups of a sharded store.

- cancel, try_cancel, requeue, set_progress, watch_job, follow_up_of: the job's shard
  (its id's shard, or the one its pointer names): one script, plus one HGET when the job
  is not in its id's shard. No fan-out.
- pause, resume: every shard, one script each, all at once (each is idempotent, so a
  call that fails half-way is simply made again); paused_queues: shard 0 (every pause
  and resume writes every shard, and shard 0 first).
- add_cancel_listener, add_claim_cancel_listener: one list shared by every shard's
  subscription.
- schedules: all in shard 0 (few, and a fire is one script there, exactly once); a cycle's
  job is stored in shard 0 with it (a pointer in its id's shard when that is another).
- Reads and batches: `_shard_reads`, `_shard_batches`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from async_endpoints._job import Job, NewJob
from async_endpoints._job_watch import JobListener
from async_endpoints._schedule import Schedule
from async_endpoints._store import Claim
from async_endpoints._store_features import ClaimCancelListener, ignoring_token

from ._shard_batches import ShardBatches
from ._shard_lookup import ShardLookup
from ._shard_reads import ShardReads
from ._store import RedisJobStore


class ShardFeatures(ShardReads, ShardBatches, ShardLookup):
    """The optional capabilities of `ShardedRedisJobStore`."""

    # Control

    async def cancel(self, job_id: uuid.UUID) -> Job | None:
        """As `RedisJobStore.cancel`, in the job's shard."""
        job, _ = await self.try_cancel(job_id)
        return job

    async def try_cancel(self, job_id: uuid.UUID) -> tuple[Job | None, bool]:
        """As `RedisJobStore.try_cancel`, in the job's shard (`ShardLookup._probe`)."""

        async def cancel(shard: RedisJobStore) -> tuple[Job, bool] | None:
            job, cancelled = await shard.try_cancel(job_id)
            return None if job is None else (job, cancelled)

        answer, shard = await self._probe(job_id, str(job_id), cancel)
        if answer is None or shard is None:
            return None, False
        if answer[1]:
            shard._notifications.wake()  # its key's next job may be claimable: look again
        return answer

    async def requeue(self, job_id: uuid.UUID) -> Job | None:
        """As `RedisJobStore.requeue`, in the job's shard (`ShardLookup._probe`)."""
        job, _ = await self._probe(job_id, str(job_id), lambda shard: shard.requeue(job_id))
        return job

    async def pause(self, queues: Iterable[str]) -> None:
        """As `RedisJobStore.pause`, in every shard (shard 0 first)."""
        await self._every_shard(lambda shard: shard.pause(list(queues)), list(queues))

    async def resume(self, queues: Iterable[str]) -> None:
        """As `RedisJobStore.resume`, in every shard (shard 0 first)."""
        await self._every_shard(lambda shard: shard.resume(list(queues)), list(queues))

    async def _every_shard(self, call: Callable[[Any], Any], names: list[str]) -> None:
        shards = await self._ready_shards()
        if not names:
            return
        await call(shards[0])
        await asyncio.gather(*(call(shard) for shard in shards[1:]))

    async def paused_queues(self) -> frozenset[str]:
        """The queues paused now (shard 0's record, written first by every pause)."""
        shards = await self._ready_shards()
        return await shards[0].paused_queues()

    def add_cancel_listener(self, listener: Callable[[uuid.UUID], None]) -> None:
        """As `RedisJobStore.add_cancel_listener`: told by every shard's subscription."""
        self._cancel_listeners.append(ignoring_token(listener))

    def add_claim_cancel_listener(self, listener: ClaimCancelListener) -> None:
        """As `RedisJobStore.add_claim_cancel_listener`: told by every shard's
        subscription."""
        self._cancel_listeners.append(listener)

    # Progress, events and follow-ups

    async def set_progress(self, claim: Claim, progress: Any) -> bool:
        """As `RedisJobStore.set_progress`, in the claim's shard."""
        await self._ready_shards()
        shard = self._of_token(claim.token)
        return False if shard is None else await shard.set_progress(claim, progress)

    async def watch_job(self, job_id: uuid.UUID, listener: JobListener) -> Callable[[], None]:
        """As `RedisJobStore.watch_job`, on the job's shard (whose channel tells it); a job
        that shard is found not to hold is read again through this store (`get`) before
        it is told gone."""
        return await (await self._located(job_id)).watch_job(job_id, listener)

    async def follow_up_of(self, job_id: uuid.UUID) -> NewJob | None:
        """As `RedisJobStore.follow_up_of`, in the job's shard."""
        shard: Any = await self._located(job_id)
        follow_up: NewJob | None = await shard.follow_up_of(job_id)
        return follow_up

    # Schedules: shard 0

    async def upsert_schedule(self, schedule: Schedule) -> Schedule:
        """As `RedisJobStore.upsert_schedule`, in shard 0."""
        return await (await self._ready_shards())[0].upsert_schedule(schedule)

    async def remove_schedule(self, schedule_id: str) -> bool:
        """As `RedisJobStore.remove_schedule`, in shard 0."""
        return await (await self._ready_shards())[0].remove_schedule(schedule_id)

    async def list_schedules(self) -> list[Schedule]:
        """As `RedisJobStore.list_schedules`, in shard 0."""
        return await (await self._ready_shards())[0].list_schedules()

    async def schedule_time(self) -> datetime:
        """As `RedisJobStore.schedule_time` (shard 0's server)."""
        return await (await self._ready_shards())[0].schedule_time()

    async def schedule_epoch(self) -> str:
        """As `RedisJobStore.schedule_epoch`, in shard 0."""
        return await (await self._ready_shards())[0].schedule_epoch()

    async def due_schedules(self, limit: int) -> list[Schedule]:
        """As `RedisJobStore.due_schedules`, in shard 0."""
        return await (await self._ready_shards())[0].due_schedules(limit)

    async def move_schedule(self, schedule: Schedule, next_run_at: datetime) -> bool:
        """As `RedisJobStore.move_schedule`, in shard 0."""
        return await (await self._ready_shards())[0].move_schedule(schedule, next_run_at)

    async def fire_schedule(
        self, schedule: Schedule, next_run_at: datetime, new_job: NewJob
    ) -> Job | None:
        """As `RedisJobStore.fire_schedule`, in shard 0, where the cycle's job is stored
        (pointed at from its id's shard first, when that is another)."""
        shards = await self._ready_shards()
        await self._pointer_book.add([new_job.id], 0, self._retention)
        return await shards[0].fire_schedule(schedule, next_run_at, new_job)
