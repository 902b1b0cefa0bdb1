"""The trace context a job carries survives every store: live and retained in memory, and
the Redis codec."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from async_endpoints import InMemoryJobStore, JobError, JobRequest, NewJob
from async_endpoints_redis._codec import (
    decode_request,
    encode_kept,
    encode_request,
    kept_on_completion,
)

CONTEXT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\ncongo=t61rcWkgMzE"


async def test_a_failed_job_kept_by_the_in_memory_store_keeps_its_trace_context() -> None:
    """Failed (retained, compact form), then requeued: the trace context is still there."""
    store = InMemoryJobStore()
    job_id = uuid.uuid4()
    await store.enqueue(NewJob(job_id, "Job", 0, JobRequest(trace_context=CONTEXT)))
    (claim,) = await store.claim(1, lease=30)
    assert claim.job.request.trace_context == CONTEXT
    await store.fail(claim, JobError("no", "RuntimeError"), retry_in=None)
    failed = await store.get(job_id)
    assert failed is not None and failed.status == "Failed"
    assert failed.request.trace_context == CONTEXT
    requeued = await store.requeue(job_id)
    assert requeued is not None and requeued.request.trace_context == CONTEXT


def test_the_redis_codec_round_trips_the_trace_context() -> None:
    """encode_request / decode_request keep it; a request without one encodes as before."""
    request = JobRequest(body="{}", owner="ann", trace_context=CONTEXT)
    assert decode_request(encode_request(request)).trace_context == CONTEXT
    assert encode_request(JobRequest(owner="ann")) == '{"o":"ann"}'


def test_the_trace_context_does_not_make_two_submissions_different() -> None:
    """A resent submission (same client-chosen id) from another trace is the same one."""
    assert JobRequest(body="1", trace_context="a") == JobRequest(body="1", trace_context="b")


@given(
    owner=st.none() | st.text(),
    context=st.none() | st.just(CONTEXT) | st.text(),
    body=st.none() | st.just('{"a": 1}'),
)
def test_what_a_completed_job_keeps_is_written_as_the_codec_writes_it(
    owner: str | None, context: str | None, body: str | None
) -> None:
    """`encode_kept` (the completion's short cut) gives `encode_request`'s text of what a
    Completed job keeps: its owner and trace context, the rest dropped; any text (a lone
    surrogate, quotes, control characters) reads back as it was."""
    request = JobRequest(body=body, headers=(("a", "b"),), owner=owner, trace_context=context)
    kept = encode_kept(request)
    assert kept == encode_request(kept_on_completion(request))
    assert decode_request(kept) == JobRequest(owner=owner, trace_context=context)
    assert decode_request(kept).trace_context == context
