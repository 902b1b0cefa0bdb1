"""The request-reply pattern over real HTTP (uvicorn on loopback, httpx): PUT, PATCH and
DELETE endpoints, a client-chosen job id (X-Async-Request-Id), and Prefer: wait on
submissions and on job details."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from async_endpoints import AsyncContext, AsyncEndpoints
from tests.redis.support import eventually
from tests.serving import served


class Item(BaseModel):
    label: str


class Gate:
    """Lets the "slow" handler finish when the test says so."""

    def __init__(self) -> None:
        self.open = asyncio.Event()


def make_app(gate: Gate, **settings: Any) -> tuple[FastAPI, AsyncEndpoints]:
    app = FastAPI()
    endpoints = AsyncEndpoints(app, owner=lambda request: request.headers.get("x-user"), **settings)

    @endpoints.map_async_post("/items", name="CreateItem")
    async def create(ctx: AsyncContext[Item]) -> str:
        return f"created {ctx.request.label}"

    @endpoints.map_async_put("/items/{item_id}", name="ReplaceItem")
    async def replace(ctx: AsyncContext[Item]) -> str:
        return f"{ctx.route_params['item_id']} is {ctx.request.label}"

    @endpoints.map_async_patch("/items/{item_id}", name="PatchItem")
    async def patch(ctx: AsyncContext[Item]) -> str:
        return f"{ctx.route_params['item_id']} patched"

    @endpoints.map_async_delete("/items/{item_id}", name="DeleteItem")
    async def delete(ctx: AsyncContext) -> str:
        return f"{ctx.route_params['item_id']} deleted"

    @endpoints.map_async_post("/slow", name="Slow")
    async def slow(ctx: AsyncContext) -> str:
        await gate.open.wait()
        return "finally"

    endpoints.map_job_details()
    return app, endpoints


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def client(gate: Gate) -> AsyncIterator[httpx.AsyncClient]:
    app, _ = make_app(gate)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        yield http


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}", headers={"Prefer": "wait=10"})
    job: dict[str, Any] = response.json()
    assert job["status"] == "Completed", job
    return job


# ---------------------------------------------------------------------------------------
# PUT, PATCH, DELETE
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body", "result"),
    [
        ("PUT", {"label": "red"}, "7 is red"),
        ("PATCH", {"label": "red"}, "7 patched"),
        ("DELETE", None, "7 deleted"),
    ],
)
async def test_put_patch_and_delete_endpoints_answer_202_and_run_their_handler(
    client: httpx.AsyncClient, method: str, body: Any, result: str
) -> None:
    """Each verb queues a job with its route parameters (and body) and runs it."""
    response = await client.request(method, "/items/7", json=body)
    assert response.status_code == 202
    assert response.headers["location"] == f"/jobs/{response.json()['id']}"
    assert (await finished(client, response.json()["id"]))["result"] == result


async def test_a_put_body_is_validated_like_a_post_body(client: httpx.AsyncClient) -> None:
    """A PUT whose body fails the model answers 422 JSON and queues nothing."""
    response = await client.put("/items/7", json={"colour": "red"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][0] == "body"


async def test_a_verb_the_endpoint_does_not_map_is_405(client: httpx.AsyncClient) -> None:
    """Only the mapped methods answer: POST /items/7 is not an endpoint."""
    assert (await client.post("/items/7", json={"label": "x"})).status_code == 405


# ---------------------------------------------------------------------------------------
# X-Async-Request-Id
# ---------------------------------------------------------------------------------------


async def test_a_client_chosen_id_becomes_the_job_id(client: httpx.AsyncClient) -> None:
    """X-Async-Request-Id: <uuid> is the job's id."""
    chosen = str(uuid.uuid4())
    response = await client.post(
        "/items", json={"label": "a"}, headers={"X-Async-Request-Id": chosen}
    )
    assert response.status_code == 202 and response.json()["id"] == chosen


