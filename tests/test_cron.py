"""`CronRule`: cron expressions read in IANA time zones, across daylight-saving changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from async_endpoints._cron import CronRule


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type,misc]


def fires(rule: CronRule, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` times, each computed from the previous one (as the scheduler
    does: no state is carried between them)."""
    times = []
    for _ in range(count):
        start = rule.next_after(start)
        times.append(start)
    return times


def test_five_fields_read_minute_hour_day_month_weekday() -> None:
    """``0 3 * * *`` is 03:00 every day."""
    rule = CronRule("0 3 * * *")
    assert fires(rule, utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 3), utc(2026, 1, 2, 3)]


def test_six_fields_take_seconds_first() -> None:
    """``*/2 * * * * *`` fires every two seconds."""
    rule = CronRule("*/2 * * * * *")
    assert fires(rule, utc(2026, 1, 1), 3) == [
        utc(2026, 1, 1, 0, 0, 2),
        utc(2026, 1, 1, 0, 0, 4),
        utc(2026, 1, 1, 0, 0, 6),
    ]


def test_the_next_time_is_strictly_after_the_moment_given() -> None:
    """A moment that is itself a firing time gives the one after it."""
    rule = CronRule("* * * * * *")
    assert rule.next_after(utc(2026, 1, 1, 0, 0, 5)) == utc(2026, 1, 1, 0, 0, 6)
    later = utc(2026, 1, 1, 0, 0, 5) + timedelta(microseconds=1)
    assert rule.next_after(later) == utc(2026, 1, 1, 0, 0, 6)


def test_the_expression_is_read_in_its_time_zone() -> None:
    """``0 9 * * *`` in Asia/Tokyo (UTC+9, no DST) is midnight UTC."""
    assert CronRule("0 9 * * *", "Asia/Tokyo").next_after(utc(2026, 6, 1)) == utc(2026, 6, 2)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("61 * * * *", "minute"),
        ("* 25 * * *", "hour"),
        ("0 0 30 2 *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("* * *", "3 fields"),
        ("* * * * * * *", "7 fields"),
        ("@daily", "1 fields"),
        ("", "0 fields"),
    ],
)
def test_an_invalid_expression_is_a_value_error_naming_the_problem(
    expression: str, problem: str
) -> None:
    """The message quotes the expression and names the field (or the field count)."""
    with pytest.raises(ValueError, match="cron expression") as caught:
        CronRule(expression)
    assert problem in str(caught.value)
    assert repr(expression) in str(caught.value)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "", "../../etc/passwd", "utc+1"])
def test_an_unknown_time_zone_is_a_value_error_naming_it(zone: str) -> None:
    """Not an IANA key: a ValueError that quotes it (no path or file detail)."""
    with pytest.raises(ValueError, match="unknown time zone") as caught:
        CronRule("0 3 * * *", zone)
    assert repr(zone) in str(caught.value)


def test_a_daily_job_in_the_hour_the_clocks_skip_runs_once_right_after_the_gap() -> None:
    """Europe/Berlin goes from 02:00 CET to 03:00 CEST on 2026-03-29: the 02:30 job runs
    once that day, at 03:00 CEST (01:00 UTC), and at 02:30 CEST the next day."""
    rule = CronRule("30 2 * * *", "Europe/Berlin")
    assert fires(rule, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: 02:30 never happened
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_daily_job_in_the_hour_the_clocks_repeat_runs_once() -> None:
    """Europe/Berlin goes from 03:00 CEST back to 02:00 CET on 2026-10-25: 02:30 happens
    twice, the job runs at the first (00:30 UTC) only."""
    rule = CronRule("30 2 * * *", "Europe/Berlin")
    assert fires(rule, utc(2026, 10, 23, 12), 3) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST; not again at 02:30 CET (01:30 UTC)
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]


@pytest.mark.parametrize("day", [utc(2026, 3, 28, 22), utc(2026, 10, 24, 22)])
def test_an_hourly_job_stays_hourly_in_utc_across_both_changes(day: datetime) -> None:
    """``0 * * * *`` in Europe/Berlin fires every 60 minutes of real time, through the
    skipped hour and the repeated one."""
    times = fires(CronRule("0 * * * *", "Europe/Berlin"), day, 8)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(hours=1)] * 7


