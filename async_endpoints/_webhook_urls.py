"""Webhook URLs: which ones may ever be called (the ``webhook_allowed_hosts`` allow-list)
and the ``webhook_url`` option of an async endpoint.

A URL is accepted when it is an absolute ``http`` or ``https`` URL of at most
`MAX_URL_LENGTH` characters, without credentials (``user:password@``), whitespace,
control characters or backslashes, whose host is in the allow-list. It is checked when a
job is submitted (a refusal is a 422, nothing stored) and again before each delivery (the
allow-list may have shrunk since). httpx, which sends the deliveries, must read the URL
too, with the same host and port: a URL it refuses or reads otherwise (``https://[::1]x/``,
a lone surrogate) is refused, so a 202 is never given for a webhook that cannot be sent.

An allow-list entry is a host name or IP address, matched case-insensitively and exactly
(no wildcards: ``example.com`` does not allow ``api.example.com``), on any port, as
API.md's "only hosts in ``webhook_allowed_hosts``" reads; ``host:port`` allows that host on
that port only (``[::1]:8443`` for an IPv6 address), so an operator who wants a client
that chooses the URL kept off the other ports of a host (its admin or database ports)
pins the port. ``host:*`` is the same as ``host``. Hosts are ASCII: an internationalised
name is written in its ``xn--`` form, in the list and in URLs.
"""

from __future__ import annotations

import inspect
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigurationError
from ._hook_shape import check_hook

#: The longest webhook URL, in characters.
MAX_URL_LENGTH = 2048

#: ``webhook_url`` of `AsyncEndpoints.map_async_post`: a URL, or ``fn(request, body)``
#: (sync or async) giving one (or None for no webhook) per submission.
WebhookUrlOption = str | Callable[[Any, Any], str | Awaitable[str | None] | None]

_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ANY_PORT = -1  # the port of a ``host:*`` entry


@dataclass(frozen=True, slots=True)
class AllowedHosts:
    """The ``webhook_allowed_hosts`` setting, parsed.

    Attributes:
        with_port: ``(host, port)`` pairs allowed on that port (lower case).
        any_port: Hosts allowed on any port (``host``, ``host:*``).
    """

    with_port: frozenset[tuple[str, int]] = frozenset()
    any_port: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowedHosts:
        """The allow-list from the setting's entries.

        Raises:
            ConfigurationError: not a collection of strings, or an entry that is not a host
                name or an IP address, alone or with ``:port`` or ``:*``.
        """
        if isinstance(entries, str) or not isinstance(entries, Iterable):
            raise ConfigurationError(
                f"webhook_allowed_hosts must be a collection of host names, not {entries!r}"
            )
        with_port: set[tuple[str, int]] = set()
        any_port: set[str] = set()
        for entry in entries:
            host, port = _entry(entry)
            if port is None or port == _ANY_PORT:
                any_port.add(host)
            else:
                with_port.add((host, port))
        return cls(frozenset(with_port), frozenset(any_port))

    def __bool__(self) -> bool:
        return bool(self.with_port or self.any_port)

    def __iter__(self) -> Iterator[str]:
        """The entries, as the setting takes them (``host``, ``host:port``), sorted."""
        for host in sorted(self.any_port):
            yield _bracketed(host)
        for host, port in sorted(self.with_port):
            yield f"{_bracketed(host)}:{port}"

    def allows(self, host: str, port: int) -> bool:
        """Whether ``host`` (normalised, as `check_url` gives it) on ``port`` may be
        called."""
        return host in self.any_port or (host, port) in self.with_port


def check_url(url: object, allowed: AllowedHosts) -> str:
    """``url`` when it may be called, else `ValueError` saying why (the message names the
    host, never the rest of the URL: its path or query may hold a token).

    Raises:
        ValueError: not a string, longer than `MAX_URL_LENGTH`, not an absolute http(s)
            URL, with credentials, whitespace, control characters or a backslash, or a
            host outside ``allowed``.
    """
    url, host, port = _parts(url)
    if not _sendable(url, host, port):
        raise ValueError("webhook_url is a URL the delivery client (httpx) cannot send to")
    if not allowed.allows(host, port):
        where = f"{_bracketed(host)}:{port}"
        raise ValueError(f"webhook_url's host {where} is not in webhook_allowed_hosts")
    return url


