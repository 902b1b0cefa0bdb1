"""`redact`: the credentials an error's text carries, masked.

Exception messages quote what failed, and what failed is often a URL or a DSN holding a
credential (``postgresql://app:s3cret@db/x``, ``https://api/v1?key=sk_live_...``). The job's
error is stored, logged and served to clients, so by default its message (and the stack
trace, when the app keeps them) is masked, once, before any of that happens (see
`async_endpoints._error_describer`): passwords in URL userinfo (the user name too when it
reads as a token), bare ``user:token@host`` userinfo, credentials after ``Bearer`` or
``Basic``, and the values of the sensitive names, the ``sensitive_query_params`` and
``sensitive_headers`` alike (an unquoted ``name: value`` or spaced ``name = value`` but for
`_PROSE_NAMES`; ``name=value`` pairs, in a query string, a URL fragment or plain text, the
value bare or quoted, or percent-encoded in another pair's value, once or twice
(``redirect_uri=https%3A%2F%2Fapp%2Fcb%3Faccess_token%3D...``); ``'name': value`` and
``"name": value`` of a mapping's repr or JSON; a list, mapping or call such a name holds
masked whole, and such names found inside nested mappings and calls; a pydantic
ValidationError's ``input_value=`` for a field of such a name; a command line's ``--name
value``; names compared as the captured query string compares its parameters, after
percent-decoding, in any case, separators and camel case not counted (``clientSecret`` is
``client_secret``), and in their other `spellings`: ``HTTP_AUTHORIZATION``, ``Set-Cookie``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

from ._capture import PROSE_NAMES, query_name_parts
from ._capture import query_name_key as name_key
from ._settings import DEFAULT_SENSITIVE_HEADERS, DEFAULT_SENSITIVE_QUERY_PARAMS
from ._userinfo import MASK, TOKEN_USER, mask_url_userinfo

# ``user:token@host`` without a scheme (a DSN quoted in part, a ``host`` field...).
# ``user:`` and what follows up to a delimiter, possessively (every start matches once and
# is never retried: linear time); `_mask_bare_userinfo` masks up to its last ``@`` before
# a host, or leaves it (``10:30``, ``x: y``), so a password holding ``:`` or ``@`` is
# masked whole.
_BARE_USERINFO = re.compile(r"(?<![\w.%+-])(?P<user>[\w.%+-]+):(?P<rest>[^\s/?#'\"<>]*+)")
_BEFORE_HOST = re.compile(r"@(?=[\w\[])")
# A quoted value: Python's repr of a str, or a JSON string (escapes kept inside).
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
# The bracket a list, tuple, dict or call's arguments (``SecretStr(``) open with: a value
# matched up to one runs on to its closing bracket (`_value_end`); under a name that is
# not sensitive, what it holds is read on from inside (a nested mapping's names).
_OPENER = r"[\[{(]"
# `_value_end`'s steps: a quoted string, a bracket, a run of anything else, or a quote
# never closed.
_VALUE_PART = re.compile(
    r"'(?:[^'\\]|\\.)*+'|\"(?:[^\"\\]|\\.)*+\"|(?P<open>[\[{(])|(?P<close>[\]})])"
    r"|[^'\"\[\]{}()]++|(?P<unclosed>.)",
    re.DOTALL,
)
_CLOSING = {"[": "]", "{": "}", "(": ")"}
# What may follow a bracketed part of a bare value and still be that value
# (``Ab(3)xY9``): read on after the bracket closes.
_BARE_TAIL = re.compile(r"[^\s,;&#'\"<>()\[\]{}]++")
# A value: quoted (a bytes literal's too), bare (up to a bracket it opens), a bracket, or
# a quote never closed (a message cut inside it: masked to the end of its line).
_QUOTED_VALUE = rf"[bB]?(?:{_QUOTED})"
_UNCLOSED = r"['\"][^\n]*+"
# A parameter's name, with the brackets of a nested or array name however they stand
# (``token[]``, ``user[password]``, ``user%5Bpassword]``: see `_capture.query_name_parts`),
# read possessively: each start is tried once, and no ``[`` inside a name starts another
# (`_NAME_START`), so the pass stays linear on any text.
_NAME = r"[^\s=&?#;,'\"()<>{}]++"
# Where a name may start: after a delimiter, or after a ``[`` that follows none of a
# name's characters (``[password=x]``, not the ``[`` of ``user[password``).
_NAME_START = r"(?:^|(?<=[?&;#\s,({'\"])|(?<=\[)(?<![^\s=&?#;,'\"()<>{}]\[))"
# ``name=value`` starting a text, a query string, a fragment (``#access_token=``, as an
# OAuth implicit flow's redirect carries it), a parameter list or a word; the value bare
# or quoted (``password='s3cret'``, as a repr of keyword arguments writes it).
_PARAMETER = re.compile(
    rf"{_NAME_START}(?P<name>{_NAME})="
    rf"(?P<value>{_QUOTED_VALUE}|[^\s&#;,'\"<>()\[\]{{}}]++{_OPENER}?|{_OPENER}|{_UNCLOSED})"
)
# A query's ``name=value`` inside a bare value that `_PARAMETER` read whole under a name
# that is not sensitive (``url=https://h/?key=...``, ``next=/login?token=...``): after
# ``?``, ``#``, ``&`` or ``;``, the value up to the next of those (or ``?``), so that each
# pair is read once and the pass stays linear.
_QUERY_PAIR = re.compile(rf"(?<=[?&;#])(?P<name>{_NAME})=(?P<value>[^\s&?#;,'\"<>()\[\]{{}}]++)")
# A query's ``name=value`` percent-encoded inside another parameter's value, once or twice
# (``%3D`` or ``%253D``): an OAuth ``redirect_uri=https%3A%2F%2Fapp%2Fcb%3Faccess_token%3D..``
# or ``next=%2Fx%3Ftoken%3D...``. The name starts a value (after ``=``), a query or a pair
# (after ``?``, ``&``, ``#`` or ``;``, plain or encoded); its value runs to the next of those,
# plain or encoded (an encoded ``=``, base64's padding, stays in it).
_ENCODED_SEPARATOR = r"%(?:25)?(?:26|23|3[FfBb])"
_AFTER_ENCODED_SEPARATOR = "".join(
    f"|(?<={prefix}{code})"
    for prefix in ("%", "%25")
    for code in ("26", "23", "3F", "3f", "3B", "3b")
)
_ENCODED_PAIR = re.compile(
    rf"(?:(?<=[=?&;#]){_AFTER_ENCODED_SEPARATOR})"
    r"(?P<name>[\w.\-]{1,200}+)(?P<equals>%(?:25)?3[Dd])"
    rf"(?P<value>(?:[^\s&?#;,'\"<>()\[\]{{}}%]|(?!{_ENCODED_SEPARATOR})%)++)"
)
# ``'name': value`` / ``"name": value``: a Python dict's repr, or JSON.
_KEY_VALUE = re.compile(
    r"(?P<quote>['\"])(?P<name>[^'\"\s]{1,200})(?P=quote)(?P<colon>\s*:\s*)"
    rf"(?P<value>{_QUOTED_VALUE}|[^\s,()\[\]{{}}]++{_OPENER}?|{_OPENER}|{_UNCLOSED})"
)
# A pydantic ValidationError's line of a field (its location, ``body.password``) and the
# next one, which quotes what was given (``[type=..., input_value='s3cret', ...]``).
_VALIDATION_INPUT = re.compile(
    r"(?m)^(?P<location>[^\s].*)\n(?P<before>[ \t]++[^\n]*?\binput_value=)"
    rf"(?P<value>{_QUOTED}|[^,\]]+)"
)


# An HTTP credential after its scheme, wherever it stands (a header line, a repr of a
# headers list); `_mask_auth_scheme` leaves prose ("Basic authentication failed").
_AUTH_SCHEME = re.compile(r"(?i)\b(?P<scheme>Bearer|Basic)[ \t]+(?P<token>[\w.~+/=-]{8,}+)")
# An ``Authorization`` (or ``Proxy-Authorization``) value of any scheme, given with its
# name (``authorization=Token abc``, ``Authorization: Digest ...``): its credentials after
# the scheme word (which `_PARAMETER` or the header line masks) are masked too.
_NAMED_AUTH = re.compile(
    r"(?i)\b(?:proxy[-_]?)?authorization['\"]?[ \t]*+[=:][ \t]*+['\"]?"
    r"(?P<scheme>[A-Za-z][\w-]*+)[ \t]++(?P<token>[\w.~+/=-]{8,}+)"
)
#: Sensitive names that are also ordinary words of a message ("missing key: id", "token:
#: expired"): masked in ``name=value`` and quoted forms, not unquoted before ``:`` or a
#: spaced ``=``.
_PROSE_NAMES = PROSE_NAMES

#: The names whose values `redact` masks by default: the default sensitive query
#: parameters and headers.
DEFAULT_SENSITIVE_NAMES = DEFAULT_SENSITIVE_QUERY_PARAMS | DEFAULT_SENSITIVE_HEADERS


def redact(text: str, sensitive_names: Iterable[str] = DEFAULT_SENSITIVE_NAMES) -> str:
    """``text`` with URL credentials, HTTP credentials after their scheme (``Bearer``,
    ``Basic``) and the values of sensitive names masked.

    Args:
        text: An exception message or a formatted stack trace.
        sensitive_names: Lower-case names (of query parameters, headers, fields) whose
            values are masked.
    """
    text = mask_url_userinfo(text)
    text = _BARE_USERINFO.sub(_mask_bare_userinfo, text)
    text = _AUTH_SCHEME.sub(_mask_auth_scheme, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _NAMED_AUTH.sub(_mask_named_auth, text)
    names = frozenset(sensitive_names)
    if not names:
        return text
    masker = _Masker(names)
    text = _mask_pairs(text, masker)
    if ":" in text:
        text = _mask_values(_KEY_VALUE, text, masker)
    if ":" in text or "=" in text:
        text = _named_line(names).sub(_mask_named_line, text)
    if "(" in text:
        text = _PAIR.sub(masker.pair, text)
    if "-" in text:
        text = _flag(names).sub(_mask_flag, text)
    return text


def _mask_pairs(text: str, masker: _Masker) -> str:
    """``text`` with the values of its sensitive ``name=value`` pairs masked: bare or
    quoted, in a query (a URL's that is another pair's value too), percent-encoded in a
    value, and a ValidationError's input for a sensitive field."""
    if "=" in text:
        text = _mask_values(_PARAMETER, text, masker)
        if "?" in text or "#" in text:
            text = _QUERY_PAIR.sub(masker.query_pair, text)
        if "input_value=" in text:
            text = _VALIDATION_INPUT.sub(masker.validation_input, text)
    if "%" in text and ("3D" in text or "3d" in text):
        text = _ENCODED_PAIR.sub(masker.encoded_pair, text)
    return text


