"""OpenTelemetry spans: one at submission, one per attempt, in the submitting request's trace.

`submit_span` wraps storing a job (``async_endpoints.submit {name}``, a child of whatever
span is current: the request's, under an instrumented server) and returns the W3C trace
context of that span; the job carries it (`JobRequest.trace_context`, stored with the job
by every store, so it crosses processes through Redis). `attempt_span` wraps each attempt
(``async_endpoints.run {name}``) as a child of that context, current while the handler
runs so that the handler's own spans nest under it. Both carry the attributes
``async_endpoints.job_id``, ``async_endpoints.job_name`` and ``async_endpoints.retry_count``;
a failed attempt records its error (`AttemptSpan.failed`: the job's error, masked as it
is, not the exception's own text) and sets an error status. A job taken
back by stale-claim recovery gets a span ``async_endpoints.recover {name}`` from the
process that recovered it (`record_recovery`), in the same trace.

Only the API (``opentelemetry-api``) is used, and only when it is installed: without it
nothing is imported and every function here is a no-op. With it but no tracer provider
set, none are made (they would be OpenTelemetry's no-op spans).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from ._job import Job, JobError
from ._store import CLAIM_EXPIRED, CLAIM_EXPIRED_MESSAGE

if TYPE_CHECKING:
    import uuid

try:
    from opentelemetry import context as _context
    from opentelemetry import trace as _trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised by the test that hides opentelemetry
    _trace = None  # type: ignore[assignment]

JOB_ID = "async_endpoints.job_id"
JOB_NAME = "async_endpoints.job_name"
RETRY_COUNT = "async_endpoints.retry_count"
OUTCOME = "async_endpoints.outcome"
BATCH_ID = "async_endpoints.batch_id"
BATCH_SIZE = "async_endpoints.batch_size"
#: On a submit span whose submission repeated an earlier one (stored nothing).
REPEAT = "async_endpoints.repeat"

if _trace is not None:
    _propagator = TraceContextTextMapPropagator()
    _CONSUMER = _trace.SpanKind.CONSUMER
    #: The parent of a run span without a submission's: none (a trace of its own).
    _ROOT = _context.Context()

#: The provider last seen and its tracer (None for OpenTelemetry's proxy: no provider set).
_resolved: tuple[Any, Any] = (None, None)
#: The last trace context parsed and its parent context: the jobs of one request (a batch)
#: carry the same one.
_last_parent: tuple[str | None, Any] = (None, None)
#: Run span names by handler name.
_run_names: dict[str, str] = {}


def tracer() -> Any:
    """The tracer of the provider set now; None when spans are not made: no
    opentelemetry-api, no tracer provider set, or one whose tracer is OpenTelemetry's
    no-op one (the API's `NoOpTracerProvider`, the SDK disabled): every span would be a
    no-op, and skipping them saves their cost on every job. Resolved once per provider,
    not through OpenTelemetry's proxy at every span."""
    global _resolved
    if _trace is None:
        return None
    provider = _trace.get_tracer_provider()
    if provider is not _resolved[0]:
        found = None
        if not isinstance(provider, _trace.ProxyTracerProvider):
            found = provider.get_tracer("async_endpoints")
            if isinstance(found, _trace.NoOpTracer):
                found = None
        _resolved = (provider, found)
    return _resolved[1]


def enabled() -> bool:
    """Whether spans are made (see `tracer`)."""
    return tracer() is not None


class AttemptSpan:
    """The span of one attempt, as the worker sees it (a no-op without OpenTelemetry)."""

    __slots__ = ("ended", "span", "token")

    def __init__(self, span: Any = None, token: Any = None) -> None:
        self.span = span
        self.token = token
        self.ended = False

    def failed(self, error: JobError) -> None:
        """The attempt failed with ``error`` (an exception the handler raised, as the
        job's error describes it, or a failure no exception was raised for:
        ``JobTimeout``, ``UnknownJob``, a handler's own ``CancelledError``): its exception
        event and an error status. The event holds the job error's message, masked as the
        job's is (or the app's ``error_message``), never the exception's own text, and a
        stack trace only when the app keeps them (``include_tracebacks``)."""
        if self.span is not None and self.span.is_recording():
            self.span.add_event("exception", _exception_event(error))
            self.span.set_status(_trace.Status(_trace.StatusCode.ERROR, error.type))
            self.span.set_attribute("async_endpoints.error_type", error.type)

    def interrupted(self, *, canceled: bool) -> None:
        """The attempt was stopped before it ended: cancelled (`AsyncEndpoints.cancel`:
        attribute ``async_endpoints.outcome`` ``canceled``, no error), or lost (its claim
        was lost, or the worker shut down past its grace period: the job is left to
        recovery; ``lost``, and an error status)."""
        if self.span is None or not self.span.is_recording():
            return
        if canceled:
            self.span.set_attribute(OUTCOME, "canceled")
        else:
            self.span.set_attribute(OUTCOME, "lost")
            self.span.set_status(_trace.Status(_trace.StatusCode.ERROR, "lost"))

    def abandoned(self, error: JobError) -> None:
        """The attempt was given up on while its handler still runs (it ignored its
        cancellation at ``job_timeout`` for `CANCEL_WAIT` seconds): ``error`` (the
        JobTimeout the job is failed with) recorded, an error status, and the span ends
        now, not when the handler returns (if ever). It stays current in the handler's
        context until then (`end`)."""
        if self.span is None or self.ended:
            return
        self.ended = True
        self.failed(error)
        self.span.end()

    def end(self) -> None:
        """The attempt is over: its span stops being current, and ends (unless it ended
        when the attempt was abandoned)."""
        if self.span is not None:
            _context.detach(self.token)
            if not self.ended:
                self.span.end()
                self.ended = True


#: The span of an attempt while tracing is off.
NO_SPAN = AttemptSpan()


def submit_span(name: str, job_id: uuid.UUID) -> AbstractContextManager[str | None]:
    """Around storing job ``job_id`` of handler ``name``: the span of the submission,
    current inside the block; yields its trace context for the job (None when there is
    nothing to carry)."""
    if tracer() is None:
        return nullcontext()
    attributes = {JOB_ID: str(job_id), JOB_NAME: name, RETRY_COUNT: 0}
    return _producer_span(f"async_endpoints.submit {name}", attributes)


def mark_repeat(job_id: uuid.UUID) -> None:
    """On the current submit span: its submission repeated an earlier one (an
    ``Idempotency-Key`` or ``X-Async-Request-Id`` seen before), whose job ``job_id`` it
    answered; nothing was stored. The span names that job, not the id it would have had."""
    if tracer() is None:
        return
    span = _trace.get_current_span()
    span.set_attribute(JOB_ID, str(job_id))
    span.set_attribute(REPEAT, True)


def batch_span(batch_id: uuid.UUID, jobs: int) -> AbstractContextManager[str | None]:
    """Around storing ``jobs`` jobs of batch ``batch_id`` (`submit_batch`, its
    continuations counted, or `append_to_batch`): one span ``async_endpoints.submit_batch``
    for them all, current inside the block; yields its trace context, which every one of
    those jobs carries (their run spans are its children)."""
    attributes = {BATCH_ID: str(batch_id), BATCH_SIZE: jobs}
    return _producer_span("async_endpoints.submit_batch", attributes)


@contextmanager
def _producer_span(name: str, attributes: dict[str, Any]) -> Iterator[str | None]:
    made = tracer()
    if made is None:
        yield None
        return
    with made.start_as_current_span(name, kind=_trace.SpanKind.PRODUCER, attributes=attributes):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        parent = carrier.get("traceparent")
        if parent is None:
            yield None
        else:
            state = carrier.get("tracestate")
            yield parent if not state else f"{parent}\n{state}"


@contextmanager
def attempt_span(job: Job) -> Iterator[AttemptSpan]:
    """Around one attempt of ``job`` (as claimed): its span, a child of the submission's
    (from the job's trace context; a new trace when it has none), current inside."""
    made = tracer()
    span = NO_SPAN if made is None else start_run_span(made, job)
    try:
        yield span
    finally:
        span.end()


def start_run_span(made: Any, job: Job) -> AttemptSpan:
    """The span of an attempt of ``job`` made by ``made`` (the `tracer`), current until
    its `AttemptSpan.end` (`attempt_span` without a generator: the worker's per-job path).

    Its parent is built from the carried trace context directly (no propagator; a run of
    jobs carrying the same one, a batch's, parses it once), and its attributes are given
    to ``start_span`` (the sampler sees them; no call per attribute after).
    """
    name = _run_names.get(job.name)
    if name is None:
        name = _run_names[job.name] = f"async_endpoints.run {job.name}"
    carried = job.request.trace_context
    parent = _parent(carried) if carried else None
    if parent is None:
        parent = _ROOT
    attributes = {JOB_ID: str(job.id), JOB_NAME: job.name, RETRY_COUNT: job.retry_count}
    span = made.start_span(name, context=parent, kind=_CONSUMER, attributes=attributes)
    # start_span and attach rather than start_as_current_span: less time per attempt, and
    # nothing recorded for the cancellations that end an attempt. The handler's context is
    # the carried one with this span (not a copy of the worker's current context).
    return AttemptSpan(span, _context.attach(_trace.set_span_in_context(span, parent)))


def _parent(carried: str) -> Any:
    """The context of the submission's span from its W3C trace context (None when it is
    malformed: the attempt then starts a trace of its own); the last one is remembered."""
    global _last_parent
    if carried == _last_parent[0]:
        return _last_parent[1]
    parent = _parse(carried)
    _last_parent = (carried, parent)
    return parent


def _parse(carried: str) -> Any:
    traceparent, _, tracestate = carried.partition("\n")
    try:
        version, trace_id, span_id, flags = traceparent.split("-")
        if version != "00" or len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
            return None
        state = _trace.TraceState.from_header([tracestate]) if tracestate else None
        remote = _trace.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=True,
            trace_flags=_trace.TraceFlags(int(flags, 16)),
            trace_state=state,
        )
    except ValueError:
        return None
    if not remote.is_valid:
        return None
    return _trace.set_span_in_context(_trace.NonRecordingSpan(remote), _ROOT)


