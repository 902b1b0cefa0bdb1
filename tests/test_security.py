"""Security by default: secrets in headers and query strings are never captured, jobs can be
restricted to the principal that created them, and clients never see stack traces or the
store's internals unless the app opts in."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    JobStatus,
    JobStore,
)
from async_endpoints_redis import RedisJobStore
from tests.redis_dump import everything_in
from tests.redis_servers import RedisServer, start_server
from tests.wire import JOB_FIELDS

SENSITIVE_HEADERS = ["Authorization", "Cookie", "Proxy-Authorization", "X-Api-Key"]
SENSITIVE_QUERY = [
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "signature",
    "sig",
    "auth",
    "X-Amz-Signature",
]


class Order(BaseModel):
    item: str


def echo_app(app: Starlette, **settings: Any) -> AsyncEndpoints:
    """``POST /echo`` whose result is everything its handler was given."""
    endpoints = AsyncEndpoints(app, **settings)

    @endpoints.map_async_post("/echo", name="Echo")
    async def echo(ctx: AsyncContext) -> dict[str, Any]:
        return {"headers": ctx.headers.items(), "query": ctx.query_params.multi_items()}

    endpoints.map_job_details("/jobs/{job_id}")
    return endpoints


async def echoed(endpoints: AsyncEndpoints, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    job = await endpoints.wait_for(response.json()["id"], timeout=5)
    assert job.status is JobStatus.COMPLETED, job.error
    result: dict[str, Any] = job.result
    return result


# --- query parameters -------------------------------------------------------------------------


OTHER_SPELLINGS = [
    "TOKEN",
    "%74oken",
    "api%5Fkey",
    "token+",
    "access-token",
    "accessToken",
    "Access.Token",
    "client-secret",
    "sessionId",
    "token[]",
    "token%5B0%5D",
    "user[password]",  # a nested name, as Rails and PHP forms write them
    "creds%5Bapi_key%5D%5B0%5D",
    "session[access_token]",
    "user%5Bpassword]",  # half encoded, unbalanced or with more after the brackets
    "a[b[password]]",
    "password[",
    "user[password]x",
    "token.",
    "token%00",
    "x_amz_signature",
    "Authorization",  # the sensitive headers' names, given as a query parameter
    "x-api-key",
    "X_Api_Key",
    "cookie",
]


@pytest.mark.parametrize("name", [*SENSITIVE_QUERY, *OTHER_SPELLINGS])
async def test_token_like_query_params_are_not_captured_by_default(
    app, http_client_for, name: str
) -> None:
    """A credential-like parameter never reaches the job, however its name is spelt: any
    case, percent-encoded, with other separators or none (camel case), or as an array."""
    endpoints = echo_app(app, run_workers=False)  # read the stored request before it runs
    async with http_client_for(app) as client:
        response = await client.post(f"/echo?page=2&{name}=s3cr3t&page=3&{name}=again&q=a%26b")
        stored = await endpoints.get_job(response.json()["id"])
        await endpoints.drain()
        result = await echoed(endpoints, response)
    assert result["query"] == [["page", "2"], ["page", "3"], ["q", "a&b"]]
    assert stored.request.query_string == "page=2&page=3&q=a%26b"


async def test_sensitive_query_params_replaces_the_default_list(app, http_client_for) -> None:
    """The setting names the parameters left out; everything else is captured."""
    endpoints = echo_app(app, sensitive_query_params=["OTP"])
    async with http_client_for(app) as client:
        result = await echoed(endpoints, await client.post("/echo?otp=1&token=t&a=b"))
    assert result["query"] == [["token", "t"], ["a", "b"]]


async def test_parameters_that_only_contain_a_sensitive_name_are_kept(app, http_client_for) -> None:
    """The names are compared whole: ``keyword``, ``tokens_left`` and ``page`` are data,
    captured as sent; so are nested names whose parts are sensitive names that are also
    ordinary words (``sort[key]``, ``filter[token]``, ``token[kind]``)."""
    endpoints = echo_app(app)
    async with http_client_for(app) as client:
        answer = await client.post(
            "/echo?keyword=a&tokens_left=3&sort[key]=name&filter[token]=t&token[kind]=k&page=2"
        )
        result = await echoed(endpoints, answer)
    assert [name for name, _ in result["query"]] == [
        "keyword",
        "tokens_left",
        "sort[key]",
        "filter[token]",
        "token[kind]",
        "page",
    ]


async def test_an_empty_sensitive_query_params_captures_every_parameter(
    app, http_client_for
) -> None:
    """Opting out on purpose: with no sensitive names the query string is kept whole."""
    endpoints = echo_app(app, sensitive_query_params=())
    async with http_client_for(app) as client:
        result = await echoed(endpoints, await client.post("/echo?token=t&a=b"))
    assert result["query"] == [["token", "t"], ["a", "b"]]


async def test_a_sensitive_header_is_captured_only_when_taken_off_the_deny_list(
    app, http_client_for
) -> None:
    """Allowing Authorization takes both: off sensitive_headers and, if used, allow-listed."""
    endpoints = echo_app(
        app, capture_headers=["authorization"], sensitive_headers=["cookie", "x-api-key"]
    )
    async with http_client_for(app) as client:
        response = await client.post(
            "/echo", headers={"Authorization": "Bearer t", "Cookie": "c=1"}
        )
        result = await echoed(endpoints, response)
    assert result["headers"] == [["authorization", "Bearer t"]]


@pytest.mark.parametrize(
    ("path", "sent", "kept", "secrets"),
    [
        pytest.param(
            "/echo?token=s3cr3t",
            {
                "Referer": "https://app.example/page?accessToken=s3cr3t&tab=2#top",
                "X-Original-URL": "/echo?token=s3cr3t",
                "X-Request-URI": "/echo?token=s3cr3t&page=2",
                "X-Forwarded-Prefix": "/api?token=s3cr3t",
                "X-Upload-Url": "https://bucket.example/o?X-Amz-Signature=for-the-handler",
            },
            {
                "referer": "https://app.example/page?tab=2#top",
                "x-original-url": "/echo",
                "x-request-uri": "/echo?page=2",
                "x-forwarded-prefix": "/api",
                "x-upload-url": "https://bucket.example/o?X-Amz-Signature=for-the-handler",
            },
            ["s3cr3t"],
            id="sensitive query parameters left out",
        ),
        pytest.param(
            "/echo",
            {
                "X-Forwarded-Url": "https://svc:s3cr3t@internal/p?token=t1&x=1",
                "Referer": "https://ghp_t0k3n@app.example/page",
                "X-Original-URL": "/echo?a=b",
                "X-Upload-Url": "https://user:for-the-handler@bucket.example/o",
            },
            {
                "x-forwarded-url": "https://svc:***@internal/p?x=1",
                "referer": "https://***@app.example/page",
                "x-original-url": "/echo?a=b",
                "x-upload-url": "https://user:for-the-handler@bucket.example/o",
            },
            ["s3cr3t", "t0k3n"],
            id="userinfo credentials masked",
        ),
    ],
)
async def test_urls_in_headers_lose_their_credentials_as_the_request_does(
    app, http_client_for, path: str, sent: dict[str, str], kept: dict[str, str], secrets: list[str]
) -> None:
    """A page's Referer, or a proxy's copy of the request's URL, holds query parameters
    and a userinfo too: the sensitive query parameters are left out of them as out of the
    request's own query, and a ``user:password@`` keeps the user and loses the password,
    as a job's error masks it (a userinfo of one part, a token alone, is masked whole).
    The app's own URL headers are data, kept as sent (a signed URL for the handler, say)."""
    endpoints = echo_app(app, capture_headers=[name.lower() for name in sent])
    async with http_client_for(app) as client:
        result = await echoed(endpoints, await client.post(path, headers=sent))
    assert dict(result["headers"]) == kept
    for secret in secrets:
        assert secret not in str(result)


