"""POST to an async endpoint, through a real ASGI client with the app's lifespan running."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    Job,
    JobStatus,
    JobStore,
    JobValidationError,
)
from tests.wire import JOB_FIELDS

SENSITIVE = ("authorization", "cookie", "proxy-authorization", "x-api-key")


#: A request type whose constraint lives in its annotation only.
Few = Annotated[list[int], Field(max_length=2)]


class Order(BaseModel):
    item: str
    quantity: int = 1


@pytest.fixture(params=[FastAPI, Starlette], ids=["fastapi", "starlette"])
def app(request: pytest.FixtureRequest) -> Starlette:
    """A fresh, empty app: every rule here holds for FastAPI and for plain Starlette."""
    app_class: type[Starlette] = request.param
    return app_class()


def order_endpoint(endpoints: AsyncEndpoints, path: str = "/orders", **options: Any) -> None:
    """Map ``POST path`` to a handler whose result is what it was given (body and request)."""

    @endpoints.map_async_post(path, name="PlaceOrder", **options)
    async def place_order(ctx: AsyncContext[Order]) -> dict[str, Any]:
        return {
            "body": ctx.request.model_dump(),
            "headers": ctx.headers.items(),
            "query": ctx.query_params.multi_items(),
            "route": dict(ctx.route_params),
        }


def captured_header_names(job: Job | None) -> set[str]:
    assert job is not None
    return {name for name, _ in job.request.headers}


def seen_header_names(result: dict[str, Any]) -> set[str]:
    return {name for name, _ in result["headers"]}


async def posted_result(endpoints: AsyncEndpoints, response: Any) -> Any:
    """The result of the job that ``response`` (a 202) announced, once it is terminal."""
    assert response.status_code == 202, response.text
    job = await endpoints.wait_for(response.json()["id"], timeout=5)
    assert job.status is JobStatus.COMPLETED, job.error
    return job.result


# --- 202 Accepted --------------------------------------------------------------------------


async def test_a_valid_post_answers_202_with_the_queued_job_json(app, http_client_for) -> None:
    """202, body: all eleven camelCase fields of the job JSON, status Queued, times in Z."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json={"item": "tea"})
    assert response.status_code == 202
    assert response.headers["content-type"].startswith("application/json")
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert uuid.UUID(job["id"]).version == 4
    assert job["name"] == "PlaceOrder" and job["status"] == "Queued"
    assert job["retryCount"] == 0 and job["maxRetries"] == 3
    assert job["startedAt"] is job["completedAt"] is job["result"] is job["error"] is None
    for field in ("createdAt", "lastUpdatedAt"):
        assert job[field].endswith("Z")
        assert datetime.fromisoformat(job[field]).utcoffset().total_seconds() == 0


async def test_the_location_header_points_at_the_job_details_url(app, http_client_for) -> None:
    """With a job-details route mapped, Location is that route's URL for the new job."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    endpoints.map_job_details("/jobs/{job_id}")
    async with http_client_for(app) as client:
        submitted = await client.post("/orders", json={"item": "tea"})
        details = await client.get(submitted.headers["location"])
    assert submitted.headers["location"] == f"/jobs/{submitted.json()['id']}"
    assert details.status_code == 200 and details.json() == submitted.json()


async def test_there_is_no_location_header_without_a_job_details_route(
    app, http_client_for
) -> None:
    """Without map_job_details there is no URL to point at, so no Location header."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json={"item": "tea"})
    assert response.status_code == 202 and "location" not in response.headers


async def test_the_location_header_includes_the_mount_prefix(app, http_client_for) -> None:
    """Mounted under /v1, Location is /v1/jobs/{id} and leads to the job."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    endpoints.map_job_details("/jobs/{job_id}")
    outer = Starlette(routes=[Mount("/v1", app=app)])
    async with http_client_for(outer) as client:
        submitted = await client.post("/v1/orders", json={"item": "tea"})
        details = await client.get(submitted.headers["location"])
    assert submitted.headers["location"] == f"/v1/jobs/{submitted.json()['id']}"
    assert details.status_code == 200


@pytest.mark.parametrize(
    ("sent", "quoted"),
    [
        ("a%20b", "a%20b"),
        ("a%0D%0AX-Injected:%201", "a%0D%0AX-Injected:%201"),
        ("%E2%80%A8", "%E2%80%A8"),
    ],
    ids=["space", "crlf", "line-separator"],
)
async def test_a_mount_parameter_in_the_location_is_quoted_again(
    app, http_client_for, sent: str, quoted: str
) -> None:
    """Under ``Mount("/t/{tenant}")`` the root path holds the parameter decoded: the
    Location quotes it again (a space, CR LF or U+2028 never reach the header raw, and no
    500), and it leads to the job."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    endpoints.map_job_details("/jobs/{job_id}")
    outer = Starlette(routes=[Mount("/t/{tenant}", app=app)])
    async with http_client_for(outer) as client:
        submitted = await client.post(f"/t/{sent}/orders", json={"item": "tea"})
        assert submitted.status_code == 202
        location = submitted.headers["location"]
        assert location == f"/t/{quoted}/jobs/{submitted.json()['id']}"
        assert (await client.get(location)).status_code == 200


