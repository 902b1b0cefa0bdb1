"""A job <-> its Redis hash, and the replies and messages that carry one. JSON text only,
never pickle.

The hash holds few, short fields so that Redis keeps it listpack-encoded (compact)::

    name             the handler's name
    status           the wire name: Queued, Scheduled, InProgress, Completed, Failed, ...
    retry_count      decimal
    max_retries      decimal
    created_at       ms since the epoch, Redis server clock (as every time below)
    last_updated_at  ms
    started_at       ms, set by the first claim
    completed_at     ms, set by the terminal transition
    run_at           ms, while Scheduled
    due_at           ms, when the job last became due (its run_at, kept by its promotion;
                     each claim sets it), read into ``Claim.due_at``
    queued_at        ms, the moment of the job's entry in its queue's Queued listing
                     index when it entered Queued other than by its submission (a retry's
                     or requeue's time, a delay's run_at); its claim removes it (not read
                     here, see ``lua/_bookkeeping.lua``)
    q                the sequence number of that entry within its millisecond (the order
                     of jobs queued in one); its claim removes it (not read here either)
    queue            the queue's name; left out for the default queue
    partition_key    the job's partition key; left out when it has none
    tenant           the job's tenant; left out when it has none
    behind           '1' while the job waits behind an earlier job of its partition key
                     (not read here; see ``lua/_lifecycle.lua``)
    batch            the id of the job's batch; left out when it has none
    then             '1' for a batch's continuation (not counted in the batch; not read
                     here; see ``lua/_batch.lua``)
    token            the current claim's token, while InProgress
    result           JSON text, once Completed
    error            JSON text ``{"message", "type"[, "traceback"]}``, after a failure
    progress         JSON text, the last progress reported (``lua/progress.lua``)
    webhook          '<status> <attempts>' (e.g. 'Pending 0'), set on a job stored with a
                     follow-up and updated by its delivery job (``lua/_follow_up.lua``)
    follow           the follow-up, its job tuple as JSON (``lua/_batch.lua``), until the
                     job is terminal (not read here: `follow_up_of` reads it)
    for              on a webhook delivery job: the id of the job whose webhook it is
    held             '1' on a terminal job kept past its retention while its webhook
                     delivery is live (uncounted, unlisted, no TTL; ``lua/_lifecycle.lua``
                     purge sets it, the delivery's end deletes the job)
    request          JSON text, the captured request with short keys, empty parts left out:
                     ``{"b": body, "h": [[name, value], ...], "q": query, "p": {params},
                     "o": owner, "t": trace context}``

Absent fields are None, except four that are left out while they hold their default:
``retry_count`` (0), ``last_updated_at`` (``created_at``), ``request`` (empty) and
``queue`` (``default``). A queued no-op job then costs about 390 bytes in Redis (key, hash,
queue entry and its entries in the listing indexes of all jobs and of its queue's Queued
jobs); a partition key or a tenant adds under 100 (the field, and its key's lane or its
tenant's turn). Redis keeps a hash
compact (listpack) only while every value is at most ``hash-max-listpack-value`` bytes
(default 64); captured headers usually exceed that, so deployments that capture headers
save about half the memory per job by raising it (e.g. to 1024).

Hash replies may hold bytes or str (a client built with ``decode_responses=True``); both
are accepted.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from async_endpoints._job import (
    DEFAULT_QUEUE,
    Job,
    JobError,
    JobRequest,
    JobStatus,
    NewJob,
    WebhookState,
    WebhookStatus,
)
from async_endpoints._logs import job_id_extra

Reply = bytes | str
logger = logging.getLogger("async_endpoints_redis")

#: `json.dumps`'s work with `dump_json`'s options, built once (`json.dumps` builds an
#: encoder on every call when given options).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dump_json(value: Any) -> str:
    """Compact JSON text for a stored value, always encodable as UTF-8.

    Text with a lone surrogate (which has no UTF-8 form, so redis-py could not send it) is
    written with ASCII escapes instead; `json.loads` reads it back unchanged.
    """
    text = _COMPACT.encode(value)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


def encode_request(request: JobRequest) -> str:
    """The request's JSON text, leaving out empty parts; '' for an empty request."""
    data: dict[str, Any] = {}
    if request.body is not None:
        data["b"] = request.body
    if request.headers:
        data["h"] = [list(pair) for pair in request.headers]
    if request.query_string:
        data["q"] = request.query_string
    if request.route_params:
        data["p"] = dict(request.route_params)
    if request.owner is not None:
        data["o"] = request.owner
    if request.trace_context is not None:
        data["t"] = request.trace_context
    return dump_json(data) if data else ""


