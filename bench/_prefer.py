"""The request-reply pattern over HTTP on Redis (issue 13): a job that finishes at once,
POSTed with ``Prefer: wait=5`` (answered 200 with the finished job), against a plain POST
(answered 202 at once), and an ``Idempotency-Key`` repeat's store round trips.

One process: uvicorn serves an app on 127.0.0.1 whose worker pool runs in the same
process (as an embedded deployment does), on the shared Redis; one httpx client sends
the requests one after another, the plain and the waiting ones interleaved, so both see
the same machine. The figures are the client's latency percentiles and their ratio
(goal: waiting p50 <= 2x plain p50). The round trips of a repeat are the commands the
store's Redis client sends for it, on a store with no worker pool so that nothing else
shares the client (one EVALSHA is one round trip).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from async_endpoints import AsyncContext, AsyncEndpoints
from async_endpoints_redis import RedisJobStore

from ._driver import log
from ._queues import Plan
from ._redis import Server
from ._report import Target
from ._stats import latency_ms

SAMPLES = 500  # per kind and repeat


class _CountingRedis(Redis):
    """A client that counts the commands it sends."""

    sent = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        type(self).sent += 1
        return await super().execute_command(*args, **options)


def run(server: Server, plan: Plan) -> dict[str, Any]:
    """Latencies of plain and ``Prefer: wait`` POSTs, and a repeat's round trips."""
    server.flush()
    samples = SAMPLES if plan.repeats > 1 else 150
    found = asyncio.run(_measure(server, samples * max(1, plan.repeats)))
    server.flush()
    log(
        f"prefer: plain 202 p50 {found['plain']['p50']:.2f} ms, Prefer: wait=5 -> 200 p50 "
        f"{found['waiting']['p50']:.2f} ms; idempotent repeat {found['repeat_round_trips']} "
        "round trip(s)"
    )
    return found


async def _measure(server: Server, samples: int) -> dict[str, Any]:
    client = _CountingRedis.from_url(server.url)
    app = FastAPI()
    endpoints = AsyncEndpoints(app, store=RedisJobStore(client=client, prefix="bench-prefer"))

    @endpoints.map_async_post("/noop", name="noop")
    async def noop(ctx: AsyncContext) -> None:
        return None

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    serving = asyncio.create_task(uv.serve())
    try:
        while not uv.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            plain: list[float] = []
            waiting: list[float] = []
            for n in range(samples + 20):
                for kind, headers in (("plain", {}), ("waiting", {"Prefer": "wait=5"})):
                    began = time.perf_counter()
                    response = await http.post("/noop", headers=headers)
                    took = time.perf_counter() - began
                    expected = 202 if kind == "plain" else 200
                    assert response.status_code == expected, response.text
                    if n >= 20:  # the first ones warm up connections and scripts
                        (plain if kind == "plain" else waiting).append(took)
    finally:
        uv.should_exit = True
        await serving
        await client.aclose()
    repeat_round_trips = await _repeat_round_trips(server)
    return {
        "plain": latency_ms(plain),
        "waiting": latency_ms(waiting),
        "repeat_round_trips": repeat_round_trips,
    }


async def _repeat_round_trips(server: Server) -> int:
    """The commands a store with no worker pool (nothing else on its client) sends for
    a submission that repeats an earlier one's idempotency key."""
    client = _CountingRedis.from_url(server.url)
    endpoints = AsyncEndpoints(store=RedisJobStore(client=client, prefix="bench-repeat"))

    async def noop(ctx: AsyncContext) -> None:
        return None

    endpoints.add_handler(noop)
    try:
        async with endpoints.running(workers=False):
            await endpoints.submit("noop", idempotency_key="bench-repeat")
            before = _CountingRedis.sent
            await endpoints.submit("noop", idempotency_key="bench-repeat")
            return _CountingRedis.sent - before
    finally:
        await client.aclose()


def summary(found: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The lines that show the issue-13 figures, and its targets judged on them."""
    if not found:
        return [], []
    ratio = found["waiting"]["p50"] / found["plain"]["p50"]
    lines = [
        f"POST, job finishes at once: Prefer: wait=5 -> 200 p50 {found['waiting']['p50']:.2f} ms "
        f"(p99 {found['waiting']['p99']:.2f}) vs plain 202 p50 {found['plain']['p50']:.2f} ms "
        f"(p99 {found['plain']['p99']:.2f}) = {ratio:.2f}x",
        f"idempotent repeat: {found['repeat_round_trips']} store round trip(s)",
    ]
    goals = [
        Target("Prefer: wait=5 -> 200 p50 <= 2x plain 202 p50", f"{ratio:.2f}x", ratio <= 2),
        Target(
            "idempotent repeat: one round trip",
            str(found["repeat_round_trips"]),
            found["repeat_round_trips"] == 1,
        ),
    ]
    return lines, goals
