"""The subscription leaving a node whose slot moved (`Notifications._listen`): the
messages it has received already are acted on before it closes. The connection is a
stand-in for redis-py's `PubSub` (what is tested is the listener's loop; the move on a
real Cluster is in tests/redis/test_redis_slot_migration.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from async_endpoints_redis import _notify
from async_endpoints_redis._notify import Notifications

CANCELLED = "00000000-0000-0000-0000-000000000001"


class Connection:
    """Answers the subscriptions, then holds ``received`` (read already from Redis)."""

    def __init__(self, received: list[dict[str, Any]]) -> None:
        self.replies: list[dict[str, Any]] = []
        self.received = received
        self.closed = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def subscribe(self, *channels: str) -> None:
        self.replies = [{"type": "subscribe", "channel": name, "data": 1} for name in channels]
        self.subscribed.set()

    async def get_message(self, timeout: float) -> dict[str, Any] | None:
        if self.replies:
            return self.replies.pop(0)
        if self.received:
            return self.received.pop(0)
        await asyncio.sleep(timeout)
        return None

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self.closed.set()


async def test_a_subscription_leaving_a_moved_slots_node_first_acts_on_what_it_received(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_notify, "_HOME_CHECK_AFTER", 0.0)  # looks at once
    cancel = {"type": "message", "channel": "cancel", "data": CANCELLED}
    first, second = Connection([cancel]), Connection([])
    connections = [first, second]
    cancelled: list[str] = []

    async def open_pubsub() -> Any:
        return connections.pop(0)

    notifications = Notifications(
        open_pubsub,
        moved=lambda pubsub: pubsub is first,
        wake_channel="wake",
        done_channel="done",
        inbox_channel="inbox",
        cancel_channel="cancel",
        events_channel="events",
        probe_channel="probe",
        decode=lambda job_id, fields: None,
        on_handed_over=lambda message: None,
        on_cancel=cancelled.append,
        on_probe=lambda: None,
        reply_timeout=1.0,
    )
    notifications.start()
    try:
        await asyncio.wait_for(first.closed.wait(), 5)
        await asyncio.wait_for(second.subscribed.wait(), 5)  # on the slot's node now
    finally:
        await notifications.aclose()
    assert cancelled == [CANCELLED]
