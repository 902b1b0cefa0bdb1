"""Idempotent submission: Idempotency-Key (and submit(idempotency_key=...)), and
X-Async-Request-Id made once per id, on the in-memory store and on a real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, BeforeValidator, Field, SecretStr
from redis.asyncio import Redis

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    IdempotentJobGoneError,
    IdempotentStore,
    InMemoryJobStore,
    JobStore,
)
from async_endpoints._idempotency import IdempotencyConflictError
from async_endpoints._memory_idempotency import IdempotencyKeys
from async_endpoints.testing import ManualClock
from async_endpoints_redis import RedisJobStore
from tests.redis_servers import RedisServer
from tests.serving import served


class Order(BaseModel):
    item: str
    count: int = 1


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_server: RedisServer, prefix: str
) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield InMemoryJobStore()
        return
    redis_store = RedisJobStore(url=redis_server.url, prefix=prefix)
    yield redis_store
    await redis_store.aclose()


def make_app(
    store: JobStore, *, workers: bool = False, **settings: Any
) -> tuple[FastAPI, AsyncEndpoints]:
    app = FastAPI()
    endpoints = AsyncEndpoints(
        app,
        store=store,
        run_workers=workers,
        owner=lambda request: request.headers.get("x-user"),
        **settings,
    )

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place(ctx: AsyncContext[Order]) -> str:
        return ctx.request.item

    @endpoints.map_async_post("/returns", name="ReturnOrder")
    async def give_back(ctx: AsyncContext[Order]) -> str:
        return ctx.request.item

    @endpoints.map_async_post("/shops/{shop}/orders", name="ShopOrder")
    async def shop_order(ctx: AsyncContext[Order]) -> str:
        return ctx.route_params["shop"]

    endpoints.map_job_details()
    return app, endpoints


async def waiting(endpoints: AsyncEndpoints) -> int:
    return sum(stats.queued for stats in await endpoints.queue_stats())


async def test_a_repeated_key_answers_the_first_job_and_stores_nothing(store: JobStore) -> None:
    """Same key, endpoint, owner and body: 202 with the first job's id, one job stored."""
    app, endpoints = make_app(store)
    headers = {"Idempotency-Key": "order-17", "x-user": "ann"}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/orders", json={"item": "tea", "count": 1}, headers=headers)
        again = await client.post("/orders", json={"count": 1, "item": "tea"}, headers=headers)
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["location"] == first.headers["location"]
        assert await waiting(endpoints) == 1


async def test_a_body_is_compared_as_sent_whatever_its_spacing_and_key_order(
    store: JobStore,
) -> None:
    """The fingerprint is the body's JSON as the client sent it, keys sorted: spacing and
    key order do not count; a default spelled out, a number sent as text or a field the
    model ignores make another body (the client sent another body: 422)."""
    app, endpoints = make_app(store)
    headers = {"Idempotency-Key": "order-19", "content-type": "application/json"}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/orders", content='{"item":"tea"}', headers=headers)
        again = await client.post("/orders", content='{ "item" :  "tea" }', headers=headers)
        assert (again.status_code, again.json()["id"]) == (202, first.json()["id"])
        for other in ({"item": "tea", "count": 1}, {"item": "tea", "note": "x"}):
            clash = await client.post("/orders", json=other, headers=headers)
            assert clash.status_code == 422, other
        assert await waiting(endpoints) == 1


class Stamped(BaseModel):
    """A body with fields the model fills in itself."""

    item: str
    request_id: uuid.UUID = Field(default_factory=uuid.uuid4)


class Tagged(BaseModel):
    item: str
    tags: set[str]


class Guarded(BaseModel):
    item: str
    password: SecretStr
    target: str = Field(default="", exclude=True)