async def test_a_root_path_of_a_slash_gives_a_location_on_this_host(app) -> None:
    """``--root-path /`` (a root path that is a slash alone): the Location is
    ``/jobs/{id}``, not ``//jobs/{id}``, which a client reads as a link to a host named
    ``jobs``; it leads to the job. ``/api/`` gives ``/api/jobs/{id}``, not
    ``/api//jobs/{id}``."""
    import httpx

    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    endpoints.map_job_details("/jobs/{job_id}")
    transport = httpx.ASGITransport(app=app, root_path="/")
    async with (
        endpoints.running(),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        submitted = await client.post("/orders", json={"item": "tea"})
        location = submitted.headers["location"]
        assert location == f"/jobs/{submitted.json()['id']}"
        assert (await client.get(location)).status_code == 200
    # A root path ending in a slash (``--root-path /api/``) gives one slash before jobs.
    transport = httpx.ASGITransport(app=app, root_path="/api/")
    async with (
        endpoints.running(),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        submitted = await client.post("/api//orders", json={"item": "tea"})
        assert submitted.headers["location"] == f"/api/jobs/{submitted.json()['id']}"


async def test_job_json_answers_are_never_stored_by_a_cache(app, http_client_for) -> None:
    """A job's JSON is its owner's: the 202, a GET of the job and its long poll, and a
    cancel's 200 carry ``Cache-Control: no-store``."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    endpoints.map_job_details("/jobs/{job_id}")
    endpoints.map_job_cancel()
    async with http_client_for(app) as client:
        submitted = await client.post("/orders", json={"item": "tea"})
        location = submitted.headers["location"]
        answers = [
            submitted,
            await client.get(location),
            await client.get(location, headers={"Prefer": "wait=0.1"}),
            await client.post(f"{location}/cancel"),
        ]
    assert [answer.status_code for answer in answers] == [202, 200, 200, 200]
    assert {answer.headers["cache-control"] for answer in answers} == {"no-store"}


async def test_each_endpoints_object_points_location_at_its_own_details_route(
    app, http_client_for
) -> None:
    """Two AsyncEndpoints on one app: each 202's Location leads to its own job."""
    orders = AsyncEndpoints(app, run_workers=False)
    order_endpoint(orders)
    orders.map_job_details("/orders/jobs/{job_id}")
    reports = AsyncEndpoints(app, run_workers=False)
    reports.map_async_post("/reports", name="Report")(bare_context)
    reports.map_job_details("/reports/jobs/{job_id}")
    async with http_client_for(app) as client:
        submitted = await client.post("/reports")
        details = await client.get(submitted.headers["location"])
    assert submitted.headers["location"] == f"/reports/jobs/{submitted.json()['id']}"
    assert details.status_code == 200 and details.json()["name"] == "Report"


# --- what the handler receives -------------------------------------------------------------


async def test_the_handler_receives_the_validated_body(app, http_client_for) -> None:
    """ctx.request is the body parsed into the model, defaults filled in."""
    endpoints = AsyncEndpoints(app)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json={"item": "tea"})
        result = await posted_result(endpoints, response)
    assert result["body"] == {"item": "tea", "quantity": 1}


async def test_route_params_reach_the_handler_as_strings(app, http_client_for) -> None:
    """ctx.route_params holds every path parameter as a string, converted ones included."""
    endpoints = AsyncEndpoints(app)
    order_endpoint(endpoints, "/tenants/{tenant}/shops/{shop:int}/orders")
    async with http_client_for(app) as client:
        response = await client.post("/tenants/acme/shops/7/orders", json={"item": "tea"})
        result = await posted_result(endpoints, response)
    assert result["route"] == {"tenant": "acme", "shop": "7"}


async def test_query_params_reach_the_handler_with_repeated_keys_kept(app, http_client_for) -> None:
    """ctx.query_params keeps every value of a repeated key, decoded, in order."""
    endpoints = AsyncEndpoints(app)
    order_endpoint(endpoints)
    params = [("tag", "a b"), ("tag", "c&d"), ("page", "2")]
    async with http_client_for(app) as client:
        response = await client.post("/orders", params=params, json={"item": "tea"})
        result = await posted_result(endpoints, response)
    assert [tuple(pair) for pair in result["query"]] == params


async def test_headers_reach_the_handler_repeats_kept_case_insensitively(
    app, http_client_for
) -> None:
    """ctx.headers keeps repeated headers and finds them whatever the case of the name."""
    endpoints = AsyncEndpoints(app)
    seen: list[AsyncContext[Order]] = []

    @endpoints.map_async_post("/orders")
    async def place_order(ctx: AsyncContext[Order]) -> None:
        seen.append(ctx)

    headers = [("X-Trace", "first"), ("x-trace", "second"), ("X-Tenant", "acme")]
    async with http_client_for(app) as client:
        response = await client.post("/orders", headers=headers, json={"item": "tea"})
        await posted_result(endpoints, response)
    (ctx,) = seen
    assert ctx.headers.getlist("X-TRACE") == ["first", "second"]
    assert ctx.headers["x-tenant"] == ctx.headers["X-Tenant"] == "acme"


async def test_sensitive_headers_are_neither_captured_nor_stored_by_default(
    app, http_client_for
) -> None:
    """authorization, cookie, proxy-authorization and x-api-key never reach ctx or the store."""
    endpoints = AsyncEndpoints(app, run_workers=False)  # read the stored request before it runs
    order_endpoint(endpoints)
    headers = {name: "secret" for name in SENSITIVE} | {"x-tenant": "acme"}
    async with http_client_for(app) as client:
        response = await client.post("/orders", headers=headers, json={"item": "tea"})
        stored = await endpoints.get_job(response.json()["id"])
        await endpoints.drain()
        result = await posted_result(endpoints, response)
    assert "x-tenant" in seen_header_names(result)
    assert not seen_header_names(result) & set(SENSITIVE)
    assert "x-tenant" in captured_header_names(stored)
    assert not captured_header_names(stored) & set(SENSITIVE)
    assert "secret" not in repr(stored.request)


async def test_a_sensitive_header_written_with_underscores_is_not_captured_either(
    app, http_client_for
) -> None:
    """X_Api_Key is not x-api-key to Starlette, but some proxies pass it on as that
    header: it is denied as its hyphenated name is (and so is an underscored name of a
    header only the scheduler may set)."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    headers = {"X_Api_Key": "secret", "x_schedule_id": "forged", "x-tenant": "acme"}
    stored = await stored_order(app, http_client_for, endpoints, headers)
    assert captured_header_names(stored) & {"x_api_key", "x_schedule_id"} == set()
    assert "x-tenant" in captured_header_names(stored)
    assert "secret" not in repr(stored.request)


async def test_a_sensitive_header_named_with_underscores_in_the_settings_is_denied(
    app, http_client_for
) -> None:
    """A deny-list entry written with underscores (an app's own X_Internal_Token) denies
    that very header."""
    endpoints = AsyncEndpoints(app, run_workers=False, sensitive_headers=["x_internal_token"])
    order_endpoint(endpoints)
    headers = {"X_Internal_Token": "secret", "x-tenant": "acme"}
    stored = await stored_order(app, http_client_for, endpoints, headers)
    assert "x_internal_token" not in captured_header_names(stored)
    assert "secret" not in repr(stored.request)


async def test_capture_headers_keeps_only_the_allow_listed_headers(app, http_client_for) -> None:
    """With capture_headers, only the named headers (any case) are captured."""
    endpoints = AsyncEndpoints(app, run_workers=False, capture_headers=["X-Tenant"])
    order_endpoint(endpoints)
    headers = {"x-tenant": "acme", "x-other": "1", "user-agent": "tests"}
    stored = await stored_order(app, http_client_for, endpoints, headers)
    assert stored is not None and stored.request.headers == (("x-tenant", "acme"),)


async def test_sensitive_headers_setting_drops_the_named_headers(app, http_client_for) -> None:
    """sensitive_headers names headers that are never captured, whatever their case."""
    endpoints = AsyncEndpoints(app, run_workers=False, sensitive_headers=["X-Secret"])
    order_endpoint(endpoints)
    headers = {"X-SECRET": "hush", "x-tenant": "acme"}
    stored = await stored_order(app, http_client_for, endpoints, headers)
    assert "x-tenant" in captured_header_names(stored)
    assert "x-secret" not in captured_header_names(stored)


async def test_the_sensitive_deny_list_wins_over_the_allow_list(app, http_client_for) -> None:
    """A header both allow-listed and sensitive is not captured."""
    endpoints = AsyncEndpoints(
        app,
        run_workers=False,
        capture_headers=["x-tenant", "authorization", "x-secret"],
        sensitive_headers=["authorization", "x-secret"],
    )
    order_endpoint(endpoints)
    headers = {"x-tenant": "acme", "authorization": "Bearer t", "x-secret": "hush"}
    stored = await stored_order(app, http_client_for, endpoints, headers)
    assert captured_header_names(stored) == {"x-tenant"}


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"],
)
async def test_json_media_types_with_parameters_or_a_json_suffix_are_accepted(
    app, http_client_for, content_type: str
) -> None:
    """application/json in any case, with parameters, or any application/*+json is JSON."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post(
            "/orders", content=b'{"item": "tea"}', headers={"content-type": content_type}
        )
    assert response.status_code == 202


# --- refusals: nothing is stored -----------------------------------------------------------


async def test_malformed_json_is_refused_with_400_and_nothing_is_stored(
    app, http_client_for
) -> None:
    """A body that is not JSON answers 400 with a JSON error; no job is queued."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post(
            "/orders", content=b'{"item": "tea",', headers={"content-type": "application/json"}
        )
    assert response.status_code == 400 and "detail" in response.json()
    assert await endpoints.store.count_waiting() == 0


async def test_a_body_failing_validation_is_refused_with_422_and_an_error_list(
    app, http_client_for
) -> None:
    """422 with a detail list of {loc, msg, type} naming the bad field; nothing queued."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json={"item": "tea", "quantity": "many"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert {"loc", "msg", "type"} <= set(error) and error["loc"][-1] == "quantity"
    assert isinstance(error["msg"], str) and error["type"] == "int_parsing"
    assert await endpoints.store.count_waiting() == 0


async def test_constraints_annotated_on_the_request_type_are_enforced(app, http_client_for) -> None:
    """AsyncContext[Annotated[list[int], Field(max_length=2)]] (and Annotated around the
    whole AsyncContext): a body breaking the constraint is 422 and nothing is queued, as a
    FastAPI route with the same type answers; one within it is accepted."""
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/few", name="Few")
    async def take_few(ctx: AsyncContext[Few]) -> int:
        return len(ctx.request)

    @endpoints.map_async_post("/positive", name="Positive")
    async def positive(ctx: Annotated[AsyncContext[Annotated[int, Field(gt=0)]], "doc"]) -> int:
        return ctx.request

    async with http_client_for(app) as client:
        too_many = await client.post("/few", json=[1, 2, 3])
        negative = await client.post("/positive", json=-1)
        assert await endpoints.store.count_waiting() == 0
        fine = await client.post("/few", json=[1, 2])
        one = await client.post("/positive", json=1)
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["type"] == "too_long"
    assert negative.status_code == 422 and negative.json()["detail"][0]["type"] == "greater_than"
    assert fine.status_code == 202 and one.status_code == 202
    with pytest.raises(JobValidationError):
        await endpoints.submit("Few", [1, 2, 3])


@pytest.mark.parametrize(
    ("body", "loc"),
    [({"item": "tea", "quantity": "many"}, ["body", "quantity"]), ([], ["body"])],
    ids=["field", "whole-body"],
)
async def test_validation_error_locations_start_with_body_as_in_fastapi(
    app, http_client_for, body: Any, loc: list[str]
) -> None:
    """Each loc starts with "body", as FastAPI's (and this library's missing-body error) do."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json=body)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [loc]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_a_non_json_content_type_is_refused_with_415(
    app, http_client_for, content_type: str
) -> None:
    """A body declared as anything but JSON answers 415 with a JSON error; nothing queued."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post(
            "/orders", content=b'{"item": "tea"}', headers={"content-type": content_type}
        )
    assert response.status_code == 415 and "detail" in response.json()
    assert await endpoints.store.count_waiting() == 0


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate, gzip", "identity, gzip"])
async def test_a_compressed_body_is_refused_with_415_naming_the_coding(
    app, http_client_for, coding: str
) -> None:
    """A body sent with a ``Content-Encoding`` other than ``identity`` answers 415 naming
    it (bodies are read as sent, not decompressed), not a misleading 400 about its bytes
    or a 202 for bytes that only happen to be JSON; nothing is queued. ``identity`` is
    as none."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post(
            "/orders",
            content=gzip.compress(b'{"item": "tea"}') if coding == "gzip" else b'{"item": "tea"}',
            headers={"content-type": "application/json", "content-encoding": coding},
        )
        plain = await client.post(
            "/orders", json={"item": "tea"}, headers={"content-encoding": "Identity"}
        )
    assert response.status_code == 415 and response.headers["accept-encoding"] == "identity"
    assert "Content-Encoding" in response.json()["detail"]
    assert coding.rsplit(", ", 1)[-1] in response.json()["detail"]
    assert plain.status_code == 202
    assert await endpoints.store.count_waiting() == 1


@pytest.mark.parametrize(
    "headers", [{}, {"content-type": "application/json"}], ids=["bare", "json-typed"]
)
async def test_a_missing_body_is_refused_with_422(
    app, http_client_for, headers: dict[str, str]
) -> None:
    """No body where the handler expects one answers 422 (loc ["body"]); nothing queued."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post("/orders", headers=headers)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body"] and error["type"] == "missing"
    assert await endpoints.store.count_waiting() == 0


async def test_a_body_over_max_body_size_is_refused_with_413(app, http_client_for) -> None:
    """A Content-Length over max_body_size answers 413 with a JSON error; nothing queued."""
    endpoints = AsyncEndpoints(app, run_workers=False, max_body_size=100)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json={"item": "t" * 200})
    assert response.status_code == 413 and "detail" in response.json()
    assert await endpoints.store.count_waiting() == 0


async def test_a_streamed_body_over_max_body_size_is_refused_before_it_is_read_whole(
    app, http_client_for
) -> None:
    """A chunked body without Content-Length answers 413 once past the limit; nothing queued."""
    endpoints = AsyncEndpoints(app, run_workers=False, max_body_size=1000)
    order_endpoint(endpoints)
    chunks_sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(100):
            chunks_sent += 1
            yield b" " * 600

    async with http_client_for(app) as client:
        request = client.build_request(
            "POST", "/orders", content=body(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in request.headers
        response = await client.send(request)
    assert response.status_code == 413 and "detail" in response.json()
    assert chunks_sent < 100
    assert await endpoints.store.count_waiting() == 0


async def test_a_body_of_exactly_max_body_size_is_accepted(app, http_client_for) -> None:
    """The limit is inclusive: a body of max_body_size bytes is queued."""
    endpoints = AsyncEndpoints(app, run_workers=False, max_body_size=100)
    order_endpoint(endpoints)
    padding = 100 - len(b'{"item":""}')
    content = b'{"item":"' + b"t" * padding + b'"}'
    async with http_client_for(app) as client:
        response = await client.post(
            "/orders", content=content, headers={"content-type": "application/json"}
        )
    assert len(content) == 100 and response.status_code == 202
    assert await endpoints.store.count_waiting() == 1


async def test_a_full_queue_refuses_with_503_and_retry_after(app, http_client_for) -> None:
    """With max_queue_size jobs waiting, a POST answers 503 with Retry-After; nothing stored."""
    endpoints = AsyncEndpoints(app, run_workers=False, max_queue_size=2)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        accepted = [await client.post("/orders", json={"item": "tea"}) for _ in range(2)]
        refused = await client.post("/orders", json={"item": "tea"})
    assert [response.status_code for response in accepted] == [202, 202]
    assert refused.status_code == 503 and "detail" in refused.json()
    assert int(refused.headers["retry-after"]) >= 1
    assert await endpoints.store.count_waiting() == 2


async def test_a_full_queue_says_how_many_jobs_wait_in_plain_words(
    app, http_client_for, store: JobStore
) -> None:
    """The 503 of a full queue says it is full and names the jobs waiting (one as "1 job
    is") and the limit, on every store."""
    endpoints = AsyncEndpoints(app, store=store, run_workers=False, max_queue_size=1)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        await client.post("/orders", json={"item": "tea"})
        refused = await client.post("/orders", json={"item": "tea"})
    assert refused.status_code == 503
    assert refused.json() == {
        "detail": "the queue is full: 1 job is waiting, the max_queue_size limit"
    }


# --- the validator hook --------------------------------------------------------------------


def refuse_sync(request: Request, body: Order) -> Response | None:
    if request.path_params["tenant"] == "blocked":
        return JSONResponse({"detail": "tenant blocked"}, 403, headers={"X-Why": "policy"})
    return None


async def refuse_async(request: Request, body: Order) -> Response | None:
    return refuse_sync(request, body)


@pytest.mark.parametrize("validator", [refuse_sync, refuse_async], ids=["sync", "async"])
async def test_a_validator_response_is_sent_as_is_and_nothing_is_queued(
    app, http_client_for, validator: Any
) -> None:
    """A Response returned by the validator is the answer; no job is stored."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints, "/tenants/{tenant}/orders", validator=validator)
    async with http_client_for(app) as client:
        response = await client.post("/tenants/blocked/orders", json={"item": "tea"})
    assert response.status_code == 403 and response.json() == {"detail": "tenant blocked"}
    assert response.headers["x-why"] == "policy"
    assert await endpoints.store.count_waiting() == 0


@pytest.mark.parametrize("validator", [refuse_sync, refuse_async], ids=["sync", "async"])
async def test_a_validator_returning_none_lets_the_job_be_queued(
    app, http_client_for, validator: Any
) -> None:
    """None from the validator: the usual 202, and the job is stored."""
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints, "/tenants/{tenant}/orders", validator=validator)
    async with http_client_for(app) as client:
        response = await client.post("/tenants/acme/orders", json={"item": "tea"})
    assert response.status_code == 202 and response.json()["status"] == "Queued"
    assert await endpoints.store.count_waiting() == 1


async def test_the_validator_receives_the_request_and_the_parsed_body(app, http_client_for) -> None:
    """validator(request, body): the Starlette request and the body as a model instance."""
    calls: list[tuple[Request, Any]] = []
    endpoints = AsyncEndpoints(app, run_workers=False)
    order_endpoint(endpoints, validator=lambda request, body: calls.append((request, body)))
    async with http_client_for(app) as client:
        await client.post("/orders", json={"item": "tea", "quantity": 2})
    ((request, body),) = calls
    assert isinstance(request, Request) and request.url.path == "/orders"
    assert body == Order(item="tea", quantity=2)


# --- endpoints without a body --------------------------------------------------------------


async def bare_context(ctx: AsyncContext) -> dict[str, Any]:
    return {"request": ctx.request, "route": dict(ctx.route_params)}


async def none_context(ctx: AsyncContext[None]) -> dict[str, Any]:
    return {"request": ctx.request, "route": dict(ctx.route_params)}


@pytest.mark.parametrize("handler", [bare_context, none_context], ids=["bare", "none"])
async def test_a_no_body_endpoint_accepts_a_post_without_a_body(
    app, http_client_for, handler: Any
) -> None:
    """AsyncContext and AsyncContext[None] endpoints queue an empty POST; ctx.request is None."""
    endpoints = AsyncEndpoints(app)
    endpoints.map_async_post("/reports/{kind}")(handler)
    async with http_client_for(app) as client:
        response = await client.post("/reports/nightly")
        result = await posted_result(endpoints, response)
    assert result == {"request": None, "route": {"kind": "nightly"}}


@pytest.mark.parametrize("handler", [bare_context, none_context], ids=["bare", "none"])
async def test_a_no_body_endpoint_refuses_a_declared_body_over_max_body_size_with_413(
    app, http_client_for, handler: Any
) -> None:
    """The limit holds on every endpoint: a Content-Length over max_body_size answers 413
    (JSON) where the handler takes no body too, and nothing is queued; a small body it
    does not read is still accepted."""
    endpoints = AsyncEndpoints(app, run_workers=False, max_body_size=100)
    endpoints.map_async_post("/reports/{kind}")(handler)
    async with http_client_for(app) as client:
        large = await client.post("/reports/nightly", content=b"x" * 200)
        queued_after_large = await endpoints.store.count_waiting()
        small = await client.post("/reports/nightly", content=b"x" * 50)
    assert large.status_code == 413 and "100 bytes" in large.json()["detail"]
    assert queued_after_large == 0
    assert small.status_code == 202


@pytest.mark.parametrize("handler", [bare_context, none_context], ids=["bare", "none"])
async def test_a_no_body_endpoint_refuses_a_streamed_body_over_max_body_size_with_413(
    app, http_client_for, handler: Any
) -> None:
    """A body sent without Content-Length (chunked) to an endpoint whose handler takes no
    body is held to max_body_size too: 413 (JSON) once past it, the rest unsent, nothing
    queued; a small streamed body is read, dropped, and the POST queued."""
    endpoints = AsyncEndpoints(app, run_workers=False, max_body_size=1000)
    endpoints.map_async_post("/reports/{kind}")(handler)
    sent = {"large": 0, "small": 0}

    def streamed(kind: str, chunks: int) -> AsyncIterator[bytes]:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(chunks):
                sent[kind] += 1
                yield b"x" * 300

        return body()

    async with http_client_for(app) as client:
        large_request = client.build_request(
            "POST", "/reports/nightly", content=streamed("large", 100)
        )
        assert "content-length" not in large_request.headers
        large = await client.send(large_request)
        queued_after_large = await endpoints.store.count_waiting()
        small_request = client.build_request(
            "POST", "/reports/nightly", content=streamed("small", 2)
        )
        small = await client.send(small_request)
    assert large.status_code == 413 and "1000 bytes" in large.json()["detail"]
    assert queued_after_large == 0
    assert sent["large"] < 100
    assert small.status_code == 202 and sent["small"] == 2
    assert await endpoints.store.count_waiting() == 1


# --- the job_submitted_response factory ----------------------------------------------------


def created_sync(job: Job, request: Request) -> Response:
    body = {"ticket": str(job.id), "name": job.name, "status": job.status.value}
    return JSONResponse(body, 201, headers={"X-Path": request.url.path})


async def created_async(job: Job, request: Request) -> Response:
    return created_sync(job, request)


@pytest.mark.parametrize("factory", [created_sync, created_async], ids=["sync", "async"])
async def test_job_submitted_response_replaces_the_202(app, http_client_for, factory: Any) -> None:
    """The factory's Response (given the queued job and the request) is sent instead."""
    endpoints = AsyncEndpoints(app, run_workers=False, job_submitted_response=factory)
    order_endpoint(endpoints)
    async with http_client_for(app) as client:
        response = await client.post("/orders", json={"item": "tea"})
        stored = await endpoints.get_job(response.json()["ticket"])
    assert response.status_code == 201 and response.headers["x-path"] == "/orders"
    assert response.json()["name"] == "PlaceOrder" and response.json()["status"] == "Queued"
    assert stored is not None and stored.status is JobStatus.QUEUED


def returns_none(job: Job, request: Request) -> None:
    return None


async def raises(job: Job, request: Request) -> Response:
    raise RuntimeError("the app's hook broke")


@pytest.mark.parametrize("factory", [returns_none, raises], ids=["returns-none", "raises"])
async def test_a_failing_job_submitted_response_still_tells_the_client_its_stored_job(
    app, http_client_for, factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The job is stored before the hook runs: when the hook raises or returns no Response,
    the client gets the default 202 (the job JSON and Location), not a 500 it would retry
    (a second job), and the hook's failure is logged as an error naming the job."""
    endpoints = AsyncEndpoints(app, run_workers=False, job_submitted_response=factory)
    order_endpoint(endpoints)
    endpoints.map_job_details()
    with caplog.at_level("ERROR", logger="async_endpoints"):
        async with http_client_for(app) as client:
            response = await client.post("/orders", json={"item": "tea"})
            listed = await endpoints.list_jobs()
    assert response.status_code == 202
    assert response.headers["location"].endswith(f"/jobs/{response.json()['id']}")
    assert [str(job.id) for job in listed.jobs] == [response.json()["id"]]
    (logged,) = [r for r in caplog.records if "job_submitted_response" in r.getMessage()]
    assert logged.levelname == "ERROR" and response.json()["id"] in logged.getMessage()


async def stored_order(
    app: Any, http_client_for: Any, endpoints: AsyncEndpoints, headers: dict[str, str]
) -> Job | None:
    """The job an order POSTed with ``headers`` stored (workers off: as submitted)."""
    async with http_client_for(app) as client:
        response = await client.post("/orders", headers=headers, json={"item": "tea"})
        return await endpoints.get_job(response.json()["id"])
