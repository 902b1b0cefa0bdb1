"""Reading and capturing a submission: the size-limited body, content type, headers, query.

What is captured is what the store keeps and the handler sees, so the secrets a request
carries (credentials in headers and in query parameters) are left out here, once, before
anything is stored or logged.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable
from urllib.parse import quote, unquote_plus

from pydantic_core import from_json
from starlette.requests import ClientDisconnect, Request

from ._userinfo import mask_url_userinfo

# Printable ASCII but the space: kept as is when a raw query string is made safe to store.
_QUERY_SAFE = "".join(sorted(set(string.printable) - set(string.whitespace)))


class RequestRejected(Exception):
    """A submission refused before anything was stored; carries the HTTP answer."""

    def __init__(
        self, status_code: int, detail: object, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        #: Headers of the answer beside the JSON error (``Accept-Encoding`` on a 415).
        self.headers = headers or {}


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it is known to exceed ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before any byte is read; a body sent
    without one (chunked) is refused as soon as the bytes read pass the limit; a client
    that disconnects before the end of its body gets a 400 (which it never reads).
    """
    check_declared_length(request, limit)
    chunks: list[bytes] = []
    await _stream(request, limit, chunks.append)
    return b"".join(chunks)


async def skip_body(request: Request, limit: int) -> None:
    """The body of a request to an endpoint whose handler takes none, held to ``limit``
    bytes all the same (413 past it): a ``Content-Length`` is checked without reading
    (the server holds the body to it); a body sent without one (chunked) is read and
    dropped, refused as soon as the bytes read pass the limit. A client that disconnects
    before the end of its body gets a 400, as in `read_body`."""
    check_declared_length(request, limit)
    if "content-length" not in request.headers:
        await _stream(request, limit, _drop)


async def _stream(request: Request, limit: int, keep: Callable[[bytes], object]) -> None:
    """Each chunk of the body to ``keep``, refusing with 413 once past ``limit`` bytes and
    with 400 when the client disconnects first."""
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestRejected(413, f"request body is larger than {limit} bytes")
            keep(chunk)
    except ClientDisconnect:
        # Nobody reads the answer; the refusal keeps it out of the server's error log.
        raise RequestRejected(400, "the client disconnected before the whole body") from None


def _drop(chunk: bytes) -> None:
    pass


def names_a_non_finite_number(text: str) -> bool:
    """Whether ``text`` is JSON but for ``NaN``, ``Infinity`` or ``-Infinity`` as values:
    tokens JavaScript writes but JSON does not have, which the body's parser would take.
    A text without those words (nearly every body) is not parsed here."""
    if "NaN" not in text and "Infinity" not in text:
        return False
    try:
        from_json(text, allow_inf_nan=False)
    except ValueError:
        try:
            from_json(text)
        except ValueError:
            return False  # not JSON for other reasons: the body's parser says so
        return True
    return False


def is_json(content_type: str | None) -> bool:
    """True for ``application/json`` and ``application/<anything>+json`` (any parameters)."""
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


#: Headers only the cron scheduler sets on a cycle's job (`_scheduling`): never captured,
#: so that a handler can trust them.
SCHEDULER_HEADERS = frozenset({"x-schedule-id", "x-schedule-due"})


def capture_headers(
    pairs: Iterable[tuple[str, str]],
    allowed: frozenset[str] | None,
    denied: frozenset[str],
    query_denied: frozenset[str] = frozenset(),
) -> tuple[tuple[str, str], ...]:
    """The headers to store: the allow-list (or all) minus the deny-list and the
    `SCHEDULER_HEADERS`, repeats kept; the value of a header that copies a URL
    (`URL_HEADERS`: ``Referer``, a proxy's ``X-Original-URL`` or ``X-Forwarded-Uri``)
    loses the query parameters named in ``query_denied``, as the request's own query does.

    Names are lower-cased; ``pairs`` are (name, value) as ASGI's raw headers decoded as
    latin-1, or as given to `AsyncEndpoints.submit`. A name written with underscores
    (``X_Api_Key``) is denied as its hyphenated form is: some proxies and gateways pass it
    on as that header.
    """
    kept: list[tuple[str, str]] = []
    for given_name, value in pairs:
        name = given_name.lower()
        hyphenated = name.replace("_", "-")
        if (
            name in denied
            or hyphenated in denied
            or name in SCHEDULER_HEADERS
            or hyphenated in SCHEDULER_HEADERS
            or (allowed is not None and name not in allowed)
        ):
            continue
        if name in URL_HEADERS or hyphenated in URL_HEADERS:
            value = mask_url_userinfo(value)
            if query_denied and "?" in value:
                value = _url_without(value, query_denied)
        kept.append((name, value))
    return tuple(kept)


