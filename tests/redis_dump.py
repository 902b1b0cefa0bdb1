"""Everything a Redis server holds, as bytes: what the tests that promise a secret is never
stored search through."""

from __future__ import annotations

import redis.asyncio as redis

from tests.redis_servers import RedisServer


async def everything_in(server: RedisServer) -> bytes:
    """Every key of the server and every member, field and value of each, whatever its
    type, concatenated. A key gone between the scan and its read (the server may be shared
    with other tests, whose keys expire or are deleted meanwhile) adds nothing."""
    client = redis.Redis.from_url(server.url)
    chunks: list[bytes] = []
    try:
        async for key in client.scan_iter(count=1000):
            chunks += [key, *await _values(client, key)]
    finally:
        await client.aclose()
    return b"\n".join(chunks)


async def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = (await client.type(key)).decode()
    if kind == "none":
        return []
    if kind == "string":
        return [await client.get(key) or b""]
    if kind == "hash":
        return [part for pair in (await client.hgetall(key)).items() for part in pair]
    if kind == "list":
        return list(await client.lrange(key, 0, -1))
    if kind == "set":
        return list(await client.smembers(key))
    if kind == "zset":
        return list(await client.zrange(key, 0, -1))
    assert kind == "stream", f"a {kind} key: teach everything_in to read it"
    entries = await client.xrange(key)
    return [part for _, entry in entries for pair in entry.items() for part in pair]
