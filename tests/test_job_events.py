"""Job progress and live events over real HTTP (uvicorn on loopback, httpx streaming), on
the in-memory store and on Redis: ``ctx.report_progress``, the ``progress`` field, and
``GET /jobs/{job_id}/events`` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    InMemoryJobStore,
    JobStore,
)
from tests.serving import served

Event = tuple[str, Any]


class Script:
    """What the "steps" handler does, step by step, as the test says."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started = asyncio.Event()
        self.after: list[Any] = [2, 3]


def make_app(
    store: JobStore, script: Script, *, run_workers: bool = True, **settings: Any
) -> tuple[FastAPI, AsyncEndpoints]:
    app = FastAPI()
    endpoints = AsyncEndpoints(
        app,
        store=store,
        run_workers=run_workers,
        owner=lambda request: request.headers.get("x-user"),
        authorize=lambda request, job: request.headers.get("x-user") == job.owner,
        **settings,
    )

    @endpoints.map_async_post("/steps", name="Steps")
    async def steps(ctx: AsyncContext) -> str:
        await ctx.report_progress({"done": 1})
        script.started.set()
        await script.go.wait()
        for value in script.after:
            await ctx.report_progress(value)
        return "all done"

    endpoints.map_job_details()
    endpoints.map_job_events()
    return app, endpoints


class Served:
    """The app being served: its client, its engine and its handler's script."""

    def __init__(self, http: httpx.AsyncClient, endpoints: AsyncEndpoints, script: Script):
        self.http, self.endpoints, self.script = http, endpoints, script


@asynccontextmanager
async def serving(
    store: JobStore, *, run_workers: bool = True, queued_sends: bool = False, **settings: Any
) -> AsyncIterator[Served]:
    """The test app served; ``queued_sends`` puts a `BaseHTTPMiddleware` in front, through
    which every send of a response waits for the next turn (a queue between two tasks)."""
    script = Script()
    app, endpoints = make_app(store, script, run_workers=run_workers, **settings)
    if queued_sends:
        app.add_middleware(BaseHTTPMiddleware, dispatch=_passing)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        http.headers["x-user"] = "ann"
        yield Served(http, endpoints, script)


async def _passing(request: Request, call_next: Any) -> Any:
    return await call_next(request)