#: Headers whose value is a copy of a URL, the request's own (set by proxies) or the
#: page's that sent it (``referer``): their query loses the sensitive parameters.
URL_HEADERS = frozenset(
    {
        "referer",
        "x-original-url",
        "x-original-uri",
        "x-forwarded-uri",
        "x-forwarded-url",
        "x-rewrite-url",
        "x-envoy-original-path",
        "x-request-uri",
        "x-forwarded-prefix",
    }
)


def _url_without(value: str, denied: frozenset[str]) -> str:
    """``value`` with the parameters named in ``denied`` left out of its query when it is a
    URL (``scheme://...``) or a path (``/...``) and has any; otherwise as it is."""
    if not (value.startswith("/") or _URL_START.match(value)):
        return value
    before, hash_mark, fragment = value.partition("#")  # a "?" after "#" is no query
    head, question, query = before.partition("?")
    if not question:
        return value
    keys = _keys_of(denied)
    parts = query.split("&")
    kept = [part for part in parts if not _denied(part, keys)]
    if len(kept) == len(parts):
        return value
    return head + ("?" if kept else "") + "&".join(kept) + hash_mark + fragment


_URL_START = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")


def raw_headers(request: Request) -> Iterable[tuple[str, str]]:
    """The request's headers as sent, as latin-1 (name, value) pairs (never fails)."""
    return (
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
    )


def capture_query(raw: bytes, denied: frozenset[str]) -> str:
    """The query string to store: every parameter named in ``denied`` left out.

    Names are compared as `query_name_key` makes them: after percent-decoding, in any
    case, separators (``-``, ``_``, ``.``, spaces, control characters) and camel case not
    counted, and without an array suffix (``[]``, ``[0]``), so ``TOKEN=``, ``%74oken=``,
    ``access-token=``, ``accessToken=`` and ``token[]=`` are all named by ``token`` or
    ``access_token``; a nested name by each of its parts too (`query_name_parts`:
    ``user[password]=`` by ``password``), but for the ordinary words among the names
    (``sort[key]=`` and ``token[kind]=`` are kept). The parameters kept stay in order,
    repeats included, and byte for byte, except that bytes a URL may not hold raw
    (non-ASCII, spaces, controls) are percent-encoded, which decodes to the same
    parameters.
    """
    query = quote(raw, safe=_QUERY_SAFE)
    if not denied or not query:
        return query
    keys = _keys_of(denied)
    return "&".join(part for part in query.split("&") if not _denied(part, keys))


def query_name_key(name: str) -> str:
    """What a query parameter's name is compared by: lower case, letters and digits only,
    an array suffix (``[]``, ``[0]``) dropped."""
    return _NOT_ALNUM.sub("", _ARRAY_SUFFIX.sub("", name).lower())


#: Sensitive names that are also ordinary words ("missing key: id", ``sort[key]=name``):
#: a credential's only when they name the whole parameter (see `query_name_parts`).
PROSE_NAMES = frozenset({"auth", "jwt", "key", "session", "sig", "signature", "token"})


def query_name_parts(name: str) -> tuple[str, ...]:
    """The names a query parameter's name stands for: itself, and for a nested name as
    Rails and PHP forms write them (``user[password]``, ``creds[api_key][0]``) each of
    its parts, outside and inside the brackets (balanced or not), that is not an index,
    so that ``user[password]=`` is named by ``password`` as well as by ``user``; but for
    the `PROSE_NAMES`, which a part names as data (``sort[key]``, ``token[kind]``)."""
    if "[" not in name and "]" not in name:
        return (name,)
    parts = (part for part in _BRACKETS.split(name) if part.strip() and not part.isdigit())
    return (name, *(part for part in parts if query_name_key(part) not in PROSE_NAMES))


def query_name_keys(name: str) -> tuple[str, ...]:
    """The `query_name_key` of each of `query_name_parts`: a parameter is named by a
    denied name when any of them is that name's key."""
    return tuple(query_name_key(part) for part in query_name_parts(name))


_ARRAY_SUFFIX = re.compile(r"\[\d*\]\s*$")
_NOT_ALNUM = re.compile(r"[\W_]+")
_BRACKETS = re.compile(r"[\[\]]+")


@functools.lru_cache(maxsize=16)
def _keys_of(denied: frozenset[str]) -> frozenset[str]:
    return frozenset(query_name_key(name) for name in denied)


def _denied(part: str, keys: frozenset[str]) -> bool:
    """Whether the query parameter ``part`` (``name=value``) is named by ``keys``."""
    return not keys.isdisjoint(query_name_keys(unquote_plus(part.split("=", 1)[0])))


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse a request whose ``Content-Length`` says its body is over ``limit`` bytes (413),
    or is not a number (400), without reading any of it: also where no body is read (an
    endpoint whose handler takes none), so the limit holds for every endpoint."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    length = int(declared) if declared.isascii() and declared.isdigit() else -1
    if length < 0:
        raise RequestRejected(400, "Content-Length is not a number")
    if length > limit:
        raise RequestRejected(413, f"request body is larger than {limit} bytes")
