"""The dashboard's protection of its actions against cross-site requests (CSRF).

An action (cancel, requeue, pause, resume) is a POST that passes both checks:

1. **Not cross-site.** ``Sec-Fetch-Site``, which current browsers send to HTTPS and
   local origins and no page can forge, decides when present: ``same-origin`` (or
   ``none``: started by the user) passes, anything else (``same-site`` too) is refused.
   It is trusted over ``Origin`` so that a proxy that rewrites the host does not refuse
   the dashboard's own forms. Without it (plain HTTP, an older browser), the ``Origin``
   header, or when it is absent the ``Referer``, must name this request's own scheme,
   host and port (``Origin: null`` is refused). A POST with none of the three is refused:
   an old browser may send none on a cross-site form, and a sibling subdomain could have
   planted the cookie the token is checked against (scripts can send ``Origin``).
2. **A token bound to the browser** (double submit): each dashboard page sets a random
   token in a cookie (``HttpOnly``, ``SameSite=Strict``, limited to the dashboard's path)
   and writes the same token into each form; the POST must carry both, equal. Another site
   can neither read the cookie nor learn the token, and no shared secret is needed between
   app instances behind a load balancer.

Anything else answers ``403`` and changes nothing.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

#: ``authorize(request) -> bool`` (sync or async) of `map_dashboard`: True lets the request
#: in (defined here, beside the other guards, so that it is known without Jinja2).
Authorize = Callable[[Request], bool | Awaitable[bool]]

COOKIE = "async_endpoints_dashboard_token"
FIELD = "token"


def token_of(request: Request) -> tuple[str, bool]:
    """The browser's token (from its cookie), and whether it is new (to be set)."""
    token = request.cookies.get(COOKIE, "")
    if len(token) == 43 and token.replace("-", "").replace("_", "").isalnum():
        return token, False
    return secrets.token_urlsafe(32), True


def set_token(response: Response, token: str, path: str, *, secure: bool) -> None:
    """Give the browser ``token`` as the dashboard's cookie."""
    response.set_cookie(
        COOKIE, token, path=path or "/", httponly=True, samesite="strict", secure=secure
    )


def is_same_origin(request: Request) -> bool:
    """Whether the request may come from a page of this origin (see the module docstring)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    claimed = urlsplit(source)
    own = request.url
    return (claimed.scheme, _netloc(claimed.scheme, claimed.netloc)) == (
        own.scheme,
        _netloc(own.scheme, own.netloc),
    )


def has_valid_token(request: Request, submitted: object) -> bool:
    """Whether the form's token equals the browser's cookie."""
    cookie = request.cookies.get(COOKIE)
    if not cookie or not isinstance(submitted, str):
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def _netloc(scheme: str, netloc: str) -> str:
    """``host:port`` with the scheme's default port made explicit, lower-cased."""
    netloc = netloc.lower().rsplit("@", 1)[-1]
    if netloc.endswith("]") or ":" not in netloc.rsplit("]", 1)[-1]:
        return f"{netloc}:{443 if scheme == 'https' else 80}"
    return netloc