def spellings(name: str) -> tuple[str, ...]:
    """The keys ``name`` is compared by (`name_key`): its own, and for a WSGI environ's
    ``HTTP_X_API_KEY`` (upper-case ``HTTP_``) its header's, for ``Set-Cookie`` the
    cookie's. A command line's dashes (``--password``) and a JSON escape's backslash (a
    key of JSON quoted inside a string: ``\\"password\\"``) are not counted."""
    raw = name.strip().strip("\\").lstrip("-")
    key = name_key(raw)
    forms = {key}
    if raw.startswith("HTTP_"):
        forms.add(key.removeprefix("http"))
    if key == "setcookie":
        forms.add("cookie")
    return tuple(forms)


@functools.lru_cache(maxsize=16)
def _keys(names: frozenset[str]) -> frozenset[str]:
    return frozenset(name_key(name) for name in names)


def _spelt(names: Iterable[str]) -> str:
    """A regular expression alternative of ``names`` spelt any way `name_key` counts as
    theirs, for a case-insensitive pattern (a ``-`` or ``_`` allowed between any two
    characters: ``access_token`` as ``accessToken``, ``ACCESS-TOKEN``; a WSGI ``HTTP_``
    before them, ``Set-`` before a cookie), longest first."""
    names = list(names)
    keys = {"[-_]?".join(re.escape(char) for char in name_key(name)) for name in names}
    # A name with other characters (``db.password``, ``hub.verify_token``) as written too.
    written = {
        "".join("[-_]" if char in "-_" else re.escape(char) for char in name.lower())
        for name in names
        if name_key(name) != name.lower().replace("-", "").replace("_", "")
    }
    spelt = sorted((keys | written) - {""}, key=len, reverse=True)
    return rf"(?:(?:(?-i:HTTP_)|set[-_](?=cookie))?(?:{'|'.join(spelt) or '(?!)'}))"


