"""Webhook settings and options: checked when wiring, the secret never shown, the
allow-list the only hosts ever called, the retry backoff from webhook_retry_base_delay."""

from __future__ import annotations

import base64
import logging
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobSpec,
    JobStatus,
    JobStore,
    UnknownJobNameError,
)
from async_endpoints._job import (
    JobRequest,
    NewJob,
    WebhookState,
    WebhookStatus,
    job_to_json,
)
from async_endpoints._responses import dumps
from async_endpoints._settings import Settings
from async_endpoints._webhook import WEBHOOK_JOB, delivery_job
from async_endpoints._webhook_urls import AllowedHosts, check_url
from async_endpoints.testing import ManualClock
from tests.redis_dump import everything_in
from tests.webhook_receiver import (
    KEY,
    SECRET,
    answer_with,
    receiving,
    settled_webhook,
    signature_is_valid,
)


class Note(BaseModel):
    text: str = "hi"


def engine_with(store: JobStore | None = None, **settings: Any) -> AsyncEndpoints:
    """An engine (no app) with the handler ``note`` and webhooks to ``hosts``."""
    settings.setdefault("webhook_secret", SECRET)
    engine = AsyncEndpoints(store=store, retry_jitter=0.0, **settings)

    async def note(ctx: AsyncContext[Note]) -> str:
        return ctx.request.text

    engine.add_handler(note)
    return engine


@pytest.mark.parametrize(
    "secret", ["secret", "whsec_", "whsec_not base64!", "WHSEC_c2VjcmV0", b"whsec_c2VjcmV0", 42]
)
def test_a_malformed_webhook_secret_is_refused_without_quoting_it(secret: Any) -> None:
    """Anything but whsec_ + base64: a ConfigurationError naming the setting, not the value."""
    with pytest.raises(ConfigurationError, match="webhook_secret") as raised:
        AsyncEndpoints(webhook_secret=secret)
    assert str(raised.value) == (
        "webhook_secret must be 'whsec_' followed by the base64 of the signing key"
    )


@pytest.mark.parametrize("secret", [[], [SECRET, "whsec_not base64!"], (SECRET, 42)])
def test_a_malformed_sequence_of_secrets_is_refused_without_quoting_it(secret: Any) -> None:
    """An empty sequence, or one with a malformed secret: a ConfigurationError that quotes
    no value."""
    with pytest.raises(ConfigurationError, match="webhook_secret") as raised:
        AsyncEndpoints(webhook_secret=secret)
    assert SECRET not in str(raised.value) and "not base64" not in str(raised.value)


async def test_with_several_secrets_each_delivery_is_signed_with_every_key() -> None:
    """Key rotation: webhook_secret=[new, old] signs each delivery with both, two
    space-separated signatures, so a receiver knowing either key accepts it."""
    new = "whsec_" + base64.b64encode(b"n" * 32).decode()
    async with receiving() as receiver:
        engine = engine_with(webhook_secret=[new, SECRET], webhook_allowed_hosts=[receiver.host])
        async with engine.running(workers=False):
            await engine.submit("note", {}, webhook_url=receiver.url)
            await engine.drain()
            assert engine.settings.webhook_secret == (new, SECRET)
    [delivery] = receiver.deliveries
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    assert signature_is_valid(delivery, new) and signature_is_valid(delivery, SECRET)
    assert not signature_is_valid(delivery, "whsec_" + base64.b64encode(b"x" * 32).decode())


