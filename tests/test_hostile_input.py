"""Hostile input: every malformed, oversized or odd request gets a 4xx JSON error, never a
5xx, and nothing is stored; odd text that gets past validation fails an attempt, never the
worker; hostile job ids answer 404 whatever the store."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.applications import Starlette

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    JobRequest,
    JobStatus,
    JobStore,
    JobValidationError,
    NewJob,
)

JSON = {"content-type": "application/json"}
ALLOWED_ITEMS = {"tea", "coffee"}


class Order(BaseModel):
    item: str
    quantity: int = 1


class CatalogueOrder(BaseModel):
    """An order whose validation depends on state that can change after submission."""

    item: str

    @field_validator("item")
    @classmethod
    def in_catalogue(cls, item: str) -> str:
        if item not in ALLOWED_ITEMS:
            raise ValueError(f"{item!r} is not in the catalogue")
        return item


def order_app(app: Starlette, **settings: Any) -> AsyncEndpoints:
    """``POST /orders`` echoing the order, and ``GET /jobs/{job_id}``."""
    endpoints = AsyncEndpoints(app, **settings)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[Order]) -> dict[str, Any]:
        return {"order": ctx.request.model_dump(), "query": ctx.query_params.multi_items()}

    endpoints.map_job_details("/jobs/{job_id}")
    return endpoints


def strict_json(text: str) -> Any:
    """``text`` parsed as strict JSON (NaN and Infinity are not JSON)."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text[:500]


# --- bodies -----------------------------------------------------------------------------------

DEEP = 100_000
HOSTILE_BODIES = {
    "truncated": b'{"item": "tea",',
    "trailing-garbage": b'{"item": "tea"} x',
    "single-quotes": b"{'item': 'tea'}",
    "arrays-100k-deep": b"[" * DEEP + b"]" * DEEP,
    "objects-100k-deep-in-a-field": b'{"item":' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}",
    "unclosed-100k-deep": b"[" * DEEP,
    "int-5000-digits": b'{"item": "tea", "quantity": ' + b"9" * 5000 + b"}",
    "negative-int-5000-digits": b'{"item": "tea", "quantity": -' + b"9" * 5000 + b"}",
    "int-5000-digits-as-text": b'{"item": ' + b"9" * 5000 + b"}",
    "exponent-5000-digits": b'{"item": "tea", "quantity": 1e' + b"9" * 5000 + b"}",
    "lone-high-surrogate": b'{"item": "\\ud800"}',
    "lone-low-surrogate": b'{"item": "\\udc00"}',
    "reversed-surrogates": b'{"item": "\\udc00\\ud800"}',
    "surrogate-in-a-key": b'{"item": "tea", "\\ud800": 1}',
    "raw-0xff": b'{"item": "\xff"}',
    "overlong-utf8": b'{"item": "\xc0\xaf"}',
    "utf8-encoded-surrogate": b'{"item": "\xed\xa0\x80"}',
    "truncated-utf8": b'{"item": "\xe2\x82"}',
    "utf16": '{"item": "tea"}'.encode("utf-16"),
    "byte-order-mark": b'\xef\xbb\xbf{"item": "tea"}',
    "raw-control-character": b'{"item": "t\x00a"}',
    "nan": b'{"item": "tea", "quantity": NaN}',
    "infinity": b'{"item": "tea", "quantity": Infinity}',
    "float-overflow": b'{"item": "tea", "quantity": 1e999}',
    "huge-string-in-an-int-field": b'{"item": "tea", "quantity": "' + b"9" * 900_000 + b'"}',
    "huge-string-of-escapes": b'{"item": 1, "x": "' + b"\\u0000" * 150_000 + b'"}',
    "null": b"null",
    "top-level-string": b'"tea"',
    "empty-object": b"{}",
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
async def test_hostile_bodies_get_a_4xx_json_error_and_nothing_is_stored(
    app, http_client_for, body: bytes
) -> None:
    """Malformed, deep, huge, non-UTF-8 or surrogate-laden JSON: 400/422, JSON, no job."""
    endpoints = order_app(app, run_workers=False)
    async with http_client_for(app) as client:
        response = await client.post("/orders", content=body, headers=JSON)
        assert response.status_code in {400, 422}, response.text[:300]
        assert "detail" in strict_json(response.text)
        assert_no_traceback(response.text)
        assert await endpoints.store.count_waiting() == 0


