"""RetryPolicy: the backoff arithmetic of API.md."""

from __future__ import annotations

import pytest

from async_endpoints import RetryPolicy


def test_delay_doubles_from_the_base_delay() -> None:
    """Retry n waits base * 2 ** (n - 1) without jitter."""
    policy = RetryPolicy(base_delay=2.0, max_delay=1000.0, jitter=0.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]


def test_delay_is_capped_by_max_delay() -> None:
    """No single delay exceeds max_delay (before jitter), however many retries."""
    policy = RetryPolicy(base_delay=2.0, max_delay=10.0, jitter=0.0)
    assert policy.delay(4) == 10.0
    assert policy.delay(10_000) == 10.0


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999999])
def test_jitter_only_lengthens_a_delay_by_at_most_a_quarter(draw: float) -> None:
    """With the default jitter, a delay lies in [base, 1.25 * base)."""
    policy = RetryPolicy(base_delay=4.0, random=lambda: draw)
    assert 4.0 <= policy.delay(1) < 5.0
    assert policy.delay(1) == pytest.approx(4.0 * (1 + 0.25 * draw))


def test_retry_in_is_none_once_retries_are_used_up() -> None:
    """A job with max_retries retries behind it gets no further delay."""
    policy = RetryPolicy(max_retries=2, base_delay=1.0, jitter=0.0)
    assert policy.retry_in(0) == 1.0
    assert policy.retry_in(1) == 2.0
    assert policy.retry_in(2) is None
    assert policy.retry_in(0, max_retries=0) is None


def test_retry_numbers_start_at_one() -> None:
    """Asking for retry 0 is a programming error, named as such."""
    with pytest.raises(ValueError, match="starts at 1"):
        RetryPolicy().delay(0)