@pytest.mark.parametrize(
    "setting", ["capture_headers", "sensitive_headers", "sensitive_query_params"]
)
def test_a_single_string_for_a_list_of_names_is_a_configuration_error(setting: str) -> None:
    """``sensitive_headers="authorization"`` would be read letter by letter: refused."""
    with pytest.raises(ConfigurationError, match=setting):
        AsyncEndpoints(**{setting: "authorization"})


async def test_submit_captures_headers_and_query_by_the_same_rules_as_a_post() -> None:
    """Programmatic submissions drop sensitive headers and query parameters too."""
    endpoints = AsyncEndpoints()

    @endpoints.add_handler
    async def echo(ctx: AsyncContext) -> None: ...

    async with endpoints.running(workers=False):
        job = await endpoints.submit(
            "echo",
            headers={"Authorization": "Bearer t", "X-Trace": "1"},
            query_string="token=t&page=2",
        )
    assert job.request.headers == (("x-trace", "1"),)
    assert job.request.query_string == "page=2"


# --- no secret reaches Redis, its AOF, the logs or a response ---------------------------------


async def test_no_secret_reaches_redis_its_aof_the_logs_or_any_response(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Sentinels sent in sensitive headers and query parameters are nowhere to be found."""
    caplog.set_level(logging.DEBUG)
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    visible = f"visible-{uuid.uuid4().hex}"
    server = start_server("--appendonly", "yes", "--appendfsync", "always", directory=tmp_path)
    try:
        answers = await run_jobs_carrying_secrets(server, prefix, secret, visible)
        redis_dump = await everything_in(server)
    finally:
        server.stop()
    aof, on_disk = files_under(tmp_path, "*.aof"), files_under(tmp_path, "*")
    # What the server side logged: the library, redis-py, asyncio and the handlers (the test's
    # own HTTP client logs the URLs it requests, query strings and all).
    logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))

    # The checks can see what was captured: the non-sensitive sentinel is everywhere.
    assert visible.encode() in redis_dump and visible.encode() in aof
    assert visible in logs and visible in answers
    assert secret.encode() not in redis_dump
    assert secret.encode() not in on_disk
    assert secret not in logs
    assert secret not in answers


def files_under(directory: Path, pattern: str) -> bytes:
    """The bytes of every file matching ``pattern`` under ``directory``, concatenated."""
    return b"".join(path.read_bytes() for path in directory.rglob(pattern) if path.is_file())


async def run_jobs_carrying_secrets(
    server: RedisServer, prefix: str, secret: str, visible: str
) -> str:
    """Submit and run a succeeding and a failing job whose handlers log all they get;
    return every HTTP answer (status line, headers, body) as text."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=RedisJobStore(server.url, prefix=prefix), max_retries=0)
    log = logging.getLogger("tests.security.handler")

    @endpoints.map_async_post("/echo/{tenant}", name="Echo")
    async def echo(ctx: AsyncContext[Order]) -> dict[str, Any]:
        log.debug("headers %s", ctx.headers.items())
        log.info("query %s body %s route %s", ctx.query_params, ctx.request, ctx.route_params)
        return {"headers": ctx.headers.items(), "query": str(ctx.query_params)}

    @endpoints.map_async_post("/explode", name="Explode")
    async def explode(ctx: AsyncContext) -> None:
        raise RuntimeError(f"refused {ctx.headers.items()} {ctx.query_params}")

    endpoints.map_job_details("/jobs/{job_id}")
    headers = {name: f"{secret}-{name}" for name in SENSITIVE_HEADERS} | {"X-Visible": visible}
    query = "&".join(f"{name}={secret}-{name}" for name in SENSITIVE_QUERY)
    answers: list[httpx.Response] = []
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
        endpoints.running(),
    ):
        for path in ("/echo/acme", "/explode"):
            url = f"{path}?{query}&visible={visible}"
            submitted = await client.post(url, json={"item": visible}, headers=headers)
            assert submitted.status_code == 202, submitted.text
            await endpoints.wait_for(submitted.json()["id"], timeout=10)
            details = await client.get(submitted.headers["location"], headers=headers)
            assert details.status_code == 200
            answers += [submitted, details]
    assert {answer.json()["status"] for answer in answers[1::2]} == {"Completed", "Failed"}
    return "\n".join(f"{a.status_code} {a.headers.multi_items()} {a.text}" for a in answers)