async def raw_events_of(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """The events of a text/event-stream response, as (event, data as sent)."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


async def events_of(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of a text/event-stream response, as (event, data as JSON)."""
    async for name, data in raw_events_of(response):
        yield name, json.loads(data)


async def all_events(
    http: httpx.AsyncClient, job_id: str, first: asyncio.Event | None = None
) -> list[Event]:
    """Every event of the job's stream until it ends (``first`` is set once the first
    event came)."""
    seen: list[Event] = []
    async with http.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in events_of(response):
            seen.append(event)
            if first is not None:
                first.set()
    return seen


def streaming(app: Served, job_id: str) -> tuple[asyncio.Task[list[Event]], asyncio.Event]:
    """The job's stream read in a task of its own, and the event set by its first event."""
    first = asyncio.Event()
    return asyncio.create_task(all_events(app.http, job_id, first)), first


async def submit(http: httpx.AsyncClient) -> str:
    response = await http.post("/steps")
    assert response.status_code == 202
    job_id: str = response.json()["id"]
    return job_id


async def stream_of_a_running_job(store: JobStore, after: list[Any]) -> list[Event]:
    """Every event of a stream opened once the job runs, which then reports ``after``."""
    async with serving(store) as app:
        app.script.after = after
        job_id = await submit(app.http)
        await app.script.started.wait()
        reading, first = streaming(app, job_id)
        await first.wait()
        app.script.go.set()
        return await reading


def statuses(events: list[Event]) -> list[str]:
    return [data["status"] for name, data in events if name == "status"]


async def test_a_stream_tells_each_status_from_queued_to_completed_then_ends(
    store: JobStore,
) -> None:
    """Queued (the job waits in a paused queue), InProgress, Completed: then the stream
    ends by itself."""
    async with serving(store) as app:
        await app.endpoints.pause()
        job_id = await submit(app.http)
        reading, first = streaming(app, job_id)
        await first.wait()
        await app.endpoints.resume()
        await app.script.started.wait()
        app.script.go.set()
        events = await reading
    assert events[0][0] == "status"
    assert statuses(events) == ["Queued", "InProgress", "Completed"]
    assert events[-1][0] == "status"
    assert events[-1][1]["result"] == "all done"


async def test_progress_comes_in_order_and_the_last_value_before_the_end(
    store: JobStore,
) -> None:
    """Each progress event follows the one before; the last value reported (within 100
    ms of others, so coalesced) is told before the terminal status, which shows it too."""
    events = await stream_of_a_running_job(store, [2, 3, 4, 5])
    assert events[0][1]["status"] == "InProgress"
    assert events[0][1]["progress"] == {"done": 1}
    values = [data["progress"] for name, data in events if name == "progress"]
    assert values and values[-1] == 5
    assert values == sorted(values)
    assert [name for name, _ in events[-2:]] == ["progress", "status"]
    assert events[-1][1]["status"] == "Completed"
    assert events[-1][1]["progress"] == 5


async def test_unicode_line_separators_in_the_data_reach_a_line_splitting_client_whole(
    store: JobStore,
) -> None:
    """U+0085, U+2028 and U+2029 are text in JSON but end a line for httpx's line reader
    (as for ``str.splitlines``): the events escape them, so each event's data is one
    line that parses back to the value reported."""
    odd = "one\x85two\u2028three\u2029four"
    events = await stream_of_a_running_job(store, [odd])
    assert [data["progress"] for name, data in events if name == "progress"][-1] == odd
    assert events[-1][1]["progress"] == odd


async def test_a_reconnected_stream_starts_from_the_current_state(store: JobStore) -> None:
    """A client that drops its stream and opens another first gets the job as it is now
    (its progress included), then the rest."""
    async with serving(store) as app:
        job_id = await submit(app.http)
        await app.script.started.wait()
        async with app.http.stream("GET", f"/jobs/{job_id}/events") as response:
            async for event in events_of(response):
                assert event[1]["status"] == "InProgress"
                break  # the client goes away
        reading, first = streaming(app, job_id)
        await first.wait()
        app.script.go.set()
        events = await reading
    assert events[0][0] == "status"
    assert events[0][1]["status"] == "InProgress"
    assert events[0][1]["progress"] == {"done": 1}
    assert statuses(events)[-1] == "Completed"


async def test_a_job_already_terminal_gives_one_status_event(store: JobStore) -> None:
    async with serving(store) as app:
        app.script.go.set()
        job_id = await submit(app.http)
        details = await app.http.get(f"/jobs/{job_id}", headers={"Prefer": "wait=10"})
        assert details.json()["status"] == "Completed"
        events = await all_events(app.http, job_id)
    assert events == [("status", details.json())]


async def test_unknown_malformed_or_refused_jobs_answer_404_json(store: JobStore) -> None:
    async with serving(store) as app:
        app.script.go.set()
        job_id = await submit(app.http)
        for path, user in [
            (f"/jobs/{uuid.uuid4()}/events", "ann"),
            ("/jobs/not-a-uuid/events", "ann"),
            (f"/jobs/{job_id}/events", "bob"),  # authorize refuses another owner
        ]:
            response = await app.http.get(path, headers={"x-user": user})
            assert response.status_code == 404
            assert response.json() == {"detail": "job not found"}


async def test_the_job_json_shows_the_progress(store: JobStore) -> None:
    async with serving(store) as app:
        job_id = await submit(app.http)
        await app.script.started.wait()
        running = (await app.http.get(f"/jobs/{job_id}")).json()
        app.script.go.set()
        done = (await app.http.get(f"/jobs/{job_id}", headers={"Prefer": "wait=10"})).json()
    assert running["progress"] == {"done": 1}
    assert done["progress"] == 3


async def test_events_on_a_redis_cluster_reach_a_stream_served_by_another_store(
    redis_cluster: Any, prefix: str
) -> None:
    """The app serving the stream has its own store (no workers); another store's worker
    pool runs the job: status and progress come through the cluster's pub/sub."""
    from async_endpoints_redis import RedisJobStore

    runner_store = RedisJobStore(redis_cluster.url, prefix=prefix, cluster=True)
    runner = AsyncEndpoints(store=runner_store, run_workers=True)
    script = Script()

    async def steps(ctx: AsyncContext) -> str:
        await ctx.report_progress({"done": 1})
        script.started.set()
        await script.go.wait()
        await ctx.report_progress(2)
        return "all done"

    runner.add_handler(steps, name="Steps")
    store = RedisJobStore(redis_cluster.url, prefix=prefix, cluster=True)
    async with runner.running(), serving(store, run_workers=False) as app:
        job = await runner.submit("Steps", owner="ann")
        await script.started.wait()
        reading, first = streaming(app, str(job.id))
        await first.wait()
        script.go.set()
        events = await reading
    assert statuses(events) == ["InProgress", "Completed"]
    assert events[0][1]["progress"] == {"done": 1}
    assert events[-1][1]["progress"] == 2


async def test_a_stream_outlives_a_lost_subscription(own_redis_server: Any, prefix: str) -> None:
    """Messages published while the store's subscription is down are lost; once it is back
    each watched job is read again, so the stream still tells the end and ends."""
    import redis.asyncio as redis

    from async_endpoints_redis import RedisJobStore

    server = own_redis_server  # the test kills every subscription of its server
    async with serving(RedisJobStore(server.url, prefix=prefix)) as app:
        job_id = await submit(app.http)
        await app.script.started.wait()
        reading, first = streaming(app, job_id)
        await first.wait()
        admin = redis.Redis.from_url(server.url)
        try:
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        finally:
            await admin.aclose()
        app.script.go.set()
        async with asyncio.timeout(20):
            events = await reading
    assert statuses(events)[0] == "InProgress"
    assert statuses(events)[-1] == "Completed"
    assert events[-1][1]["progress"] == 3


async def test_a_stream_ends_when_redis_restarts_without_its_jobs_data(
    own_redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose data a Redis restart without persistence lost will never be told ending:
    once the subscription is back the job is read again, found gone, and its stream ends
    (with no terminal event); the job then answers 404, as a reopened stream does. (The
    watches' renewal, which would find it too, is put off past the test.)"""
    from async_endpoints_redis import RedisJobStore, _events

    monkeypatch.setattr(_events, "RENEW_EVERY", 3600.0)
    server = own_redis_server
    async with serving(RedisJobStore(server.url, prefix=prefix), run_workers=False) as app:
        job_id = await submit(app.http)
        reading, first = streaming(app, job_id)
        await first.wait()
        server.stop()
        server.start()
        async with asyncio.timeout(20):
            events = await reading
        assert statuses(events) == ["Queued"]
        assert (await app.http.get(f"/jobs/{job_id}")).status_code == 404
        assert (await app.http.get(f"/jobs/{job_id}/events")).status_code == 404


async def test_a_stream_ends_when_its_jobs_data_is_deleted_under_it(
    own_redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no reconnection to tell it (the job's key deleted, as a FLUSHALL or an eviction
    would), the next renewal of the watches finds the watched job gone, and its stream
    ends; another job's stream goes on."""
    import redis.asyncio as redis

    from async_endpoints_redis import RedisJobStore, _events
    from async_endpoints_redis._keys import Keys

    monkeypatch.setattr(_events, "RENEW_EVERY", 0.2)
    server = own_redis_server
    async with serving(RedisJobStore(server.url, prefix=prefix), run_workers=False) as app:
        job_id = await submit(app.http)
        kept_id = await submit(app.http)
        reading, first = streaming(app, job_id)
        kept, kept_first = streaming(app, kept_id)
        await first.wait()
        await kept_first.wait()
        admin = redis.Redis.from_url(server.url)
        try:
            assert await admin.delete(Keys(prefix).job(uuid.UUID(job_id))) == 1
        finally:
            await admin.aclose()
        async with asyncio.timeout(20):
            events = await reading
        assert statuses(events) == ["Queued"]
        assert not kept.done(), "the stream of a job still stored goes on"
        kept.cancel()


async def test_a_watched_job_found_missing_is_told_gone_once(
    redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each renewal of the watches finds the job missing again: its watchers are told it
    is gone once, not at every renewal."""
    from async_endpoints import JobNotice
    from async_endpoints_redis import RedisJobStore, _events

    monkeypatch.setattr(_events, "RENEW_EVERY", 0.1)
    store = RedisJobStore(redis_server.url, prefix=prefix)
    await store.start()
    told: list[JobNotice] = []
    try:
        stop = await store.watch_job(uuid.uuid4(), told.append)
        for _ in range(200):  # a renewal every 0.1 s: several within the wait
            if told:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)
        stop()
    finally:
        await store.aclose()
    assert [notice.gone for notice in told] == [True]


async def test_a_job_watched_again_as_the_last_watch_stops_does_not_spin_the_renewals(
    redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last watch stopped and another added before the renewal loop ran: the loop
    goes on waiting its interval, not renewing at every turn of the event loop."""
    from async_endpoints_redis import RedisJobStore, _events

    monkeypatch.setattr(_events, "RENEW_EVERY", 3600.0)
    store = RedisJobStore(redis_server.url, prefix=prefix)
    await store.start()
    try:
        stop = await store.watch_job(uuid.uuid4(), lambda notice: None)
        watched = store._watched_jobs
        assert watched is not None
        renewals = 0
        watch = watched._watch

        async def counted(ids: list[str]) -> list[str]:
            nonlocal renewals
            renewals += 1
            return await watch(ids)

        watched._watch = counted  # type: ignore[method-assign]
        stop()
        stop_again = await store.watch_job(uuid.uuid4(), lambda notice: None)
        renewals = 0  # the add's own call
        await asyncio.sleep(0.3)
        stop_again()
    finally:
        await store.aclose()
    assert renewals <= 1


def test_the_openapi_document_shows_the_event_stream() -> None:
    app, _ = make_app(InMemoryJobStore(), Script())
    operation = app.openapi()["paths"]["/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert "404" in operation["responses"]


def test_events_need_an_event_store() -> None:
    class Plain(InMemoryJobStore):
        watch_job = None  # type: ignore[assignment]

    endpoints = AsyncEndpoints(FastAPI(), store=Plain())
    with pytest.raises(ConfigurationError, match="EventStore"):
        endpoints.map_job_events()


async def test_a_closed_stream_stops_watching_its_job() -> None:
    """Clients that go away, before or after their first event, leave no watcher behind."""
    store = InMemoryJobStore()
    async with serving(store) as app:
        job_id = await submit(app.http)
        await app.script.started.wait()
        for _ in range(3):
            async with app.http.stream("GET", f"/jobs/{job_id}/events") as response:
                async for _event in events_of(response):
                    break
        async with asyncio.timeout(10):
            while store._job_watchers:  # noqa: ASYNC110 (the server notices in its own time)
                await asyncio.sleep(0.01)
        app.script.go.set()


async def test_each_status_event_is_exactly_the_job_json_of_job_details(
    store: JobStore,
) -> None:
    """The data of a status event is, byte for byte, the body ``GET /jobs/{id}`` answers
    for the job as it was then."""
    async with serving(store) as app:
        job_id = await submit(app.http)
        await app.script.started.wait()
        running = (await app.http.get(f"/jobs/{job_id}")).text
        seen: list[tuple[str, str]] = []
        async with app.http.stream("GET", f"/jobs/{job_id}/events") as response:
            async for event in raw_events_of(response):
                seen.append(event)
                if len(seen) == 1:
                    app.script.go.set()
        done = (await app.http.get(f"/jobs/{job_id}")).text
    statuses = [data for name, data in seen if name == "status"]
    assert statuses == [running, done]
    assert json.loads(done)["status"] == "Completed"


async def test_with_a_job_status_response_the_status_events_carry_its_body(
    store: JobStore,
) -> None:
    """The app's ``job_status_response`` shapes the status events as it shapes job details,
    called with the stream's own request."""

    def shaped(job: Any, request: Request) -> JSONResponse:
        caller = request.headers.get("x-user")
        return JSONResponse({"job": str(job.id), "state": job.status.value, "for": caller})

    async with serving(store, job_status_response=shaped) as app:
        app.script.after = []
        await app.endpoints.pause()
        job_id = await submit(app.http)
        queued = (await app.http.get(f"/jobs/{job_id}")).text
        seen: list[tuple[str, str]] = []
        async with app.http.stream("GET", f"/jobs/{job_id}/events") as response:
            async for event in raw_events_of(response):
                seen.append(event)
                if len(seen) == 1:
                    await app.endpoints.resume()
                    await app.script.started.wait()
                    app.script.go.set()
        done = (await app.http.get(f"/jobs/{job_id}")).text
    statuses = [data for name, data in seen if name == "status"]
    assert statuses[0] == queued
    assert statuses[-1] == done
    assert [json.loads(data)["state"] for data in statuses] == ["Queued", "InProgress", "Completed"]
    assert {json.loads(data)["for"] for data in statuses} == {"ann"}


async def test_a_stream_whose_sends_wait_gets_every_event_in_order(store: JobStore) -> None:
    """Behind a middleware that queues each message of a response for another task, every
    send of a stream waits: the stream still tells each status and the progress in
    order, and ends."""
    async with serving(store, queued_sends=True) as app:
        app.script.after = [2, 3, 4]
        await app.endpoints.pause()
        job_id = await submit(app.http)
        reading, first = streaming(app, job_id)
        await first.wait()
        await app.endpoints.resume()
        await app.script.started.wait()
        app.script.go.set()
        events = await reading
    assert statuses(events) == ["Queued", "InProgress", "Completed"]
    values = [data["progress"] for name, data in events if name == "progress"]
    assert values[0] == {"done": 1}
    assert values[1:] == sorted(values[1:]) and values[-1] == 4
    assert events[-1][1]["progress"] == 4


async def test_many_streams_of_a_job_share_one_watch_and_get_the_same_events() -> None:
    """Twenty streams of one job: one listener in the store for all of them; each gets
    every status, in order, and ends."""
    store = InMemoryJobStore()
    async with serving(store) as app:
        app.script.after = []
        await app.endpoints.pause()
        job_id = await submit(app.http)
        readers = [streaming(app, job_id) for _ in range(20)]
        for _, first in readers:
            await first.wait()
        assert len(store._job_watchers._listeners[uuid.UUID(job_id)]) == 1
        await app.endpoints.resume()
        await app.script.started.wait()
        app.script.go.set()
        seen = [await reading for reading, _ in readers]
    expected = ["Queued", "InProgress", "Completed"]
    assert all(statuses(events) == expected for events in seen)
    assert all(events == seen[0] for events in seen)
    assert not store._job_watchers


async def test_a_quiet_stream_gets_keep_alive_comments(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream with nothing to tell gets a comment line every ``PING_INTERVAL``."""
    from async_endpoints import _event_fanout

    monkeypatch.setattr(_event_fanout, "PING_INTERVAL", 0.05)
    async with serving(store) as app:
        await app.endpoints.pause()
        job_id = await submit(app.http)
        comments = 0
        async with app.http.stream("GET", f"/jobs/{job_id}/events") as response:
            async with asyncio.timeout(10):
                async for line in response.aiter_lines():
                    comments += line.startswith(":")
                    if comments == 2:
                        break
        assert comments == 2


async def test_a_stream_that_cannot_keep_up_keeps_only_the_latest_progress_queued() -> None:
    """While a send waits, newer progress replaces the progress queued behind it; status
    events are all kept, and everything goes out in order once the send is done."""
    from async_endpoints._event_stream import EventStream
    from async_endpoints._job import Job, JobStatus
    from async_endpoints._settings import Settings
    from async_endpoints._sse import JobRender

    release, four = asyncio.Event(), asyncio.Event()
    sent: list[bytes] = []

    async def send(message: Any) -> None:
        if not sent:
            await release.wait()
        sent.append(message["body"])
        if len(sent) == 4:
            four.set()

    now = datetime.now(UTC)
    running = Job(uuid.uuid4(), "Steps", JobStatus.IN_PROGRESS, 0, 3, now, now, None, now)
    stream = EventStream(JobRender(Settings()))
    stream.attach(send)
    stream.opened(running)  # its first event went out
    for body in (b"p1", b"p2", b"p3"):
        stream.push(True, body)
    stream.push(False, b"status")
    stream.push(True, b"p4")
    stream.push(True, b"p5")
    release.set()
    async with asyncio.timeout(5):
        await four.wait()
    assert sent == [b"p1", b"p3", b"status", b"p5"]


async def test_a_quiet_stream_gets_keep_alive_comments_while_another_job_is_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Progress of one job, told more often than ``PING_INTERVAL``, keeps the fan-out busy:
    the stream of another, quiet, job still gets its keep-alive comments; the busy stream,
    which sends all the time, gets none."""
    from async_endpoints import _event_fanout
    from async_endpoints._event_fanout import EventFanout
    from async_endpoints._event_stream import PING, EventStream
    from async_endpoints._job import NewJob
    from async_endpoints._settings import Settings
    from async_endpoints._sse import JobRender

    monkeypatch.setattr(_event_fanout, "PING_INTERVAL", 0.05)
    store = InMemoryJobStore()
    render = JobRender(Settings())
    fanout = EventFanout(store, render)
    busy_job = await store.enqueue(NewJob(uuid.uuid4(), "Busy", max_retries=0))
    quiet_job = await store.enqueue(NewJob(uuid.uuid4(), "Quiet", max_retries=0))
    [claim] = await store.claim(1, lease=30, queues=("default",))
    assert claim.job.id == busy_job.id
    pinged = asyncio.Event()
    sent: dict[str, list[bytes]] = {"Quiet": [], "Busy": []}
    streams = {}
    for job in (quiet_job, busy_job):
        stream = EventStream(render)
        bodies = sent[job.name]

        async def send(message: Any, bodies: list[bytes] = bodies) -> None:
            bodies.append(message["body"])
            if sent["Quiet"].count(PING) == 2:
                pinged.set()

        stream.attach(send)
        await fanout.watch(job.id, stream)
        streams[job.name] = stream
    streams["Quiet"].opened(quiet_job)
    streams["Busy"].opened(claim.job)
    async with asyncio.timeout(10):
        value = 0
        while not pinged.is_set():  # progress every 10 ms, PING_INTERVAL is 50 ms
            value += 1
            await store.set_progress(claim, value)
            await asyncio.sleep(0.01)
    assert PING not in sent["Busy"]


async def test_a_client_that_stops_reading_holds_up_only_its_own_stream() -> None:
    """One client stops reading after its first event while megabytes of progress come
    (the server's writes to it pause): another stream of the job still gets every event
    and its end, and once the slow client reads again it gets the rest, in order, the
    latest progress and the end."""
    store = InMemoryJobStore()
    async with serving(store) as app:
        app.script.after = [str(n) * 3_000_000 for n in range(1, 5)]
        await app.endpoints.pause()
        job_id = await submit(app.http)
        port = int(str(app.http.base_url).rsplit(":", 1)[1].rstrip("/"))
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(slow, ("127.0.0.1", port))
        request = f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: test\r\nX-User: ann\r\n\r\n"
        await loop.sock_sendall(slow, request.encode())
        received = bytearray()
        while b"event: status" not in received:  # its first event; then it stops reading
            received += await loop.sock_recv(slow, 65536)
        reading, first = streaming(app, job_id)
        await first.wait()
        await app.endpoints.resume()
        await app.script.started.wait()
        app.script.go.set()
        async with asyncio.timeout(20):
            fast = await reading  # ended while the slow client still reads nothing
        async with asyncio.timeout(20):
            while not received.endswith(b"0\r\n\r\n"):  # the end of the chunked body
                received += await loop.sock_recv(slow, 1 << 20)
        slow.close()
    assert statuses(fast) == ["Queued", "InProgress", "Completed"]
    body = _unchunked(bytes(received))
    slow_events = [
        (name, json.loads(data))
        for name, data in re.findall(r"event: (\w+)\r\ndata: ([^\r]*)\r\n\r\n", body)
    ]
    assert statuses(slow_events) == ["Queued", "InProgress", "Completed"]
    assert slow_events[-1][1]["progress"] == "4" * 3_000_000
    values = [data["progress"] for name, data in slow_events if name == "progress"]
    assert values[-1] == "4" * 3_000_000
    assert [value[:1] for value in values[1:]] == sorted(value[:1] for value in values[1:])


def _unchunked(raw: bytes) -> str:
    """The body of a chunked HTTP/1.1 response (headers dropped)."""
    rest = raw.split(b"\r\n\r\n", 1)[1]
    body = bytearray()
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return body.decode()
        body += rest[:size]
        rest = rest[size + 2 :]


async def test_a_server_shutting_down_ends_its_open_streams(store: JobStore) -> None:
    """uvicorn asked to exit while a stream waits for a change: the stream ends (after its
    first event) and the server stops, without waiting for the job."""
    app, endpoints = make_app(store, Script())
    first = asyncio.Event()
    async with httpx.AsyncClient(timeout=20, headers={"x-user": "ann"}) as http:
        async with asyncio.timeout(15), served(app) as url:
            http.base_url = httpx.URL(url)
            await endpoints.pause()
            job_id = await submit(http)
            reading = asyncio.create_task(all_events(http, job_id, first))
            await first.wait()
        async with asyncio.timeout(5):
            events = await reading
    assert statuses(events) == ["Queued"]


async def test_notices_held_before_the_first_event_send_only_what_it_did_not_show() -> None:
    """A stream holds the notices that come while its first event is read. Replayed after
    it: a status notice no newer than the first event sends nothing (its progress may be
    older: progress leaves lastUpdatedAt alone), progress up to the value the first event
    showed sends nothing, and only what came after goes out, in order."""
    from async_endpoints._event_stream import EventStream
    from async_endpoints._job import Job, JobStatus
    from async_endpoints._job_watch import JobNotice
    from async_endpoints._settings import Settings
    from async_endpoints._sse import JobRender

    sent: list[bytes] = []

    async def send(message: Any) -> None:
        sent.append(message["body"])

    now = datetime.now(UTC)
    later = datetime.fromtimestamp(now.timestamp() + 1, UTC)
    job_id = uuid.uuid4()

    def job(status: JobStatus, at: datetime, progress: Any) -> Job:
        ended = at if status.is_terminal else None
        return Job(job_id, "Steps", status, 0, 3, now, now, ended, at, progress=progress)

    render = JobRender(Settings())
    stream = EventStream(render)
    stream.attach(send)
    started = job(JobStatus.IN_PROGRESS, now, None)
    stream.status(JobNotice(job_id, started), (started.status, now), None)
    for step in (0, 1, 2):
        stream.progress_notice(
            JobNotice(job_id, progress={"i": step}), render.progress({"i": step})
        )
    done = job(JobStatus.COMPLETED, later, {"i": 2})
    stream.status(JobNotice(job_id, done), (done.status, later), None)
    assert sent == []  # held until the first event went out
    stream.opened(job(JobStatus.IN_PROGRESS, now, {"i": 1}))
    async with asyncio.timeout(5):
        await stream.ended
    events = [body.decode() for body in sent]
    assert len(events) == 2
    assert events[0].startswith("event: progress") and '{"progress":{"i":2}}' in events[0]
    assert events[1].startswith("event: status") and '"status":"Completed"' in events[1]


async def test_what_comes_after_the_read_and_an_end_in_the_same_millisecond_are_sent() -> None:
    """Held notices that came after the first event's read (`read`) all go out, even a
    progress value equal to the one it showed (the handler reported 2, then 1 again); and
    a terminal status held from before the read at the same millisecond as the first
    event (Redis times are whole milliseconds) is still sent, so the stream ends."""
    from async_endpoints._event_stream import EventStream
    from async_endpoints._job import Job, JobStatus
    from async_endpoints._job_watch import JobNotice
    from async_endpoints._settings import Settings
    from async_endpoints._sse import JobRender

    sent: list[bytes] = []

    async def send(message: Any) -> None:
        sent.append(message["body"])

    now, job_id = datetime.now(UTC), uuid.uuid4()

    def job(status: JobStatus, progress: Any) -> Job:
        ended = now if status.is_terminal else None
        return Job(job_id, "Steps", status, 0, 3, now, now, ended, now, progress=progress)

    render = JobRender(Settings())
    stream = EventStream(render)
    stream.attach(send)
    stream.read()
    for step in (2, 1):
        stream.progress_notice(
            JobNotice(job_id, progress={"i": step}), render.progress({"i": step})
        )
    stream.opened(job(JobStatus.IN_PROGRESS, {"i": 1}))
    events = [body.decode() for body in sent]
    assert len(events) == 2 and all(e.startswith("event: progress") for e in events)
    assert '{"i":2}' in events[0] and '{"i":1}' in events[1]

    sent.clear()
    ending = EventStream(render)
    ending.attach(send)
    done = job(JobStatus.COMPLETED, {"i": 1})
    ending.status(JobNotice(job_id, done), (done.status, now), None)  # before the read
    ending.read()
    ending.opened(job(JobStatus.IN_PROGRESS, {"i": 1}))
    async with asyncio.timeout(5):
        await ending.ended
    assert len(sent) == 1 and b'"status":"Completed"' in sent[0]


async def test_a_gone_notice_held_before_the_read_is_ignored_and_one_after_it_ends() -> None:
    """A `gone` notice held while the first event's job is read: one from before the read
    that found the job tells nothing (the job was stored again, or the notice was
    stale), so the stream goes on and the next status reaches it; one from after the
    read ends the stream, with no further event."""
    from async_endpoints._event_stream import EventStream
    from async_endpoints._job import Job, JobStatus
    from async_endpoints._job_watch import JobNotice
    from async_endpoints._settings import Settings
    from async_endpoints._sse import JobRender

    sent: list[bytes] = []

    async def send(message: Any) -> None:
        sent.append(message["body"])

    now, job_id = datetime.now(UTC), uuid.uuid4()
    later = datetime.fromtimestamp(now.timestamp() + 1, UTC)
    running = Job(job_id, "Steps", JobStatus.IN_PROGRESS, 0, 3, now, now, None, now)
    done = Job(job_id, "Steps", JobStatus.COMPLETED, 0, 3, now, now, later, later)
    render = JobRender(Settings())

    before = EventStream(render)
    before.attach(send)
    before.gone(JobNotice(job_id, gone=True))  # held, then the read finds the job
    before.read()
    before.opened(running)
    assert not before.ended.done()
    before.status(JobNotice(job_id, done), (done.status, later), None)
    async with asyncio.timeout(5):
        await before.ended
    assert len(sent) == 1 and b'"status":"Completed"' in sent[0]

    sent.clear()
    after = EventStream(render)
    after.attach(send)
    after.read()
    after.gone(JobNotice(job_id, gone=True))  # held, from after the read
    after.opened(running)
    async with asyncio.timeout(5):
        await after.ended
    after.status(JobNotice(job_id, done), (done.status, later), None)
    assert sent == []


async def test_lapsed_watches_are_dropped_by_recovery_when_nobody_watches_any_more(
    redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the last stream ended and its watches lapsed, recovery drops them (no new
    watch does then): the watched set is gone, so a transition of any job looks up one
    missing key rather than the set."""
    import redis.asyncio as redis

    from async_endpoints_redis import RedisJobStore, _events
    from async_endpoints_redis._keys import Keys

    monkeypatch.setattr(_events, "WATCH_TTL", 0.05)
    store = RedisJobStore(redis_server.url, prefix=prefix)
    admin = redis.Redis.from_url(redis_server.url)
    watched = Keys(prefix).key_prefix + "watched"
    await store.start()
    try:
        stop = await store.watch_job(uuid.uuid4(), lambda notice: None)
        stop()
        assert await admin.zcard(watched) == 1
        await asyncio.sleep(0.1)  # lapsed, and nothing watches again to drop it
        assert await admin.zcard(watched) == 1
        await store.recover()
        assert await admin.exists(watched) == 0
    finally:
        await store.aclose()
        await admin.aclose()
