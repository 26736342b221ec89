from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.workdays import (
    is_working_day,
    utility_working_deadline,
    working_days_add,
    working_days_between,
)
from tests.outages.factories import saudi

SA = {"country": "SA", "weekend": [4, 5]}


def test_the_saudi_weekend_is_friday_and_saturday():
    assert not is_working_day(date(2026, 11, 27), **SA)  # Friday
    assert not is_working_day(date(2026, 11, 28), **SA)  # Saturday
    assert is_working_day(date(2026, 11, 29), **SA)  # Sunday


def test_public_holidays_are_not_working_days():
    # Saudi National Day, 23 September 2026, is a Wednesday.
    assert not is_working_day(date(2026, 9, 23), **SA)
    assert working_days_add(date(2026, 9, 22), 1, **SA) == date(2026, 9, 24)


def test_ten_working_days_skip_weekends_and_eid():
    # From Wednesday 18 March 2026: Eid al-Fitr holidays 19–24 March, then weekends.
    assert working_days_add(date(2026, 3, 18), 10, **SA) == date(2026, 4, 7)
    assert working_days_between(date(2026, 3, 18), date(2026, 4, 7), **SA) == 10


def test_the_day_itself_is_not_counted():
    assert working_days_add(date(2026, 11, 22), 0, **SA) == date(2026, 11, 22)
    assert working_days_add(date(2026, 11, 22), 1, **SA) == date(2026, 11, 23)


def test_a_week_of_weekend_is_refused():
    with pytest.raises(ValueError):
        working_days_add(date(2026, 11, 22), 1, country="SA", weekend=range(7))


@pytest.mark.django_db
def test_a_deadline_ends_at_local_midnight():
    utility = saudi(policy=False)
    # 23:30 on Sunday 22 November in Riyadh is still the 22nd locally.
    moment = datetime(2026, 11, 22, 20, 30, tzinfo=UTC)
    assert utility_working_deadline(utility=utility, moment=moment, days=1) == datetime(
        2026, 11, 23, 21, 0, tzinfo=UTC
    )