ANYTHING_GOES = {
    "arrays-100k-deep": b'{"doc": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "int-5000-digits": b'{"doc": ' + b"9" * 5000 + b"}",
    "lone-surrogate": b'{"doc": "\\ud800"}',
    "lone-surrogate-key": b'{"\\udfff": 1}',
    "raw-0xff": b'{"doc": "\xff"}',
    "nan": b'{"doc": NaN}',
    "minus-infinity": b'{"doc": [1, -Infinity]}',
}


@pytest.mark.parametrize("body", ANYTHING_GOES.values(), ids=ANYTHING_GOES.keys())
async def test_a_model_that_takes_any_json_still_refuses_hostile_json_with_400(
    app, http_client_for, body: bytes
) -> None:
    """dict[str, Any] bodies: deep nesting, huge numbers, surrogates still get a 400."""
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/documents", name="Store")
    async def store_document(ctx: AsyncContext[dict[str, Any]]) -> None: ...

    async with http_client_for(app) as client:
        response = await client.post("/documents", content=body, headers=JSON)
        assert response.status_code == 400 and "detail" in strict_json(response.text)
        assert await endpoints.store.count_waiting() == 0


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"item": tru}', "request body is not valid JSON: expected ident at line 1 column 13"),
        (b'{"item": "secret-text"', "request body is not valid JSON: EOF while parsing"),
        (b"[" * 1000 + b"]" * 1000, "request body nests arrays and objects too deeply: "),
    ],
)
async def test_a_malformed_body_is_told_why_and_where_without_its_text(
    app, http_client_for, body: bytes, detail: str
) -> None:
    """400 naming the parser's reason and place (JSON nested deeper than the parser
    reads is said to be so, not "not valid JSON"), never echoing the body."""
    endpoints = order_app(app, run_workers=False)
    async with http_client_for(app) as client:
        refused = await client.post("/orders", content=body, headers=JSON)
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith(detail), refused.text
    assert "secret-text" not in refused.text
    assert await endpoints.store.count_waiting() == 0


async def test_nan_and_infinity_are_not_json_whatever_the_model_and_words_in_text_are_fine(
    app, http_client_for
) -> None:
    """NaN where the model wants text is refused as not JSON (400, not 422), before the
    model is asked; the same words inside a string are plain text (202)."""
    endpoints = order_app(app, run_workers=False)
    async with http_client_for(app) as client:
        refused = await client.post("/orders", content=b'{"item": NaN}', headers=JSON)
        assert refused.status_code == 400 and "not valid JSON" in refused.json()["detail"]
        assert await endpoints.store.count_waiting() == 0
        fine = await client.post(
            "/orders", content=b'{"item": "tea", "x": "NaN Infinity"}', headers=JSON
        )
        assert fine.status_code == 202, fine.text


class Reading(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    value: float


async def test_a_number_beyond_the_float_range_is_refused_by_a_model_that_refuses_infinity(
    app, http_client_for
) -> None:
    """1e999 is JSON syntax that the parser reads as infinity (the library does not scan
    every number before the model: it would cost more than the parse); a model with
    ``allow_inf_nan=False`` refuses it with a 422 naming the field, nothing stored."""
    endpoints = AsyncEndpoints(app, run_workers=False)

    @endpoints.map_async_post("/readings", name="Record")
    async def record(ctx: AsyncContext[Reading]) -> None: ...

    async with http_client_for(app) as client:
        refused = await client.post("/readings", content=b'{"value": 1e999}', headers=JSON)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "value"]
        assert await endpoints.store.count_waiting() == 0
        fine = await client.post("/readings", content=b'{"value": 1e308}', headers=JSON)
        assert fine.status_code == 202, fine.text


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "json",
        "text/json",
        "application/jsonx",
        "application/json-seq",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json\r\nx-injected: 1",
    ],
)
async def test_a_body_declared_as_anything_but_json_gets_415_and_nothing_is_stored(
    app, http_client_for, content_type: str
) -> None:
    """A Content-Type that is not application/json or application/*+json: 415, no job."""
    endpoints = order_app(app, run_workers=False)
    async with LifespanManager(app) as manager:
        status, body, _ = await asgi_call(
            manager.app,
            "/orders",
            headers=[(b"content-type", content_type.encode("latin-1"))],
            body=b'{"item": "tea"}',
        )
        assert status == 415 and "detail" in strict_json(body.decode())
        assert await endpoints.store.count_waiting() == 0