# --- owners and the authorize hook ------------------------------------------------------------

API_KEYS = {"key-of-alice": "alice", "key-of-bob": "bob"}


async def api_key_principal(request: Request, x_api_key: str | None = Header(None)) -> str:
    """A FastAPI auth dependency: the API key names the caller, kept on request.state."""
    principal = API_KEYS.get(x_api_key or "")
    if principal is None:
        raise HTTPException(401, "unknown API key")
    request.state.principal = principal
    return principal


def owned_jobs_app(store: JobStore) -> tuple[FastAPI, AsyncEndpoints]:
    """The pattern: an auth dependency on every route, its principal as the job's owner,
    and only the owner may see the job."""
    app = FastAPI(dependencies=[Depends(api_key_principal)])
    endpoints = AsyncEndpoints(
        app,
        store=store,
        run_workers=False,
        owner=lambda request: request.state.principal,
        authorize=lambda request, job: job.owner == request.state.principal,
    )

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> None: ...

    endpoints.map_job_details("/jobs/{job_id}")
    return app, endpoints


async def test_a_job_answers_its_owner_and_404s_everyone_else_exactly_like_an_unknown_id(
    http_client_for, store: JobStore
) -> None:
    """Alice sees her job; Bob gets the very 404 an unknown id gets; no key gets 401."""
    app, endpoints = owned_jobs_app(store)
    async with http_client_for(app) as client:
        alice, bob = {"X-Api-Key": "key-of-alice"}, {"X-Api-Key": "key-of-bob"}
        submitted = await client.post("/orders", json={"item": "tea"}, headers=alice)
        location = submitted.headers["location"]
        seen_by_alice = await client.get(location, headers=alice)
        seen_by_bob = await client.get(location, headers=bob)
        unknown = await client.get(f"/jobs/{uuid.uuid4()}", headers=bob)
        anonymous = await client.get(location)
        job = await endpoints.get_job(submitted.json()["id"])
    assert seen_by_alice.status_code == 200 and set(seen_by_alice.json()) == JOB_FIELDS
    assert (seen_by_bob.status_code, seen_by_bob.content) == (404, unknown.content)
    assert seen_by_bob.headers["content-type"] == unknown.headers["content-type"]
    assert anonymous.status_code == 401
    assert job.owner == "alice" and "alice" not in submitted.text + seen_by_alice.text


