"""`MemoryEvents`: the progress of running jobs (`ProgressStore`) and the watchers of jobs
(`EventStore`) of the `InMemoryJobStore`.

Every status change reaches `MemoryEvents._moved` in the step that made it (the store's
hook, which `_memory_batches` counts with too), and every progress write is told in the
step that wrote it, so a watcher sees each change once and in order; nothing is awaited
in between, so a watcher registered before a read misses nothing after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from ._job import Job, JobStatus
from ._job_watch import JobListener, JobWatchers
from ._memory_batches import MemoryBatches
from ._store import Claim


class MemoryEvents(MemoryBatches):
    """Progress and job watchers kept in memory; see `async_endpoints.ProgressStore` and
    `async_endpoints.EventStore` (the structures are the store's)."""

    _leases: dict[int, tuple[str, float]]
    _job_watchers: JobWatchers

    async def set_progress(self, claim: Claim, progress: Any) -> bool:
        """Store the claimed job's progress and tell its watchers; see
        `ProgressStore.set_progress`."""
        key = claim.job.id.int
        held = self._leases.get(key)
        if held is None or held[0] != claim.token:
            return False
        self._live.put(self._jobs[key].replace(progress=progress))
        self._job_watchers.progress(claim.job.id, progress)
        return True

    async def watch_job(self, job_id: uuid.UUID, listener: JobListener) -> Callable[[], None]:
        """Tell ``listener`` every status change and progress of the job, from now on;
        see `EventStore.watch_job`."""
        return self._job_watchers.add(job_id, listener)

    def _moved(self, was: JobStatus | None, job: Job) -> None:
        if self._job_watchers:
            self._job_watchers.status(job)
        super()._moved(was, job)