@pytest.mark.parametrize("length", ["-5", "abc", "1e3", "0x10", "٣", " ", "1,2"])
async def test_a_malformed_content_length_gets_400_and_nothing_is_stored(app, length: str) -> None:
    """A Content-Length that is not a plain decimal number is refused with 400."""
    endpoints = order_app(app, run_workers=False)
    async with LifespanManager(app) as manager:
        status, body, _ = await asgi_call(
            manager.app,
            "/orders",
            headers=[(b"content-type", b"application/json"), (b"content-length", length.encode())],
            body=b'{"item": "tea"}',
        )
        assert status == 400 and "detail" in strict_json(body.decode())
        assert await endpoints.store.count_waiting() == 0


async def test_a_declared_length_over_max_body_size_gets_413_before_any_byte_is_read(
    app,
) -> None:
    """Content-Length over the limit (default 1 MiB): 413 without reading the body at all."""
    endpoints = order_app(app, run_workers=False)
    assert endpoints.settings.max_body_size == 1024 * 1024
    async with LifespanManager(app) as manager:
        status, body, reads = await asgi_call(
            manager.app,
            "/orders",
            headers=[(b"content-type", b"application/json"), (b"content-length", b"1048577")],
            body=b"{" * 1_048_577,
        )
        assert status == 413 and "detail" in strict_json(body.decode())
        assert reads == 0
        assert await endpoints.store.count_waiting() == 0


async def test_a_streamed_body_over_max_body_size_gets_413_after_reading_just_past_it(
    app,
) -> None:
    """A chunked body without Content-Length: 413 once past the limit, the rest unread."""
    endpoints = order_app(app, run_workers=False, max_body_size=64 * 1024)
    async with LifespanManager(app) as manager:
        status, _, reads = await asgi_call(
            manager.app,
            "/orders",
            headers=[(b"content-type", b"application/json")],
            chunks=[b" " * 16 * 1024] * 1000,
        )
        assert status == 413 and reads <= 5
        assert await endpoints.store.count_waiting() == 0


async def test_a_client_that_disconnects_mid_body_gets_a_400_and_nothing_is_stored(
    app,
) -> None:
    """The client sends part of its body and goes away: the submission is refused (400,
    never read) rather than failing in the app (an error logged as a 500), nothing stored."""
    endpoints = order_app(app, run_workers=False)
    async with LifespanManager(app) as manager:
        status, body, _ = await asgi_call(
            manager.app,
            "/orders",
            headers=[(b"content-type", b"application/json"), (b"content-length", b"100")],
            chunks=[b'{"item": "t'],
            cut=True,
        )
        assert status == 400 and "disconnected" in strict_json(body.decode())["detail"]
        assert await endpoints.store.count_waiting() == 0


async def test_raw_non_utf8_bytes_in_the_query_string_and_headers_do_not_fail_a_submission(
    app,
) -> None:
    """Bytes a client should have escaped still give a 202; the job sees them decoded."""
    endpoints = order_app(app, capture_headers=["x-odd"], run_workers=False)
    async with LifespanManager(app) as manager:
        status, body, _ = await asgi_call(
            manager.app,
            "/orders",
            query=b"note=\xff\xfe&city=S\xc3\xa3o Paulo",
            headers=[(b"content-type", b"application/json"), (b"x-odd", b"\xff\x00\x80")],
            body=b'{"item": "tea"}',
        )
        assert status == 202, body
        queued = await endpoints.get_job(json.loads(body)["id"])  # its request is kept until done
        await endpoints.drain()
        job = await endpoints.wait_for(json.loads(body)["id"], timeout=5)
    assert job.status is JobStatus.COMPLETED
    assert job.result["query"] == [["note", "\ufffd\ufffd"], ["city", "São Paulo"]]
    assert queued.request.headers == (("x-odd", "\xff\x00\x80"),)