async def test_another_callers_id_is_refused_in_the_same_words_however_it_was_chosen(
    http_client_for, store: JobStore
) -> None:
    """Bob sending an id that Alice chose (the store remembers her submission) and one
    the server chose for her (it remembers only the job) gets the same 409 words but for
    the id: they never tell him whether Alice chose it lately."""
    app, _ = owned_jobs_app(store)
    alice, bob = {"X-Api-Key": "key-of-alice"}, {"X-Api-Key": "key-of-bob"}
    chosen = str(uuid.uuid4())
    async with http_client_for(app) as client:
        mine = {**alice, "X-Async-Request-Id": chosen}
        assert (await client.post("/orders", json={"item": "tea"}, headers=mine)).status_code == 202
        served = (await client.post("/orders", json={"item": "tea"}, headers=alice)).json()["id"]
        details = []
        for job_id in (chosen, served):
            theirs = {**bob, "X-Async-Request-Id": job_id}
            answer = await client.post("/orders", json={"item": "tea"}, headers=theirs)
            assert answer.status_code == 409
            details.append(answer.json()["detail"].replace(job_id, "<id>"))
    assert details[0] == details[1] == "job id <id> is taken by another submission"


@pytest.mark.parametrize("header", ["X-Async-Request-Id", "Idempotency-Key"])
async def test_a_repeat_by_someone_authorize_refuses_is_answered_as_another_submission(
    http_client_for, store: JobStore, header: str
) -> None:
    """No owner hook; authorize lets only Alice see jobs. Bob repeating Alice's submission
    (same body, same id or key) gets what another submission with that id or key gets
    (409 for an id, 422 for a key, the same words), nothing of her job, and stores
    nothing; Alice's own repeat answers 202 with her job, as before."""
    app = FastAPI(dependencies=[Depends(api_key_principal)])
    endpoints = AsyncEndpoints(
        app, store=store, authorize=lambda request, job: request.state.principal == "alice"
    )

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> str:
        return "secret result"

    endpoints.map_job_details("/jobs/{job_id}")
    value = str(uuid.uuid4())
    async with http_client_for(app) as client:
        alice = {"X-Api-Key": "key-of-alice", header: value}
        bob = {"X-Api-Key": "key-of-bob", header: value}
        first = await client.post("/orders", json={"item": "tea"}, headers=alice)
        done = await endpoints.wait_for(first.json()["id"], timeout=10)
        by_bob = await client.post("/orders", json={"item": "tea"}, headers=bob)
        other = await client.post("/orders", json={"item": "coffee"}, headers=bob)
        by_alice = await client.post("/orders", json={"item": "tea"}, headers=alice)
        listed = await endpoints.list_jobs()
    assert first.status_code == 202 and done.result == "secret result"
    assert by_bob.status_code == (409 if header == "X-Async-Request-Id" else 422)
    assert (by_bob.status_code, by_bob.json()) == (other.status_code, other.json())
    assert "secret result" not in by_bob.text and "Completed" not in by_bob.text
    assert by_alice.status_code == 202 and by_alice.json()["id"] == first.json()["id"]
    assert [job.id for job in listed.jobs] == [done.id]


