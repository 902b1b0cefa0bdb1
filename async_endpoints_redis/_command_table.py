"""A cluster client's command table, read once per process and cluster.

redis-py's cluster client reads the server's command table (``COMMAND``) when it first
connects: a reply of some 12,000 lines that takes a quarter of a second of CPU to parse, in
every client. The table describes the server's commands, not the cluster's topology, so
the clients a process makes for one URL share the first one's (a process that makes
many, a worker pool with stores per tenant or a test suite, pays once). A table kept this
way is also kept across topology refreshes: a refresh then asks only for the slots, from
the first node that answers, and never fails on a dead master it would have asked for the
table (see `_shard_client`). A command the table lacks (a server upgraded meanwhile) is
read anew by redis-py itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import RedisCluster

if TYPE_CHECKING:
    from redis.asyncio.cluster import ClusterNode

    from ._client import AnyRedis

#: What `AsyncCommandsParser.initialize` sets, in the redis-py releases that have it.
_PARTS = ("commands", "_movablekeys_specs", "_encoder")
#: The parts read for each URL, by the first client of this process made for it.
_TABLES: dict[str, dict[str, Any]] = {}


class KeptCommands(AsyncCommandsParser):
    """A command table loaded once, from the process's copy for ``url`` when there is
    one; a topology refresh (which names the new default node) only moves it to that
    node (used for ``COMMAND GETKEYS``). redis-py's own call without a node, for a
    command the table lacks, reads the table anew (and renews the process's copy)."""

    __slots__ = ("url",)
    url: str

    async def initialize(self, node: ClusterNode | None = None) -> None:
        url = getattr(self, "url", None)
        if node is not None:
            self.node = node
            if self.commands:
                return
            known = _TABLES.get(url) if url is not None else None
            if known is not None:
                for name, value in known.items():
                    setattr(self, name, value)
                return
        await super().initialize()
        if url is not None:
            _TABLES[url] = parts_of(self)


def parts_of(parser: AsyncCommandsParser) -> dict[str, Any]:
    """What ``parser``'s loading of the table set (`_PARTS`, as far as it has them)."""
    return {name: getattr(parser, name) for name in _PARTS if hasattr(parser, name)}


def keep_command_table(client: AnyRedis, url: str | None = None) -> None:
    """Make a cluster client load its command table once (from this process's copy for
    ``url``, when given and read before); nothing for a single server's client."""
    if not isinstance(client, RedisCluster) or isinstance(client.commands_parser, KeptCommands):
        return
    parser = client.commands_parser
    kept = KeptCommands()
    if parser.commands:  # a client the app gave, loaded already: all its table
        for name, value in parts_of(parser).items():
            setattr(kept, name, value)
    if hasattr(parser, "node"):
        kept.node = parser.node
    if url is not None:
        kept.url = url
    client.commands_parser = kept