def make_model_app(store: JobStore) -> tuple[FastAPI, AsyncEndpoints]:
    """Endpoints whose models dump a body otherwise than it was sent."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, run_workers=False)

    @endpoints.map_async_post("/stamped")
    async def stamped(ctx: AsyncContext[Stamped]) -> str:
        return str(ctx.request.request_id)

    @endpoints.map_async_post("/tagged")
    async def tagged(ctx: AsyncContext[Tagged]) -> list[str]:
        return sorted(ctx.request.tags)

    @endpoints.map_async_post("/guarded")
    async def guarded(ctx: AsyncContext[Guarded]) -> str:
        return ctx.request.target

    return app, endpoints


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Async-Request-Id"])
async def test_a_byte_identical_retry_is_a_repeat_whatever_the_model_fills_in(
    store: JobStore, header: str
) -> None:
    """A model with a default_factory (a fresh uuid each time it reads the body) or a set
    field: the same bytes sent again answer the first job, by key or by chosen id."""
    app, endpoints = make_model_app(store)
    headers = {header: str(uuid.uuid4())}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        for path, body in (
            ("/stamped", {"item": "tea"}),
            ("/tagged", {"item": "tea", "tags": [f"t{n}" for n in range(12)]}),
        ):
            headers[header] = str(uuid.uuid4())
            first = await client.post(path, json=body, headers=headers)
            again = await client.post(path, json=body, headers=headers)
            assert first.status_code == 202, first.text
            assert (again.status_code, again.json()["id"]) == (202, first.json()["id"]), path
        assert await waiting(endpoints) == 2


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Async-Request-Id"])
@pytest.mark.parametrize(
    ("first_body", "other_body"),
    [
        ({"item": "a", "password": "first-secret"}, {"item": "a", "password": "other-secret"}),
        (
            {"item": "a", "password": "s", "target": "account-A"},
            {"item": "a", "password": "s", "target": "account-B"},
        ),
    ],
    ids=["secret-field", "excluded-field"],
)
async def test_bodies_that_differ_only_where_the_model_hides_it_are_not_a_repeat(
    store: JobStore, header: str, first_body: dict[str, str], other_body: dict[str, str]
) -> None:
    """A SecretStr field (dumped masked) or a field declared exclude=True: another value
    there is another submission (422 by key, 409 by chosen id), never the first job."""
    app, endpoints = make_model_app(store)
    headers = {header: str(uuid.uuid4())}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/guarded", json=first_body, headers=headers)
        other = await client.post("/guarded", json=other_body, headers=headers)
        assert first.status_code == 202
        assert other.status_code == (422 if header == "Idempotency-Key" else 409)
        assert await waiting(endpoints) == 1


async def submit_tagged(url: str, prefix: str, key: str) -> str:
    """In this process: POST one body with a set field to /tagged on the Redis store at
    ``url`` with ``Idempotency-Key: key``, and submit one from code with the key
    ``key`` + "-code"; the answer's status and job id, and the submitted job's id."""
    store = RedisJobStore(url=url, prefix=prefix)
    app, endpoints = make_model_app(store)
    body = {"item": "tea", "tags": [f"tag-{n}" for n in range(12)]}
    try:
        async with endpoints.running(workers=False):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                answer = await client.post("/tagged", json=body, headers={"Idempotency-Key": key})
            given = Tagged(item="tea", tags={f"tag-{n}" for n in range(12)})
            job = await endpoints.submit("tagged", given, idempotency_key=key + "-code")
        return f"{answer.status_code} {answer.json().get('id')} {job.id}"
    finally:
        await store.aclose()


class Aliased(BaseModel):
    item_name: str = Field(alias="itemName")
    weight: float = 0.0


async def test_a_body_given_in_code_is_compared_as_given(store: JobStore) -> None:
    """submit() with plain data compares it as given: the same data sent as JSON with the
    same key is a repeat (aliases and a whole number for a float as sent), a secret given
    otherwise is another submission; a model instance compares by the fields set."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, run_workers=False)

    @endpoints.map_async_post("/aliased")
    async def aliased(ctx: AsyncContext[Aliased]) -> str:
        return ctx.request.item_name

    @endpoints.map_async_post("/guarded")
    async def guarded(ctx: AsyncContext[Guarded]) -> str:
        return ctx.request.item

    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        sent = await client.post(
            "/aliased", json={"itemName": "tea", "weight": 1}, headers={"Idempotency-Key": "a"}
        )
        given = await endpoints.submit(
            "aliased", {"itemName": "tea", "weight": 1}, idempotency_key="a"
        )
        assert given.id == uuid.UUID(sent.json()["id"])
        plain = await endpoints.submit(
            "aliased", {"itemName": "tea", "weight": 1.5}, idempotency_key="b"
        )
        model = await endpoints.submit(
            "aliased", Aliased(itemName="tea", weight=1.5), idempotency_key="b"
        )
        assert model.id == plain.id
        first = await endpoints.submit(
            "guarded", {"item": "a", "password": "first"}, idempotency_key="g"
        )
        with pytest.raises(IdempotencyConflictError):
            await endpoints.submit(
                "guarded", {"item": "a", "password": "other"}, idempotency_key="g"
            )
        again = await endpoints.submit(
            "guarded", Guarded(item="a", password=SecretStr("first")), idempotency_key="g"
        )
        assert again.id == first.id
        assert await waiting(endpoints) == 3