def kept_on_completion(request: JobRequest) -> JobRequest:
    """What a Completed job keeps of its captured request (it never runs again): its owner,
    and its trace context (a recovery that reads the job back after its retry completed
    still puts its span in the job's trace)."""
    return JobRequest(owner=request.owner, trace_context=request.trace_context)


def encode_kept(request: JobRequest) -> str:
    """`encode_request` of `kept_on_completion`, written directly in the usual cases: no
    owner, and a trace context or none (every job a traced app completes pays this)."""
    if request.owner is None:
        context = request.trace_context
        if context is None:
            return ""
        if context.isascii():
            return '{"t":' + encode_basestring(context) + "}"
    return encode_request(kept_on_completion(request))


def decode_request(source: str | None) -> JobRequest:
    """The inverse of `encode_request`."""
    data = json.loads(source) if source else {}
    return JobRequest(
        body=data.get("b"),
        headers=tuple((str(name), str(value)) for name, value in data.get("h", ())),
        query_string=data.get("q", ""),
        route_params={str(k): str(v) for k, v in data.get("p", {}).items()},
        owner=None if data.get("o") is None else str(data["o"]),
        trace_context=None if data.get("t") is None else str(data["t"]),
    )


def text(value: Reply) -> str:
    """A reply as str (clients may or may not decode responses)."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def pairs(flat: Sequence[Reply]) -> dict[str, str]:
    """A hash from a script's flat ``{field, value, ...}`` reply."""
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def from_ms(value: str | None) -> datetime | None:
    """An aware UTC datetime from stored milliseconds."""
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, UTC)


def to_ms(seconds: float) -> int:
    """``seconds`` (a lease, a retention) in whole milliseconds, at least 1."""
    return max(1, round(seconds * 1000))


def decode_job(job_id: uuid.UUID, fields: Mapping[Reply, Reply]) -> Job:
    """The job stored in ``fields`` (an HGETALL reply).

    Raises:
        ValueError: The hash is corrupt (a missing or malformed field).
    """
    return _job_of(job_id, {text(key): text(value) for key, value in fields.items()})


def _job_of(job_id: uuid.UUID, data: Mapping[str, str]) -> Job:
    """`decode_job` of a hash whose fields and values are text already."""
    try:
        error = data.get("error")
        created_at = datetime.fromtimestamp(int(data["created_at"]) / 1000, UTC)
        return Job(
            id=job_id,
            name=data["name"],
            status=JobStatus(data["status"]),
            retry_count=int(data.get("retry_count", 0)),
            max_retries=int(data["max_retries"]),
            created_at=created_at,
            started_at=from_ms(data.get("started_at")),
            completed_at=from_ms(data.get("completed_at")),
            last_updated_at=from_ms(data.get("last_updated_at")) or created_at,
            result=json.loads(data["result"]) if "result" in data else None,
            error=None if error is None else JobError.from_json(json.loads(error)),
            request=decode_request(data.get("request")),
            run_at=from_ms(data.get("run_at")),
            queue=data.get("queue", DEFAULT_QUEUE),
            partition_key=data.get("partition_key"),
            tenant=data.get("tenant"),
            progress=json.loads(data["progress"]) if "progress" in data else None,
            batch_id=uuid.UUID(data["batch"]) if "batch" in data else None,
            webhook=decode_webhook(data["webhook"]) if "webhook" in data else None,
        )
    except (KeyError, TypeError, AttributeError, ValueError, *_OUT_OF_REACH) as exc:
        raise ValueError(f"job {job_id} is stored corrupt: {exc!r}") from exc


