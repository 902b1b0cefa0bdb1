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


def test_a_scripts_write_refused_at_maxmemory_on_redis_6_2_is_unavailable_not_a_refusal() -> None:
    """Redis 7 answers a script refused at ``maxmemory`` with its own OOM reply (redis-py's
    `OutOfMemoryError`); Redis 6.2 with the script's error quoting it, as here (the text
    a real 6.2.14 server sent). Both are a full Redis: unavailable for now (503 and a
    retry), not a refusal of the request (500)."""
    sent_by_6_2 = (
        "Error running script (call to f_02b58e6ae98065ac44cdf666ed3c0c5524a90a7e): "
        "@user_script:155: @user_script: 155: -OOM command not allowed when used memory > "
        "'maxmemory'."
    )
    for error in (
        redis_errors.ResponseError(sent_by_6_2),
        redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    ):
        with pytest.raises(StoreUnavailableError), mapped_errors("enqueue"):
            raise error
