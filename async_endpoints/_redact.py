"""What a failed attempt may say: the job's error, with the secrets its text carries masked.

Exception messages quote what failed, and what failed is often a URL or a DSN holding a
credential (``postgresql://app:s3cret@db/x``, ``https://api/v1?key=sk_live_...``). The
job's error is stored, logged and served to clients, so by default its message (and the
stack trace, when the app keeps them) is masked here, once, before any of that happens:
passwords in URL userinfo, bare ``user:token@host`` userinfo, and the values of the
``sensitive_query_params`` (``name=value`` pairs, in a query string, a URL fragment or
plain text, names compared case-insensitively after percent-decoding, as for the captured
query string). An app that wants its own wording
sets ``error_message``; its answer is used as is.
"""

from __future__ import annotations

import inspect
import logging
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

from ._job import JobError
from ._settings import DEFAULT_SENSITIVE_QUERY_PARAMS

logger = logging.getLogger("async_endpoints")

#: What a masked secret reads as.
MASK = "***"

ErrorMessageHook = Callable[[BaseException], str]

#: The longest error message kept, in characters (the rest is cut, and says so).
MAX_MESSAGE = 16 * 1024
#: The longest traceback kept (``include_tracebacks``), in characters: its last lines,
#: where the error is.
MAX_TRACEBACK = 64 * 1024


def bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` cut to ``limit`` characters (plus a note of how many were cut): its start,
    or with ``keep_end`` its end (a traceback ends with the error)."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_end:
        return f"[{cut} characters cut]...\n{text[cut:]}"
    return f"{text[:limit]}... [{cut} characters cut]"


_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_text(text: str) -> str:
    """``text`` with every surrogate code point (a lone one has no UTF-8 form: bytes
    decoded with ``surrogateescape``, as ``os.fsdecode`` does for odd file names) made
    U+FFFD, so the job JSON is valid Unicode for every reader (.NET's refuses an escaped
    lone surrogate)."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


# ``scheme://userinfo@``; greedy up to the authority's last ``@``, so an unencoded ``@`` in
# a password is masked whole.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#'\"<>]+)@")
# ``user:token@host`` without a scheme (a DSN quoted in part, a ``host`` field...).
_BARE_USERINFO = re.compile(r"(?<![\w.%+-])(?P<user>[\w.%+-]+):[^\s/?#'\"<>]+@(?=[\w\[])")
# ``name=value`` starting a text, a query string, a fragment (``#access_token=``, as an
# OAuth implicit flow's redirect carries it), a parameter list or a word.
_PARAMETER = re.compile(
    r"(?P<lead>^|[?&;#\s,(\[{'\"])(?P<name>[^\s=&?#;,'\"()<>\[\]{}]+)=(?P<value>[^\s&#;'\"<>)\]}]+)"
)


def redact(
    text: str, sensitive_query_params: Iterable[str] = DEFAULT_SENSITIVE_QUERY_PARAMS
) -> str:
    """``text`` with URL credentials and the values of sensitive parameters masked.

    Args:
        text: An exception message or a formatted stack trace.
        sensitive_query_params: Lower-case parameter names whose values are masked.
    """
    names = frozenset(sensitive_query_params)
    text = _URL_USERINFO.sub(_mask_url_userinfo, text)
    text = _BARE_USERINFO.sub(lambda match: f"{match['user']}:{MASK}@", text)
    if not names or "=" not in text:
        return text

    def mask_parameter(match: re.Match[str]) -> str:
        # The same comparison as the captured query string's (see _capture.capture_query).
        if unquote_plus(match["name"]).strip().lower() not in names:
            return match[0]
        return f"{match['lead']}{match['name']}={MASK}"

    return _PARAMETER.sub(mask_parameter, text)


def _mask_url_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # Without a colon the whole userinfo may be the credential (``https://<token>@host``).
    return f"{match['scheme']}{user}:{MASK}@" if colon else f"{match['scheme']}{MASK}@"


@dataclass(frozen=True, slots=True)
class ErrorDescriber:
    """Turns the exception that failed an attempt into the job's `JobError`.

    Attributes:
        sensitive_query_params: Parameter names whose values are masked (lower-case).
        error_message: The app's ``fn(exception) -> str``, or None for the masked message.
    """

    sensitive_query_params: frozenset[str] = DEFAULT_SENSITIVE_QUERY_PARAMS
    error_message: ErrorMessageHook | None = None

    def describe(self, exc: BaseException, *, with_traceback: bool = False) -> JobError:
        """The job error for ``exc``: type name, message and (on request) masked trace,
        each with any lone surrogate replaced by U+FFFD (`unicode_text`)."""
        trace = None
        if with_traceback:
            # Each part (a frame, an exception's line) masked, then cut to a message's
            # length, so that a long message leaves room for the frames before it.
            parts = traceback.TracebackException.from_exception(exc).format()
            trace = "".join(bounded(self.mask(part), MAX_MESSAGE) for part in parts)
            trace = unicode_text(bounded(trace, MAX_TRACEBACK, keep_end=True))
        message = unicode_text(bounded(self.message(exc), MAX_MESSAGE))
        return JobError(message, unicode_text(type(exc).__name__), trace)

    def message(self, exc: BaseException) -> str:
        """The app's ``error_message`` answer, else the exception's message masked.

        Never raises: a hook that fails (or answers something other than a str) and an
        exception whose ``str()`` fails both give the exception's type name.
        """
        if self.error_message is None:
            try:
                text = str(exc)
            except Exception:
                text = ""
            return self.mask(text) if text else type(exc).__name__
        try:
            answer = self.error_message(exc)
        except Exception as hook_error:
            # Only the type: the hook's own error may quote (or chain) the unmasked message.
            logger.warning("the error_message hook raised %s", type(hook_error).__name__)
            return type(exc).__name__
        if inspect.iscoroutine(answer):
            answer.close()  # never awaited: closed, so asyncio has nothing to warn about
            logger.warning(
                "the error_message hook returned a coroutine: it must be a sync function "
                "returning a str (it is not awaited)"
            )
            return type(exc).__name__
        if not isinstance(answer, str):
            logger.warning("the error_message hook returned %s, not a str", type(answer).__name__)
            return type(exc).__name__
        return answer

    def mask(self, text: str) -> str:
        """``text`` with credentials masked (see `redact`)."""
        return redact(text, self.sensitive_query_params)
