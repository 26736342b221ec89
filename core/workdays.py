"""Working days of a utility: its weekend (Utility.weekend_days) and its days off, which the
utility's own calendar gives (`utility.holidays_in(year)`: the `holidays` package for its country
and region, plus and minus what staff set in the admin; see accounts.models.UtilityCalendarDay).
The country-only functions below serve callers without a utility.

Deadlines that regulators count in working days (a force-majeure exemption within 10 working days of
a failure, a connection within 20) are counted here: the day of the event itself is day zero, and the
deadline is the end (next local midnight) of the Nth working day after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache

import holidays

from core.timebuckets import local_midnight


@lru_cache(maxsize=512)
def country_holiday_names(
    country: str, year: int, subdivision: str = ""
) -> tuple[tuple[date, str], ...]:
    """Public holidays of a country (and one of its regions, e.g. IN + MP) in a year, with their
    names, by date. A region the package does not know gives the country's; a country it does
    not know, none (weekends only)."""
    try:
        found = holidays.country_holidays(country, subdiv=subdivision or None, years=year)
    except NotImplementedError:
        return country_holiday_names(country, year) if subdivision else ()
    return tuple(sorted(found.items()))


@lru_cache(maxsize=512)
def country_holidays(country: str, year: int, subdivision: str = "") -> frozenset[date]:
    """The dates of country_holiday_names."""
    return frozenset(day for day, _ in country_holiday_names(country, year, subdivision))


def _nth_working_day(start: date, days: int, is_working: Callable[[date], bool]) -> date:
    """The date of the `days`-th working day after `start` (`start` itself never counts)."""
    if days < 0:
        raise ValueError("days must be zero or more")
    day, counted = start, 0
    while counted < days:
        day += timedelta(days=1)
        if is_working(day):
            counted += 1
    return day


def _working_days_in(start: date, end: date, is_working: Callable[[date], bool]) -> int:
    """Working days in (start, end]: how many have passed since `start` by the end of `end`."""
    return sum(1 for n in range(1, (end - start).days + 1) if is_working(start + timedelta(days=n)))


def _week_checked(weekend: Iterable[int]) -> frozenset[int]:
    weekend = frozenset(weekend)
    if len(weekend) >= 7:
        raise ValueError("a week needs at least one working day")
    return weekend


# --- A country's calendar (callers without a utility) ---------------------------------------


def is_working_day(day: date, *, country: str, weekend: Iterable[int]) -> bool:
    return day.weekday() not in set(weekend) and day not in country_holidays(country, day.year)


def working_days_add(start: date, days: int, *, country: str, weekend: Iterable[int]) -> date:
    """The date of the `days`-th working day after `start` (`start` itself never counts)."""
    weekend = _week_checked(weekend)
    return _nth_working_day(
        start, days, lambda day: is_working_day(day, country=country, weekend=weekend)
    )


def working_days_between(start: date, end: date, *, country: str, weekend: Iterable[int]) -> int:
    """Working days in (start, end]: how many have passed since `start` by the end of `end`."""
    weekend = frozenset(weekend)
    return _working_days_in(
        start, end, lambda day: is_working_day(day, country=country, weekend=weekend)
    )


# --- A utility's calendar -------------------------------------------------------------------


def utility_is_working_day(*, utility, day: date) -> bool:
    """Neither the utility's weekend nor one of its days off (utility.holidays_in)."""
    return day.weekday() not in set(utility.weekend_days) and day not in utility.holidays_in(
        day.year
    )


def utility_working_days_between(*, utility, start: date, end: date) -> int:
    """Working days in (start, end] in the utility's calendar."""
    return _working_days_in(
        start, end, lambda day: utility_is_working_day(utility=utility, day=day)
    )


def utility_working_deadline(*, utility, moment: datetime, days: int) -> datetime:
    """The UTC instant `days` working days after `moment` ends, in the utility's calendar: the
    local midnight that closes the Nth working day after the local date of `moment`."""
    _week_checked(utility.weekend_days)
    zone = utility.zone
    last = _nth_working_day(
        moment.astimezone(zone).date(),
        days,
        lambda day: utility_is_working_day(utility=utility, day=day),
    )
    return local_midnight(last + timedelta(days=1), zone)