async def test_a_repeat_with_the_same_id_answers_the_existing_job(
    client: httpx.AsyncClient,
) -> None:
    """The same submission again (before and after it ran) answers 202 with the one job."""
    chosen = str(uuid.uuid4())
    headers = {"X-Async-Request-Id": chosen, "x-user": "ann"}
    first = await client.post("/items", json={"label": "a"}, headers=headers)
    again = await client.post("/items", json={"label": "a"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] == chosen
    done = await finished(client, chosen)
    later = await client.post("/items", json={"label": "a"}, headers=headers)
    assert later.status_code == 202 and later.json() == done


@pytest.mark.parametrize(
    ("path", "body", "user"),
    [
        ("/items", {"label": "b"}, "ann"),  # another body
        ("/items/1", {"label": "a"}, "ann"),  # another endpoint (PUT below)
        ("/items", {"label": "a"}, "bob"),  # another owner
    ],
)
async def test_the_same_id_for_a_different_submission_is_409(
    client: httpx.AsyncClient, path: str, body: dict[str, str], user: str
) -> None:
    """Another endpoint, body or owner with a taken id: 409 JSON; the job is unchanged."""
    chosen = str(uuid.uuid4())
    original = await client.post(
        "/items", json={"label": "a"}, headers={"X-Async-Request-Id": chosen, "x-user": "ann"}
    )
    method = "PUT" if path != "/items" else "POST"
    clash = await client.request(
        method, path, json=body, headers={"X-Async-Request-Id": chosen, "x-user": user}
    )
    assert clash.status_code == 409 and "detail" in clash.json()
    job = await finished(client, chosen)
    assert job["name"] == "CreateItem" and job["result"] == "created a"
    assert original.json()["id"] == chosen


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "1234"])
async def test_an_id_that_is_not_a_uuid_is_400_and_queues_nothing(gate: Gate, bad: str) -> None:
    """A malformed X-Async-Request-Id: 400 JSON, nothing stored."""
    app, endpoints = make_app(gate)
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/items", json={"label": "a"}, headers={"X-Async-Request-Id": bad}
        )
        stats = await endpoints.queue_stats()
    assert response.status_code == 400 and "X-Async-Request-Id" in response.json()["detail"]
    assert sum(s.queued + s.in_progress + s.completed for s in stats) == 0


@pytest.mark.parametrize("header", ["X-Async-Request-Id", "Idempotency-Key"])
async def test_an_id_or_key_sent_on_two_lines_is_400_and_queues_nothing(
    gate: Gate, header: str
) -> None:
    """Two lines of the header (RFC 9110: their values joined by a comma) are no one id or
    key: 400 JSON naming the header, whichever line holds a valid value."""
    app, endpoints = make_app(gate)
    headers = [(header, str(uuid.uuid4())), (header, "not-a-uuid")]
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/items", json={"label": "a"}, headers=headers)
        stats = await endpoints.queue_stats()
    assert response.status_code == 400 and header in response.json()["detail"]
    assert sum(s.queued + s.in_progress + s.completed for s in stats) == 0


@pytest.mark.parametrize("header", ["X-Async-Request-Id", "Idempotency-Key"])
async def test_an_id_or_key_repeated_alike_on_two_lines_is_one_value(
    gate: Gate, header: str
) -> None:
    """The same line twice (as some proxies repeat it) is the one value: 202, one job."""
    app, endpoints = make_app(gate)
    value = str(uuid.uuid4())
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/items", json={"label": "a"}, headers=[(header, value), (header, value)]
        )
        stats = await endpoints.queue_stats()
    assert response.status_code == 202
    if header == "X-Async-Request-Id":
        assert response.json()["id"] == value
    assert sum(s.queued + s.in_progress + s.completed for s in stats) == 1


@pytest.mark.parametrize(
    ("types", "status"),
    [
        (("application/json", "text/plain"), 400),
        (("text/plain", "application/json"), 400),
        (("application/json", "application/json"), 202),
        (("application/json", "application/json; charset=utf-8"), 202),
    ],
    ids=["json-first", "json-last", "alike", "both-json"],
)
async def test_a_body_type_sent_on_two_lines_that_disagree_is_400_and_queues_nothing(
    gate: Gate, types: tuple[str, str], status: int
) -> None:
    """Content-Type on two lines that name different types is refused whichever comes
    first, as the id headers are (another server may read the other line and see another
    body type); lines that all name JSON (the same line twice, or with a charset) agree."""
    app, endpoints = make_app(gate)
    headers = [("Content-Type", value) for value in types]
    async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/items", content=b'{"label": "a"}', headers=headers)
        stats = await endpoints.queue_stats()
    assert response.status_code == status
    if status == 400:
        assert "Content-Type must be sent once" in response.json()["detail"]
    assert sum(s.queued + s.in_progress + s.completed for s in stats) == (status == 202)


