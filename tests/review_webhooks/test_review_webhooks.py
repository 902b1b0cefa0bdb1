"""Reviewer's reproducers for the webhooks feature (issue 13 item 6). Each test states the
rule the reviewer expects and is marked xfail(strict) while the finding stands: once it is
fixed the test passes, strict xfail turns that into a failure, and the mark is removed."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
)
from async_endpoints.testing import ManualClock
from tests.webhook_receiver import SECRET, receiving


def engine_with(store: InMemoryJobStore, fail: bool = False, **settings: object) -> AsyncEndpoints:
    engine = AsyncEndpoints(store=store, webhook_secret=SECRET, retry_jitter=0.0, **settings)

    async def note(ctx: AsyncContext[None]) -> str:
        if fail:
            raise RuntimeError("boom")
        return "done"

    engine.add_handler(note, max_retries=0)
    return engine


@pytest.mark.xfail(strict=True, reason="review: target dropped before its retry")
async def test_a_target_evicted_by_max_retained_loses_its_webhook() -> None:
    """The delivery reads the job when it runs: a target dropped from retention
    (max_retained) before a retry makes the delivery fail at once, never delivered."""
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock, max_retained=2)

    def answer(number: int, _request: Request) -> Response:
        return Response(status_code=503 if number == 1 else 204)

    async with receiving(answer) as receiver:
        engine = engine_with(
            store, webhook_allowed_hosts=[receiver.host], webhook_retry_base_delay=1.0
        )
        async with engine.running(workers=False):
            job = await engine.submit("note", None, webhook_url=receiver.url)
            await engine.drain()  # job Completed; its delivery fails once (503)
            for _ in range(3):  # other work ends meanwhile
                await engine.submit("note", None)
            await engine.drain()
            clock.advance(2.0)
            await engine.drain()  # the delivery's retry
            target = await engine.get_job(job.id)
    assert len(receiver.deliveries) == 2, f"the retry was never sent; the job is {target}"