@functools.lru_cache(maxsize=16)
def _named_line(names: frozenset[str]) -> re.Pattern[str]:
    """For the sensitive ``names`` but the `_PROSE_NAMES`, written unquoted: ``name:
    value`` starting a line (a header line, a ``curl -v`` dump's ``> name:``, YAML, a
    list item), its value quoted or to the line's end (every cookie of a ``Cookie:``
    line); and ``name = value`` spaced anywhere, one value, unless it is code (``==``, a
    call, an index or an attribute follows: a traceback's source line)."""
    alternatives = _spelt(name for name in names if name_key(name) not in _PROSE_NAMES)
    # Mid-line, the names but the authorization headers' (whose scheme word stays, its
    # credentials masked by `_NAMED_AUTH`).
    inline = _spelt(
        name
        for name in names
        if name_key(name) not in _PROSE_NAMES and "authorization" not in name_key(name)
    )
    return re.compile(
        rf"(?im)(?:^[ \t]*+(?:[<>*-][ \t]*+)?(?:{alternatives})[ \t]*+:[ \t]*+"
        rf"(?P<line>{_QUOTED_VALUE}|{_UNCLOSED}|[^\s'\"][^\r\n]*+)"
        rf"|(?:^|(?<=[\s,;{{(\['\"]))-*+(?:{alternatives})[ \t]+=(?!=)[ \t]*+"
        rf"(?P<value>{_QUOTED_VALUE}|[^\s,;&'\"<>()\[\]{{}}]++(?![(\[]))"
        rf"|(?<=[\s,;(\[])(?:{inline})[ \t]*+:[ \t]*+(?!{_NOT_A_VALUE})(?!{_PLAIN_WORD})"
        rf"(?P<inline>{_QUOTED_VALUE}|[^\s,;&'\"<>()\[\]{{}}:][^\s,;&'\"<>()\[\]{{}}]*+))"
    )


