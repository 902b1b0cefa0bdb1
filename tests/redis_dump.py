"""Everything a Redis server holds, as bytes: what the tests that promise a secret is never
stored search through."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from tests.redis_servers import RedisServer


async def everything_in(server: RedisServer) -> bytes:
    """Every key of the server and every member, field and value of each, whatever its
    type, concatenated. A key gone between the scan and its read (the server may be shared
    with other tests, whose keys expire or are deleted meanwhile) adds nothing. Read a
    scan's page at a time, in two pipelines (the types, then the values): a server shared
    by a whole test run holds thousands of keys."""
    client = redis.Redis.from_url(server.url)
    chunks: list[bytes] = []
    try:
        cursor = None
        while cursor != 0:
            cursor, keys = await client.scan(cursor or 0, count=1000)
            chunks += await _page(client, keys)
    finally:
        await client.aclose()
    return b"\n".join(chunks)


async def _page(client: redis.Redis, keys: list[bytes]) -> list[bytes]:
    async with client.pipeline(transaction=False) as types:
        for key in keys:
            types.type(key)
        kinds = [kind.decode() for kind in await types.execute()]
    async with client.pipeline(transaction=False) as reads:
        for key, kind in zip(keys, kinds, strict=True):
            _read(reads, key, kind)
        values = await reads.execute()
    chunks: list[bytes] = []
    read = iter(values)
    for key, kind in zip(keys, kinds, strict=True):
        chunks.append(key)
        if kind != "none":
            chunks += _parts(kind, next(read))
    return chunks


def _read(pipe: Any, key: bytes, kind: str) -> None:
    if kind == "none":
        return
    reader = _READERS.get(kind)
    assert reader is not None, f"a {kind} key: teach everything_in to read it"
    reader(pipe, key)


_READERS: dict[str, Any] = {
    "string": lambda pipe, key: pipe.get(key),
    "hash": lambda pipe, key: pipe.hgetall(key),
    "list": lambda pipe, key: pipe.lrange(key, 0, -1),
    "set": lambda pipe, key: pipe.smembers(key),
    "zset": lambda pipe, key: pipe.zrange(key, 0, -1),
    "stream": lambda pipe, key: pipe.xrange(key),
}


def _parts(kind: str, value: Any) -> list[bytes]:
    """One key's value, read by `_READERS`, as the bytes it holds (a key deleted between
    the two pipelines reads as empty)."""
    if kind == "string":
        return [value or b""]
    if kind == "hash":
        return [part for pair in value.items() for part in pair]
    if kind == "stream":
        return [part for _, entry in value for pair in entry.items() for part in pair]
    return list(value)