# --- job ids ----------------------------------------------------------------------------------

HOSTILE_IDS = [
    "not-a-uuid",
    "..",
    "...",
    "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "..%5C..%5Cwindows",
    "%00",
    "%ff",
    "%ED%A0%80",
    "*",
    "%2A",
    "async-endpoints%7D:queue",
    "' OR '1'='1",
    "x" * 60_000,
    "1" * 10_000,
    "%F0%9F%92%A5" * 1000,
    str(uuid.UUID("3f1d9a52-8c4e-4f0b-9d6a-2b7e5c1a9f03")) * 2,
    f"{uuid.UUID('b7e2c4d8-1a3f-4e5b-8c9d-0f6a2e4b7c15')}%00",
    f"{uuid.UUID('5c8e1f2a-9b4d-4c6e-a1f3-7d2b9e0c4a68')}/../..",
    "00000000-0000-0000-0000-000000000000",
    str(uuid.UUID("e4a7b1c9-2d5f-4a8e-b3c6-9f1d0e7a2b54")).upper(),
]


@pytest.mark.parametrize("job_id", HOSTILE_IDS, ids=lambda job_id: job_id[:24])
async def test_hostile_job_ids_answer_404_or_422_never_500_on_any_store(
    http_client_for, store: JobStore, job_id: str
) -> None:
    """Malformed, unknown, traversal-like, key-like or very long ids: 404/422 with JSON."""
    app = FastAPI()
    order_app(app, store=store, run_workers=False)
    async with http_client_for(app) as client:
        response = await client.get(f"/jobs/{job_id}")
    assert response.status_code in {404, 422}
    assert "detail" in strict_json(response.text)


# --- odd text past validation: an attempt fails, the worker goes on -----------------------------


async def test_submit_refuses_a_body_with_a_lone_surrogate_and_stores_nothing() -> None:
    """Text no worker could read back (no UTF-8 form) is a JobValidationError at submit."""
    endpoints = AsyncEndpoints()

    @endpoints.add_handler
    async def place_order(ctx: AsyncContext[Order]) -> None: ...

    async with endpoints.running(workers=False):
        with pytest.raises(JobValidationError) as refused:
            await endpoints.submit("place_order", {"item": "tea \ud800"})
        assert refused.value.errors[0]["type"] == "serialization"
        assert await endpoints.store.count_waiting() == 0


