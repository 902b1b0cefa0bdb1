"""Webhook delivery: durable work, done by a job of its own.

A job submitted with a webhook URL carries a *delivery job* as its ``follow_up`` (see
`NewJob`): the store enqueues it in the same atomic step that makes the job terminal, so a
crash can never lose it. The delivery job is named `WEBHOOK_JOB`, runs the internal handler
every `AsyncEndpoints` with a ``webhook_secret`` registers (so every worker process of the
app has it), waits in its job's queue with its tenant, and gets ``webhook_retries``
retries, ``webhook_retry_base_delay`` seconds apart at first, doubling (see `RetryPolicy`).
Its body is ``{"jobId", "url"}``, never the secret. The store keeps the job's ``webhook``
state from the delivery job's transitions: one attempt per claim, ``Delivered`` when it
completes, ``Failed`` when it fails or is canceled.

One attempt: the URL is checked against the allow-list again (one no longer allowed fails
the delivery at once, without retry), the job is read (a job requeued since it ended, not
terminal now, fails the attempt, which is retried: a receiver never gets an unfinished
job, and gets the job's next end if it comes within the delivery's retries), and its
JSON, exactly as
``GET /jobs/{id}`` serves it (the app's ``job_status_response`` included, called with a
bare ``GET`` request), is POSTed with the Standard Webhooks headers (see
`async_endpoints._webhook_signing`). Redirects are never followed, and the "httpx" logger
records nothing of a delivery (its URL may hold a token). A 2xx answer completes
the delivery; any other answer, or none, fails the attempt with the status code only (never
the receiver's body), so it is retried. Delivery is at least once: a receiver must dedupe
on ``webhook-id``, which is the delivery job's id, the same on every retry.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
import uuid
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from starlette.requests import Request

from ._context import AsyncContext
from ._errors import ConfigurationError, ResultError
from ._handlers import Handler
from ._job import Job, JobRequest, NewJob, job_to_json
from ._responses import call_maybe_async, dumps
from ._store_features import FollowUpStore
from ._webhook_signing import secret_keys, signed_headers
from ._webhook_urls import AllowedHosts, check_url

if TYPE_CHECKING:
    import httpx

    from ._settings import Settings
    from ._store import JobStore

#: The reserved name of webhook delivery jobs.
WEBHOOK_JOB = "async_endpoints.webhook"
#: Seconds one delivery request may take in all (connecting, sending, the answer's
#: headers), and each of those phases alone (httpx's timeout).
DELIVERY_TIMEOUT = 10.0
#: Seconds one delivery attempt may take in all (the delivery job's ``job_timeout``).
DELIVERY_JOB_TIMEOUT = 30.0
_USER_AGENT = "async-endpoints-webhooks"
#: True while this task sends a delivery: the "httpx" logger then drops its records.
_DELIVERING: ContextVar[bool] = ContextVar("async_endpoints_delivering", default=False)


class _QuietDeliveries(logging.Filter):
    """Drops the "httpx" logger's records of deliveries: they hold the whole URL, whose
    query may hold a token (other uses of httpx in the process log as before)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _DELIVERING.get()