class Label:
    """An object with no JSON form of its own, which the model reads as its text."""

    def __str__(self) -> str:
        return "tea"


class Labelled(BaseModel):
    item: Annotated[str, BeforeValidator(str)]


async def test_a_body_given_in_code_with_no_json_form_is_compared_as_the_model_reads_it(
    store: JobStore,
) -> None:
    """Plain data holding an object with no JSON form: compared as the model reads it, so
    the same submission again repeats the first job, and another reading is a conflict."""
    endpoints = AsyncEndpoints(store=store, run_workers=False)

    async def labelled(ctx: AsyncContext[Labelled]) -> str:
        return ctx.request.item

    endpoints.add_handler(labelled)
    async with endpoints.running(workers=False):
        first = await endpoints.submit("labelled", {"item": Label()}, idempotency_key="l")
        again = await endpoints.submit("labelled", {"item": Label()}, idempotency_key="l")
        assert again.id == first.id
        with pytest.raises(IdempotencyConflictError):
            await endpoints.submit("labelled", {"item": "coffee"}, idempotency_key="l")


async def test_a_number_longer_than_the_interpreter_reads_is_still_fingerprinted(
    store: JobStore,
) -> None:
    """An app that lowers int_max_str_digits: a body whose number the model took but
    json.loads refuses is fingerprinted by its text (no 500); its retry is a repeat."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        app, _ = make_app(store)
        body = '{"item": "tea", "count": ' + "7" * 700 + "}"
        headers = {"Idempotency-Key": "digits", "content-type": "application/json"}
        async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
            first = await client.post("/orders", content=body, headers=headers)
            again = await client.post("/orders", content=body, headers=headers)
            assert first.status_code == 202, first.text
            assert (again.status_code, again.json()["id"]) == (202, first.json()["id"])
    finally:
        sys.set_int_max_str_digits(limit)


def test_instances_with_other_hash_seeds_agree_that_a_set_body_is_a_repeat(
    redis_server: RedisServer, prefix: str
) -> None:
    """Set order follows each process's hash seed: the same body with a set field, sent
    with one key to three instances on one Redis (each its own seed), is one job; so is
    one given to submit() in code as a model holding a set."""
    script = (
        "import asyncio, sys; from tests.test_idempotency import submit_tagged; "
        "print(asyncio.run(submit_tagged(*sys.argv[1:])))"
    )
    answers = [
        subprocess.run(
            [sys.executable, "-c", script, redis_server.url, prefix, "tags-1"],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.split()
        for seed in ("1", "2", "3")
    ]
    assert [status for status, _, _ in answers] == ["202"] * 3
    assert len({job_id for _, job_id, _ in answers}) == 1
    assert len({job_id for _, _, job_id in answers}) == 1


async def test_a_key_sent_again_with_another_chosen_id_is_422(store: JobStore) -> None:
    """Idempotency-Key and X-Async-Request-Id together: the same pair again is a repeat;
    the same key with another chosen id is another submission (422, nothing stored),
    never an answer under an id the client did not choose."""
    app, endpoints = make_app(store)
    chosen, other = str(uuid.uuid4()), str(uuid.uuid4())
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        sent = {"Idempotency-Key": "order-21", "X-Async-Request-Id": chosen}
        first = await client.post("/orders", json={"item": "tea"}, headers=sent)
        again = await client.post("/orders", json={"item": "tea"}, headers=sent)
        clash = await client.post(
            "/orders", json={"item": "tea"}, headers={**sent, "X-Async-Request-Id": other}
        )
        assert (first.status_code, first.json()["id"]) == (202, chosen)
        assert (again.status_code, again.json()["id"]) == (202, chosen)
        assert clash.status_code == 422 and "detail" in clash.json()
        assert (await client.get(f"/jobs/{other}")).status_code == 404
        assert await waiting(endpoints) == 1


async def test_a_repeated_key_with_another_body_is_422(store: JobStore) -> None:
    """The same key with a different body: 422 JSON, nothing stored."""
    app, endpoints = make_app(store)
    headers = {"Idempotency-Key": "order-18"}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        await client.post("/orders", json={"item": "tea"}, headers=headers)
        clash = await client.post("/orders", json={"item": "coffee"}, headers=headers)
        assert clash.status_code == 422 and "detail" in clash.json()
        assert await waiting(endpoints) == 1


async def test_a_repeated_key_with_other_route_or_query_parameters_is_422(
    store: JobStore,
) -> None:
    """Route and query parameters are part of the submission: the same key and body sent to
    another shop (or with another query) is a misuse of the key, not a repeat; the same
    query parameters in another order are a repeat."""
    app, endpoints = make_app(store)
    body, headers = {"item": "tea"}, {"Idempotency-Key": "shop-1"}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/shops/acme/orders?a=1&b=2", json=body, headers=headers)
        reordered = await client.post("/shops/acme/orders?b=2&a=1", json=body, headers=headers)
        other_shop = await client.post("/shops/globex/orders?a=1&b=2", json=body, headers=headers)
        other_query = await client.post("/shops/acme/orders?a=1", json=body, headers=headers)
        assert first.status_code == reordered.status_code == 202
        assert reordered.json()["id"] == first.json()["id"]
        assert other_shop.status_code == other_query.status_code == 422
        assert "detail" in other_shop.json()
        assert await waiting(endpoints) == 1


async def test_a_request_id_reused_on_another_route_is_409(store: JobStore) -> None:
    """X-Async-Request-Id names one submission: the same id and body sent to another shop
    is a clash (409), and the first shop's job is not answered for it."""
    app, endpoints = make_app(store)
    headers = {"X-Async-Request-Id": str(uuid.uuid4())}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/shops/acme/orders", json={"item": "tea"}, headers=headers)
        other = await client.post("/shops/globex/orders", json={"item": "tea"}, headers=headers)
        assert first.status_code == 202 and other.status_code == 409
        assert await waiting(endpoints) == 1