def _parts(url: object) -> tuple[str, str, int]:
    """``url``, its normalised host and its port (the scheme's default when none is
    written), when it is an acceptable webhook URL; else `ValueError` (see `check_url`)."""
    if not isinstance(url, str):
        raise ValueError(f"webhook_url must be a URL (str), not {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN.search(url):
        raise ValueError("webhook_url must not hold whitespace, control characters or '\\'")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("webhook_url is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise ValueError("webhook_url must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("webhook_url must not hold credentials (user:password@)")
    host = _host(parts.hostname or "")
    if host is None:
        raise ValueError("webhook_url has no valid host")
    return url, host, _DEFAULT_PORTS[scheme] if port is None else port


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A handler's ``webhook_url`` option, bound to the allow-list it is checked against."""

    option: WebhookUrlOption
    allowed: AllowedHosts

    @classmethod
    def of(cls, option: object, allowed: AllowedHosts, secret: object) -> WebhookTarget | None:
        """The option checked at wiring time (a constant URL against ``allowed``).

        Raises:
            ConfigurationError: webhooks are not configured (no ``webhook_secret`` or no
                ``webhook_allowed_hosts``), or a constant URL is refused.
        """
        if option is None:
            return None
        if secret is None or not allowed:
            raise ConfigurationError(
                "webhook_url needs the webhook_secret and webhook_allowed_hosts settings"
            )
        if callable(option):
            check_hook(option, "webhook_url", "request, body")
            return cls(option, allowed)
        try:
            return cls(check_url(option, allowed), allowed)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    async def url_for(self, request: Any, body: Any) -> str | None:
        """The URL for one submission (None: no webhook).

        Raises:
            ValueError: the function gave something `check_url` refuses.
        """
        option = self.option
        if isinstance(option, str):
            return option
        value = option(request, body)
        if inspect.isawaitable(value):
            value = await value
        return None if value is None else check_url(value, self.allowed)


def _sendable(url: str, host: str, port: int) -> bool:
    """Whether httpx, which sends the deliveries, reads ``url`` as a URL of ``host`` on
    ``port`` (what the allow-list was checked against); a URL it refuses or reads
    otherwise is not sendable."""
    import httpx  # on first use, as in `_webhook`

    try:
        parsed = httpx.URL(url)
        sent_host = _host(parsed.raw_host.decode("ascii"))
        sent_port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    except Exception:  # whatever httpx refuses (InvalidURL, UnicodeError, ...)
        return False
    return sent_host == host and sent_port == port


def _entry(entry: object) -> tuple[str, int | None]:
    """The host and port (None: the default one; `_ANY_PORT`: any) of an entry."""
    if not isinstance(entry, str):
        raise ConfigurationError(f"a webhook_allowed_hosts entry must be a str, not {entry!r}")
    text = entry.strip()
    bare = _host(text)
    if bare is not None and ":" in bare:  # an IPv6 address without brackets
        return bare, None
    wildcard = text.endswith(":*")
    if wildcard:
        text = text.removesuffix(":*")
    try:
        parts = urlsplit(f"//{text}")
        port = parts.port
    except ValueError:
        port = -1
    host = _host(parts.hostname or "") if port != -1 else None
    if (
        host is None
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or (wildcard and port is not None)
    ):
        raise ConfigurationError(
            f"webhook_allowed_hosts: {entry!r} is not a host name or an IP address, alone "
            "or with :port or :*"
        )
    return host, _ANY_PORT if wildcard else port


def _host(host: str) -> str | None:
    """``host`` lower-cased without a trailing dot, or None when it is not an ASCII host
    name or an IP address (an address with a trailing dot is neither: no resolver or
    socket takes it, so its deliveries could never be sent)."""
    dotted = host.endswith(".")
    host = host.lower().removesuffix(".")
    if not host or not host.isascii():
        return None
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    else:
        return None if dotted else address
    return host if _NAME.fullmatch(host) else None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
