"""A real webhook receiver for the tests: a Starlette app served by uvicorn on 127.0.0.1
that records every request and checks Standard Webhooks signatures on its own (the
scheme written out here, not the library's signer)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from async_endpoints import AsyncEndpoints
from async_endpoints._job import Job, WebhookStatus
from tests.serving import served

#: The signing secret of the test apps: ``whsec_`` + base64 of a 32-byte key.
KEY = b"k" * 8 + bytes(range(200, 224))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def job(self) -> dict[str, Any]:
        """The body as JSON (the job JSON for a webhook)."""
        data: dict[str, Any] = json.loads(self.body)
        return data


def signature_is_valid(delivery: Delivery, secret: str = SECRET, tolerance: float = 300) -> bool:
    """Whether ``delivery`` is signed with ``secret`` per Standard Webhooks, sent within
    ``tolerance`` seconds of now."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message_id = delivery.headers["webhook-id"]
    timestamp = delivery.headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    signed = f"{message_id}.{timestamp}.".encode() + delivery.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in delivery.headers["webhook-signature"].split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


Answer = Callable[[int, Request], Response | Awaitable[Response]]


def answer_with(status: int) -> Answer:
    """Answer every request with ``status``."""
    return lambda _number, _request: Response(status_code=status)


@dataclass
class Receiver:
    """Records requests; ``answer(n, request)`` (n from 1) gives the answer to the n-th."""

    answer: Answer = field(default_factory=lambda: answer_with(204))
    deliveries: list[Delivery] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, the allow-list entry of this receiver."""
        return self.url.removeprefix("http://")

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.deliveries.append(Delivery(request.url.path, headers, body))
        self._arrived.set()
        answer = self.answer(len(self.deliveries), request)
        if isinstance(answer, Response):
            return answer
        return await answer

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self._endpoint, methods=methods)])

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Delivery]:
        """The deliveries once there are at least ``count``; fails after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while len(self.deliveries) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.deliveries


@contextlib.asynccontextmanager
async def receiving(answer: Answer | None = None) -> AsyncIterator[Receiver]:
    """A `Receiver` served on 127.0.0.1 for the block."""
    receiver = Receiver() if answer is None else Receiver(answer)
    async with served(receiver.app()) as url:
        receiver.url = url
        yield receiver


async def settled_webhook(engine: AsyncEndpoints, job: Job, timeout: float = 15.0) -> Job:
    """``job`` once its webhook is no longer Pending, running due jobs meanwhile."""
    async with asyncio.timeout(timeout):
        while True:
            await engine.drain()
            latest = await engine.get_job(job.id)
            assert latest is not None and latest.webhook is not None
            if latest.webhook.status is not WebhookStatus.PENDING:
                return latest
            await asyncio.sleep(0.01)
