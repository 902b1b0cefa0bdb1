"""The store's one pub/sub subscription: wake-ups, settlements, cancellations, jobs
handed over, and the events of the jobs this process watches (`_events`).

A background task holds a subscription to the wake, done, cancel, events and clock-probe
channels and to the store's own inbox channel, and reconnects by itself, with backoff,
after an outage. A done message carries the job's id, then (unless large) its terminal
hash as JSON, which settles waiters without a read; an inbox message is a job handed to
this store's idle worker, passed to the store as is; a cancel message is the id of a
running job that was cancelled, passed to the store (which tells its cancel listeners); a
clock probe is a starting process asking for this process's reading of the elapsed-time
clock (`_connection`). Messages published while it was disconnected are lost, so every
(re)connection counts as a wake-up and makes every settlement waiter look at its job
again. A connection that stays silent is pinged; one that does not answer is dropped and
replaced, so a half-open TCP connection cannot hide wake-ups for long. On a cluster the
subscription is on the master of the store's slot (the scripts count its listeners
there); when the slot has moved to another master, it moves there too, within
`_HOME_CHECK_AFTER` seconds of the client hearing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio.client import PubSub
from redis.exceptions import NoPermissionError, ResponseError

from async_endpoints._job import Job

from ._codec import text

logger = logging.getLogger("async_endpoints_redis")

_MIN_BACKOFF = 0.05
_MAX_BACKOFF = 2.0
_PING_AFTER = 5.0  # seconds of silence before the connection is pinged
#: Seconds between looks at whether a cluster's subscription is still on the node of the
#: store's slot (`_client.pubsub_moved`).
_HOME_CHECK_AFTER = 2.0
#: Messages received already that a subscription leaving its node acts on, at most.
_MOST_RECEIVED = 1000
_ID_LENGTH = 36  # a job id's text form, which starts every done message


@dataclass(eq=False)
class Watch:
    """One waiter's view of a job's settlement.

    Attributes:
        event: Set when the job may have settled (or the subscription reconnected).
        job: The terminal job, when the settlement carried it.
    """

    event: asyncio.Event = field(default_factory=asyncio.Event)
    job: Job | None = None


class Notifications:
    """Wake-ups (a generation counter and an event) and per-job settlement events."""

    def __init__(
        self,
        open_pubsub: Callable[[], Awaitable[PubSub]],
        *,
        moved: Callable[[PubSub], bool] = lambda pubsub: False,
        wake_channel: str,
        done_channel: str,
        inbox_channel: str,
        cancel_channel: str,
        events_channel: str,
        probe_channel: str,
        decode: Callable[[str, bytes | str], Job | None],
        on_handed_over: Callable[[bytes | str], None],
        on_cancel: Callable[[str], None],
        on_probe: Callable[[], None],
        reply_timeout: float,
    ) -> None:
        self._open = open_pubsub
        self._moved = moved
        self._wake_channel = wake_channel
        self._done_channel = done_channel
        self._inbox_channel = inbox_channel
        self._cancel_channel = cancel_channel
        self._events_channel = events_channel
        self._probe_channel = probe_channel
        #: Told of the events channel's messages, of settlements and of every
        #: (re)connection, once a job is watched (`_events.WatchedJobs`).
        self.job_events: JobEventsHook | None = None
        self._on_cancel = on_cancel
        self._on_probe = on_probe
        self._decode = decode
        self._on_handed_over = on_handed_over
        self._reply_timeout = reply_timeout
        self._generation = 0
        self._wake = asyncio.Event()
        self._watchers: dict[str, set[Watch]] = {}
        self._connected = asyncio.Event()
        #: Set while Redis refuses the subscription (a user not allowed to subscribe).
        self._refused = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._went_live = False
        self._closed = False
        #: Why the subscription last failed (None once it is live again).
        self.last_failure: str | None = None
        self._last_refusal: str | None = None  # the refusal warned of last

    @property
    def generation(self) -> int:
        """Grows with every wake-up; compare two readings to learn whether one came."""
        return self._generation

    @property
    def wake_event(self) -> asyncio.Event:
        """Set by the next wake-up (take it before checking `generation`)."""
        return self._wake

    @property
    def connected(self) -> bool:
        """True while the subscription is live, so no message can be missed."""
        return self._connected.is_set()

    def wake(self) -> None:
        """Count a wake-up and release everything waiting for one."""
        self._generation += 1
        self._wake.set()
        self._wake = asyncio.Event()

    def settled(self, job_id: str, job: Job | None = None) -> None:
        """Release the waiters of this job, handing them the terminal ``job`` if known."""
        for watch in self._watchers.get(job_id, ()):
            if job is not None:
                watch.job = job
            watch.event.set()

    @contextlib.contextmanager
    def watching(self, job_id: str) -> Iterator[Watch]:
        """A watch released when the job may have settled, registered for the block."""
        watch = Watch()
        self._watchers.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watchers[job_id]
            watches.discard(watch)
            if not watches:
                del self._watchers[job_id]

    async def wait_live(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the subscription to be live; True if it is.
        A refusal by Redis's ACL ends the wait at once (False): it will not pass by itself."""
        live = asyncio.ensure_future(self._connected.wait())
        refused = asyncio.ensure_future(self._refused.wait())
        try:
            await asyncio.wait(
                (live, refused), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            live.cancel()
            refused.cancel()
        return self.connected

    def start(self) -> None:
        """Start the listener task (once)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="async-endpoints-redis-pubsub")

    async def aclose(self) -> None:
        """Stop listening and release every waiter. Idempotent."""
        self._closed = True
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()  # again if a library swallowed the previous request
            await asyncio.wait({task}, timeout=1.0)
        self._release_all()

    def _release_all(self) -> None:
        self.wake()
        for watches in self._watchers.values():
            for watch in watches:
                watch.event.set()

    async def _run(self) -> None:
        backoff = _MIN_BACKOFF
        while True:
            _raise_if_cancelling()
            self._went_live = False
            try:
                await self._listen()
            except Exception as exc:  # the listener must outlive any failure
                self._failed(exc)
            backoff = _MIN_BACKOFF if self._went_live else min(backoff * 2, _MAX_BACKOFF)
            await asyncio.sleep(backoff)

    def _failed(self, exc: Exception) -> None:
        """Note why the subscription failed. A refusal by Redis (an ACL user not allowed
        to subscribe, say) will not pass by itself: it is a warning, once per cause; a lost
        connection is routine (the listener reconnects)."""
        failure = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ResponseError):
            if failure != self._last_refusal:
                logger.warning("pub/sub subscription refused by Redis, trying again: %s", failure)
                self._last_refusal = failure
            if isinstance(exc, NoPermissionError):  # an ACL refusal, not a passing BUSY
                self._refused.set()
        else:
            logger.debug("pub/sub connection lost, reconnecting: %s", exc)
        self.last_failure = failure

    async def _listen(self) -> None:
        pubsub = await self._open()
        try:
            channels: tuple[str, ...] = (self._wake_channel, self._done_channel)
            channels += (self._inbox_channel, self._cancel_channel, self._probe_channel)
            await pubsub.subscribe(*channels, self._events_channel)
            for _ in range(len(channels) + 1):
                await self._next_message(pubsub, self._reply_timeout, "subscribe")
            self._connected.set()
            self._refused.clear()
            self._went_live = True
            self.last_failure = self._last_refusal = None
            self._release_all()  # what was published while disconnected is lost
            if self.job_events is not None:
                self.job_events.reconnected()
            loop = asyncio.get_running_loop()
            heard_at = looked_at = loop.time()
            while True:
                _raise_if_cancelling()
                now = loop.time()
                if now >= looked_at + _HOME_CHECK_AFTER:  # between messages: none is lost
                    looked_at = now
                    if self._moved(pubsub):
                        logger.info("the store's slot moved to another node: subscribing there")
                        await self._dispatch_received(pubsub)
                        return  # the next connection goes to the slot's node
                until = min(heard_at + _PING_AFTER, looked_at + _HOME_CHECK_AFTER)
                message = await pubsub.get_message(timeout=max(until - now, 0.0))
                if message is None:
                    if loop.time() < heard_at + _PING_AFTER:
                        continue  # time to look at the slot's node, not yet to ping
                    await pubsub.ping()
                    message = await self._next_message(pubsub, self._reply_timeout, None)
                heard_at = loop.time()
                if self._dispatch(message):
                    # Let the woken task run before this one reads on: reading the next
                    # message costs redis-py's work up front, and the handover is urgent.
                    await asyncio.sleep(0)
        finally:
            self._connected.clear()
            with contextlib.suppress(Exception):
                # Typed through a variable: redis-py annotates aclose in some releases only.
                close: Callable[[], Awaitable[None]] = pubsub.aclose
                await close()

    async def _dispatch_received(self, pubsub: PubSub) -> None:
        """Act on the messages the connection has received already, before it is closed
        (a cancel or a hand-over among them is not lost; what comes after is, as after
        any reconnection)."""
        for _ in range(_MOST_RECEIVED):
            message = await pubsub.get_message(timeout=0.0)
            if message is None:
                return
            self._dispatch(message)

    @staticmethod
    async def _next_message(pubsub: PubSub, timeout: float, kind: str | None) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message: dict[str, Any] | None = await pubsub.get_message(timeout=timeout)
                if message is not None and (kind is None or message["type"] == kind):
                    return message

    def _resubscribed(self, message: dict[str, Any]) -> None:
        """redis-py reconnected and subscribed again by itself (the subscribe reply of the
        events channel, the last one subscribed, comes again): what was published
        meanwhile is lost, as after a reconnection of ours."""
        if message["type"] == "subscribe" and text(message["channel"]) == self._events_channel:
            self._release_all()
            if self.job_events is not None:
                self.job_events.reconnected()

    def _dispatch(self, message: dict[str, Any]) -> bool:
        """Act on a message; True when it released someone (a hand-over or a waiter)."""
        if message["type"] != "message":
            self._resubscribed(message)
            return False
        channel = text(message["channel"])
        data: bytes | str = message["data"]
        if channel == self._wake_channel:
            self.wake()
        elif channel == self._done_channel:
            job_id = text(data[:_ID_LENGTH])
            if self.job_events is not None:
                self.job_events.settled(job_id, data)
            if job_id in self._watchers:  # decoded only when someone waits for it
                job = self._decode(job_id, data) if len(data) > _ID_LENGTH else None
                self.settled(job_id, job)
                return True
        elif channel == self._inbox_channel:
            self._on_handed_over(data)
            return True
        elif channel == self._cancel_channel:
            self._on_cancel(text(data))
            return True
        elif channel == self._probe_channel:
            self._on_probe()
        elif channel == self._events_channel and self.job_events is not None:
            self.job_events.changed(data)
        return False


class JobEventsHook(Protocol):
    """What the subscription tells the watched jobs of this process."""

    def changed(self, message: bytes | str) -> None:
        """A message of the events channel."""

    def settled(self, job_id: str, message: bytes | str) -> None:
        """A message of the done channel (``job_id`` is its start)."""

    def reconnected(self) -> None:
        """The subscription is live again: what was published meanwhile is lost."""


def _raise_if_cancelling() -> None:
    """Honour a cancellation that a library swallowed (on Python 3.11 a cancel racing a
    timeout inside redis-py can turn into a plain timeout), so the loop cannot outlive it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
