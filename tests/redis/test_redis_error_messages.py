"""How a redis-py failure reads once mapped to the library's store errors."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors

from async_endpoints import StoreUnavailableError
from async_endpoints_redis._errors import mapped_errors


def test_redis_pys_own_timeout_reads_as_no_answer_in_time_with_its_words_kept() -> None:
    """redis-py giving up on a reply before our deadline is the same outage our deadline
    reports ("no answer ..."), its own message kept; other failures keep their type."""
    with pytest.raises(StoreUnavailableError) as raised, mapped_errors("get"):
        raise redis_errors.TimeoutError("Timeout reading from 127.0.0.1:6379")
    assert str(raised.value) == (
        "Redis is unavailable (get): no answer in time (Timeout reading from 127.0.0.1:6379)"
    )
    with pytest.raises(StoreUnavailableError) as raised, mapped_errors("get"):
        raise redis_errors.ConnectionError("Connection refused")
    assert str(raised.value) == "Redis is unavailable (get): ConnectionError: Connection refused"
