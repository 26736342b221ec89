"""Working days of a utility's country: its weekend (Utility.weekend_days) and its public holidays
(the `holidays` package, by Utility.country).

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


@lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:  # a country the package does not know: weekends only
        return frozenset()


def is_working_day(day: date, *, country: str, weekend: Iterable[int]) -> bool:
    return day.weekday() not in set(weekend) and day not in _holidays(country, day.year)


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
    zone = utility.zone
    last = working_days_add(
        moment.astimezone(zone).date(),
        days,
        country=utility.country,
        weekend=utility.weekend_days,
    )
    return local_midnight(last + timedelta(days=1), zone)
