"""Helpers for testing apps built on async-endpoints and for authors of job stores."""

from ._clock import ManualClock as ManualClock

__all__ = ["ManualClock"]