def test_the_webhook_secret_is_not_in_the_settings_repr() -> None:
    """repr(settings) (in a log line or a traceback) never shows the secret."""
    settings = Settings(webhook_secret=SECRET, webhook_allowed_hosts=["example.com"])
    assert SECRET not in repr(settings) and SECRET.removeprefix("whsec_") not in repr(settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"webhook_allowed_hosts": "example.com"}, "collection of host names"),
        ({"webhook_allowed_hosts": ["http://example.com"]}, "not a host name"),
        ({"webhook_allowed_hosts": ["example.com/hooks"]}, "not a host name"),
        ({"webhook_allowed_hosts": ["user@example.com"]}, "not a host name"),
        ({"webhook_allowed_hosts": ["example.com:http"]}, "not a host name"),
        ({"webhook_allowed_hosts": [""]}, "not a host name"),
        ({"webhook_allowed_hosts": ["bücher.example"]}, "not a host name"),
        ({"webhook_allowed_hosts": [1]}, "must be a str"),
        ({"webhook_retries": -1}, "webhook_retries must be >= 0"),
        ({"webhook_retries": 1.5}, "webhook_retries must be an int"),
        ({"webhook_retries": True}, "webhook_retries must be an int"),
        ({"webhook_retry_base_delay": 0}, "webhook_retry_base_delay must be > 0"),
        ({"webhook_retry_base_delay": float("inf")}, "webhook_retry_base_delay must be > 0"),
        ({"webhook_retry_base_delay": "5"}, "webhook_retry_base_delay must be seconds"),
    ],
)
def test_webhook_settings_out_of_range_are_configuration_errors(
    settings: dict[str, Any], message: str
) -> None:
    """Each webhook setting is checked when the engine is made, the error naming it."""
    with pytest.raises(ConfigurationError, match=message):
        AsyncEndpoints(**settings)


def test_the_delivery_handler_is_registered_only_with_a_secret() -> None:
    """With webhook_secret the reserved handler is there (in every process of the app);
    without it there is none, and a store without follow-ups is refused."""
    assert WEBHOOK_JOB in engine_with(webhook_allowed_hosts=["example.com"]).handlers
    assert WEBHOOK_JOB not in AsyncEndpoints().handlers
    with pytest.raises(ConfigurationError, match="FollowUpStore"):
        AsyncEndpoints(
            store=object(),  # type: ignore[arg-type]
            webhook_secret=SECRET,
            webhook_allowed_hosts=["example.com"],
        )


@pytest.mark.parametrize("hosts", [[], ()])
def test_a_secret_without_allowed_hosts_is_refused_at_once(hosts: list[str]) -> None:
    """Webhooks configured (a webhook_secret) with no allowed hosts could never deliver
    anything: a ConfigurationError when the AsyncEndpoints is made, naming the setting."""
    with pytest.raises(ConfigurationError, match="webhook_allowed_hosts is empty"):
        AsyncEndpoints(webhook_secret=SECRET, webhook_allowed_hosts=hosts)
    with pytest.raises(ConfigurationError, match="webhook_allowed_hosts is empty"):
        AsyncEndpoints(webhook_secret=SECRET)


@pytest.mark.parametrize(
    ("settings", "url", "message"),
    [
        ({"webhook_allowed_hosts": ["example.com"]}, "https://other.example/h", "not in"),
        ({"webhook_allowed_hosts": ["example.com"]}, "ftp://example.com/h", "https://"),
        ({"webhook_allowed_hosts": ["example.com:8443"]}, "https://example.com/h", "not in"),
        (
            {"webhook_secret": None, "webhook_allowed_hosts": ["x.example"]},
            "https://x.example",
            "secret",
        ),
    ],
)
def test_a_route_webhook_url_is_checked_when_mapping(
    settings: dict[str, Any], url: str, message: str
) -> None:
    """A constant URL outside the allow-list, or webhooks not configured: a
    ConfigurationError when mapping; nothing is registered."""
    app = FastAPI()
    engine = AsyncEndpoints(app, **{"webhook_secret": SECRET, **settings})
    before, routes = dict(engine.handlers), len(app.router.routes)

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    with pytest.raises(ConfigurationError, match=message):
        engine.add_async_post("/work", work, webhook_url=url)
    assert engine.handlers == before and len(app.router.routes) == routes


