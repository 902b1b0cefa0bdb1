"""`ShardBatches`: batches of a sharded store: each batch in one shard.

A batch's hash, its jobs and its continuations live in one shard, so its counts change in
the same atomic step as its jobs' statuses and the transition that ends its last job
stores its continuations there, exactly once: the scripts of one shard, unchanged. No
cross-shard protocol is needed, and none of its costs (a batch is never spread over the
masters; a cluster spreads batches, not one batch's jobs).

The batch's shard: the shard of its jobs' partition keys when they have any (so that a
key's lane stays in one shard and its order holds, batch or not; after a resharding, the
old shard where a key's lane still has jobs), else its id's shard.
Jobs (or continuations) whose partition keys fall in different shards cannot share one
batch: `create_batch` and `append_to_batch` refuse them with `ValueError`, naming the
keys, and store nothing. A batch away from its id's shard, and every job of it away
from the job's id shard, gets a pointer (`_shard_pointers`, one script per id shard,
written before the batch), so `get_batch`, `cancel_batch`, `append_to_batch` and the
jobs' lookups need no fan-out. `list_batches` reads every shard at once and merges them
newest first (`_shard_reads.merged_page`). ``max_waiting`` counts every shard as
`_shard_counts` says.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from async_endpoints._batch import Batch, BatchPage, NewBatch
from async_endpoints._errors import full_batch_message
from async_endpoints._job import NewJob, check_label

from ._batches import batch_cursor
from ._shard_lookup import ShardLookup
from ._shard_pointers import batch_field
from ._shard_reads import _reverse, merged_page
from ._store import RedisJobStore


class ShardBatches(ShardLookup):
    """Batches over shards; see `async_endpoints.BatchStore`."""

    async def create_batch(self, batch: NewBatch, *, max_waiting: int | None = None) -> Batch:
        """As `RedisJobStore.create_batch`, in the batch's shard (see the module
        docstring).

        Raises:
            ValueError: As `RedisJobStore.create_batch`, or its jobs' partition keys fall
                in different shards.
        """
        shards = await self._ready_shards()
        jobs = [*batch.jobs, *batch.continuations]
        shard = await self._keys_shard(jobs)
        if shard is None:
            shard = self._layout.of_id(batch.id)
        await self._point_batch(shard, batch.id, jobs)
        return await self._counts.limited(
            shard,
            max_waiting,
            lambda limit: shards[shard].create_batch(batch, max_waiting=limit),
            len(batch.jobs),
            full_batch_message,
        )

    async def append_to_batch(
        self, batch_id: uuid.UUID, jobs: Sequence[NewJob], *, max_waiting: int | None = None
    ) -> Batch | None:
        """As `RedisJobStore.append_to_batch`, in the batch's shard.

        Raises:
            ValueError: As `RedisJobStore.append_to_batch`, or a job's partition key
                falls in another shard than the batch's.
        """
        for new_job in jobs:
            if new_job.batch_id != batch_id:
                raise ValueError(f"job {new_job.id} does not name batch {batch_id}")
        holder = await self._batch_shard(batch_id)
        shard = self._shards.index(holder)
        keyed = await self._keys_shard(jobs)
        if keyed is not None and keyed != shard:
            raise ValueError(
                f"batch {batch_id} is in another shard than its new jobs' partition keys"
            )
        await self._point_batch(shard, None, jobs)
        return await self._counts.limited(
            shard,
            max_waiting,
            lambda limit: holder.append_to_batch(batch_id, jobs, max_waiting=limit),
            len(jobs),
            full_batch_message,
        )

    async def get_batch(self, batch_id: uuid.UUID) -> Batch | None:
        """As `RedisJobStore.get_batch`, in the batch's shard."""
        return await (await self._batch_shard(batch_id)).get_batch(batch_id)

    async def pending_continuation(self, job_id: uuid.UUID) -> bool:
        """As `RedisJobStore.pending_continuation`, asked of every shard at once (a
        continuation is reserved in its batch's shard)."""
        shards = await self._ready_shards()
        found = await asyncio.gather(*(shard.pending_continuation(job_id) for shard in shards))
        return any(found)

    async def cancel_batch(self, batch_id: uuid.UUID) -> Batch | None:
        """As `RedisJobStore.cancel_batch`, in the batch's shard."""
        return await (await self._batch_shard(batch_id)).cancel_batch(batch_id)

    async def list_batches(
        self, *, tenant: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> BatchPage:
        """One page of batches, newest first, merged from every shard (one page of each,
        all at once)."""
        check_label(tenant, "tenant")
        shards = await self._ready_shards()

        async def page(
            index: int, size: int, at: str | None
        ) -> tuple[list[Batch], list[str], str | None]:
            one = await shards[index].list_batches(tenant=tenant, limit=min(size, 1000), cursor=at)
            after = [batch_cursor(tenant, batch) for batch in one.batches]
            return list(one.batches), after, one.next_cursor

        batches, following = await merged_page(
            len(shards),
            ["shard-batches", len(shards), tenant],
            ["batches", tenant],
            limit,
            cursor,
            page,
            lambda batch: (-batch.created_at.timestamp(), _reverse(batch.id.hex)),
        )
        return BatchPage(batches, following)

    async def _batch_shard(self, batch_id: uuid.UUID) -> RedisJobStore:
        """The shard holding the batch (`ShardLookup._probe`: its id's shard, or the one a
        pointer there names); its id's shard when none does."""
        shards = await self._ready_shards()
        field = batch_field(batch_id)
        _, shard = await self._probe(batch_id, field, lambda one: one.get_batch(batch_id))
        return shard or shards[self._layout.of_id(batch_id)]

    async def _keys_shard(self, jobs: Sequence[NewJob]) -> int | None:
        """The one shard of the jobs' partition keys (None: they have none): each key's
        lane, in an old shard while one still holds jobs of the key after a resharding
        (as a lone job's, `_home`).

        Raises:
            ValueError: The keys fall in different shards.
        """
        keyed: dict[str, int] = {}
        for job in jobs:
            key = job.partition_key
            if key is not None and key not in keyed:
                keyed[key] = self._layout.of_key(key)
                if self._old_layouts:
                    keyed[key] = await self._old_lane(key, keyed[key])
        if len(set(keyed.values())) > 1:
            keys = ", ".join(sorted(keyed))
            raise ValueError(
                f"the partition keys {keys} fall in different shards of this store: "
                "one batch cannot hold them (a batch lives in one shard; keys that must "
                "share a batch need a store with shards=1)"
            )
        return next(iter(keyed.values()), None)

    async def _point_batch(
        self, shard: int, batch_id: uuid.UUID | None, jobs: Sequence[NewJob]
    ) -> None:
        fields = [(self._layout.of_id(job.id), str(job.id)) for job in jobs]
        if batch_id is not None:
            fields.append((self._layout.of_id(batch_id), batch_field(batch_id)))
        await self._pointer_book.add_fields(fields, shard, self._retention)
        for job in jobs:
            if getattr(job, "follow_up", None) is not None:
                await self._point(shard, job)

    async def _point(self, shard: int, new_job: NewJob) -> None:
        raise NotImplementedError  # `ShardEnqueue._point`