# What follows an option in a message that is not its value: a help text's placeholder
# (``--password PASSWORD``, ``--token string``) or a word of the sentence ("--password is
# required", "option --token requires an argument").
_NOT_A_VALUE = (
    r"(?-i:[A-Z][A-Z_]*+)(?![^\s'\"()\[\]{},;<>])"
    r"|(?:a|an|and|are|argument|be|by|can|cannot|expected|file|for|given|has|in|is|missing"
    r"|must|needs?|not|of|or|path|required|requires|should|string|the|to|value|was|when"
    r"|will|with)(?![^\s'\"()\[\]{},;<>])"
)


@functools.lru_cache(maxsize=16)
def _flag(names: frozenset[str]) -> re.Pattern[str]:
    """A command line's option of a sensitive name (``--`` marks it one: prose names
    too) and the value after it: ``--password value`` in a shell line (a bare value up
    to a blank, a quote or a bracket, not another option, a placeholder or a word of a
    sentence; or a quoted one), and ``'--password', 'value'`` in the repr of an argument
    list (``subprocess.CalledProcessError``)."""
    spelt = _spelt(names)
    return re.compile(
        rf"(?i)(?:^|(?<=[\s'\"=]))--{spelt}[ \t]++(?!{_NOT_A_VALUE})"
        rf"(?P<value>{_QUOTED_VALUE}|[^\s'\"()\[\]{{}},;<>-][^\s'\"()\[\]{{}},;<>]*+)"
        rf"|(?P<quote>['\"])--{spelt}(?P=quote)\s*+,\s*+(?P<listed>{_QUOTED_VALUE})"
    )


