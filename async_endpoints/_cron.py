"""`CronRule`: when a cron expression fires, read in an IANA time zone.

Expressions are evaluated by cronsim, which follows Debian's cron (Vixie cron) to the
letter, daylight-saving changes included:

- A job with a fixed time (minute and hour given) whose time does not exist on the day the
  clocks go forward runs once, at the first moment after the gap (``30 2 * * *`` in
  Europe/Berlin on the last Sunday of March runs at 03:00 CEST, 01:00 UTC).
- A fixed time that happens twice on the day the clocks go back runs once, at its first
  occurrence (02:30 CEST, not again at 02:30 CET).
- Jobs that run every hour or more often (a wildcard or step in the hour field) run by the
  clock as it is: an hourly job stays hourly in UTC terms on both days.

Each next time is computed from the previous one alone (no state carried between calls),
so every process computes the same times.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["CronRule", "cron_rule"]


class CronRule:
    """A checked cron expression and time zone.

    Args:
        expression: Five fields (minute hour day-of-month month day-of-week), or six with
            seconds first (``"*/2 * * * * *"``: every 2 s).
        timezone: An IANA time-zone name (``"Europe/Berlin"``).

    Raises:
        ValueError: the expression is not valid cron (the message names the field), never
            fires, or the time zone is unknown.
    """

    __slots__ = ("expression", "timezone", "zone")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str):
            raise ValueError(f"a cron expression must be a string, not {expression!r}")
        if not isinstance(timezone, str):
            raise ValueError(f"a time zone must be a string, not {timezone!r}")
        self.expression = expression
        self.timezone = timezone
        self.zone = _zone(timezone)
        fields = len(expression.split())
        if fields not in (5, 6):
            raise ValueError(
                f"invalid cron expression {expression!r}: {fields} fields; "
                "give five, or six with seconds first"
            )
        self.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # checks it, and that it fires

    @property
    def runs_by_the_clock(self) -> bool:
        """Whether the expression has a wildcard (``*``, ``*/n``) in its seconds, minute or
        hour field: after a backward step of the clock, Debian's cron runs such jobs by the
        clock as it now is, while a job at a fixed time that ran already waits for its
        next time (it does not run again)."""
        fields = self.expression.split()
        return any(field.startswith("*") for field in fields[: len(fields) - 3])

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after ``moment`` (aware) that the expression fires, in UTC.

        Raises:
            ValueError: the expression does not fire within 50 years of ``moment``.
        """
        try:
            following = next(CronSim(self.expression, moment.astimezone(self.zone)))
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {self.expression!r}: {exc}") from None
        except StopIteration:
            raise ValueError(f"cron expression {self.expression!r} never fires") from None
        return following.astimezone(UTC)

    def previous_before(self, moment: datetime) -> datetime:
        """The last time strictly before ``moment`` (aware) that the expression fires, in UTC.

        Raises:
            ValueError: the expression did not fire within 50 years before ``moment``.
        """
        try:
            previous = next(CronSim(self.expression, moment.astimezone(self.zone), reverse=True))
        except (CronSimError, StopIteration):
            raise ValueError(f"cron expression {self.expression!r} never fired") from None
        return previous.astimezone(UTC)


@functools.lru_cache(maxsize=1024)
def cron_rule(expression: str, timezone: str) -> CronRule:
    """`CronRule(expression, timezone)`, checked once per pair (the scheduler reads the
    same few expressions over and over).

    Raises:
        ValueError: as `CronRule` raises it.
    """
    return CronRule(expression, timezone)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: no key at all ("../etc/passwd", ""); OSError: a folder ("Europe").
        message = f"unknown time zone {name!r} (give an IANA name such as 'Europe/Berlin')"
        raise ValueError(message) from None