async def test_a_repeat_with_a_new_key_and_a_refused_jobs_id_is_answered_as_another_submission(
    http_client_for, store: JobStore
) -> None:
    """Alice's job waits (no workers). Bob sends her body with her job's id and a key of
    his own: his answer is the one a different body gets with that id and a new key (409,
    the id is taken, the same words), so it does not tell him the bodies match."""
    app = FastAPI(dependencies=[Depends(api_key_principal)])
    endpoints = AsyncEndpoints(
        app,
        store=store,
        run_workers=False,
        authorize=lambda request, job: request.state.principal == "alice",
    )

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> None: ...

    job_id = str(uuid.uuid4())
    async with http_client_for(app) as client:
        alice = {"X-Api-Key": "key-of-alice", "X-Async-Request-Id": job_id}
        first = await client.post("/orders", json={"item": "tea"}, headers=alice)

        def bob(key: str) -> dict[str, str]:
            return {"X-Api-Key": "key-of-bob", "X-Async-Request-Id": job_id, "Idempotency-Key": key}

        by_bob = await client.post("/orders", json={"item": "tea"}, headers=bob("k1"))
        other = await client.post("/orders", json={"item": "coffee"}, headers=bob("k2"))
        listed = await endpoints.list_jobs()
    assert first.status_code == 202
    assert (by_bob.status_code, by_bob.json()) == (other.status_code, other.json())
    assert by_bob.status_code == 409
    assert [job.id for job in listed.jobs] == [uuid.UUID(job_id)]