def _mask_flag(match: re.Match[str]) -> str:
    group = "value" if match["value"] is not None else "listed"
    content = match[group].lstrip("bB")[1:-1] if group == "listed" else match[group]
    if content.strip("'\"") == MASK or (group == "listed" and content.startswith("-")):
        return match[0]  # masked already, or another option follows in the list
    start = match.start(group) - match.start()
    return f"{match[0][:start]}{_masked(match[group])}"


# A mid-line value of lower-case letters alone: a word ("password: required") or a type
# (``password: str`` in a signature), not taken for a secret there.
_PLAIN_WORD = r"(?-i:[a-z]++)(?![^\s,;&'\"<>()\[\]{}])"
# A value that is code, not a secret: an attribute path (``os.environ``, ``self.key``).
_ATTRIBUTE_PATH = re.compile(r"[A-Za-z_]\w{0,30}+(?:\.[A-Za-z_]\w{0,30}+)++")


def _mask_named_line(match: re.Match[str]) -> str:
    group = next(name for name in ("line", "value", "inline") if match[name] is not None)
    value = match[group].rstrip()
    if value in (MASK, f"'{MASK}'", f'"{MASK}"'):
        return match[0]
    if group != "line" and _ATTRIBUTE_PATH.fullmatch(value) is not None:
        return match[0]
    start = match.start(group) - match.start()
    return f"{match[0][:start]}{_masked(value)}{match[group][len(value) :]}"


def _mask_named_auth(match: re.Match[str]) -> str:
    if match["token"] == MASK:
        return match[0]
    start = match.start("token") - match.start()
    return f"{match[0][:start]}{MASK}"


# A word after Bearer or Basic that is no credential: a hyphenated word ("token-based")
# or a parameter (``Bearer realm=api``; base64 padding ends a token, it never goes on).
_AUTH_PROSE = re.compile(r"[A-Za-z]++(?:-[A-Za-z]++)++|[A-Za-z]++=[^=]")


def _mask_auth_scheme(match: re.Match[str]) -> str:
    """``Bearer ***`` for a token: one holding a digit or punctuation, or a lower-case
    letter before an upper-case one (base64); prose ("Basic authentication", "Bearer
    token-based", "Bearer realm=api") is kept."""
    token = match["token"]
    if _AUTH_PROSE.match(token) is not None and (
        "=" in token or _AUTH_PROSE.fullmatch(token) is not None
    ):
        return match[0]
    first_lower = next((at for at, char in enumerate(token) if char.islower()), len(token))
    if token.isalpha() and not any(char.isupper() for char in token[first_lower:]):
        return match[0]
    return f"{match['scheme']} {MASK}"


# A (name, value) pair of a headers list's repr (``[('x-api-key', '...')]``, ASGI's raw
# headers as bytes): both quoted.
_PAIR = re.compile(
    r"\(\s*+(?P<name>[bB]?(?:'[^'\\\n]{1,200}+'|\"[^\"\\\n]{1,200}+\"))\s*+,\s*+"
    rf"(?P<value>{_QUOTED_VALUE})"
)


