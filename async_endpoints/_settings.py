"""`Settings`: every knob of `AsyncEndpoints`, frozen, keyword-only, defaults documented."""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from numbers import Real
from typing import Any, TypedDict

from starlette.requests import Request
from starlette.responses import Response

from ._errors import ConfigurationError
from ._hook_shape import check_hook
from ._job import DEFAULT_QUEUE, Job
from ._options import MAX_DELAY
from ._webhook_signing import secret_keys
from ._webhook_urls import AllowedHosts

DEFAULT_SENSITIVE_HEADERS = frozenset(
    {"authorization", "cookie", "proxy-authorization", "x-api-key"}
)

#: Query parameter names that carry credentials in common APIs (OAuth 2 tokens, API keys,
#: passwords, signed-URL signatures such as S3's ``X-Amz-Signature``, GCS's
#: ``X-Goog-Signature`` or Azure's SAS ``sig``). Not ``code``: OAuth authorization codes are
#: single-use and short-lived, and ``code`` names ordinary data far more often. The
#: sensitive headers' names too, as a query parameter (``?authorization=``, ``?x-api-key=``):
#: a job's error masks the same names.
DEFAULT_SENSITIVE_QUERY_PARAMS = frozenset(
    {
        *DEFAULT_SENSITIVE_HEADERS,
        "access_token",
        "api-key",
        "api_key",
        "apikey",
        "auth",
        "auth_token",
        "client_secret",
        "id_token",
        "jwt",
        "key",
        "passwd",
        "password",
        "private_token",
        "pwd",
        "refresh_token",
        "secret",
        "session",
        "sessionid",
        "sig",
        "signature",
        "token",
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-signature",
        "x-goog-credential",
        "x-goog-signature",
    }
)

#: Bytes a handler result's JSON may take (16 MiB).
DEFAULT_MAX_RESULT_SIZE = 16 * 1024 * 1024

AuthorizeHook = Callable[[Request, Job], bool | Awaitable[bool]]
OwnerHook = Callable[[Request], str | Awaitable[str | None] | None]
SubmittedResponseFactory = Callable[[Job, Request], Response | Awaitable[Response]]
StatusResponseFactory = Callable[[Job | None, Request], Response | Awaitable[Response]]
ErrorMessageHook = Callable[[BaseException], str]

