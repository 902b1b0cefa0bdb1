"""The README's webhook receiver, run as written: it takes a real delivery and refuses a
forged one."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from async_endpoints import AsyncContext, AsyncEndpoints, InMemoryJobStore
from tests.serving import served
from tests.webhook_receiver import SECRET

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_receiver() -> dict[str, Any]:
    """The names the README's receiver snippet defines (``job_finished``, ``seen``)."""
    section = README.read_text().split("### Webhooks", 1)[1].split("\n### ", 1)[0]
    [snippet] = re.findall(r"```python\n(import base64.*?)```", section, re.DOTALL)
    names: dict[str, Any] = {"os": os, "Request": Request, "Response": Response}
    exec(compile(snippet.replace("...", "pass"), "README.md", "exec"), names)
    return names


async def test_the_readme_receiver_takes_a_delivery_once_and_refuses_a_forgery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The receiver of the README answers 204 to a real delivery and remembers its
    webhook-id; the same body with a forged signature answers 401."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    names = readme_receiver()
    app = Starlette(routes=[Route("/hook", names["job_finished"], methods=["POST"])])
    async with served(app) as url:
        endpoints = AsyncEndpoints(
            store=InMemoryJobStore(),
            webhook_secret=SECRET,
            webhook_allowed_hosts=[url.removeprefix("http://")],
        )

        async def note(ctx: AsyncContext[None]) -> str:
            return "done"

        endpoints.add_handler(note)
        async with endpoints.running(workers=False):
            job = await endpoints.submit("note", webhook_url=f"{url}/hook")
            await endpoints.drain()
            delivered = await endpoints.get_job(job.id)
        forged = {
            "webhook-id": "msg-forged",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,AAAA",
        }
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{url}/hook", content=b"{}", headers=forged)
    assert delivered is not None and delivered.webhook is not None
    assert delivered.webhook.status.value == "Delivered"
    assert len(names["seen"]) == 1 and answer.status_code == 401