# ---------------------------------------------------------------------------------------
# Prefer: wait
# ---------------------------------------------------------------------------------------


async def test_prefer_wait_answers_200_with_the_finished_job(client: httpx.AsyncClient) -> None:
    """A job that ends within N seconds: 200, the terminal job JSON, Preference-Applied,
    and Content-Location naming the job's URL, where the same JSON is read later."""
    response = await client.post("/items", json={"label": "a"}, headers={"Prefer": "wait=10"})
    assert response.status_code == 200
    assert response.json()["status"] == "Completed" and response.json()["result"] == "created a"
    assert response.headers["preference-applied"] == "wait=10"
    later = await client.get(response.headers["content-location"])
    assert later.json() == response.json()


async def test_prefer_wait_answers_202_when_the_job_is_still_running(
    client: httpx.AsyncClient, gate: Gate
) -> None:
    """A job still running after N seconds: the usual 202 (its current JSON), with
    Preference-Applied; it finishes later as usual."""
    response = await client.post("/slow", headers={"Prefer": "wait=0.3"})
    assert response.status_code == 202
    assert response.json()["status"] in {"Queued", "InProgress"}
    assert response.headers["preference-applied"] == "wait=0.3"
    gate.open.set()
    assert (await finished(client, response.json()["id"]))["result"] == "finally"


@pytest.mark.parametrize("prefer", ["wait=-1", "wait=soon", "wait=", "respond-async", "wait=1e9x"])
async def test_a_malformed_or_negative_wait_is_ignored(
    client: httpx.AsyncClient, prefer: str
) -> None:
    """Prefer values that are not a wait of N >= 0 seconds: a plain 202, never an error."""
    response = await client.post("/items", json={"label": "a"}, headers={"Prefer": prefer})
    assert response.status_code == 202 and "preference-applied" not in response.headers


async def test_a_wait_is_capped_at_max_wait(gate: Gate) -> None:
    """wait=3600 with max_wait=0.2: the answer (202) comes after 0.2 s, and
    Preference-Applied echoes the client's wait=N as API.md has it; a GET long-poll is
    capped the same way."""
    app, _ = make_app(gate, max_wait=0.2)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        response = await client.post("/slow", headers={"Prefer": "wait=3600"})
        poll = await client.get(response.headers["location"], headers={"Prefer": "wait=3600"})
        gate.open.set()
    assert response.status_code == 202 and response.headers["preference-applied"] == "wait=3600"
    assert poll.status_code == 200 and poll.json()["status"] in ("Queued", "InProgress")
    assert poll.headers["preference-applied"] == "wait=3600"


async def test_a_wait_among_other_preferences_is_found(client: httpx.AsyncClient) -> None:
    """Prefer: respond-async, wait=10 (one header, several preferences) is honoured."""
    response = await client.post(
        "/items", json={"label": "a"}, headers={"Prefer": "respond-async, wait=10"}
    )
    assert response.status_code == 200 and response.headers["preference-applied"] == "wait=10"


async def test_a_wait_too_long_for_a_float_is_capped_like_any_other(gate: Gate) -> None:
    """wait=N with 400 digits (beyond a float's range) is still a wait: capped at max_wait
    and echoed, not dropped."""
    app, _ = make_app(gate, max_wait=0.2)
    huge = "9" * 400
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        response = await client.post("/slow", headers={"Prefer": f"wait={huge}"})
        gate.open.set()
    assert response.status_code == 202 and response.headers["preference-applied"] == f"wait={huge}"


async def test_a_comma_inside_another_preferences_quoted_value_separates_nothing(
    client: httpx.AsyncClient, gate: Gate
) -> None:
    """Prefer: note="a,wait=0.1", wait=10: the quoted "wait=0.1" is part of another
    preference's value; the client's wait is 10 s, so the finished job comes back (200)."""
    response = await client.post(
        "/items", json={"label": "a"}, headers={"Prefer": 'note="a,wait=0.1", wait=10'}
    )
    assert response.status_code == 200 and response.headers["preference-applied"] == "wait=10"