def _quiet_httpx() -> None:
    """Install `_QuietDeliveries` on the "httpx" logger, once."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _QuietDeliveries) for f in httpx_logger.filters):
        httpx_logger.addFilter(_QuietDeliveries())


class DeliveryOrder(BaseModel):
    """The body of a delivery job: whose webhook, and where to."""

    job_id: uuid.UUID = Field(alias="jobId")
    url: str


class WebhookDeliveryError(Exception):
    """A delivery attempt failed (a non-2xx answer, or none); the attempt is retried."""


class WebhookUndeliverable(ResultError):
    """The delivery cannot succeed (its URL left the allow-list, its job is gone, or the
    app's ``job_status_response`` gave no body): it fails at once, without retry."""


def delivery_job(
    job_id: uuid.UUID,
    url: str,
    *,
    queue: str,
    tenant: str | None,
    retries: int,
    owner: str | None = None,
    trace_context: str | None = None,
) -> NewJob:
    """The delivery job of job ``job_id``'s webhook to ``url`` (a fresh id, no partition
    key, ``retries`` retries), to be its ``follow_up``; it belongs to the job's ``owner``
    (its id reaches the receiver as ``webhook-id``: nobody else may read or cancel it), and
    its attempts' spans join the job's trace when ``trace_context`` (the submission's) is
    given."""
    body = json.dumps({"jobId": str(job_id), "url": url}, separators=(",", ":"))
    return NewJob(
        uuid.uuid4(),
        WEBHOOK_JOB,
        retries,
        JobRequest(body=body, owner=owner, trace_context=trace_context),
        queue=queue,
        tenant=tenant,
        delivers_for=job_id,
    )


class WebhookSender:
    """Sends the webhooks of one `AsyncEndpoints`: its delivery handler and HTTP client.

    The client is opened on the first delivery and closed by `aclose` (on shutdown).

    Raises:
        ConfigurationError: ``store`` is not a `FollowUpStore` (it could not keep
            deliveries).
    """

    __slots__ = ("_allowed", "_app", "_client", "_keys", "_settings", "_store")

    def __init__(self, settings: Settings, store: JobStore, app: Any) -> None:
        if not isinstance(store, FollowUpStore):
            kind = type(store).__name__
            raise ConfigurationError(f"webhooks need a FollowUpStore; {kind} is not one")
        # httpx is imported here, while the app is configured, not on the event loop at
        # the first URL check or delivery (see `_http`).
        importlib.import_module("httpx")
        self._keys = secret_keys(settings.webhook_secret)
        self._allowed: AllowedHosts = settings.webhook_allowed_hosts  # type: ignore[assignment]
        self._settings = settings
        self._store = store
        self._app = app
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return "<WebhookSender>"

    def handler(self, queue: str) -> Handler:
        """The delivery handler, registered as `WEBHOOK_JOB`."""
        handler = Handler.from_function(
            self.deliver, name=WEBHOOK_JOB, queue=queue, job_timeout=DELIVERY_JOB_TIMEOUT
        )
        return replace(handler, retry_base_delay=self._settings.webhook_retry_base_delay)

    async def deliver(self, ctx: AsyncContext[DeliveryOrder]) -> int:
        """One delivery attempt; returns the receiver's status code (2xx).

        Raises:
            WebhookUndeliverable: the URL is no longer allowed or cannot be sent to, or
                the job is gone.
            WebhookDeliveryError: the receiver answered something else than 2xx, or
                could not be reached in time, or the job is not terminal (requeued since
                it ended): retried, so the job's next end is what is delivered.

        Each error's message names the job whose webhook it is.
        """
        order = ctx.request
        try:
            return await self._deliver(order, ctx.job_id)
        except (WebhookDeliveryError, WebhookUndeliverable) as exc:
            # Named in the delivery's error and log line, which carry the delivery's id.
            text = str(exc)
            if str(order.job_id) in text:
                raise
            raise type(exc)(f"the webhook of job {order.job_id}: {text}") from None

    async def _deliver(self, order: DeliveryOrder, delivery_id: uuid.UUID) -> int:
        try:
            url = check_url(order.url, self._allowed)
        except ValueError as exc:
            raise WebhookUndeliverable(str(exc)) from None
        job = await self._store.get(order.job_id)
        if job is None:
            raise WebhookUndeliverable(f"job {order.job_id} is gone")
        if not job.status.is_terminal:  # requeued since it ended: wait for its new end
            raise WebhookDeliveryError(f"job {order.job_id} is running again")
        body, content_type = await self._body(job)
        headers = signed_headers(self._keys, str(delivery_id), int(time.time()), body)
        headers["content-type"] = content_type
        headers["user-agent"] = _USER_AGENT
        status = await self._send(url, body, headers)
        if not 200 <= status < 300:
            raise WebhookDeliveryError(f"the receiver answered {status}")
        return status

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body``; the answer's status code, read within `DELIVERY_TIMEOUT` seconds
        in all (httpx's timeout bounds each phase alone: a receiver trickling its answer
        could hold the attempt until the job's own timeout). The answer's body is never
        read."""
        import httpx  # on first use (see `_http`)

        delivering = _DELIVERING.set(True)
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT):
                async with self._http().stream(
                    "POST", url, content=body, headers=headers
                ) as answer:
                    return answer.status_code
        except TimeoutError:
            raise WebhookDeliveryError(
                f"no answer from the receiver within {DELIVERY_TIMEOUT:g} s"
            ) from None
        except (httpx.InvalidURL, UnicodeError) as exc:  # never sendable: no retry
            reason = type(exc).__name__
            raise WebhookUndeliverable(f"the URL cannot be sent to: {reason}") from None
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise WebhookDeliveryError(f"no answer from the receiver: {reason}") from None
        finally:
            _DELIVERING.reset(delivering)

    async def aclose(self) -> None:
        """Close the HTTP client (a later delivery opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        # httpx is imported only where webhooks are on: a process that sends none (a
        # worker started by the CLI, say) starts a tenth of a second sooner without it.
        import httpx

        if self._client is None:
            _quiet_httpx()
            # trust_env: the operator's HTTPS_PROXY / NO_PROXY and CA settings apply. As
            # many connections as handlers run at once: no delivery waits for one (the
            # wait would count against its DELIVERY_TIMEOUT; httpx's default is 100).
            connections = max(100, self._settings.max_concurrency)
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                timeout=DELIVERY_TIMEOUT,
                limits=httpx.Limits(max_connections=connections, max_keepalive_connections=20),
            )
        return self._client

    async def _body(self, job: Job) -> tuple[bytes, str]:
        """What ``GET /jobs/{id}`` would serve for ``job``: its body and content type."""
        factory = self._settings.job_status_response
        if factory is None:
            return dumps(job_to_json(job)), "application/json"
        response = await call_maybe_async(factory, job, _bare_request(self._app, job))
        body = getattr(response, "body", None)
        if not isinstance(body, bytes):
            raise WebhookUndeliverable("job_status_response gave a response without a body")
        return body, response.headers.get("content-type", "application/json")


def _bare_request(app: Any, job: Job) -> Request:
    """A ``GET /jobs/{id}`` request without headers, for the app's response factory."""
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/jobs/{job.id}",
        "raw_path": f"/jobs/{job.id}".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "path_params": {"job_id": str(job.id)},
        "client": None,
        "server": None,
    }
    if app is not None:
        scope["app"] = app
        scope["router"] = getattr(app, "router", None)
    return Request(scope)