def test_allowed_hosts_match_case_insensitively_exactly_and_by_port() -> None:
    """``Example.COM`` allows example.com on any port (API.md: "only hosts in
    webhook_allowed_hosts"), not its subdomains; ``host:port`` allows that port only;
    ``host:*`` is the same as ``host``."""
    hosts = ["Example.COM", "127.0.0.1:8080", "[::1]:8443", "Wide.example:*"]
    mapped = AsyncEndpoints(FastAPI(), webhook_secret=SECRET, webhook_allowed_hosts=hosts)

    async def work(ctx: AsyncContext[None]) -> None:
        pass

    for number, url in enumerate(
        [
            "https://EXAMPLE.com/x",
            "https://example.com:443/x",
            "http://example.com/x",
            "https://example.com:8443/x",  # another port of an allowed host
            "http://example.com:443/x",
            "http://127.0.0.1:8080/",
            "https://[::1]:8443/",
            "http://wide.example:6379/",
            "https://wide.example/",
        ]
    ):
        mapped.add_async_post(f"/{number}", work, name=str(number), webhook_url=url)
    for url in [
        "https://api.example.com/x",
        "https://example.com.evil.test/x",
        "http://127.0.0.1:8081/",  # a pinned host on another port
        "http://127.0.0.1/",
        "https://[::1]/",
    ]:
        with pytest.raises(ConfigurationError, match="not in webhook_allowed_hosts"):
            mapped.add_async_post("/c", work, name="c", webhook_url=url)
    assert list(mapped.settings.webhook_allowed_hosts) == [
        "example.com",
        "wide.example",
        "127.0.0.1:8080",
        "[::1]:8443",
    ]


