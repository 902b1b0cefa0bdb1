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

cronsim applies those rules to five-field expressions only. A six-field expression whose
seconds field names fixed seconds (``0 30 2 * * *``, ``0,30 30 2 * * *``, ``0-10/5 ...``)
is read as its last five fields, to which the rules apply, plus each of those seconds, so
that it keeps the same rules as its five-field form; six-field ones with a wildcard in the
seconds (``*/10 * * * * *``) run by the clock.

A time is never in the past of the moment it follows: asked in the second pass of a
repeated hour (the clocks went back), cronsim gives the first pass's occurrence, which has
gone by; the next one after it is taken instead (a fixed time the clocks repeat does not
run again in the second pass, as above).

Each next time is computed from the previous one alone (no state carried between calls),
so every process computes the same times.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
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

    __slots__ = ("evaluated", "expression", "offsets", "timezone", "zone")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        if not isinstance(expression, str):
            raise ValueError(f"a cron expression must be a string, not {expression!r}")
        if not isinstance(timezone, str):
            raise ValueError(f"a time zone must be a string, not {timezone!r}")
        self.expression = expression
        self.timezone = timezone
        self.zone = _zone(timezone)
        fields = expression.split()
        if len(fields) not in (5, 6):
            raise ValueError(
                f"invalid cron expression {expression!r}: {len(fields)} fields; "
                "give five, or six with seconds first"
            )
        #: What cronsim evaluates, and the seconds added to its times (see the module).
        self.evaluated = expression
        self.offsets: tuple[timedelta, ...] = (timedelta(0),)
        seconds = _fixed_seconds(fields[0]) if len(fields) == 6 else None
        if seconds:
            self.evaluated = " ".join(fields[1:])
            self.offsets = tuple(timedelta(seconds=second) for second in seconds)
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
        return min(self._step(moment, offset, reverse=False) for offset in self.offsets)

    def previous_before(self, moment: datetime) -> datetime:
        """The last time strictly before ``moment`` (aware) that the expression fires, in UTC.

        The scheduler asks it of schedules that run by the clock. Of a fixed time asked in
        the second pass of a repeated hour, after its first pass's occurrence, cronsim's
        answer is the day before's (before ``moment`` all the same).

        Raises:
            ValueError: the expression did not fire within 50 years before ``moment``.
        """
        return max(self._step(moment, offset, reverse=True) for offset in self.offsets)

    def _step(self, moment: datetime, offset: timedelta, *, reverse: bool) -> datetime:
        """The first time after (or, ``reverse``, before) ``moment`` that the evaluated
        expression plus ``offset`` fires, strictly so in real time: cronsim's first answer
        in a repeated hour's second pass is the first pass's (the past); passed over."""
        start = (moment - offset).astimezone(self.zone)
        try:
            times = CronSim(self.evaluated, start, reverse=reverse)
            for _ in range(_MOST_PASSED_OVER):
                found = next(times).astimezone(UTC) + offset
                if (found < moment) if reverse else (found > moment):
                    return found
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {self.expression!r}: {exc}") from None
        except StopIteration:
            pass
        verb = "never fired" if reverse else "never fires"
        raise ValueError(f"cron expression {self.expression!r} {verb}") from None


#: How many times of cronsim's in the wrong direction are passed over at most (a repeated
#: hour holds at most 3,600 of a seconds schedule; a fixed time, one).
_MOST_PASSED_OVER = 3_602


def _fixed_seconds(field: str) -> list[int] | None:
    """The seconds a seconds field names when it has no wildcard (``0``, ``0,30``,
    ``0-10/5``), in order; None for a wildcard or what is not such a field (cronsim then
    reads the whole expression, and names what is wrong)."""
    seconds: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        first, _, last = span.partition("-")
        if not (first.isdigit() and (not last or last.isdigit()) and (not step or step.isdigit())):
            return None
        low, high = int(first), int(last or first)
        every = int(step or 1)
        if high > 59 or low > high or every == 0 or (step and not last):
            return None
        seconds.update(range(low, high + 1, every))
    return sorted(seconds)


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
