"""The clients of the events scenario (``bench/_events.py``), in a process of their own so
that reading 2,000 streams never competes with the measuring process's own loop.

    python -m bench._events_client PORT STREAMS JOB_ID [JOB_ID ...]

It opens one stream (on the first job), prints ``one`` once its first event came, waits for a
line on stdin, opens the other ``STREAMS - 1`` (spread round-robin over the job ids), prints
``all`` once each has its first event, then reads until every stream is closed by the server
(or 60 s pass) and prints one JSON line: per stream, the ``[status, arrived, read]`` of each
status event after the first: seconds from the job's ``lastUpdatedAt`` (the server's clock
at the change, in ms; same host) to the event's arrival in the client's socket (the
kernel's receive timestamp, ``SO_TIMESTAMPNS``, of the last packet the completing
``recv`` took: so this client's own scheduling is not measured) and to the client's
``recv`` of it (``time.time()``). The reader is a bare ``epoll`` loop: one ``recvmsg`` and
one clock read per ready socket; the bytes are parsed only after the run.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time
from datetime import datetime

_STATUS = b"event: status\r\ndata: "
_DEADLINE = 60.0
_SO_TIMESTAMPNS = 35  # Linux; the control message is a struct timespec (two int64)
_ANCILLARY = socket.CMSG_SPACE(16)


class _Stream:
    __slots__ = ("arrivals", "data", "first", "sock")

    def __init__(self, port: int, job_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.sock.sendall(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        self.sock.setblocking(False)
        self.data = bytearray()
        # (bytes received so far, kernel arrival, read)
        self.arrivals: list[tuple[int, float, float]] = []
        self.first = False

    def read(self) -> bool:
        """Read what is there; False once the server closed the stream."""
        now = time.time()
        try:
            chunk, ancillary, _, _ = self.sock.recvmsg(262144, _ANCILLARY)
        except BlockingIOError:
            return True
        except ConnectionError:
            return False
        if not chunk:
            return False
        arrived = now
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(raw) >= 16:
                seconds, nanoseconds = struct.unpack("qq", raw[:16])
                arrived = seconds + nanoseconds / 1e9
        self.data += chunk
        self.arrivals.append((len(self.data), arrived, now))
        if not self.first and _STATUS in self.data:
            self.first = True
        return True

    def delays(self) -> list[tuple[str, float, float]]:
        """``(status, seconds to arrival, seconds to read)`` of each status event after the
        first."""
        found: list[tuple[str, float, float]] = []
        data = bytes(self.data)
        start = data.find(_STATUS)
        start = data.find(_STATUS, start + 1) if start >= 0 else -1
        while start >= 0:
            line_end = data.index(b"\r\n", start + len(_STATUS))
            event_end = data.index(b"\r\n\r\n", start) + 4
            job = json.loads(data[start + len(_STATUS) : line_end])
            arrived, read = next((a, r) for size, a, r in self.arrivals if size >= event_end)
            changed = datetime.fromisoformat(job["lastUpdatedAt"].rstrip("Z") + "+00:00")
            found.append((job["status"], arrived - changed.timestamp(), read - changed.timestamp()))
            start = data.find(_STATUS, event_end)
        return found


def _read_until(poller: select.epoll, streams: dict[int, _Stream], done: object) -> None:
    """Read every ready stream until ``done()`` or the deadline; closed streams leave
    ``streams``."""
    deadline = time.monotonic() + _DEADLINE
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        for fd, _ in poller.poll(0.5):
            stream = streams.get(fd)
            if stream is not None and not stream.read():
                poller.unregister(fd)
                stream.sock.close()
                del streams[fd]


def main(argv: list[str]) -> None:
    port, count, ids = int(argv[0]), int(argv[1]), argv[2:]
    poller = select.epoll()
    everyone: list[_Stream] = []
    live: dict[int, _Stream] = {}

    def add(job_id: str) -> None:
        stream = _Stream(port, job_id)
        everyone.append(stream)
        live[stream.sock.fileno()] = stream
        poller.register(stream.sock.fileno(), select.EPOLLIN)

    add(ids[0])
    _read_until(poller, live, lambda: everyone[0].first)
    print("one", flush=True)
    sys.stdin.readline()
    for n in range(1, count):
        add(ids[n % len(ids)])
        if n % 100 == 0:  # let the server accept and answer as they come
            _read_until(poller, live, lambda: all(s.first for s in everyone[-100:]))
    _read_until(poller, live, lambda: all(s.first for s in everyone))
    print("all", flush=True)
    _read_until(poller, live, lambda: not live)
    print(json.dumps({"open": len(live), "delays": [s.delays() for s in everyone]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
