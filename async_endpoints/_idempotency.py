"""Idempotent submission: the scoped keys and fingerprints behind ``Idempotency-Key`` and
``X-Async-Request-Id`` (`IdempotentStore` keeps them)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ._errors import AsyncEndpointsError
from ._handlers import Handler
from ._job import MAX_LABEL_LENGTH, JobRequest, check_name
from ._store_features import Idempotency

#: The longest ``Idempotency-Key`` a client may send, in characters.
MAX_KEY_LENGTH = MAX_LABEL_LENGTH


#: What a key (or id) used by another submission answers, after the earlier job's id.
CONFLICT = "was submitted before with another endpoint, owner or body"
#: What an HTTP client is told of an ``Idempotency-Key`` another submission used: never
#: that submission's job id (the key may be guessed; the id would then open the job).
KEY_CONFLICT = (
    "this Idempotency-Key was used for another submission (another endpoint, owner or body)"
)


class IdempotencyConflictError(AsyncEndpointsError, ValueError):
    """An idempotency key (or a client-chosen job id) seen before came with a different
    submission: another endpoint, owner or body. A `ValueError` too, as it always was."""


class IdempotentJobGoneError(AsyncEndpointsError):
    """An idempotency key (or a client-chosen job id) is still remembered, but the job it
    was first used for is no longer kept (its retention ended first): nothing was stored,
    since the submission was accepted once already, and its job cannot be answered.

    Attributes:
        job_id: The job the key was first used for.
        fingerprint: The fingerprint that job was stored with (a store raises this with
            it; the engine refuses another fingerprint as `IdempotencyConflictError`).
    """

    def __init__(self, job_id: uuid.UUID, fingerprint: str) -> None:
        super().__init__(gone_message(job_id, "idempotency key"))
        self.job_id = job_id
        self.fingerprint = fingerprint


def gone_message(job_id: uuid.UUID, what: str) -> str:
    """What a repeat of a submission whose job is no longer kept is told; ``what`` names
    how the client marked it (an ``Idempotency-Key``, an ``X-Async-Request-Id``)."""
    return (
        f"job {job_id} was submitted before with this {what} and is no longer kept; nothing "
        f"was stored (the {what} is remembered for idempotency_ttl)"
    )


def check_key(key: object) -> str:
    """``key`` as an idempotency key: a string of 1 to `MAX_KEY_LENGTH` characters that
    UTF-8 can encode (checked as a schedule id is, by `check_name`).

    Raises:
        ValueError: anything else (a lone surrogate included: no store outside the
            process could keep it).
    """
    return check_name(key, "an idempotency key")


def fingerprint(
    name: str,
    owner: str | None,
    body_json: str | None,
    request: JobRequest,
    chosen_id: uuid.UUID | None = None,
) -> str:
    """What identifies a submission's content: its endpoint (job name), owner, body, the
    route parameters and query parameters ``request`` captured (``/t/a/do`` and ``/t/b/do``
    are different submissions, as are ``?dry=1`` and none; parameters of different names
    may come in any order, the values of one name in theirs), and the id the client chose
    for the job when it also sent a key (the same key with another chosen id is another
    submission). A submission without parameters or chosen id has the fingerprint it
    would have had before they counted."""
    parts = ["fingerprint", name, owner, body_json]
    query = query_pairs(request.query_string)
    if request.route_params or query or chosen_id is not None:
        parts.append(json.dumps(sorted(request.route_params.items()), separators=(",", ":")))
        parts.append(json.dumps(query, separators=(",", ":")))
    if chosen_id is not None:
        parts.append(str(chosen_id))
    return _digest(*parts)


def query_pairs(query_string: str) -> list[tuple[str, str]]:
    """The parameters of ``query_string`` by name (the values of one name in their order),
    blank values kept, undecodable bytes kept apart."""
    pairs = parse_qsl(query_string, keep_blank_values=True, errors="surrogateescape")
    return sorted(pairs, key=lambda pair: pair[0])


def by_key(key: str, name: str, owner: str | None, content: str, ttl: float) -> Idempotency:
    """The idempotency of a submission with ``Idempotency-Key: key``: scoped to its
    endpoint and owner, so one caller's key never names another caller's job."""
    return Idempotency(_digest("key", name, owner, key), content, ttl)


def by_request_id(job_id: uuid.UUID, content: str, ttl: float) -> Idempotency:
    """The idempotency of a submission with ``X-Async-Request-Id``: the id is the job's,
    so the key is the id alone, and any other submission with it is a clash."""
    return Idempotency(_digest("request-id", str(job_id)), content, ttl)


def is_by_request_id(idempotency: Idempotency, job_id: uuid.UUID) -> bool:
    """Whether ``idempotency`` is `by_request_id` of ``job_id`` (not an ``Idempotency-Key``
    sent with that chosen id)."""
    return idempotency.key == _digest("request-id", str(job_id))


def canonical_body(handler: Handler, body_json: str | None) -> str | None:
    """The body the client sent (``body_json``, its JSON text) as compact JSON with
    sorted keys: the same for bodies that differ only in spacing or key order (what a
    fingerprint compares).

    The text as sent, not the model's reading of it: a model's dump can make one body
    differ from itself (a ``default_factory`` of ``uuid4``, a ``set`` in hash order,
    which differs between processes) or two bodies look alike (a ``SecretStr`` dumped
    masked, a field declared ``exclude=True``)."""
    if handler.body_adapter is None or body_json is None:
        return None
    try:
        data = json.loads(body_json)  # the model read it already
    except ValueError:  # a number longer than this interpreter reads (int_max_str_digits)
        return body_json
    return _canonical(data)


def canonical_given_body(handler: Handler, given: Any, value: Any) -> str | None:
    """A body given in code (``given``, which ``handler``'s model read as ``value``),
    compared as `canonical_body` compares one sent over HTTP: plain data as given
    (``{"item": "tea"}`` given to ``submit`` and sent as JSON are one body), a model
    instance by the fields its caller set, under their aliases; secrets by their value
    and sets in a fixed order, so that one body has one fingerprint in every process.
    Data with no JSON form of its own (an object the model converts) is compared as the
    model reads it."""
    if handler.body_adapter is None:
        return None
    try:
        return _canonical(_plain(given))
    except (PydanticSerializationError, TypeError, ValueError):
        return _canonical(_plain(value))


def _plain(value: Any) -> Any:
    """``value`` as JSON data: secrets revealed, sets sorted, the rest as pydantic writes
    it (datetimes, UUIDs, enums...)."""
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(by_alias=True, exclude_unset=True, round_trip=True))
    if isinstance(value, dict):
        return {str(_plain(key)): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(item) for item in value), key=_canonical)
    if isinstance(value, SecretStr | SecretBytes):
        return _plain(value.get_secret_value())
    return to_jsonable_python(value)


def legacy_fingerprint(handler: Handler, request: JobRequest) -> str | None:
    """The fingerprint versions before 2026-12-05 gave this submission: its body as the
    handler's model dumps it (not as sent), no chosen id. A repeat whose fingerprint
    differs from what its key's record holds is compared with this one too (but for a
    repeat with a chosen id: `_submission._check_same`), so that keys an older version
    recorded still find their jobs after an upgrade. None (no such comparison) when the
    dump does not keep everything the client sent as sent (a field it leaves out, such as
    ``exclude=True``, a secret it masks, a value it coerces or an alias): the dump
    would then take another body for this one. None too when the body cannot be read
    again (a validator that fails the second time)."""
    body = None
    if handler.body_adapter is not None:
        if request.body is None:
            return None
        try:
            sent = json.loads(request.body)
            dumped = handler.body_adapter.dump_python(
                handler.body_adapter.validate_json(request.body), mode="json"
            )
        except Exception:  # whatever a validator raises, this comparison fails nothing
            return None
        if not _keeps(sent, dumped):
            return None
        body = _canonical(dumped)
    return fingerprint(handler.name, request.owner, body, request)


def _keeps(sent: Any, dumped: Any) -> bool:
    """Whether ``dumped`` holds everything in ``sent`` as sent (it may add fields: the
    defaults a model fills in)."""
    if isinstance(sent, dict):
        return isinstance(dumped, dict) and all(
            name in dumped and _keeps(value, dumped[name]) for name, value in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(dumped, list)
            and len(sent) == len(dumped)
            and all(_keeps(one, other) for one, other in zip(sent, dumped, strict=True))
        )
    return bool(sent == dumped) and type(sent) is type(dumped)


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(*parts: str | None) -> str:
    text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