def record_recovery(job: Job, during: tuple[int, int] | None = None) -> None:
    """End a span ``async_endpoints.recover {name}`` for ``job``, which stale-claim recovery
    has just taken back from an attempt whose worker stopped renewing its claim (it died,
    hung or lost its store).

    It is a child of the submission's span, like the run spans: beside the lost attempt's
    run span when its process lived to end it (outcome ``lost``), and the only sign of that
    attempt in the trace when the process was killed. Attributes: the job's id and name, its
    retry count as read back after the recovery (the count its next attempt runs with,
    unless that attempt already ran), and
    ``async_endpoints.outcome`` ``lost``; an error status and the ``ClaimExpired`` exception
    event. It spans ``during``, the store call that recovered the job (start and end, ns
    since the epoch; None: now), not the lost attempt, whose start is not stored."""
    made = tracer()
    if made is None:
        return
    carried = job.request.trace_context
    parent = (_parent(carried) if carried else None) or _ROOT
    attributes = {
        JOB_ID: str(job.id),
        JOB_NAME: job.name,
        RETRY_COUNT: job.retry_count,
        OUTCOME: "lost",
    }
    start, end = during or (None, None)
    name = f"async_endpoints.recover {job.name}"
    span = made.start_span(name, context=parent, attributes=attributes, start_time=start)
    # The message is the stores' constant, not job.error's: by the time the job is read
    # back its next attempt may have run and cleared or replaced the error.
    event = {"exception.type": CLAIM_EXPIRED, "exception.message": CLAIM_EXPIRED_MESSAGE}
    span.add_event("exception", event)
    span.set_status(_trace.Status(_trace.StatusCode.ERROR, CLAIM_EXPIRED))
    span.end(end)


def _exception_event(error: JobError) -> dict[str, str]:
    """The attributes of the event ``record_exception`` would make, from OpenTelemetry's
    semantic conventions, for the job's error rather than the exception."""
    attributes = {"exception.type": error.type, "exception.message": error.message}
    if error.traceback is not None:
        attributes["exception.stacktrace"] = error.traceback
    return attributes