@dataclass(frozen=True, slots=True)
class _Masker:
    """The substitutions of `redact` for the sensitive parameter ``names``."""

    names: frozenset[str]

    def sensitive(self, name: str) -> bool:
        # As the captured query string compares names (percent-decoded, any case: see
        # _capture.capture_query), and wider: the other spellings of a name (`spellings`)
        # too, which the capture leaves to the exact names configured.
        keys = _keys(self.names)
        return any(
            not keys.isdisjoint(spellings(part)) for part in query_name_parts(unquote_plus(name))
        )

    def pair(self, match: re.Match[str]) -> str:
        name = match["name"].lstrip("bB")[1:-1]
        if not self.sensitive(name) or match["value"].lstrip("bB")[1:-1] == MASK:
            return match[0]
        start = match.start("value") - match.start()
        return f"{match[0][:start]}{_masked(match['value'])}"

    def query_pair(self, match: re.Match[str]) -> str:
        if not self.sensitive(match["name"]) or match["value"] == MASK:
            return match[0]
        return f"{match['name']}={MASK}"

    def encoded_pair(self, match: re.Match[str]) -> str:
        if not self.sensitive(match["name"]) or match["value"] == MASK:
            return match[0]
        return f"{match['name']}{match['equals']}{MASK}"

    def validation_input(self, match: re.Match[str]) -> str:
        # Any part: a union's member (``password.int``) or an item (``tokens.0``) too.
        parts = re.split(r"[.\[\]]", match["location"].strip())
        if not any(self.sensitive(part) for part in parts if part):
            return match[0]
        return f"{match['location']}\n{match['before']}{_masked(match['value'])}"


def _mask_values(pattern: re.Pattern[str], text: str, masker: _Masker) -> str:
    """``text`` with the ``value`` of each ``pattern`` match whose ``name`` is sensitive
    masked: a quoted or bare value, or one that opens a bracket up to where it closes
    (`_value_end`) and what follows it in the same bare value. Under a name that is not
    sensitive, the search goes on inside its quoted or bracketed value, so a ``name=``
    quoted in a string (a URL's query) and the names of a nested mapping or call are
    found too."""
    parts: list[str] = []
    kept = at = 0
    while (match := pattern.search(text, at)) is not None:
        at = match.end()
        value, start = match["value"], match.start("value")
        if not masker.sensitive(match["name"]):
            if value[:1] in _QUOTES or value[1:2] in _QUOTES:
                at = start + 1 + (value[:1] not in _QUOTES)  # inside the quotes
            continue
        end = _bare_end(text, at - 1) if value[-1] in _CLOSING else at
        parts += (text[kept:start], _masked(text[start:end]))
        kept = at = end
    parts.append(text[kept:])
    return "".join(parts)


_QUOTES = ("'", '"')


def _bare_end(text: str, start: int) -> int:
    """Where a bare value whose bracket opens at ``start`` ends: past that bracket's
    close (`_value_end`) and any bare characters and brackets that follow it."""
    end = _value_end(text, start)
    while end < len(text):
        tail = _BARE_TAIL.match(text, end)
        if tail is not None:
            end = tail.end()
        if end < len(text) and text[end] in _CLOSING:
            end = _value_end(text, end)
        elif tail is None:
            break
    return end


def _value_end(text: str, start: int) -> int:
    """Where the value whose bracket opens at ``start`` ends: past the bracket closing it
    (brackets in quoted strings skipped), before a closing bracket of another kind (its
    container's), or at the text's end (a bracket or a quote never closed)."""
    waiting: list[str] = []
    for part in _VALUE_PART.finditer(text, start):
        if part["open"]:
            waiting.append(_CLOSING[part["open"]])
        elif part["close"]:
            if part["close"] != waiting[-1]:
                return part.start()
            waiting.pop()
            if not waiting:
                return part.end()
        elif part["unclosed"]:
            break
    return len(text)


def _masked(value: str) -> str:
    """`MASK` in place of ``value``, in its quotes (and bytes prefix) when it was quoted."""
    prefix = value[:1] if value[:1] in "bB" and value[1:2] in _QUOTES else ""
    quote = value[len(prefix) : len(prefix) + 1]
    closed = len(value) > len(prefix) + 1 and value[-1] == quote
    return f"{prefix}{quote}{MASK}{quote}" if quote in _QUOTES and closed else MASK


def _mask_bare_userinfo(match: re.Match[str]) -> str:
    rest = match["rest"]
    hosts = [found.start() for found in _BEFORE_HOST.finditer(rest)]
    if not hosts:
        return match[0]
    if TOKEN_USER.match(match["user"]):  # the user name is the credential
        return f"{MASK}{rest[hosts[-1] :]}"
    return f"{match['user']}:{MASK}{rest[hosts[-1] :]}"
