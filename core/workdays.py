"""Working days of a utility: its weekend (Utility.weekend_days) and its days off, which the
utility's own calendar gives (`utility.holidays_in(year)`: the `holidays` package for its country
and region, plus and minus what staff set in the admin; see accounts.models.UtilityCalendarDay).
The country-only functions below serve callers without a utility.

Deadlines that regulators count in working days (a force-majeure exemption within 10 working days of
a failure, a connection within 20) are counted here: the day of the event itself is day zero, and the
deadline is the end (next local midnight) of the Nth working day after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache

import holidays

from core.timebuckets import local_midnight


@lru_cache(maxsize=512)
def country_holidays(country: str, year: int, subdivision: str = "") -> frozenset[date]:
    """Public holidays of a country (and one of its regions, e.g. IN + MP) in a year."""
    try:
        return frozenset(holidays.country_holidays(country, subdiv=subdivision or None, years=year))
    except NotImplementedError:  # a country or region the package does not know
        if subdivision:
            return country_holidays(country, year)
        return frozenset()


def country_holiday_names(country: str, year: int, subdivision: str = "") -> list[tuple[date, str]]:
    """The same days with their names, for staff to read."""
    try:
        found = holidays.country_holidays(country, subdiv=subdivision or None, years=year)
    except NotImplementedError:
        return []
    return sorted(found.items())


def _holidays(country: str, year: int) -> frozenset[date]:
    return country_holidays(country, year)


def is_working_day(day: date, *, country: str, weekend: Iterable[int]) -> bool:
    return day.weekday() not in set(weekend) and day not in _holidays(country, day.year)


def utility_is_working_day(*, utility, day: date) -> bool:
    """Neither the utility's weekend nor one of its days off (utility.holidays_in)."""
    return day.weekday() not in set(utility.weekend_days) and day not in utility.holidays_in(
        day.year
    )


def utility_working_days_between(*, utility, start: date, end: date) -> int:
    """Working days in (start, end] in the utility's calendar."""
    return sum(
        1
        for n in range(1, (end - start).days + 1)
        if utility_is_working_day(utility=utility, day=start + timedelta(days=n))
    )


def working_days_add(start: date, days: int, *, country: str, weekend: Iterable[int]) -> date:
    """The date of the `days`-th working day after `start` (`start` itself never counts)."""
    if days < 0:
        raise ValueError("days must be zero or more")
    weekend = frozenset(weekend)
    if len(weekend) >= 7:
        raise ValueError("a week needs at least one working day")
    day, counted = start, 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day, country=country, weekend=weekend):
            counted += 1
    return day


def working_days_between(start: date, end: date, *, country: str, weekend: Iterable[int]) -> int:
    """Working days in (start, end]: how many have passed since `start` by the end of `end`."""
    weekend = frozenset(weekend)
    return sum(
        1
        for n in range(1, (end - start).days + 1)
        if is_working_day(start + timedelta(days=n), country=country, weekend=weekend)
    )


def utility_working_deadline(*, utility, moment: datetime, days: int) -> datetime:
    """The UTC instant `days` working days after `moment` ends, in the utility's calendar: the
    local midnight that closes the Nth working day after the local date of `moment`."""
    if days < 0:
        raise ValueError("days must be zero or more")
    if len(set(utility.weekend_days)) >= 7:
        raise ValueError("a week needs at least one working day")
    zone = utility.zone
    day, counted = moment.astimezone(zone).date(), 0
    while counted < days:
        day += timedelta(days=1)
        if utility_is_working_day(utility=utility, day=day):
            counted += 1
    return local_midnight(day + timedelta(days=1), zone)
