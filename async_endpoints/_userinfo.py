"""Masking the credentials of a URL's userinfo (``https://user:***@host``), shared by the
error messages (`_redact`) and the captured URL headers (`_capture`)."""

from __future__ import annotations

import re

#: What a masked secret reads as.
MASK = "***"

# ``scheme://userinfo@``; greedy up to the authority's last ``@``, so an unencoded ``@`` in
# a password is masked whole.
_URL_USERINFO = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*+://)(?P<userinfo>[^\s/?#'\"<>]+)@"
)
#: A URL's user name that is a credential itself (a token with a placeholder password,
#: ``https://ghp_...:x-oauth-basic@github.com``): known token prefixes, or 32 token
#: characters or more.
TOKEN_USER = re.compile(r"(?:gh[pousr]_|github_pat_|glpat-|xox[abpr]-)\w|[\w.~-]{32,}")


def mask_url_userinfo(text: str) -> str:
    """``text`` with the password of every URL's userinfo masked (the user kept), and a
    userinfo of one part, or whose user name reads as a token, masked whole."""
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(_masked, text)


def _masked(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # Without a colon the whole userinfo may be the credential (``https://<token>@host``),
    # and so may a user name that reads as a token.
    if not colon or TOKEN_USER.match(user):
        return f"{match['scheme']}{MASK}@"
    return f"{match['scheme']}{user}:{MASK}@"
