"""A small HTTP/1.1 load generator, for machines without ``wrk``.

    python -m bench.loadgen --port P --path /x --body '{"data":"hello"}' \
        --connections 50 --seconds 4

Keep-alive connections on 127.0.0.1 only, each sending one POST after the other for a
bounded time; prints JSON: requests/s, latency p50/p99 (ms), and responses other than 202.
Raw sockets rather than an HTTP client library, so the generator costs little CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench._stats import percentile

HOST = "127.0.0.1"


async def connection(
    port: int, request: bytes, stop_at: float, latencies: list[float], statuses: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.monotonic() < stop_at:
            began = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.monotonic() - began)
            statuses.append(int(head.split(b" ", 2)[1]))
    finally:
        writer.close()


async def run(port: int, path: str, body: str, connections: int, seconds: float) -> dict:
    payload = body.encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    latencies: list[float] = []
    statuses: list[int] = []
    began = time.monotonic()
    stop_at = began + seconds
    await asyncio.gather(
        *(connection(port, request, stop_at, latencies, statuses) for _ in range(connections))
    )
    elapsed = time.monotonic() - began
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "requests": len(latencies),
        "other_status": sum(1 for status in statuses if status != 202),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", default='{"data":"hello"}')
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    outcome = asyncio.run(run(args.port, args.path, args.body, args.connections, args.seconds))
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