_INTEGERS = ("max_concurrency", "max_retries", "max_body_size", "max_result_size")
_DURATIONS = (
    "retry_base_delay",
    "retry_max_delay",
    "retry_jitter",
    "job_timeout",
    "claim_timeout",
    "recovery_interval",
    "shutdown_grace_period",
    "polling_interval",
    "max_wait",
    "idempotency_ttl",
)
#: The hook settings and the arguments each is called with.
_HOOKS = {
    "authorize": "request, job",
    "owner": "request",
    "job_submitted_response": "job, request",
    "job_status_response": "job, request",
    "error_message": "exception",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """The settings of one `AsyncEndpoints`; durations are in seconds.

    Attributes:
        max_concurrency: Handlers running at once in this process's worker pool (default 16).
        max_queue_size: When this many jobs wait (Queued or Scheduled), a submission is
            refused with 503 and nothing is stored; None for no limit (default 10,000).
        max_retries: Retries after the first attempt; a job runs at most
            ``1 + max_retries`` times, an attempt lost with a dead worker included (default 3).
        retry_base_delay: Delay before the first retry; retry ``n`` waits
            ``retry_base_delay * 2 ** (n - 1)`` (default 2.0).
        retry_max_delay: Cap on one retry delay (default 300.0); no delay exceeds 100
            years, whatever it says.
        retry_jitter: Largest fraction by which jitter lengthens a delay, finite (default
            0.25).
        job_timeout: An attempt running longer is cancelled and fails (default 1800.0).
        claim_timeout: A claim not renewed for this long is stale and recovered; workers
            renew every third of it while a handler runs (default 30.0).
        recovery_interval: How often each pool looks for stale claims (default 5.0).
        shutdown_grace_period: On shutdown, how long running handlers may take to finish
            before they are cancelled and left for recovery (default 30.0).
        polling_interval: The longest a due job sits unnoticed when no wake-up arrives;
            a fallback, wake-ups are pushed (default 5.0).
        run_workers: Run the worker pool in this process (default True); False makes an
            API-only instance.
        capture_headers: Allow-list of header names to capture; None captures all headers
            but the sensitive ones (default None).
        sensitive_headers: Header names never captured, even when allow-listed (default
            ``authorization``, ``cookie``, ``proxy-authorization``, ``x-api-key``); pass a
            smaller set to capture one of them on purpose.
        sensitive_query_params: Query parameter names (compared after percent-decoding,
            in any case, separators, camel case and an array suffix such as ``[]`` not
            counted: ``accessToken`` is ``access_token``) dropped from the captured query
            string, every occurrence,
            so the handler, the store and the logs never see them; the other parameters
            are kept byte for byte, in order (default: ``access_token``, ``api_key``,
            ``apikey``, ``api-key``, ``auth``, ``auth_token``, ``client_secret``,
            ``id_token``, ``jwt``, ``key``, ``passwd``, ``password``, ``private_token``,
            ``pwd``, ``refresh_token``, ``secret``, ``session``, ``sessionid``, ``sig``,
            ``signature``, ``token``, ``x-amz-credential``, ``x-amz-security-token``,
            ``x-amz-signature``, ``x-goog-credential``, ``x-goog-signature``). An empty
            set keeps every parameter; ``Settings().sensitive_query_params | {"otp"}``
            extends the default.
        max_body_size: Larger request bodies are refused with 413 before they are read
            whole (default 1 MiB).
        max_result_size: Bytes; a handler result whose JSON (UTF-8) is larger fails the
            attempt at once with error type ``ResultTooLarge``, not retried (default 16 MiB);
            a larger ``report_progress`` value raises ``ValueError``.
        include_tracebacks: Keep the stack trace of failures in the job's error and show it
            to clients, credentials masked as in the message (default False).
        error_message: ``fn(exception) -> str`` (sync) giving the job's ``error.message``
            when an exception fails an attempt (the handler's, or ``ResultTooLarge`` /
            ``ResultNotSerializable``); it is stored, logged and served as is. A hook that
            raises gives the exception's type name. Default None: the exception's message
            with URL credentials (``user:password@``) and the values of
            ``sensitive_query_params`` masked. The library's own failures (``JobTimeout``,
            a lost claim...) have fixed messages.
        authorize: ``fn(request, job) -> bool`` (sync or async) asked before a job is shown;
            False answers 404 like an unknown id (default None: everyone may read). With
            ``owner`` set, ``job.owner == <the caller's principal>`` restricts a job to
            whoever submitted it.
        owner: ``fn(request) -> str | None`` (sync or async) asked once per accepted POST,
            after the body and the ``validator``, before the job is stored; its value is
            kept with the job as ``job.owner`` (never on the wire, never shown to the
            handler) for ``authorize`` to compare with the caller. An exception it raises
            (``HTTPException(401)``, say) is the answer and nothing is stored (default
            None: jobs have no owner).
        queues: The queue names, highest priority first (default ``("default",)``). A
            worker always claims from the first queue that has a due job; a handler's or a
            submission's ``queue`` must be one of them. Kept as a tuple.
        job_submitted_response: ``fn(job, request) -> Response`` replacing the 202 response.
        job_status_response: ``fn(job_or_None, request) -> Response`` replacing the
            job-details response.
        max_wait: The longest a request's ``Prefer: wait=N`` holds it open, in seconds
            (default 30.0); 0 turns ``Prefer: wait`` off.
        idempotency_ttl: How long an ``Idempotency-Key`` (or a client-chosen
            ``X-Async-Request-Id``) is remembered, in seconds (default 86400.0: a day).
        webhook_secret: ``whsec_`` followed by the base64 of the key webhooks are signed
            with (Standard Webhooks), or a sequence of such secrets (key rotation: each
            delivery is signed with every one); None turns webhooks off (default). Every
            process sharing a store must have the same secret(s). Never stored, logged,
            served or shown by ``repr``.
        webhook_allowed_hosts: The only hosts a webhook may call: host names or IP
            addresses (case-insensitive, exact: no wildcards) on any port; ``host:port``
            for that port only (``[::1]:8443`` for IPv6). Kept as an `AllowedHosts`
            (default: none, so a ``webhook_url`` is a `ConfigurationError`).
        webhook_retries: Retries of a webhook delivery after its first attempt (default 5).
        webhook_retry_base_delay: Seconds before a delivery's first retry, doubling at
            each retry up to ``retry_max_delay`` (default 5.0).
    """

    max_concurrency: int = 16
    max_queue_size: int | None = 10_000
    max_retries: int = 3
    retry_base_delay: float = 2.0
    retry_max_delay: float = 300.0
    retry_jitter: float = 0.25
    job_timeout: float = 1800.0
    claim_timeout: float = 30.0
    recovery_interval: float = 5.0
    shutdown_grace_period: float = 30.0
    polling_interval: float = 5.0
    run_workers: bool = True
    capture_headers: Iterable[str] | None = None
    sensitive_headers: Iterable[str] = field(default=DEFAULT_SENSITIVE_HEADERS)
    sensitive_query_params: Iterable[str] = field(default=DEFAULT_SENSITIVE_QUERY_PARAMS)
    max_body_size: int = 1024 * 1024
    max_result_size: int = DEFAULT_MAX_RESULT_SIZE
    include_tracebacks: bool = False
    error_message: ErrorMessageHook | None = None
    authorize: AuthorizeHook | None = None
    owner: OwnerHook | None = None
    queues: Sequence[str] = (DEFAULT_QUEUE,)
    job_submitted_response: SubmittedResponseFactory | None = None
    job_status_response: StatusResponseFactory | None = None
    max_wait: float = 30.0
    idempotency_ttl: float = 86400.0
    webhook_secret: str | Sequence[str] | None = field(default=None, repr=False)
    webhook_allowed_hosts: Iterable[str] = field(default=AllowedHosts())
    webhook_retries: int = 5
    webhook_retry_base_delay: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", queue_names(self.queues, ConfigurationError))
        _check_types(self)
        _check_positive(self, "max_concurrency", "job_timeout", "claim_timeout", "max_body_size")
        _check_positive(self, "max_result_size")
        _check_positive(self, "recovery_interval", "polling_interval", "idempotency_ttl")
        _check_not_negative(self, "max_retries", "retry_base_delay", "retry_max_delay")
        _check_not_negative(self, "retry_jitter", "shutdown_grace_period", "max_wait")
        if not math.isfinite(self.retry_jitter):
            raise ConfigurationError(f"retry_jitter must be finite, not {self.retry_jitter!r}")
        # (The retry delays are capped at 100 years where they are used: an infinite
        # retry_max_delay means no cap, `tests/test_api_contract_audit.py`.)
        _check_duration(self, *(name for name in _DURATIONS if not name.startswith("retry_")))
        if self.max_queue_size is not None and self.max_queue_size < 1:
            raise ConfigurationError(
                f"max_queue_size must be >= 1 or None, not {self.max_queue_size}"
            )
        _check_webhooks(self)
        for name in ("capture_headers", "sensitive_headers", "sensitive_query_params"):
            names: Iterable[str] | None = getattr(self, name)
            if names is not None:
                object.__setattr__(self, name, _lower_case_names(name, names))

    @classmethod
    def names(cls) -> frozenset[str]:
        """The names of all settings."""
        return frozenset(f.name for f in fields(cls))


class SettingsOptions(TypedDict, total=False):
    """The settings as keyword arguments of `AsyncEndpoints` (each optional; see `Settings`
    for what each means and its default): a type checker then finds a misspelt or
    wrongly typed one, and a hook of the wrong shape, in the app's own code."""

    max_concurrency: int
    max_queue_size: int | None
    max_retries: int
    retry_base_delay: float
    retry_max_delay: float
    retry_jitter: float
    job_timeout: float
    claim_timeout: float
    recovery_interval: float
    shutdown_grace_period: float
    polling_interval: float
    run_workers: bool
    capture_headers: Iterable[str] | None
    sensitive_headers: Iterable[str]
    sensitive_query_params: Iterable[str]
    max_body_size: int
    max_result_size: int
    include_tracebacks: bool
    error_message: ErrorMessageHook | None
    authorize: AuthorizeHook | None
    owner: OwnerHook | None
    queues: Sequence[str]
    job_submitted_response: SubmittedResponseFactory | None
    job_status_response: StatusResponseFactory | None
    max_wait: float
    idempotency_ttl: float
    webhook_secret: str | Sequence[str] | None
    webhook_allowed_hosts: Iterable[str]
    webhook_retries: int
    webhook_retry_base_delay: float


def queue_names(names: Any, error: type[Exception] = ValueError) -> tuple[str, ...]:
    """``names`` as a tuple of queue names: a non-empty sequence of distinct non-empty
    strings, or ``error`` saying what is wrong."""
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise error(f"queues must be a sequence of queue names (str), not {names!r}")
    items = tuple(names)
    if not items:
        raise error("queues must name at least one queue")
    for item in items:
        if not isinstance(item, str) or not item:
            raise error(f"a queue name must be a non-empty str, not {item!r}")
    if len(set(items)) != len(items):
        raise error(f"queues must not repeat a name: {list(items)!r}")
    return items


def _lower_case_names(setting: str, names: Iterable[str]) -> frozenset[str]:
    wrong = ConfigurationError(f"{setting} must be a collection of names (str)")
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise wrong
    items = tuple(names)
    if not all(isinstance(item, str) for item in items):
        raise wrong
    if not all(item.strip() for item in items):  # a blank name would match everywhere
        raise ConfigurationError(f"{setting} must not hold an empty or blank name")
    return frozenset(item.lower() for item in items)


def _check_types(settings: Settings) -> None:
    """A wrongly typed setting is a `ConfigurationError` naming it, not a later TypeError."""
    for name in _INTEGERS:
        _check_type(name, getattr(settings, name), int, "an int")
    for name in _DURATIONS:
        _check_type(name, getattr(settings, name), Real, "a number of seconds")
    if settings.max_queue_size is not None:
        _check_type("max_queue_size", settings.max_queue_size, int, "an int or None")
    for name in ("run_workers", "include_tracebacks"):
        if not isinstance(getattr(settings, name), bool):
            raise ConfigurationError(f"{name} must be True or False")
    for name, parameters in _HOOKS.items():
        hook = getattr(settings, name)
        if hook is not None:
            check_hook(hook, name, parameters)
    if inspect.iscoroutinefunction(settings.error_message):
        raise ConfigurationError("error_message must be a sync function: fn(exception) -> str")


def _check_webhooks(settings: Settings) -> None:
    """The webhook settings: the secret's form (never quoted), the allow-list parsed."""
    secret = settings.webhook_secret
    if secret is not None:
        secret_keys(secret)
        if not isinstance(secret, str):  # kept as a tuple: the caller's list may change
            object.__setattr__(settings, "webhook_secret", tuple(secret))
    hosts = AllowedHosts.parse(settings.webhook_allowed_hosts)
    object.__setattr__(settings, "webhook_allowed_hosts", hosts)
    if secret is not None and not list(hosts):
        raise ConfigurationError(
            "webhook_secret is set but webhook_allowed_hosts is empty: no webhook could "
            "ever be delivered; name the hosts webhooks may call"
        )
    _check_type("webhook_retries", settings.webhook_retries, int, "an int")
    _check_type("webhook_retry_base_delay", settings.webhook_retry_base_delay, Real, "seconds")
    _check_not_negative(settings, "webhook_retries")
    delay = settings.webhook_retry_base_delay
    if not 0 < delay < float("inf"):
        raise ConfigurationError(f"webhook_retry_base_delay must be > 0 seconds, not {delay!r}")


def _check_type(name: str, value: Any, kind: type, wanted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigurationError(f"{name} must be {wanted}, not {value!r}")


def _check_positive(settings: Settings, *names: str) -> None:
    for name in names:
        value: Any = getattr(settings, name)
        if not value > 0:
            raise ConfigurationError(f"{name} must be > 0, not {value!r}")


def _check_duration(settings: Settings, *names: str) -> None:
    """Seconds must be finite and at most `MAX_DELAY` (100 years): an infinite timeout or
    interval cannot be kept in a store (nor slept through) and is a mistake."""
    for name in names:
        value: Any = getattr(settings, name)
        if not value <= MAX_DELAY:
            raise ConfigurationError(
                f"{name} must be a finite number of seconds, at most {MAX_DELAY:.0f} "
                f"(100 years), not {value!r}"
            )


def _check_not_negative(settings: Settings, *names: str) -> None:
    for name in names:
        value: Any = getattr(settings, name)
        if not value >= 0:
            raise ConfigurationError(f"{name} must be >= 0, not {value!r}")


def default_queue(queues: Sequence[str]) -> str:
    """The queue of jobs that name none: ``"default"`` when it is one of ``queues``, else
    the last (lowest-priority) of them."""
    return DEFAULT_QUEUE if DEFAULT_QUEUE in queues else queues[-1]