async def test_a_key_is_scoped_to_its_endpoint_and_owner(store: JobStore) -> None:
    """Another owner's or another endpoint's use of the same key is a key of its own: a
    new job, and never the first owner's job."""
    app, endpoints = make_app(store)
    body = {"item": "tea"}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        ann = await client.post(
            "/orders", json=body, headers={"Idempotency-Key": "k", "x-user": "ann"}
        )
        bob = await client.post(
            "/orders", json=body, headers={"Idempotency-Key": "k", "x-user": "bob"}
        )
        back = await client.post(
            "/returns", json=body, headers={"Idempotency-Key": "k", "x-user": "ann"}
        )
        ids = {ann.json()["id"], bob.json()["id"], back.json()["id"]}
        assert len(ids) == 3 and await waiting(endpoints) == 3


async def test_concurrent_first_requests_with_one_key_create_one_job(store: JobStore) -> None:
    """Twenty requests with one key at once: all answer 202 with the same job."""
    app, endpoints = make_app(store)
    headers = {"Idempotency-Key": "burst"}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        answers = await asyncio.gather(
            *(client.post("/orders", json={"item": "tea"}, headers=headers) for _ in range(20))
        )
        assert {a.status_code for a in answers} == {202}
        assert len({a.json()["id"] for a in answers}) == 1
        assert await waiting(endpoints) == 1


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_an_empty_or_too_long_key_is_400(store: JobStore, key: str) -> None:
    """A key of 0 or over 255 characters: 400 JSON, nothing stored."""
    app, endpoints = make_app(store)
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/orders", json={"item": "tea"}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 400 and "Idempotency-Key" in response.json()["detail"]
        assert await waiting(endpoints) == 0