#: What decoding a field a writer other than the store's scripts corrupted raises beside
#: `ValueError`: a time past datetime's years (`OverflowError`, or `OSError` from the
#: platform's conversion) or JSON nested past the parser's recursion limit.
_OUT_OF_REACH = (OverflowError, OSError, RecursionError)


def decode_webhook(source: str) -> WebhookState:
    """The webhook state of a ``webhook`` field: ``'<status> <attempts>'``."""
    status, attempts = source.split(" ")
    return WebhookState(WebhookStatus(status), int(attempts))


def decode_follow_up(source: Reply) -> NewJob:
    """The follow-up a ``follow`` field keeps (a job tuple as JSON, its own follow-up
    nested the same way).

    Raises:
        ValueError: The field is corrupt.
    """
    try:
        values = json.loads(text(source))
        job_id, name, retries, request, queue, delay, key, tenant, follow, target = values
        return NewJob(
            uuid.UUID(job_id),
            name,
            int(retries),
            decode_request(request),
            queue,
            int(delay) / 1000,
            partition_key=key or None,
            tenant=tenant or None,
            follow_up=decode_follow_up(follow) if follow else None,
            delivers_for=uuid.UUID(target) if target else None,
        )
    except (TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"a follow-up is stored corrupt: {exc!r}") from exc


def queued_job(new_job: NewJob, created_ms: int, delay_ms: int) -> Job:
    """The job `enqueue` stored (Queued, or Scheduled for ``delay_ms``), rebuilt without
    reading it back."""
    job = new_job.stored(datetime.fromtimestamp(created_ms / 1000, UTC))
    if delay_ms > 0:
        job = job.replace(run_at=from_ms(str(created_ms + delay_ms)))
    return job


def decode_or_none(job_id: uuid.UUID, fields: Any) -> Job | None:
    """The job stored in ``fields``; None (and a warning logged) when it is corrupt."""
    return _job_or_none(job_id, {text(key): text(value) for key, value in fields.items()})


def _job_or_none(job_id: uuid.UUID, data: Mapping[str, str]) -> Job | None:
    """`decode_or_none` of a hash whose fields and values are text already."""
    try:
        return _job_of(job_id, data)
    except ValueError as exc:
        logger.warning("skipping a corrupt job record: %s", exc, extra=job_id_extra(job_id))
        return None


def split_message(message: bytes | str) -> tuple[uuid.UUID, dict[str, str]]:
    """The id and hash of a done or inbox message: ``<id><JSON array of field, value>``.

    Raises:
        ValueError: The message is malformed.
    """
    raw = text(message)
    flat = json.loads(raw[36:])
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("expected a flat array of fields and values")
    values = iter(flat)  # JSON strings are text already: paired as they are
    return uuid.UUID(raw[:36]), dict(zip(values, values, strict=True))


def job_from_text(message: bytes | str) -> tuple[Job | None, dict[str, str]]:
    """The job in a script's ``job_text`` reply value, and its hash; None when corrupt."""
    try:
        job_id, fields = split_message(message)
    except (ValueError, TypeError, RecursionError) as exc:
        logger.warning("skipping a corrupt job record: %s", exc)
        return None, {}
    return _job_or_none(job_id, fields), fields


def terminal_job(job_id: str, message: bytes | str) -> Job | None:
    """The terminal job a done message carries; None when it carries none usable."""
    try:
        _, fields = split_message(message)
    except (ValueError, TypeError, RecursionError):
        return None
    job = decode_or_none(uuid.UUID(job_id), fields)
    return job if job is not None and job.status.is_terminal else None
