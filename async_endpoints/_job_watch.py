"""`JobNotice` and `JobWatchers`: what a store tells the watchers of one job (status changes
and progress, see `async_endpoints.EventStore`), and the registry of those watchers that
every store keeps in each process (one entry per watched job, however many watch it).

Listeners are plain functions called on the event loop, synchronously, in the step that
made the change (in-memory) or as the store's one subscription delivers it (Redis): they
must be quick (hand the notice to a queue). A listener that raises is logged and the
others still run.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._job import Job
from ._logs import job_id_extra

logger = logging.getLogger("async_endpoints")


@dataclass(frozen=True, slots=True)
class JobNotice:
    """A change of one watched job.

    Attributes:
        job_id: The job's id.
        job: For a status notice, the job as it is after the change (a notice may repeat
            the status already told, after a reconnection, say); None for progress.
        progress: For a progress notice, the value reported.
        gone: True for the notice that the store does not have the job (its data was
            lost: a Redis server restarted without persistence, or flushed): told once.
            ``job`` is None.
    """

    job_id: uuid.UUID
    job: Job | None = None
    progress: Any = None
    gone: bool = False

    @property
    def is_progress(self) -> bool:
        """True for a progress notice, False for a status one (or a `gone` one)."""
        return self.job is None and not self.gone


JobListener = Callable[[JobNotice], None]


class JobWatchers:
    """The listeners of each watched job in this process."""

    __slots__ = ("_listeners", "_seq")

    def __init__(self) -> None:
        self._listeners: dict[uuid.UUID, dict[int, JobListener]] = {}
        self._seq = itertools.count()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._listeners

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def ids(self) -> Iterator[uuid.UUID]:
        """The watched jobs' ids."""
        return iter(list(self._listeners))

    def add(self, job_id: uuid.UUID, listener: JobListener) -> Callable[[], None]:
        """Register ``listener`` for ``job_id``; returns the function that unregisters it
        (idempotent)."""
        number = next(self._seq)
        self._listeners.setdefault(job_id, {})[number] = listener

        def unwatch() -> None:
            listeners = self._listeners.get(job_id)
            if listeners is None or number not in listeners:
                return
            del listeners[number]
            if not listeners:
                del self._listeners[job_id]

        return unwatch

    def status(self, job: Job) -> None:
        """Tell the watchers of ``job`` its status (as it is now)."""
        if job.id in self._listeners:
            self.tell(JobNotice(job.id, job=job))

    def progress(self, job_id: uuid.UUID, value: Any) -> None:
        """Tell the watchers of ``job_id`` its progress ``value``."""
        if job_id in self._listeners:
            self.tell(JobNotice(job_id, progress=value))

    def gone(self, job_id: uuid.UUID) -> None:
        """Tell the watchers of ``job_id`` that the store no longer has it."""
        if job_id in self._listeners:
            self.tell(JobNotice(job_id, gone=True))

    def tell(self, notice: JobNotice) -> None:
        """Call every listener of the notice's job with it."""
        for listener in list(self._listeners.get(notice.job_id, {}).values()):
            try:
                listener(notice)
            except Exception:
                job_id, job = notice.job_id, notice.job
                extra = job_id_extra(job_id, None if job is None else job.name)
                logger.exception("a job event listener failed for job %s", job_id, extra=extra)