@pytest.mark.parametrize(
    ("prefers", "applied"),
    [
        (["wait=10, wait=0.1"], "wait=10"),
        (["wait=10", "wait=0.1"], "wait=10"),
        (['wait="10";x=1, wait=0.1'], "wait=10"),
        (["wait=soon, wait=10"], None),
    ],
)
async def test_only_the_first_wait_counts(
    client: httpx.AsyncClient, prefers: list[str], applied: str | None
) -> None:
    """RFC 7240: a preference given more than once counts only as first given, across one
    header or several; a malformed first wait is ignored, not mended by a later one."""
    headers = [("Prefer", prefer) for prefer in prefers]
    response = await client.post("/items", json={"label": "a"}, headers=headers)
    assert response.headers.get("preference-applied") == applied
    assert response.status_code == (202 if applied is None else 200)


async def test_job_details_long_poll_until_the_job_ends(
    client: httpx.AsyncClient, gate: Gate
) -> None:
    """GET with Prefer: wait=N answers as soon as the job is terminal."""
    job_id = (await client.post("/slow")).json()["id"]
    poll = asyncio.create_task(client.get(f"/jobs/{job_id}", headers={"Prefer": "wait=20"}))
    await asyncio.sleep(0.2)
    assert not poll.done()  # still waiting: the job runs on
    gate.open.set()
    response = await poll
    assert response.status_code == 200 and response.json()["status"] == "Completed"
    assert response.headers["preference-applied"] == "wait=20"


async def test_job_details_long_poll_answers_the_current_job_after_n_seconds(
    client: httpx.AsyncClient, gate: Gate
) -> None:
    """GET with Prefer: wait=N on a job that does not end: its current JSON after N s."""
    job_id = (await client.post("/slow")).json()["id"]
    response = await client.get(f"/jobs/{job_id}", headers={"Prefer": "wait=0.3"})
    assert response.status_code == 200 and response.json()["status"] in {"Queued", "InProgress"}
    gate.open.set()


async def test_a_long_poll_of_an_unknown_job_is_404_at_once(client: httpx.AsyncClient) -> None:
    """Nothing to wait for: 404 without waiting."""
    response = await client.get(f"/jobs/{uuid.uuid4()}", headers={"Prefer": "wait=30"})
    assert response.status_code == 404


async def test_a_long_wait_ends_when_its_client_disconnects(gate: Gate) -> None:
    """Clients that ask Prefer: wait=30 (a POST, and a GET long-poll) and disconnect: their
    waits end then, not 30 s later (a connect-and-drop must not hold a task and a watcher
    of the job for the whole wait), and quietly (no error in the server's log)."""
    app, endpoints = make_app(gate)
    waiters = endpoints.store._terminal_waiters._waiters  # type: ignore[attr-defined]
    errors: list[logging.LogRecord] = []
    catch = logging.Handler(logging.ERROR)
    catch.emit = errors.append  # type: ignore[method-assign]
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        logging.getLogger("uvicorn.error").addHandler(catch)
        job_id = (await client.post("/slow")).json()["id"]
        host, port = url.removeprefix("http://").split(":")
        asked = "Host: x\r\nPrefer: wait=30\r\n"
        requests = [f"GET /jobs/{job_id} HTTP/1.1\r\n{asked}\r\n"] * 5
        requests += [f"POST /slow HTTP/1.1\r\n{asked}Content-Length: 0\r\n\r\n"] * 5
        dropped = []
        for request in requests:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(request.encode())
            await writer.drain()
            dropped.append(writer)

        async def all_waiting() -> bool:
            return sum(len(each) for each in waiters.values()) == len(requests)

        async def none_waiting() -> bool:
            return not waiters

        await eventually(all_waiting)
        for writer in dropped:
            writer.close()
        await eventually(none_waiting, timeout=5)  # not after the 30 s they asked for
        gate.open.set()
        assert (await finished(client, job_id))["result"] == "finally"
        logging.getLogger("uvicorn.error").removeHandler(catch)
    assert [record.getMessage() for record in errors] == []