@pytest.mark.parametrize("entry", ["*", "example.com:8080:*", "example.com:*x", "*.example.com"])
def test_a_malformed_allow_list_entry_is_refused(entry: str) -> None:
    """A wildcard is a port (``host:*``) only: anything else is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="webhook_allowed_hosts"):
        AsyncEndpoints(webhook_secret=SECRET, webhook_allowed_hosts=[entry])


async def test_submit_checks_its_webhook_url() -> None:
    """submit(webhook_url=...): a bad URL is a ValueError, webhooks not configured a
    ConfigurationError, and the reserved delivery name cannot be submitted; nothing stored."""
    engine = engine_with(webhook_allowed_hosts=["example.com"])
    async with engine.running(workers=False):
        for url in ["ftp://example.com/", "https://u:p@example.com/", "https://evil.example/"]:
            with pytest.raises(ValueError, match="webhook_url"):
                await engine.submit("note", {}, webhook_url=url)
        with pytest.raises(UnknownJobNameError):
            await engine.submit(WEBHOOK_JOB, {"jobId": "x", "url": "https://example.com/"})
        assert (await engine.list_jobs()).jobs == []
    plain = AsyncEndpoints()

    async def note(ctx: AsyncContext[None]) -> None:
        pass

    plain.add_handler(note)
    with pytest.raises(ConfigurationError, match="webhook_secret"):
        await plain.submit("note", webhook_url="https://example.com/")


async def test_batches_and_schedules_cannot_name_the_delivery_handler() -> None:
    """Deliveries come from their job only: a batch's JobSpec or a cron schedule naming
    the reserved delivery handler is refused like an unknown name; nothing stored."""
    engine = engine_with(webhook_allowed_hosts=["example.com"])
    order = {"jobId": "00000000-0000-4000-8000-000000000000", "url": "https://example.com/"}
    async with engine.running(workers=False):
        with pytest.raises(UnknownJobNameError):
            await engine.submit_batch([JobSpec(WEBHOOK_JOB, order)])
        with pytest.raises(UnknownJobNameError):
            await engine.upsert_schedule("deliveries", WEBHOOK_JOB, "* * * * *", body=order)
        assert (await engine.list_jobs()).jobs == []
        assert await engine.list_schedules() == []


async def test_retries_wait_webhook_retry_base_delay_doubling() -> None:
    """The delivery's retries are Scheduled webhook_retry_base_delay, then twice that,
    after each failure (not retry_base_delay, the jobs' own)."""
    clock = ManualClock()
    async with receiving(answer_with(500)) as receiver:
        engine = engine_with(
            InMemoryJobStore(clock=clock),
            webhook_allowed_hosts=[receiver.host],
            webhook_retry_base_delay=7.0,
            retry_base_delay=1.0,
        )
        async with engine.running(workers=False):
            job = await engine.submit("note", {}, webhook_url=receiver.url)
            delays = []
            for attempt in (1, 2):
                await engine.drain()
                assert len(receiver.deliveries) == attempt
                [retry] = (await engine.list_jobs(status=JobStatus.SCHEDULED)).jobs
                assert retry.run_at is not None
                delays.append(retry.run_at - retry.last_updated_at)
                clock.advance(delays[-1].total_seconds())
            parent = await engine.get_job(job.id)
    assert delays == [timedelta(seconds=7), timedelta(seconds=14)]
    assert parent is not None and parent.webhook is not None and parent.webhook.attempts == 2


async def test_a_url_no_longer_allowed_when_delivered_fails_at_once() -> None:
    """A worker whose allow-list lacks the host (changed since submission) never calls
    it: the delivery fails without retry, webhook Failed after 1 attempt."""
    store = InMemoryJobStore()
    async with receiving() as receiver:
        submitter = engine_with(store, webhook_allowed_hosts=[receiver.host])
        worker = engine_with(store, webhook_allowed_hosts=["example.com"], webhook_retries=3)
        async with submitter.running(workers=False), worker.running(workers=False):
            job = await submitter.submit("note", {}, webhook_url=receiver.url)
            await worker.drain()
            parent = await worker.get_job(job.id)
    assert parent is not None and parent.status is JobStatus.COMPLETED
    assert parent.webhook is not None and parent.webhook.status.value == "Failed"
    assert parent.webhook.attempts == 1 and receiver.deliveries == []


@pytest.mark.parametrize("url", ["http://127.0.0.1.:8000/hook", "http://127.0.0.1./hook"])
def test_an_ip_address_with_a_trailing_dot_is_refused(url: str) -> None:
    """``127.0.0.1.`` is no host name and no address any socket connects to: refused at
    submission (it was accepted, and every delivery then failed without a request)."""
    with pytest.raises(ValueError, match="no valid host"):
        check_url(url, AllowedHosts.parse(["127.0.0.1:*"]))


def test_a_host_name_with_a_trailing_dot_is_its_fully_qualified_form() -> None:
    """``example.com.`` is ``example.com`` written fully qualified: allowed by its entry."""
    assert check_url("https://example.com./hook", AllowedHosts.parse(["example.com"]))


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1]x/hook",
        "https://[::1]]/hook",
        "https://[::1]/\ud800",
        "https://[::1]/?a=\udc00",
    ],
)
def test_a_url_httpx_cannot_send_to_is_refused(url: str) -> None:
    """A URL check_url accepts must be one the delivery client can send to (else the job
    got a 202 for a webhook that can never be delivered)."""
    with pytest.raises(ValueError, match="cannot send to"):
        check_url(url, AllowedHosts.parse(["::1"]))


async def test_submit_refuses_a_url_with_a_lone_surrogate() -> None:
    """A lone surrogate (a JSON body may hold one) in the URL: ValueError, nothing stored."""
    engine = engine_with(webhook_allowed_hosts=["example.com"])
    async with engine.running(workers=False):
        with pytest.raises(ValueError, match="webhook_url"):
            await engine.submit("note", {}, webhook_url="https://example.com/\udc80")
        assert (await engine.list_jobs()).jobs == []