async def test_a_key_too_long_is_told_in_the_bytes_the_client_sent(store: JobStore) -> None:
    """86 snowmen are 258 bytes in UTF-8: the answer counts bytes, as they were sent;
    85 of them (255 bytes) are a key."""
    app, endpoints = make_app(store)
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        too_long = await client.post(
            "/orders", json={"item": "tea"}, headers={"Idempotency-Key": ("☃" * 86).encode()}
        )
        fits = await client.post(
            "/orders", json={"item": "tea"}, headers={"Idempotency-Key": ("☃" * 85).encode()}
        )
        assert await waiting(endpoints) == 1
    assert too_long.status_code == 400
    assert too_long.json()["detail"] == "Idempotency-Key must be 1 to 255 bytes, not 258"
    assert fits.status_code == 202


async def test_submit_takes_an_idempotency_key(store: JobStore) -> None:
    """submit(idempotency_key=...): a repeat returns the first job; another body raises
    IdempotencyConflictError (a ValueError)."""
    _, endpoints = make_app(store)
    async with endpoints.running(workers=False):
        first = await endpoints.submit("PlaceOrder", {"item": "tea"}, idempotency_key="s1")
        again = await endpoints.submit("PlaceOrder", {"item": "tea"}, idempotency_key="s1")
        assert again.id == first.id
        with pytest.raises(IdempotencyConflictError):
            await endpoints.submit("PlaceOrder", {"item": "mate"}, idempotency_key="s1")
        assert issubclass(IdempotencyConflictError, ValueError)
        assert await waiting(endpoints) == 1


async def test_a_request_id_reused_with_another_body_is_409_even_after_the_job_ran(
    store: JobStore,
) -> None:
    """X-Async-Request-Id is remembered with a fingerprint of the submission, so a
    different body is a clash (409) even once the job completed and dropped its body."""
    app, endpoints = make_app(store, workers=True)
    chosen = str(uuid.uuid4())
    headers = {"X-Async-Request-Id": chosen}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/orders", json={"item": "tea"}, headers=headers)
        done = await endpoints.wait_for(first.json()["id"], timeout=10)
        same = await client.post("/orders", json={"item": "tea"}, headers=headers)
        other = await client.post("/orders", json={"item": "mate"}, headers=headers)
    assert done.status.value == "Completed"
    assert same.status_code == 202 and same.json()["id"] == chosen
    assert same.json()["status"] == "Completed"
    assert other.status_code == 409


async def test_a_server_chosen_id_sent_back_as_a_request_id_never_answers_its_job(
    store: JobStore,
) -> None:
    """An id the server chose (learnt from a Location, say) sent as X-Async-Request-Id
    names no remembered submission: once its job completed (keeping only a hash of its
    request, which the header makes different), nothing shows that a request repeats it,
    so every submission with it gets 409 (another body, other route parameters, even the
    same body), never another submission's result."""
    app, endpoints = make_app(store, workers=True)
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/shops/acme/orders", json={"item": "tea"})
        assert first.status_code == 202
        taken = {"X-Async-Request-Id": first.json()["id"]}
        done = await endpoints.wait_for(first.json()["id"], timeout=10)
        answers = [
            await client.post(path, json=body, headers=taken)
            for path, body in [
                ("/shops/acme/orders", {"item": "mate"}),  # another body
                ("/shops/globex/orders", {"item": "tea"}),  # other route parameters
                ("/shops/acme/orders", {"item": "tea"}),  # same body, not the same request
            ]
        ]
    assert done.status.value == "Completed" and done.result == "acme"
    assert [answer.status_code for answer in answers] == [409, 409, 409]
    assert all("result" not in answer.json() for answer in answers)
    assert all("taken" in answer.json()["detail"] for answer in answers)