async def test_a_key_used_by_another_submission_never_names_its_job(
    http_client_for, store: JobStore
) -> None:
    """Keys are often guessable (order ids). Reusing someone's Idempotency-Key with another
    body answers 422 without the first job's id, which with no owner or authorize hook
    would open that job to whoever guessed the key."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, run_workers=False)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> None: ...

    async with http_client_for(app) as client:
        key = {"Idempotency-Key": "order-17"}
        first = await client.post("/orders", json={"item": "tea"}, headers=key)
        guessed = await client.post("/orders", json={"item": "coffee"}, headers=key)
    assert first.status_code == 202
    assert guessed.status_code == 422
    assert first.json()["id"] not in guessed.text
    assert "Idempotency-Key" in guessed.json()["detail"]


async def test_a_submission_the_auth_dependency_refuses_stores_nothing(
    http_client_for, store: JobStore
) -> None:
    """No key, no job: the dependency answers 401 before anything is queued."""
    app, endpoints = owned_jobs_app(store)
    async with http_client_for(app) as client:
        refused = await client.post("/orders", json={"item": "tea"})
        assert refused.status_code == 401
        assert await endpoints.store.count_waiting() == 0


async def test_an_owner_hook_that_raises_answers_with_its_exception_and_stores_nothing(
    http_client_for,
) -> None:
    """An HTTPException from the hook is the answer; no job is queued."""
    app = FastAPI()

    async def owner(request: Request) -> str:
        raise HTTPException(403, "no principal")

    endpoints = AsyncEndpoints(app, run_workers=False, owner=owner)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> None: ...

    async with http_client_for(app) as client:
        refused = await client.post("/orders", json={"item": "tea"})
        assert refused.status_code == 403
        assert await endpoints.store.count_waiting() == 0


async def test_the_owner_is_asked_after_the_validator_and_handed_to_the_handler(
    app, http_client_for, store: JobStore
) -> None:
    """A refused body or validator asks no owner; the handler reads the job's owner as
    ``ctx.owner`` (to pass on to the jobs it submits), on every store; a job submitted
    without one reads None."""
    asked: list[str] = []

    def owner(request: Request) -> str:
        asked.append(request.url.path)
        return "carol"

    endpoints = AsyncEndpoints(app, store=store, owner=owner)

    def refuse_coffee(request: Request, body: Order) -> JSONResponse | None:
        return JSONResponse({"detail": "no coffee"}, 409) if body.item == "coffee" else None

    @endpoints.map_async_post("/orders", name="PlaceOrder", validator=refuse_coffee)
    async def place_order(ctx: AsyncContext[Order]) -> str | None:
        return ctx.owner

    async with http_client_for(app) as client:
        assert (await client.post("/orders", json={"it": "tea"})).status_code == 422
        assert (await client.post("/orders", json={"item": "coffee"})).status_code == 409
        accepted = await client.post("/orders", json={"item": "tea"})
        job = await endpoints.wait_for(accepted.json()["id"], timeout=5)
        from_code = await endpoints.submit("PlaceOrder", {"item": "tea"})
        unowned = await endpoints.wait_for(from_code.id, timeout=5)
    assert asked == ["/orders"] and job.owner == "carol"
    assert job.result == "carol" and unowned.result is None


# --- no stack traces, no internals ------------------------------------------------------------


async def failed_job_json(http_client_for, store: JobStore, **settings: Any) -> dict[str, Any]:
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, max_retries=0, **settings)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> None:
        raise LookupError(f"no stock of {ctx.request.item}")

    endpoints.map_job_details("/jobs/{job_id}")
    async with http_client_for(app) as client:
        submitted = await client.post("/orders", json={"item": "tea"})
        await endpoints.wait_for(submitted.json()["id"], timeout=5)
        details = await client.get(submitted.headers["location"])
    assert details.status_code == 200
    job: dict[str, Any] = details.json()
    return job


async def test_a_failed_jobs_json_has_no_stack_trace_by_default(
    http_client_for, store: JobStore
) -> None:
    """The error is exactly {message, type}: no traceback, no file names."""
    job = await failed_job_json(http_client_for, store)
    assert job["error"] == {"message": "no stock of tea", "type": "LookupError"}
    assert "Traceback" not in str(job) and 'File "' not in str(job)


async def test_include_tracebacks_shows_the_stack_trace_in_the_job_json(
    http_client_for, store: JobStore
) -> None:
    """Opting in adds the formatted trace as error.traceback."""
    job = await failed_job_json(http_client_for, store, include_tracebacks=True)
    assert job["error"]["type"] == "LookupError"
    assert job["error"]["traceback"].startswith("Traceback")
    assert "no stock of tea" in job["error"]["traceback"]


async def test_the_library_errors_carry_no_stack_trace(http_client_for) -> None:
    """400, 404, 413, 415, 422 and 503 (queue full) answers: short JSON, no trace."""
    app = FastAPI()
    endpoints = echo_app(app, run_workers=False, max_body_size=100, max_queue_size=1)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> None: ...

    json_type = {"content-type": "application/json"}
    async with http_client_for(app) as client:
        answers = [
            await client.post("/orders", content=b"{", headers=json_type),
            await client.get(f"/jobs/{uuid.uuid4()}"),
            await client.post("/orders", content=b"[" * 200, headers=json_type),
            await client.post("/orders", content=b"{}", headers={"content-type": "text/xml"}),
            await client.post("/orders", json={"item": 1}),
            await client.post("/echo"),
            await client.post("/echo"),
        ]
    statuses = [answer.status_code for answer in answers]
    assert statuses == [400, 404, 413, 415, 422, 202, 503]
    for answer in answers:
        assert "Traceback" not in answer.text and 'File "' not in answer.text
        assert answer.headers["content-type"] == "application/json"


async def test_an_unreachable_redis_answers_503_without_naming_the_server(
    http_client_for, own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Submissions and details get a fixed 503 message; the cause goes to the log (at
    DEBUG when another 503 of this process warned less than 10 s before: `_outage_log`)."""
    caplog.set_level(logging.DEBUG, logger="async_endpoints")
    app = FastAPI()
    echo_app(app, store=RedisJobStore(own_redis_server.url, socket_timeout=0.5), run_workers=False)
    address = f"127.0.0.1:{own_redis_server.port}"
    async with http_client_for(app) as client:
        own_redis_server.stop()
        answers = [await client.post("/echo"), await client.get(f"/jobs/{uuid.uuid4()}")]
        for answer in answers:
            assert answer.status_code == 503 and "retry-after" in answer.headers
            assert answer.json() == {"detail": "the job store is unavailable; try again later"}
            assert str(own_redis_server.port) not in answer.text
        own_redis_server.start()
    assert address in caplog.text or str(own_redis_server.port) in caplog.text


async def test_a_store_refusal_answers_500_with_a_fixed_message_and_logs_the_cause(
    http_client_for, own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis refusing the enqueue (an ACL forbidding scripts): 500, JSON, no details."""
    admin = redis.Redis.from_url(own_redis_server.url)
    await admin.acl_setuser(
        "no-scripts",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-evalsha", "-eval", "-script"],
    )
    await admin.aclose()
    url = f"redis://no-scripts:pw@127.0.0.1:{own_redis_server.port}/0"
    app = FastAPI()
    echo_app(app, store=RedisJobStore(url), run_workers=False)
    async with http_client_for(app) as client:
        refused = await client.post("/echo")
    admin = redis.Redis.from_url(own_redis_server.url)
    stored_keys = await admin.dbsize()
    await admin.aclose()
    assert stored_keys == 0
    assert refused.status_code == 500
    assert refused.json() == {"detail": "the job store failed to carry out the request"}
    assert "NOPERM" not in refused.text and "no-scripts" not in refused.text
    assert "could not queue a job" in caplog.text and "no permissions" in caplog.text.lower()
