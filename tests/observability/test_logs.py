"""Job-aware logs: the library's records about a job carry job_id and job_name, and so do
an app's own records written by a handler once the app installs JobLogFilter."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from async_endpoints import (
    AsyncContext,
    AsyncEndpoints,
    InMemoryJobStore,
    JobLogFilter,
    NonRetryableError,
)

app_logger = logging.getLogger("tests.the_app")


class Records(logging.Handler):
    """Keeps the records it handles, with JobLogFilter installed as an app would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(JobLogFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, text: str) -> list[tuple[object, object]]:
        return [
            (getattr(r, "job_id", "missing"), getattr(r, "job_name", "missing"))
            for r in self.records
            if text in r.getMessage()
        ]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEndpoints]:
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0)

    async def chatty(ctx: AsyncContext[None]) -> None:
        app_logger.info("the handler says hello")
        raise RuntimeError("and fails")

    endpoints.add_handler(chatty, name="Chatty")
    async with endpoints.running(workers=False):
        yield endpoints


async def test_the_library_record_of_a_failed_attempt_names_the_job(
    engine: AsyncEndpoints, records: Records
) -> None:
    """The 'attempt failed' warning has job_id and job_name attributes."""
    job = await engine.submit("Chatty")
    await engine.drain()
    assert records.about("attempt 1 failed") == [(str(job.id), "Chatty")]


async def test_a_failure_message_cannot_forge_a_log_line(records: Records) -> None:
    """An error message that echoes a client's input (newlines, a carriage return, a
    terminal escape, a right-to-left override) is logged on one line, those characters
    escaped (printable text, accents too, as it is); the job keeps the message as it was."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=0)
    message = "bad input: x\nERROR forged entry=1\r\x1b[31mred\u2028end\ttab\u202eé"

    async def echoes(ctx: AsyncContext[None]) -> None:
        raise ValueError(message)

    endpoints.add_handler(echoes)
    async with endpoints.running(workers=False):
        job = await endpoints.submit("echoes")
        await endpoints.drain()
        failed = await endpoints.get_job(job.id)
    assert failed is not None and failed.error is not None
    assert failed.error.message == message
    [line] = [r.getMessage() for r in records.records if "attempt 1 failed" in r.getMessage()]
    assert line.endswith(
        "ValueError: bad input: x\\nERROR forged entry=1\\r\\x1b[31mred\\u2028end\\ttab\\u202eé"
        " (no retries left: Failed)"
    )
    assert line.isprintable()


async def test_a_failed_attempts_record_says_what_comes_next_for_the_job(
    records: Records,
) -> None:
    """A retry and when, the last attempt failing for good, a failure never retried."""
    endpoints = AsyncEndpoints(store=InMemoryJobStore(), max_retries=1, retry_base_delay=2.0)

    async def flaky(ctx: AsyncContext[None]) -> None:
        raise RuntimeError("down")

    async def refused(ctx: AsyncContext[None]) -> None:
        raise NonRetryableError("bad request")

    endpoints.add_handler(flaky)
    endpoints.add_handler(refused)
    async with endpoints.running(workers=False):
        await endpoints.submit("flaky")
        await endpoints.submit("refused")
        await endpoints.drain()
    lines = [r.getMessage() for r in records.records if "failed:" in r.getMessage()]
    assert any(
        re.search(r"\(flaky\) attempt 1 failed: .* \(retrying in 2(\.\d+)? s\)$", line)
        for line in lines
    )
    assert any(
        line.endswith(
            "(refused) attempt 1 failed: NonRetryableError: bad request (not retried: Failed)"
        )
        for line in lines
    )


async def test_a_handler_record_names_the_job_through_the_filter(
    engine: AsyncEndpoints, records: Records
) -> None:
    """The app's own record, written in the handler, gets job_id and job_name from the
    filter on the app's handler."""
    job = await engine.submit("Chatty")
    await engine.drain()
    assert records.about("the handler says hello") == [(str(job.id), "Chatty")]


async def test_records_outside_a_job_have_none(records: Records) -> None:
    """Outside an attempt the filter sets both attributes to None (formats never break)."""
    app_logger.info("not about a job")
    assert records.about("not about a job") == [(None, None)]


async def test_a_record_about_a_job_outside_its_attempt_names_it(
    engine: AsyncEndpoints, records: Records
) -> None:
    """A lifecycle listener that raises is logged with the job's id and name (extra=)."""

    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    engine.events.subscribe(broken)
    job = await engine.submit("Chatty")
    assert records.about("lifecycle listener") == [(str(job.id), "Chatty")]


def test_a_record_with_its_own_job_id_keeps_it(records: Records) -> None:
    """A record that names a job itself (extra=) is left as it is."""
    app_logger.info("explicit", extra={"job_id": "x", "job_name": "y"})
    assert records.about("explicit") == [("x", "y")]


@pytest.mark.parametrize(
    "name", ["async_endpoints", "async_endpoints.worker", "async_endpoints_redis"]
)
def test_every_library_logger_sets_the_attributes_without_the_apps_filter(name: str) -> None:
    """Each logger the library writes to (the CLI's child logger too) has the filter
    itself: its records carry job_id and job_name for a handler without the filter, so a
    format naming them never breaks."""
    seen: list[logging.LogRecord] = []

    class Plain(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    plain = Plain(logging.DEBUG)
    logger = logging.getLogger(name)
    logger.addHandler(plain)
    try:
        logger.warning("a library record")
    finally:
        logger.removeHandler(plain)
    (record,) = seen
    assert (record.job_id, record.job_name) == (None, None)  # type: ignore[attr-defined]