async def test_a_server_chosen_id_sent_back_before_its_job_ran_is_compared_with_its_request(
    store: JobStore,
) -> None:
    """While the job keeps its request, a submission with its server-chosen id as
    X-Async-Request-Id is compared with it: the same one answers the job (202), another
    body or other route parameters 409; nothing is stored either way."""
    app, endpoints = make_app(store)
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/shops/acme/orders", json={"item": "tea"})
        taken = {"X-Async-Request-Id": first.json()["id"]}
        same = await client.post("/shops/acme/orders", json={"item": "tea"}, headers=taken)
        body = await client.post("/shops/acme/orders", json={"item": "mate"}, headers=taken)
        shop = await client.post("/shops/globex/orders", json={"item": "tea"}, headers=taken)
        stored = await waiting(endpoints)
    assert same.status_code == 202 and same.json() == first.json()
    assert (body.status_code, shop.status_code, stored) == (409, 409, 1)


async def test_a_key_is_forgotten_after_its_ttl() -> None:
    """Past idempotency_ttl (on the store's clock) the key stores a new job."""
    clock = ManualClock()
    _, endpoints = make_app(InMemoryJobStore(clock=clock), idempotency_ttl=60)
    async with endpoints.running(workers=False):
        first = await endpoints.submit("PlaceOrder", {"item": "tea"}, idempotency_key="t")
        clock.advance(59)
        assert (
            await endpoints.submit("PlaceOrder", {"item": "tea"}, idempotency_key="t")
        ).id == first.id
        clock.advance(2)
        later = await endpoints.submit("PlaceOrder", {"item": "tea"}, idempotency_key="t")
    assert later.id != first.id


async def test_a_chosen_id_past_its_ttl_answers_only_an_identical_resend_of_its_job() -> None:
    """Past idempotency_ttl the fingerprint is forgotten; the Completed job (still kept)
    keeps only a hash of its request in memory: a resend identical in all it captured is
    answered with the job (202), and the id with another body is a clash (409), never the
    job's result; nothing is stored either way."""
    clock = ManualClock()
    app, endpoints = make_app(InMemoryJobStore(clock=clock), workers=True, idempotency_ttl=60)
    chosen = str(uuid.uuid4())
    headers = {"X-Async-Request-Id": chosen}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/orders", json={"item": "tea"}, headers=headers)
        await endpoints.wait_for(chosen, timeout=10)
        clock.advance(61)
        # The clash first: the resend remembers the id's fingerprint again.
        other = await client.post("/orders", json={"item": "mate"}, headers=headers)
        resent = await client.post("/orders", json={"item": "tea"}, headers=headers)
        kept = await client.get(f"/jobs/{chosen}")
        stored = await endpoints.store.count_waiting()
    assert first.status_code == 202
    assert resent.status_code == 202 and resent.json() == kept.json()
    assert kept.json()["status"] == "Completed" and kept.json()["result"] == "tea"
    assert other.status_code == 409 and "result" not in other.json()
    assert stored == 0


