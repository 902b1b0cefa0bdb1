"""Reading and capturing a submission: the size-limited body, content type, headers."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request


class RequestRejected(Exception):
    """A submission refused before anything was stored; carries the HTTP answer."""

    def __init__(self, status_code: int, detail: object) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it is known to exceed ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before any byte is read; a body sent
    without one (chunked) is refused as soon as the bytes read pass the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_large = int(declared) > limit
        except ValueError:
            raise RequestRejected(400, "Content-Length is not a number") from None
        if too_large:
            raise RequestRejected(413, f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRejected(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def is_json(content_type: str | None) -> bool:
    """True for ``application/json`` and ``application/<anything>+json`` (any parameters)."""
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def capture_headers(
    raw: Iterable[tuple[bytes, bytes]], allowed: frozenset[str] | None, denied: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    """The headers to store: the allow-list (or all) minus the deny-list, repeats kept."""
    kept: list[tuple[str, str]] = []
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        if name in denied or (allowed is not None and name not in allowed):
            continue
        kept.append((name, raw_value.decode("latin-1")))
    return tuple(kept)