def test_an_every_second_job_keeps_its_pace_across_the_repeated_hour() -> None:
    """A seconds schedule is real time too: one fire per second through 03:00 CEST ->
    02:00 CET."""
    change = utc(2026, 10, 25, 1)  # 03:00 CEST becomes 02:00 CET
    times = fires(CronRule("* * * * * *", "Europe/Berlin"), change - timedelta(seconds=3), 6)
    assert times == [change + timedelta(seconds=n) for n in range(-2, 4)]


@pytest.mark.parametrize(
    ("six", "five"),
    [
        ("0 30 2 * * *", "30 2 * * *"),
        ("0 0 2 * * *", "0 2 * * *"),
        ("0 30 1-3 * * *", "30 1-3 * * *"),
    ],
)
@pytest.mark.parametrize(
    "day", [datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 10, 24, 22, tzinfo=UTC)]
)
def test_a_six_field_fixed_time_keeps_the_daylight_saving_rules_of_its_five_field_form(
    six: str, five: str, day: datetime
) -> None:
    """Seconds-first with a fixed second: the same times as the five-field expression
    across both changes in Europe/Berlin (the skipped 02:30 runs once after the gap, the
    repeated one once), where cronsim alone loses the cycle or runs it twice."""
    assert fires(CronRule(six, "Europe/Berlin"), day, 6) == fires(
        CronRule(five, "Europe/Berlin"), day, 6
    )
    shifted = fires(CronRule("15 " + six[2:], "Europe/Berlin"), day, 6)
    assert shifted == [
        moment + timedelta(seconds=15) for moment in fires(CronRule(five, "Europe/Berlin"), day, 6)
    ]


#: The day each zone's clocks go back in 2027, from a while before the change.
FALL_BACK = {
    "Europe/Berlin": utc(2027, 10, 30, 22),  # 03:00 CEST -> 02:00 CET at 01:00 UTC
    "America/New_York": utc(2027, 11, 7, 3),  # 02:00 EDT -> 01:00 EST at 06:00 UTC
    "Australia/Lord_Howe": utc(2027, 4, 3, 12),  # 02:00 +11 -> 01:30 +10:30 at 15:00 UTC
}


@pytest.mark.parametrize("zone", FALL_BACK)
@pytest.mark.parametrize(
    "expression", ["30 2 * * *", "30 1 * * *", "0 30 2 * * *", "0,30 45 1 * * *", "*/15 * * * *"]
)
def test_a_time_asked_for_in_the_repeated_hour_is_never_in_the_past(
    zone: str, expression: str
) -> None:
    """Every minute of the six hours around a change back, in three zones (Lord Howe's
    goes back half an hour): the next time is after the moment asked about, the previous
    one before it (cronsim, asked in the second pass of the repeated hour, answers the
    first pass's occurrence: the scheduler would find it due at every tick)."""
    rule = CronRule(expression, zone)
    for minute in range(6 * 60):
        moment = FALL_BACK[zone] + timedelta(minutes=minute)
        assert rule.next_after(moment) > moment, moment
        assert rule.previous_before(moment) < moment, moment


def test_a_fixed_time_asked_for_after_its_first_pass_is_the_next_days() -> None:
    """At 02:10 CET on 2027-10-31 (01:10 UTC, the second 02:10 of Europe/Berlin's night),
    the 02:30 job has run at 02:30 CEST (00:30 UTC): next is 02:30 CET the next day, not
    again that night."""
    rule = CronRule("30 2 * * *", "Europe/Berlin")
    assert rule.next_after(utc(2027, 10, 31, 1, 10)) == utc(2027, 11, 1, 1, 30)


@pytest.mark.parametrize("seconds", ["0,30", "0-30/30", "30,0"])
@pytest.mark.parametrize(
    "day", [datetime(2027, 3, 27, 22, tzinfo=UTC), datetime(2027, 10, 30, 22, tzinfo=UTC)]
)
def test_a_list_of_fixed_seconds_keeps_the_daylight_saving_rules_too(
    seconds: str, day: datetime
) -> None:
    """``0,30 30 2 * * *`` fires at 02:30:00 and 02:30:30 of the five-field ``30 2 * *
    *``'s times: once after the skipped hour's gap (03:00 CEST), once in the repeated
    hour (02:30 CEST, not again at 02:30 CET)."""
    five = fires(CronRule("30 2 * * *", "Europe/Berlin"), day, 3)
    expected = [moment + timedelta(seconds=s) for moment in five for s in (0, 30)]
    assert fires(CronRule(f"{seconds} 30 2 * * *", "Europe/Berlin"), day, 6) == expected
