"""The shared cluster client of a sharded store, made so that one dead master stops no
other shard.

Every shard of a `ShardedRedisJobStore` calls Redis through one client. A call that
fails on a dead master makes redis-py's cluster client refresh its topology before the
next call of any shard, and that refresh also reloads the command table (``COMMAND``)
from the client's default node: the master of the lowest slots, which may be the dead
one. That reload then fails, the client closes every node's connections, and every call
of every shard fails with the dead master's error until a replica takes over (seen in
``tests/faults/test_shard_failover.py``: the live shards took jobs but completed none
while shard 1's master was down).

`keep_command_table` makes a cluster client load its command table once: a topology
refresh then asks only the nodes it needs (``CLUSTER SLOTS``, from the first that
answers), so a call in a live shard never waits for, nor fails on, a dead master. The
table describes the server's commands, not the topology, so it stays right across
failovers. It also keeps the client's default node when redis-py closes the client
itself (after ``CLUSTERDOWN``, an uncovered slot, repeated MOVED, a failed pipeline):
with none, the next call is not routed by its key's slot but sent to the default node
the refresh picks, the master of the lowest slots, dead or not. Applied to the store's
own client and to one given to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.asyncio.cluster import NodesManager, RedisCluster

from ._command_table import keep_command_table as keep_table

if TYPE_CHECKING:
    from ._client import AnyRedis


class _KeptDefault(NodesManager):
    """Nodes whose default node outlives a close of the client (its connections closed,
    it reconnects), so that a call right after is routed by its key's slot."""

    __slots__ = ()

    async def aclose(self, attr: str = "nodes_cache") -> None:
        default = self.default_node
        await super().aclose(attr)
        if self.default_node is None:
            self.default_node = default


def keep_command_table(client: AnyRedis) -> None:
    """Make a cluster client load its command table once and keep its default node (see
    the module docstring); nothing for a single server's client."""
    if not isinstance(client, RedisCluster):
        return
    keep_table(client)
    if type(client.nodes_manager) is NodesManager:
        client.nodes_manager.__class__ = _KeptDefault


def release_default(client: AnyRedis) -> None:
    """Undo `keep_command_table`'s hold on the default node when the store closes: a
    client closed for good must read as closed (redis-py warns of an unclosed client when
    it is collected with a default node), whether the store closes it (one it made) or
    the app does later (one it gave)."""
    if isinstance(client, RedisCluster) and type(client.nodes_manager) is _KeptDefault:
        object.__setattr__(client.nodes_manager, "__class__", NodesManager)
