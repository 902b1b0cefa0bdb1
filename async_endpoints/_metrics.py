"""`JobMetrics`: Prometheus metrics of one `AsyncEndpoints`, fed by its lifecycle events.

Counters and histograms count what happened in this process (each process exports its
own; sum them across processes). The queue depth is read from the store (so it is the
same in every process: take ``max`` across processes, or scrape it from one), at most
once a second however often it is scraped::

    async_endpoints_jobs_submitted_total{name,queue}         jobs stored here
    async_endpoints_jobs_finished_total{name,queue,status}   Completed / Failed here
                                                             (by an attempt, or by the
                                                             recovery of its last one);
                                                             Canceled by a cancel (or
                                                             cancel_batch) from here
    async_endpoints_job_attempts_total{name,outcome}         completed, failed, timeout,
                                                             canceled here; lost: taken
                                                             back by recovery here
    async_endpoints_job_duration_seconds{name}               attempt run time (histogram)
    async_endpoints_job_pickup_seconds{name}                 due -> started, per attempt
    async_endpoints_jobs_waiting{queue}                      Queued + Scheduled jobs (store-wide)
    async_endpoints_jobs_running                             attempts running here

Label values are bounded: handler names (a name no handler here has is ``"(unknown)"``),
queue names, statuses and outcomes; never ids or tenants.

Events are noted as they come (appended to a deque) and counted into plain dicts in
passes, every `BATCH` events and before every scrape (a few dictionary operations per
event, one lock per pass, not per event): the metric families are built from the dicts
when scraped, by a prometheus-client collector registered in the instance's own registry.
Needs the ``metrics`` extra (prometheus-client), imported only when metrics are asked for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Container, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ._events import AttemptOutcome, EventKind, LifecycleEvent
from ._job import Job, JobStatus, WebhookStatus
from ._listing import QueueStats
from ._store import CLAIM_EXPIRED
from ._webhook import WEBHOOK_JOB

logger = logging.getLogger("async_endpoints")

#: Events noted before they are counted in one pass (see `JobMetrics.observe`).
BATCH = 64
#: Seconds between two reads of the queue depth from the store.
DEPTH_MAX_AGE = 1.0
UNKNOWN_NAME = "(unknown)"
#: Upper bounds of the histograms' buckets, in seconds (``+Inf`` follows).
#: Floats, as the values observed (bisect compares float to float).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_LE = [repr(float(bound)) for bound in BUCKETS] + ["+Inf"]  # as prometheus-client writes them
_CANCELED = JobStatus.CANCELED.value
_PENDING, _HOOK_FAILED = WebhookStatus.PENDING, WebhookStatus.FAILED
_STATUS_LABELS = {status: status.value for status in JobStatus}
_STARTED, _FINISHED = EventKind.STARTED, EventKind.FINISHED
_SUBMITTED, _CANCELLED = EventKind.SUBMITTED, EventKind.CANCELLED
_RECOVERED = EventKind.RECOVERED
_COMPLETED, _FAILED = AttemptOutcome.COMPLETED, AttemptOutcome.FAILED
_FAILED_STATUS = JobStatus.FAILED
#: The ``outcome`` label of an attempt by its ``FINISHED`` event's outcome; a failed or
#: retried attempt's is ``timeout`` or ``failed``, from the job's error. A lost attempt
#: (its outcome not recorded, or None) is counted where it is recovered, not here: its
#: worker may be dead (`JobMetrics._recovered`).
_ATTEMPT_LABELS: dict[AttemptOutcome | None, str] = {
    AttemptOutcome.COMPLETED: "completed",
    AttemptOutcome.CANCELED: "canceled",
    AttemptOutcome.LOST: "",
    None: "",
}

Labels = tuple[str, ...]


class _Histogram:
    """One label set of a histogram: counts per bucket (not cumulative) and the sum.

    Observed inline by `JobMetrics.observe`: ``counts[bisect_left(BUCKETS, value)] += 1``
    and ``total += value`` (a bound ``le`` counts in its own bucket: inclusive).
    """

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, running = [], 0
        for le, count in zip(_LE, self.counts, strict=True):
            running += count
            cumulative.append((le, float(running)))
        return cumulative


class JobMetrics(Collector):
    """The Prometheus metrics of an `AsyncEndpoints` (see the module docstring for names).

    Args:
        subscribe: Subscribes a listener to the lifecycle events (``events.subscribe``).
        names: The handler names label values may take (others become ``"(unknown)"``).
        queue_stats: Reads the per-queue counts from the store (``queue_stats``).
        registry: Where the metrics are registered; a new registry of their own by default
            (never prometheus-client's global one unless passed).
    """

    def __init__(
        self,
        subscribe: Callable[[Callable[[LifecycleEvent], None]], Any],
        names: Container[str],
        queue_stats: Callable[[], Any],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._names = names
        self._queue_stats = queue_stats
        self.submitted: dict[Labels, int] = {}
        self.finished: dict[Labels, int] = {}
        self.attempts: dict[Labels, int] = {}
        self.duration: dict[str, _Histogram] = {}
        self.pickup: dict[str, _Histogram] = {}
        self._running = 0
        #: Events noted but not counted yet (see `observe`); a deque, whose append and
        #: popleft are atomic, because `serve` scrapes from a thread of its own.
        self._pending: deque[LifecycleEvent] = deque()
        self._counting = threading.Lock()
        self.waiting: dict[str, int] = {}
        self._depth_read_at = -DEPTH_MAX_AGE
        self._depth_read: asyncio.Future[None] | None = None
        self.registry.register(self)
        self.unsubscribe = subscribe(self.observe)

    def observe(self, event: LifecycleEvent) -> None:
        """Note one lifecycle event (the listener subscribed at construction); it is
        counted with the next `BATCH` in one pass, or at the next scrape (`flush`).

        Counting an event as it comes costs little in instructions but, in place, several
        times that in processor cache misses: between two events the job's other work
        (the store, the event loop) evicts the counters. A pass over many events runs with
        them in the caches (about 4 µs per attempt counted one by one in a Redis drain,
        0.2 noted, against about 1 in a pass).
        """
        pending = self._pending
        pending.append(event)
        if len(pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Count the events noted since the last flush (`collect` flushes first: a scrape
        sees every event before it)."""
        pending, count = self._pending, self._count
        with self._counting:
            while pending:
                count(pending.popleft())

    @property
    def running(self) -> int:
        """Attempts running in this process now."""
        self.flush()
        return self._running

    def _count(self, event: LifecycleEvent) -> None:
        """Count one event: a few dictionary operations, inline (no helper call on the
        common paths)."""
        job, kind = event.job, event.kind
        name = job.name
        if name not in self._names:
            name = UNKNOWN_NAME
        if kind is _STARTED:
            self._running += 1
            due_at = event.due_at
            pickup = (
                _pickup_without_due_at(job)
                if due_at is None
                else max(0.0, (job.last_updated_at - due_at).total_seconds())
            )
            if pickup is not None:
                histogram = self.pickup.get(name) or _new_histogram(self.pickup, name)
                histogram.counts[bisect_left(BUCKETS, pickup)] += 1
                histogram.total += pickup
        elif kind is _FINISHED:
            self._finished(event, job, name)
        elif kind is _SUBMITTED:
            submitted, labels = self.submitted, (name, job.queue)
            submitted[labels] = submitted.get(labels, 0) + 1
        elif kind is _CANCELLED:
            self._cancelled(job, name)
        elif kind is _RECOVERED:
            self._recovered(job, name)

    def _finished(self, event: LifecycleEvent, job: Job, name: str) -> None:
        self._running -= 1
        outcome = event.outcome
        label = _ATTEMPT_LABELS.get(outcome)
        if label is None:  # failed for good, or to be retried
            error = job.error
            label = "timeout" if error is not None and error.type == "JobTimeout" else "failed"
        if label:  # not lost
            attempts, key = self.attempts, (name, label)
            attempts[key] = attempts.get(key, 0) + 1
        duration = event.duration
        if duration is not None:
            histogram = self.duration.get(name) or _new_histogram(self.duration, name)
            histogram.counts[bisect_left(BUCKETS, duration)] += 1
            histogram.total += duration
        if outcome is _COMPLETED or outcome is _FAILED:
            finished, labels = self.finished, (name, job.queue, _STATUS_LABELS[job.status])
            finished[labels] = finished.get(labels, 0) + 1
            if job.webhook is not None:
                self._delivery(job)

    def _cancelled(self, job: Job, name: str) -> None:
        finished, labels = self.finished, (name, job.queue, _CANCELED)
        finished[labels] = finished.get(labels, 0) + 1
        if job.webhook is not None:
            self._delivery(job)

    def _recovered(self, job: Job, name: str) -> None:
        """Recovery here took back ``job``'s lost attempt: counted ``lost`` (each lost
        claim is recovered once, by one process), and the job ``Failed`` when that was
        its last attempt (as read right after the pass: a job failed since by another
        attempt has that attempt's error, and is counted where that attempt ran)."""
        attempts, key = self.attempts, (name, "lost")
        attempts[key] = attempts.get(key, 0) + 1
        error = job.error
        if job.status is _FAILED_STATUS and error is not None and error.type == CLAIM_EXPIRED:
            finished, labels = self.finished, (name, job.queue, _STATUS_LABELS[job.status])
            finished[labels] = finished.get(labels, 0) + 1
            webhook = job.webhook
            # Its delivery was stored by the recovery's step, and may have run since the
            # pass (read back later, unlike a settled attempt's job): counted unless
            # none was stored (Failed before any attempt: its id was taken).
            if webhook is not None and (webhook.attempts or webhook.status is not _HOOK_FAILED):
                self._count_delivery(job.queue)

    def _delivery(self, job: Job) -> None:
        """``job``, which has a webhook, became terminal here: the store enqueued its
        delivery job (same queue) in the same step, unless it did so before (a job
        requeued after it ended: its delivery has started by then, as a rule)."""
        webhook = job.webhook
        if webhook is not None and webhook.attempts == 0 and webhook.status is _PENDING:
            self._count_delivery(job.queue)

    def _count_delivery(self, queue: str) -> None:
        name = WEBHOOK_JOB if WEBHOOK_JOB in self._names else UNKNOWN_NAME
        submitted, labels = self.submitted, (name, queue)
        submitted[labels] = submitted.get(labels, 0) + 1

    def collect(self) -> Iterator[Metric]:
        """The metric families as they are now (called by the registry when scraped),
        every event noted counted."""
        self.flush()
        yield _counter(
            "async_endpoints_jobs_submitted", "Jobs stored.", ["name", "queue"], self.submitted
        )
        yield _counter(
            "async_endpoints_jobs_finished",
            "Jobs that reached a terminal status.",
            ["name", "queue", "status"],
            self.finished,
        )
        yield _counter(
            "async_endpoints_job_attempts", "Attempts ended.", ["name", "outcome"], self.attempts
        )
        yield _histograms(
            "async_endpoints_job_duration_seconds", "Attempt run time.", self.duration
        )
        yield _histograms(
            "async_endpoints_job_pickup_seconds",
            "From when a job became due to the start of its attempt.",
            self.pickup,
        )
        waiting = GaugeMetricFamily(
            "async_endpoints_jobs_waiting",
            "Jobs waiting (Queued or Scheduled) per queue, read from the store at most "
            "once a second.",
            labels=["queue"],
        )
        for queue, count in list(self.waiting.items()):
            waiting.add_metric([queue], count)
        yield waiting
        yield GaugeMetricFamily(
            "async_endpoints_jobs_running", "Attempts running.", value=self._running
        )

    async def refresh_depth(self) -> None:
        """Read the queue depth from the store unless it was read less than a second ago;
        concurrent callers share one read. A failed read drops the last values (logged):
        the gauge is left out until the store answers, never served stale."""
        if self._depth_read is not None:
            await asyncio.shield(self._depth_read)
            return
        if time.monotonic() - self._depth_read_at < DEPTH_MAX_AGE:
            return
        read = self._depth_read = asyncio.get_running_loop().create_future()
        try:
            stats: Sequence[QueueStats] = await self._queue_stats()
            self.waiting = {each.name: each.queued + each.scheduled for each in stats}
        except Exception as exc:
            self.waiting = {}
            logger.warning("metrics: could not read the queue depth: %s", exc)
        finally:
            self._depth_read_at = time.monotonic()
            self._depth_read = None
            read.set_result(None)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve these metrics on ``addr:port`` from a thread (prometheus-client's
        ``start_http_server``), for worker processes that serve no HTTP app. Loopback by
        default, as the CLI's ``--metrics-host``: pass ``addr="0.0.0.0"`` for a scraper on
        another host. Returns the port listened on (the one chosen for ``port`` 0).

        Such a server reads no queue depth (it cannot wait for the store):
        ``async_endpoints_jobs_waiting`` comes from the processes with `map_metrics`.
        """
        from prometheus_client import start_http_server

        started: Any = start_http_server(port, addr, registry=self.registry)
        if isinstance(started, tuple):  # prometheus-client 0.20 on: (server, thread)
            return int(started[0].server_address[1])
        return port


def _new_histogram(histograms: dict[str, _Histogram], name: str) -> _Histogram:
    histogram = histograms[name] = _Histogram()
    return histogram


def _counter(name: str, text: str, labels: list[str], counts: dict[Labels, int]) -> Metric:
    family = CounterMetricFamily(name, text, labels=labels)
    for values, count in list(counts.items()):
        family.add_metric(list(values), count)
    return family


def _histograms(name: str, text: str, histograms: dict[str, _Histogram]) -> Metric:
    family = HistogramMetricFamily(name, text, labels=["name"])
    for label, histogram in list(histograms.items()):
        family.add_metric([label], histogram.buckets(), histogram.total)
    return family


def _pickup_without_due_at(job: Job) -> float | None:
    """Seconds from creation to this claim of ``job`` (its ``last_updated_at``, store
    clock) for a store that does not say when the job became due: counted for a first
    attempt only (None for a later one, whose due time is unknown)."""
    claimed_at = job.last_updated_at
    if job.retry_count or job.started_at != claimed_at:
        return None
    return max(0.0, (claimed_at - job.created_at).total_seconds())