async def test_a_stored_delivery_to_a_url_httpx_cannot_send_to_fails_at_once() -> None:
    """A delivery stored with a URL httpx refuses (written before this check existed):
    Failed after one attempt, not retried, nothing sent."""
    store = InMemoryJobStore()
    async with receiving() as receiver:
        engine = engine_with(store, webhook_allowed_hosts=["::1", receiver.host])
        async with engine.running(workers=False):
            job_id = uuid.uuid4()
            bad = delivery_job(
                job_id, "https://[::1]x/hook", queue="default", tenant=None, retries=3
            )
            parent = NewJob(job_id, "note", 0, JobRequest(body="{}"), follow_up=bad)
            await store.enqueue(parent)
            await engine.drain()
            ended = await engine.get_job(job_id)
    assert ended is not None and ended.webhook == WebhookState(WebhookStatus.FAILED, 1)
    assert receiver.deliveries == []


async def test_a_delivery_logs_no_record_of_its_url(caplog: pytest.LogCaptureFixture) -> None:
    """The URL's query may hold a token: no log record, at any level, holds it (httpx logs
    every request's URL at INFO); the app's own httpx requests still log as before."""
    caplog.set_level(logging.DEBUG)
    async with receiving() as receiver:
        engine = engine_with(webhook_allowed_hosts=[receiver.host])
        async with engine.running(workers=False):
            await engine.submit("note", {}, webhook_url=f"{receiver.url}/hook?token=tok-3141")
            await engine.drain()
        assert len(receiver.deliveries) == 1
        assert not [r for r in caplog.records if "tok-3141" in r.getMessage()]
        async with httpx.AsyncClient() as client:
            await client.get(f"{receiver.url}/own?mark=own-2718")
    assert [r for r in caplog.records if r.name == "httpx" and "own-2718" in r.getMessage()]


async def test_the_webhook_body_is_what_job_status_response_serves() -> None:
    """With job_status_response, the delivery carries the body (and content type) that
    job details would serve, signed as such."""

    def status_response(job: Any, request: Request) -> Response:
        return JSONResponse({"state": str(job.status), "path": request.url.path})

    async with receiving() as receiver:
        engine = engine_with(
            webhook_allowed_hosts=[receiver.host], job_status_response=status_response
        )
        async with engine.running(workers=False):
            job = await engine.submit("note", {}, webhook_url=receiver.url)
            await engine.drain()
    [delivery] = receiver.deliveries
    assert delivery.job == {"state": "Completed", "path": f"/jobs/{job.id}"}
    assert signature_is_valid(delivery)


async def test_the_secret_is_never_stored_logged_or_served(
    store: JobStore, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """After a delivery taken, one refused until Failed and a URL refused: neither the
    secret nor its key is in any Redis key or value, any log record or any job JSON."""
    caplog.set_level(logging.DEBUG)
    shown: list[bytes] = []

    def answer(number: int, _request: Request) -> Response:
        return Response(status_code=200 if number == 1 else 500)

    async with receiving(answer) as receiver:
        engine = engine_with(
            store,
            webhook_allowed_hosts=[receiver.host],
            webhook_retries=1,
            webhook_retry_base_delay=0.01,
        )
        async with engine.running(workers=False):
            for _ in range(2):
                job = await engine.submit("note", {}, webhook_url=receiver.url)
                settled = await settled_webhook(engine, job)
                shown += [dumps(job_to_json(settled)), repr(settled).encode()]
            with pytest.raises(ValueError) as refused:
                await engine.submit("note", {}, webhook_url="ftp://x")
            shown.append(str(refused.value).encode())
    assert len(receiver.deliveries) == 3
    everything = b"\n".join(shown) + caplog.text.encode()
    if "redis" in request.node.callspec.id:
        everything += await everything_in(request.getfixturevalue("redis_server"))
    assert b"webhook" in everything  # the scan saw the jobs
    for secret in (
        SECRET.encode(),
        SECRET.removeprefix("whsec_").encode(),
        KEY,
        KEY.hex().encode(),
    ):
        assert secret not in everything
