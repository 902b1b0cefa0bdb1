"""`LuaScript`: a Lua script called on the one node of its keys' slot, also when that
node does not know it yet.

redis-py's registered scripts call EVALSHA and, on NOSCRIPT, load the script with
SCRIPT LOAD, which a cluster client sends to *every* master: while one master is down
(killed, frozen, failing over), a server that had not run a script yet (a restarted or
promoted one, or one running the script for the first time) could not run it at all
(the load fails at once with a dead master, or hangs until the socket timeout with a
frozen one), although its own master answers. Here a NOSCRIPT is answered with EVAL of
the script's text, which goes to the node of the keys' slot only, like EVALSHA, and
leaves the script in that server's cache for the next EVALSHA.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from ._client import AnyRedis


class LuaScript:
    """A script of ``text``, called with EVALSHA and, on NOSCRIPT, with EVAL.

    Args:
        client: The client to call it with (no round trip until called).
        text: The script's Lua source.
    """

    __slots__ = ("_client", "sha", "text")

    def __init__(self, client: AnyRedis, text: str) -> None:
        self._client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode("utf-8")).hexdigest()

    async def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: AnyRedis | None = None
    ) -> Any:
        """Run the script on the node of ``keys``' slot (with ``client``, else the one it
        was made with); its reply."""
        target = self._client if client is None else client
        try:
            return await target.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await target.eval(self.text, len(keys), *keys, *args)
