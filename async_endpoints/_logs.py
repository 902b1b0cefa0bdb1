"""Job-aware logging: ``job_id`` and ``job_name`` on every log record about a job.

While an attempt runs (its handler, and the recording of its outcome) a context variable
names the job. `JobLogFilter` copies it onto each record it sees as the attributes
``job_id`` and ``job_name`` (None outside a job), unless the record has them already from
``extra=`` (where the library logs about a job outside an attempt, it passes
`job_extra`, or `job_id_extra` with ``job_name`` None where only the id is at
hand). The library installs the filter on its own loggers (``async_endpoints`` and
``async_endpoints_redis``); an app installs it on its handlers so that the records of its
own loggers, written by a job handler, carry the two attributes too::

    handler = logging.StreamHandler()
    handler.addFilter(JobLogFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(job_name)s %(job_id)s %(message)s"))
    logging.getLogger().addHandler(handler)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from ._job import Job

_current_job: ContextVar[tuple[str, str] | None] = ContextVar(
    "async_endpoints_current_job", default=None
)

#: The library's loggers; each gets a `JobLogFilter` on import (a logger's filters do not
#: see its children's records: every logger the library writes to is named here).
LIBRARY_LOGGERS = ("async_endpoints", "async_endpoints.worker", "async_endpoints_redis")


class JobLogFilter(logging.Filter):
    """Sets ``record.job_id`` and ``record.job_name`` from the job whose attempt is
    running in the current context (None for both outside an attempt), keeping values the
    record has already. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the two attributes; always True."""
        if not hasattr(record, "job_id"):
            current = _current_job.get()
            record.job_id, record.job_name = (None, None) if current is None else current
        elif not hasattr(record, "job_name"):
            record.job_name = None
        return True


def name_current_job(job: Job) -> Token[tuple[str, str] | None]:
    """Name ``job`` as the current job of this context (and of the tasks it starts) until
    `forget_current_job` is given the token returned."""
    return _current_job.set((str(job.id), job.name))


def forget_current_job(token: Token[tuple[str, str] | None]) -> None:
    """Undo the `name_current_job` that returned ``token``."""
    _current_job.reset(token)


@contextmanager
def job_logging(job: Job) -> Iterator[None]:
    """Name ``job`` as the current job of this context inside the ``with`` block."""
    token = name_current_job(job)
    try:
        yield
    finally:
        forget_current_job(token)


def current_job() -> tuple[str, str] | None:
    """The (id, name) of the job whose attempt runs in this context, or None."""
    return _current_job.get()


def job_extra(job: Job) -> dict[str, str]:
    """The ``extra=`` of a log record about ``job`` written outside its attempt."""
    return {"job_id": str(job.id), "job_name": job.name}


def job_id_extra(job_id: uuid.UUID, job_name: str | None = None) -> dict[str, str | None]:
    """The ``extra=`` of a log record about the job ``job_id`` written outside its attempt
    when the `Job` is not at hand (a message in Redis, a listener told only the id): its
    name when known, else None (no store read is made just to name a job in a record)."""
    return {"job_id": str(job_id), "job_name": job_name}


def _install() -> None:
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(each, JobLogFilter) for each in logger.filters):
            logger.addFilter(JobLogFilter())


_install()


_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def one_line(text: str) -> str:
    """``text`` as one line of a log: every character Python does not count as printable
    (newlines, carriage returns, terminal escapes, other control and format characters
    such as a right-to-left override, line separators) written as a backslash escape, so
    that text a client chose (a job's error message may echo its input) can neither forge
    a log record nor hide what it says."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
