"""What ``async_endpoints_jobs_submitted_total`` counts besides submissions: the webhook
delivery jobs the store enqueues when a job with a webhook ends here (exactly once), and
the rule for a batch's continuations (counted where they end, not as submitted); on the
in-memory and Redis stores."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from async_endpoints import AsyncContext, AsyncEndpoints, JobSpec, JobStore
from async_endpoints._webhook import WEBHOOK_JOB
from tests.webhook_receiver import SECRET, receiving, settled_webhook

SUBMITTED = "async_endpoints_jobs_submitted_total"
FINISHED = "async_endpoints_jobs_finished_total"


def engine_with(store: JobStore, **settings: object) -> AsyncEndpoints:
    """An engine (no app) with one handler, ``note``, returning "done"."""
    engine = AsyncEndpoints(store=store, retry_jitter=0.0, **settings)  # type: ignore[arg-type]

    async def note(ctx: AsyncContext[None]) -> str:
        return "done"

    engine.add_handler(note, max_retries=0)
    return engine


def total(registry: CollectorRegistry, metric: str) -> float:
    """The sum of a counter over all its label sets."""
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == metric
    )


async def test_a_webhook_delivery_is_counted_submitted_once(store: JobStore) -> None:
    """A job with a webhook completes here: its delivery job counts as submitted (the
    webhook job's name, the job's queue) once, and everything submitted also finished."""
    async with receiving() as receiver:
        engine = engine_with(store, webhook_secret=SECRET, webhook_allowed_hosts=[receiver.host])
        registry = CollectorRegistry()
        engine.enable_metrics(registry)
        async with engine.running(workers=False):
            job = await engine.submit("note", None, webhook_url=receiver.url)
            await settled_webhook(engine, job)
            await engine.drain()
    sample = registry.get_sample_value
    assert sample(SUBMITTED, {"name": "note", "queue": "default"}) == 1
    assert sample(SUBMITTED, {"name": WEBHOOK_JOB, "queue": "default"}) == 1
    labels = {"name": WEBHOOK_JOB, "queue": "default", "status": "Completed"}
    assert sample(FINISHED, labels) == 1
    assert total(registry, SUBMITTED) == total(registry, FINISHED) == 2


async def test_a_job_cancelled_while_waiting_counts_its_delivery(store: JobStore) -> None:
    """Cancelling a waiting job with a webhook enqueues its delivery: counted once."""
    async with receiving() as receiver:
        engine = engine_with(store, webhook_secret=SECRET, webhook_allowed_hosts=[receiver.host])
        registry = CollectorRegistry()
        engine.enable_metrics(registry)
        async with engine.running(workers=False):
            job = await engine.submit("note", None, webhook_url=receiver.url)
            await engine.cancel(job.id)
            await settled_webhook(engine, job)
            await engine.drain()
    sample = registry.get_sample_value
    assert sample(SUBMITTED, {"name": WEBHOOK_JOB, "queue": "default"}) == 1
    assert total(registry, SUBMITTED) == total(registry, FINISHED) == 2


async def test_a_batch_continuation_counts_where_it_ends_not_as_submitted(
    store: JobStore,
) -> None:
    """The rule (README "Metrics"): a batch's continuations are stored by the store when
    the batch ends, in whatever process settles its last job, and are not counted in
    jobs_submitted_total; they count in jobs_finished_total and job_attempts_total."""
    engine = engine_with(store)
    registry = CollectorRegistry()
    engine.enable_metrics(registry)
    async with engine.running(workers=False):
        await engine.submit_batch([JobSpec("note")], continue_with=[JobSpec("note")])
        await engine.drain()
        await engine.drain()
    sample = registry.get_sample_value
    assert sample(SUBMITTED, {"name": "note", "queue": "default"}) == 1
    assert sample(FINISHED, {"name": "note", "queue": "default", "status": "Completed"}) == 2
    assert (
        sample("async_endpoints_job_attempts_total", {"name": "note", "outcome": "completed"}) == 2
    )
