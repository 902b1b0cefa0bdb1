"""A TCP proxy on 127.0.0.1 that a test can break and restore: a network cut on demand.

The proxy runs its own event loop in a thread of its own, so that a test blocking its
loop (starting a process, say) never stalls the traffic it forwards. While `cut`, every
open connection is dropped and new ones are refused (accepted, then reset at once) or
blackholed (accepted, then never answered: the client learns only from its timeouts,
as with packets lost in a partition). `restore` forwards new connections again.
`lose_replies` is a subtler fault: requests on the connections open now still reach the
server, but its replies are swallowed (new connections work normally).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

HOST = "127.0.0.1"


class CutMode(StrEnum):
    """How a cut proxy treats new connections."""

    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's side and, once connected, the server's."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    replies_lost: bool = False

    def drop(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    """Forwards a free loopback port to ``upstream_port``; `cut` and `restore` at will.

    Use as a context manager: entering starts the thread and the listener, leaving stops
    both and drops every connection.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.cut_mode: CutMode | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    @property
    def url(self) -> str:
        """A Redis URL that reaches the upstream server through the proxy."""
        return f"redis://{HOST}:{self.port}/0"

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def cut(self, mode: CutMode = CutMode.BLACKHOLE) -> None:
        """Drop every connection; refuse or blackhole new ones until `restore`."""
        self._call(self._cut(mode))

    def restore(self) -> None:
        """Forward new connections again (blackholed ones are dropped: reconnect)."""
        self._call(self._cut(None))

    def lose_replies(self) -> None:
        """Swallow from now on what the server sends on the connections open now."""
        self._call(self._lose_replies())

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut(self.cut_mode)
        # Every connection's task ends here, before the loop closes (none left pending).
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _cut(self, mode: CutMode | None) -> None:
        self.cut_mode = mode
        for link in self._links:
            link.drop()
        self._links.clear()

    async def _lose_replies(self) -> None:
        for link in self._links:
            link.replies_lost = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_mode is CutMode.REFUSE:
            writer.transport.abort()
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            if self.cut_mode is CutMode.BLACKHOLE:
                await _swallow(reader)
            else:
                await self._forward(link, reader)
        finally:
            link.drop()
            self._links.discard(link)

    async def _forward(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            server_reader, link.server = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            return
        pipes = [
            asyncio.create_task(_pipe(reader, link.server, lambda: False)),
            asyncio.create_task(_pipe(server_reader, link.client, lambda: link.replies_lost)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()


async def _swallow(reader: asyncio.StreamReader) -> None:
    """Read and discard until the connection ends: nothing reaches the server."""
    with contextlib.suppress(ConnectionError, OSError):
        while await reader.read(65536):
            pass


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lost: Callable[[], bool]
) -> None:
    """Copy bytes one way (discarding them while ``lost()``) until the connection ends."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            if not lost():
                writer.write(data)
                await writer.drain()