async def test_a_stored_body_that_no_longer_validates_fails_its_attempt_not_the_worker(
    http_client_for, store: JobStore
) -> None:
    """A body valid at submission but not when run fails clearly; the next job completes."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, max_retries=0, run_workers=False)

    @endpoints.map_async_post("/orders", name="PlaceOrder")
    async def place_order(ctx: AsyncContext[CatalogueOrder]) -> str:
        return ctx.request.item

    async with http_client_for(app) as client:
        first = await client.post("/orders", json={"item": "tea"})
        second = await client.post("/orders", json={"item": "coffee"})
        ALLOWED_ITEMS.discard("tea")
        try:
            assert await endpoints.drain() == 2
        finally:
            ALLOWED_ITEMS.add("tea")
        failed = await endpoints.get_job(first.json()["id"])
        completed = await endpoints.get_job(second.json()["id"])
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.type == "JobValidationError"
    assert "no longer passes PlaceOrder's model" in failed.error.message
    assert "body.item" in failed.error.message
    assert completed.status is JobStatus.COMPLETED and completed.result == "coffee"


async def test_a_stored_body_with_a_lone_surrogate_escape_fails_its_attempt_not_the_worker(
    store: JobStore,
) -> None:
    """JSON Python reads but pydantic refuses ("\\ud800"): a failed attempt, the pool runs on."""
    endpoints = AsyncEndpoints(store=store, max_retries=0)

    @endpoints.add_handler
    async def place_order(ctx: AsyncContext[Order]) -> str:
        return ctx.request.item

    async with endpoints.running(workers=True):
        bad = NewJob(uuid.uuid4(), "place_order", 0, JobRequest(body='{"item": "\\ud800"}'))
        await store.enqueue(bad)
        failed = await endpoints.wait_for(bad.id, timeout=5)
        good = await endpoints.submit("place_order", {"item": "tea"})
        completed = await endpoints.wait_for(good.id, timeout=5)
    assert failed.status is JobStatus.FAILED and failed.error.type == "JobValidationError"
    assert "no longer passes place_order's model" in failed.error.message
    assert completed.status is JobStatus.COMPLETED and completed.result == "tea"


Producer = Callable[[AsyncContext[None]], Awaitable[Any]]


async def _lone_surrogate(ctx: AsyncContext[None]) -> str:
    return "caf\udce9"


async def _huge_int(ctx: AsyncContext[None]) -> int:
    return 10**5000


async def _error_quoting_a_surrogate(ctx: AsyncContext[None]) -> None:
    raise ValueError("cannot read caf\udce9")


@pytest.mark.parametrize(
    ("producer", "error_type"),
    [
        (_lone_surrogate, "ResultNotSerializable"),
        (_huge_int, "ResultNotSerializable"),
        (_error_quoting_a_surrogate, "ValueError"),
    ],
    ids=["result-with-a-lone-surrogate", "result-int-5000-digits", "error-with-a-surrogate"],
)
async def test_a_handler_output_without_a_json_form_fails_the_job_and_details_still_answer(
    http_client_for, store: JobStore, producer: Producer, error_type: str
) -> None:
    """A result no store can keep fails the attempt clearly; GET shows the job as JSON."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, max_retries=0)
    endpoints.add_async_post("/produce", producer, name="Produce")
    endpoints.map_job_details("/jobs/{job_id}")
    async with http_client_for(app) as client:
        submitted = await client.post("/produce")
        job = await endpoints.wait_for(submitted.json()["id"], timeout=5)
        details = await client.get(f"/jobs/{job.id}")
    assert job.status is JobStatus.FAILED and job.error.type == error_type
    assert details.status_code == 200
    assert strict_json(details.text)["error"]["type"] == error_type


async def test_a_non_finite_float_result_fails_the_job_rather_than_becoming_null(
    http_client_for, store: JobStore
) -> None:
    """NaN and infinities are not JSON: ResultNotSerializable at once, never a silent null."""
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=store, max_retries=3)

    @endpoints.map_async_post("/measure", name="Measure")
    async def measure(ctx: AsyncContext) -> list[float]:
        return [float("nan"), float("inf"), 1.5]

    endpoints.map_job_details("/jobs/{job_id}")
    async with http_client_for(app) as client:
        submitted = await client.post("/measure")
        await endpoints.wait_for(submitted.json()["id"], timeout=5)
        details = await client.get(submitted.headers["location"])
    job = strict_json(details.text)
    assert job["status"] == "Failed" and job["retryCount"] == 0 and job["result"] is None
    assert job["error"]["type"] == "ResultNotSerializable"


# --- raw ASGI ---------------------------------------------------------------------------------


async def asgi_call(
    app: Any,
    path: str,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    chunks: list[bytes] | None = None,
    cut: bool = False,
) -> tuple[int, bytes, int]:
    """POST exactly these bytes to ``app``; return the status, the body, and how many
    request-body messages the app read. With ``cut`` the client disconnects after them,
    before the end of its body."""
    parts = chunks if chunks is not None else [body]
    reads = 0
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal reads
        if reads >= len(parts):
            return {"type": "http.disconnect"}
        reads += 1
        more = reads < len(parts) or cut
        return {"type": "http.request", "body": parts[reads - 1], "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return answer["status"], answer["body"], reads


async def test_the_log_record_of_a_failed_attempt_can_be_written_as_utf8(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler's error text with a lone surrogate is logged (and stored) with U+FFFD in
    its place, so a log handler writing UTF-8 (a file, a log shipper) can write it."""
    engine = AsyncEndpoints(max_retries=0)

    async def broken(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("bad byte \udce9 here")

    engine.add_handler(broken)
    with caplog.at_level(logging.WARNING, logger="async_endpoints"):
        job = await engine.submit("broken")
        await engine.drain()
    (record,) = [r for r in caplog.records if str(job.id) in r.getMessage()]
    record.getMessage().encode("utf-8")  # raises UnicodeEncodeError with a lone surrogate
    assert "bad byte \ufffd here" in record.getMessage()
