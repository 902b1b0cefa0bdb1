"""`ErrorDescriber`: the exception that failed an attempt, made the job's `JobError`.

What a failed attempt may say: its type name, its message masked by `redact` (or the app's
own wording from its ``error_message`` hook, used as is), and, when the app keeps them, its
stack trace masked the same way; each cut to a bound (`MAX_MESSAGE`, `MAX_TRACEBACK`) and
made valid Unicode. Describing never raises, whatever the exception's ``str()`` or the hook
does.
"""

from __future__ import annotations

import inspect
import logging
import re
import traceback
from dataclasses import dataclass

from ._job import JobError
from ._redact import DEFAULT_SENSITIVE_NAMES, redact
from ._settings import ErrorMessageHook

logger = logging.getLogger("async_endpoints")

#: The longest error message kept, in characters (the rest is cut, and says so).
MAX_MESSAGE = 16 * 1024
#: Characters past a cut that are masked with what is kept (see `ErrorDescriber.masked`).
_MASK_MARGIN = 4096
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
    return _cut(text[:limit], cut)


def _cut(head: str, cut: int) -> str:
    """``head``, the start kept of a text ``cut`` characters longer, saying so."""
    return f"{head}... [{cut} characters cut]"


_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_text(text: str) -> str:
    """``text`` with every surrogate code point (a lone one has no UTF-8 form: bytes
    decoded with ``surrogateescape``, as ``os.fsdecode`` does for odd file names) made
    U+FFFD, so the job JSON is valid Unicode for every reader (.NET's refuses an escaped
    lone surrogate)."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


#: What describing an error catches: anything the code it calls raises (an exception's
#: ``__str__``, the app's hook), ``SystemExit`` and ``KeyboardInterrupt`` included, but for
#: the cancellation of the task describing it (asyncio's own).
_NOT_CANCELLATION = (Exception, SystemExit, KeyboardInterrupt, GeneratorExit)


@dataclass(frozen=True, slots=True)
class ErrorDescriber:
    """Turns the exception that failed an attempt into the job's `JobError`.

    Attributes:
        sensitive_query_params: Names whose values are masked (lower-case): the app's
            sensitive query parameters and headers.
        error_message: The app's ``fn(exception) -> str``, or None for the masked message.
    """

    sensitive_query_params: frozenset[str] = DEFAULT_SENSITIVE_NAMES
    error_message: ErrorMessageHook | None = None

    def describe(self, exc: BaseException, *, with_traceback: bool = False) -> JobError:
        """The job error for ``exc``: type name, message and (on request) masked trace,
        each with any lone surrogate replaced by U+FFFD (`unicode_text`)."""
        trace = None
        if with_traceback:
            # Each part (a frame, an exception's line) cut to a message's length, so that
            # a long message leaves room for the frames before it, then masked.
            try:
                parts = list(traceback.TracebackException.from_exception(exc).format())
            except _NOT_CANCELLATION:  # an exception whose str() raises SystemExit...
                parts = [f"{type(exc).__name__} (its traceback could not be written)\n"]
            trace = "".join(self.masked(part, MAX_MESSAGE) for part in parts)
            trace = unicode_text(bounded(trace, MAX_TRACEBACK, keep_end=True))
        message = unicode_text(self.message(exc))  # cut to MAX_MESSAGE there
        return JobError(message, unicode_text(type(exc).__name__), trace)

    def message(self, exc: BaseException) -> str:
        """The app's ``error_message`` answer, else the exception's message masked; cut
        to `MAX_MESSAGE` (an exception's message before it is masked).

        Never raises: a hook that fails (or answers something other than a str) and an
        exception whose ``str()`` fails both give the exception's type name, whatever
        they raise (``SystemExit`` too: the worker's process lives on).
        """
        if self.error_message is None:
            try:
                text = str(exc)
            except _NOT_CANCELLATION:
                text = ""
            return self.masked(text, MAX_MESSAGE) if text else type(exc).__name__
        try:
            answer = self.error_message(exc)
        except _NOT_CANCELLATION as hook_error:
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
        return bounded(answer, MAX_MESSAGE)

    def mask(self, text: str) -> str:
        """``text`` with credentials masked (see `redact`)."""
        return redact(text, self.sensitive_query_params)

    def masked(self, text: str, limit: int) -> str:
        """``text`` masked and cut to ``limit`` characters (saying how many were cut). Only
        `_MASK_MARGIN` characters past the limit are masked (no text costs more than
        that), so a secret the cut runs through is masked whole unless it is longer."""
        if len(text) <= limit:
            return self.mask(text)
        return _cut(self.mask(text[: limit + _MASK_MARGIN])[:limit], len(text) - limit)