async def test_a_repeat_after_its_job_was_dropped_is_409_and_runs_nothing() -> None:
    """A job dropped by max_retained before its key's ttl: the same key and body answer
    409 naming the job (nothing stored, the handler ran once), another body 422; a
    repeated X-Async-Request-Id 409 too; submit() raises IdempotentJobGoneError."""
    app, endpoints = make_app(InMemoryJobStore(max_retained=1), workers=False)
    headers = {"Idempotency-Key": "order-20", "x-user": "ann"}
    chosen = str(uuid.uuid4())
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/orders", json={"item": "tea"}, headers=headers)
        by_id = await client.post(
            "/orders", json={"item": "tea"}, headers={"X-Async-Request-Id": chosen}
        )
        assert await endpoints.drain() == 2
        await client.post("/orders", json={"item": "later"})
        assert await endpoints.drain() == 1  # max_retained=1: only this one is kept now
        assert (await client.get(f"/jobs/{first.json()['id']}")).status_code == 404
        again = await client.post("/orders", json={"item": "tea"}, headers=headers)
        other = await client.post("/orders", json={"item": "coffee"}, headers=headers)
        id_again = await client.post(
            "/orders", json={"item": "tea"}, headers={"X-Async-Request-Id": chosen}
        )
        assert await endpoints.drain() == 0
        with pytest.raises(IdempotentJobGoneError):
            await endpoints.submit(
                "PlaceOrder", {"item": "tea"}, idempotency_key="order-20", owner="ann"
            )
    assert by_id.status_code == 202
    assert again.status_code == 409 and first.json()["id"] in again.json()["detail"]
    assert "this Idempotency-Key" in again.json()["detail"]
    assert id_again.status_code == 409 and "this X-Async-Request-Id" in id_again.json()["detail"]
    assert "Idempotency-Key" not in id_again.json()["detail"]
    assert other.status_code == 422
    assert id_again.status_code == 409 and chosen in id_again.json()["detail"]


class CountingRedis(Redis):
    """A client that counts the commands it sends (each one round trip)."""

    sent: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return await super().execute_command(*args, **options)


async def test_a_repeat_on_redis_is_one_round_trip(redis_server: RedisServer, prefix: str) -> None:
    """The repeat is answered by the enqueue script alone: one command sent."""
    client = CountingRedis.from_url(redis_server.url)
    client.sent = []
    store = RedisJobStore(client=client, prefix=prefix)
    _, endpoints = make_app(store)
    async with endpoints.running(workers=False):
        await endpoints.submit("PlaceOrder", {"item": "tea"}, idempotency_key="rt")
        client.sent.clear()
        await endpoints.submit("PlaceOrder", {"item": "tea"}, idempotency_key="rt")
        sent = list(client.sent)
    await client.aclose()
    assert sent == ["EVALSHA"]


async def test_keys_an_older_version_recorded_still_find_their_jobs(store: JobStore) -> None:
    """Versions before 2026-12-05 fingerprinted a body as its model dumps it (defaults
    filled in), not as sent. A key or chosen id they recorded is still answered by its job
    after an upgrade when the repeat is the same submission; another body is still 422 /
    409."""
    from async_endpoints import JobRequest, NewJob
    from async_endpoints._idempotency import by_key, by_request_id, fingerprint

    app, endpoints = make_app(store)
    sent = '{"item":"tea"}'
    request = JobRequest(body=sent, owner="ann")
    dumped = '{"count":1,"item":"tea"}'  # the model's dump of it, as they compared it
    older = fingerprint("PlaceOrder", "ann", dumped, request)
    assert older != fingerprint("PlaceOrder", "ann", sent, request)
    keyed, chosen = uuid.uuid4(), uuid.uuid4()
    assert isinstance(store, IdempotentStore)
    await store.enqueue_once(
        NewJob(keyed, "PlaceOrder", 0, request), by_key("order-9", "PlaceOrder", "ann", older, 60)
    )
    await store.enqueue_once(
        NewJob(chosen, "PlaceOrder", 0, request), by_request_id(chosen, older, 60)
    )
    user = {"x-user": "ann", "content-type": "application/json"}
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        by_the_key = await client.post(
            "/orders", content=sent, headers={**user, "Idempotency-Key": "order-9"}
        )
        by_the_id = await client.post(
            "/orders", content=sent, headers={**user, "X-Async-Request-Id": str(chosen)}
        )
        other_body = await client.post(
            "/orders",
            json={"item": "tea", "count": 2},
            headers={**user, "Idempotency-Key": "order-9"},
        )
        assert await waiting(endpoints) == 2
    assert by_the_key.status_code == 202 and by_the_key.json()["id"] == str(keyed)
    assert by_the_id.status_code == 202 and by_the_id.json()["id"] == str(chosen)
    assert other_body.status_code == 422


