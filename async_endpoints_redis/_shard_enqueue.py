"""`ShardEnqueue`: where a sharded store stores a submitted job (a part of
`ShardedRedisJobStore`; the placement rules are in `_shard_layout`).

A job goes to its id's shard, or to its partition key's (the old shard while the key's lane
there still has jobs, after a resharding); one placed away from its id's shard, or carrying
a follow-up, first gets its pointers written (`Pointers`). An idempotency key is first
recorded in the key's own shard with the shard of its job, so that a repeat is answered by
that shard's script atomically; a client-chosen id needs no such record (every repeat has
the same placement).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from async_endpoints._errors import QueueFullError, StoreClosedError
from async_endpoints._idempotency import IdempotencyConflictError, is_by_request_id
from async_endpoints._job import Job, NewJob
from async_endpoints._store_features import Idempotency

from ._shard_lookup import ShardLookup

if TYPE_CHECKING:
    from ._store import RedisJobStore


class ShardEnqueue(ShardLookup):
    """`enqueue` and `enqueue_once` of a sharded store."""

    def _open_shard(self, index: int) -> RedisJobStore:
        """Shard ``index``, once the store is started (after an await: the store may
        have been closed meanwhile).

        Raises:
            StoreClosedError: The store is closed.
        """
        if not self._shards:
            raise StoreClosedError
        return self._shards[index]

    def _placement(self, new_job: NewJob) -> int:
        if new_job.partition_key is not None:
            return self._layout.of_key(new_job.partition_key)
        return self._layout.of_id(new_job.id)

    async def enqueue(self, new_job: NewJob, *, max_waiting: int | None = None) -> Job:
        """As `RedisJobStore.enqueue`, in the job's shard (see `_shard_layout`)."""
        shard, new_job = await self._placed(new_job)
        if max_waiting is None:  # no count to keep
            return await self._open_shard(shard).enqueue(new_job)
        return await self._counts.limited(
            shard, max_waiting, lambda limit: self._open_shard(shard).enqueue(
                new_job, max_waiting=limit)
        )  # fmt: skip

    async def enqueue_once(
        self, new_job: NewJob, idempotency: Idempotency, *, max_waiting: int | None = None
    ) -> tuple[Job, str | None]:
        """As `RedisJobStore.enqueue_once`. The job goes to its own shard (as `enqueue`,
        a partition key's old lane included) unless its idempotency key was used already:
        every key is first recorded, with the shard of its job, in the key's shard
        (`Pointers.idempotent`, one more round trip, kept as long as the key), and a
        repeat goes to that shard, whose script then answers it atomically (the job
        stored under the key, or a conflict). A job with a partition key is never stored
        away from its key's lane: when the key was recorded for another shard, that
        shard only answers (its job, compared as any repeat), and while it holds no job
        under the key (the first submission still on its way, or refused) this one is a
        conflict (`IdempotencyConflictError`), not a second job.

        A client-chosen id (`by_request_id`: the key is the id's own) is not recorded in
        the key's shard: every repeat has the same placement, so it meets its job in the
        job's own shard, which alone it depends on (`_chosen_id_home`).

        Raises:
            IdempotencyConflictError: See above.
            IdempotentJobGoneError: the key is remembered but its job is no longer kept.
        """
        shards = await self._ready_shards()
        placed = await self._home(new_job)
        ttl_ms = max(1, math.ceil(idempotency.ttl * 1000))
        book = self._pointer_book
        if is_by_request_id(idempotency, new_job.id):
            shard, held = await self._chosen_id_home(new_job, idempotency.key, placed), False
        else:
            shard, held = await book.idempotent(idempotency.key, placed, ttl_ms, self._old_layouts)
        if new_job.partition_key is not None and shard != placed:
            return await self._answer_only(shard, new_job, idempotency)
        if held and self._layout.of_id(new_job.id) != shard:
            # A used key is answered by its shard before the id is pointed there: an id
            # the client chose, taken by another job, would otherwise be refused first
            # (409), and a repeat's fresh id would leave a pointer to nothing behind.
            answered = await self._held_answer(shard, new_job, idempotency)
            if answered is not None:
                return answered
        shard, new_job = await self._placed(new_job, shard)
        job, earlier = await self._counts.limited(
            shard, max_waiting, lambda limit: shards[shard].enqueue_once(
                new_job, idempotency, max_waiting=limit)
        )  # fmt: skip
        if held and earlier is None:  # a new job under a key whose record there had ended
            await book.renew_idempotent(idempotency.key, shard, ttl_ms)
        return job, earlier

    async def _answer_only(
        self, shard: int, new_job: NewJob, idempotency: Idempotency
    ) -> tuple[Job, str | None]:
        """The job ``shard`` holds under the idempotency key, and its fingerprint; stores
        nothing there (a limit of 0 waiting jobs: the script answers a key it holds
        before it looks at the limit).

        Raises:
            IdempotencyConflictError: ``shard`` holds no job under the key.
            IdempotentJobGoneError: it holds the key, and its job is no longer kept.
        """
        try:
            return await self._open_shard(shard).enqueue_once(new_job, idempotency, max_waiting=0)
        except QueueFullError:
            raise IdempotencyConflictError(
                "this idempotency key is held by a submission with another partition key"
            ) from None

    async def _held_answer(
        self, shard: int, new_job: NewJob, idempotency: Idempotency
    ) -> tuple[Job, str | None] | None:
        """The job ``shard`` holds under the idempotency key and its fingerprint, or None
        when it holds none (its record there ended, or the first submission was refused):
        nothing is stored (a limit of 0 waiting jobs, as `_answer_only`).

        Raises:
            IdempotentJobGoneError: it holds the key, and its job is no longer kept.
        """
        try:
            return await self._open_shard(shard).enqueue_once(new_job, idempotency, max_waiting=0)
        except QueueFullError:
            return None

    async def _home(self, new_job: NewJob) -> int:
        """The job's shard: its partition key's (the old shard where the key's lane
        still has jobs, after a resharding), else its id's."""
        shard = self._placement(new_job)
        if self._old_layouts and new_job.partition_key is not None:
            shard = await self._old_lane(new_job.partition_key, shard)
        return shard

    async def _placed(self, new_job: NewJob, shard: int | None = None) -> tuple[int, NewJob]:
        """The job's shard (``shard`` if given) and the job, its pointers written first
        (`_point`)."""
        if not self._shards:  # not started (or closed: it raises)
            await self._ready_shards()
        if shard is None:
            shard = await self._home(new_job)
        follow_up = getattr(new_job, "follow_up", None)
        if follow_up is not None or self._layout.of_id(new_job.id) != shard:
            await self._point(shard, new_job)
        return shard, new_job

    async def _point(self, shard: int, new_job: NewJob) -> None:
        """Point the job's id shard (and its follow-up's) at ``shard`` when another."""
        book = self._pointer_book
        if self._layout.of_id(new_job.id) != shard:
            await book.add([new_job.id], shard, self._retention)
        follow_up = getattr(new_job, "follow_up", None)
        if follow_up is not None:
            fields = [(self._layout.of_id(follow_up.id), str(follow_up.id))]
            await book.add_fields(fields, shard, self._retention, parent=new_job.id)