class Routed(BaseModel):
    item: str
    target: str = Field(default="", exclude=True)


async def test_the_older_versions_comparison_never_takes_another_submission_for_a_repeat(
    store: JobStore,
) -> None:
    """The comparison kept for keys older versions recorded (the body as the model dumps
    it) is not made where that dump hides what the client sent (a field declared
    ``exclude=True``), nor for a key sent again with a chosen id: another value there is
    another body (422, 409 by chosen id, `IdempotencyConflictError` from code), and a key
    is never answered under an id the client did not choose."""
    app, endpoints = make_app(store)

    @endpoints.map_async_post("/routed", name="Routed")
    async def routed(ctx: AsyncContext[Routed]) -> str:
        return ctx.request.target

    chosen = str(uuid.uuid4())
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        key = {"Idempotency-Key": "route-1"}
        await client.post("/routed", json={"item": "a"}, headers=key)
        by_key = await client.post("/routed", json={"item": "a", "target": "B"}, headers=key)
        by_id = {"X-Async-Request-Id": chosen}
        await client.post("/routed", json={"item": "a"}, headers=by_id)
        by_chosen = await client.post("/routed", json={"item": "a", "target": "B"}, headers=by_id)
        dumped = {"item": "tea", "count": 1}  # as the model dumps it
        await client.post("/orders", json=dumped, headers={"Idempotency-Key": "order-1"})
        with_an_id = await client.post(
            "/orders",
            json=dumped,
            headers={"Idempotency-Key": "order-1", "X-Async-Request-Id": str(uuid.uuid4())},
        )
        await endpoints.submit("Routed", {"item": "a"}, idempotency_key="route-2")
        with pytest.raises(IdempotencyConflictError):
            await endpoints.submit(
                "Routed", {"item": "a", "target": "B"}, idempotency_key="route-2"
            )
    assert by_key.status_code == 422
    assert by_chosen.status_code == 409
    assert with_an_id.status_code == 422


def test_a_fingerprint_without_parameters_is_unchanged_and_value_order_counts() -> None:
    """Keys remembered before route and query parameters counted still match a repeat
    without parameters (same digest as then); the values of one query name count in their
    order (a handler sees them so), names in any order; undecodable bytes stay apart."""
    from async_endpoints import JobRequest
    from async_endpoints._idempotency import _digest, fingerprint

    plain = fingerprint("PlaceOrder", "ann", '{"item":"tea"}', JobRequest())
    assert plain == _digest("fingerprint", "PlaceOrder", "ann", '{"item":"tea"}')

    def with_query(query: str) -> str:
        return fingerprint("PlaceOrder", None, None, JobRequest(query_string=query))

    assert with_query("a=1&t=x") == with_query("t=x&a=1")
    assert with_query("t=a&t=b") != with_query("t=b&t=a")
    assert with_query("x=%FF") != with_query("x=%FE")


def test_expiring_remembered_keys_copies_none_of_them() -> None:
    """Each keyed submission first drops the expired keys: with 100,000 keys remembered
    and none expired that allocates next to nothing (it copied every key on each keyed
    submission, stalling the event loop for seconds under load), and it drops exactly the
    keys whose ttl has passed, oldest first."""
    keys = IdempotencyKeys()
    for n in range(100_000):
        keys.put(f"k{n}", uuid.uuid4(), "fingerprint", 1000.0 + n)
    tracemalloc.start()
    try:
        keys.expire(500.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(keys) == 100_000
    assert peak < 64 * 1024  # a copy of the keys alone takes over 800 KB
    keys.expire(1000.0 + 49_999)
    assert len(keys) == 50_000
    assert keys.get("k49999") is None and keys.get("k50000") is not None
