"""Households with readings, and the daily insight pass run as the beat runs it, the clock pinned
to the morning after the day (tests/insight/test_daily_alerts.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import time_machine

from insight import tasks
from insight.models import InsightPolicy, UsageBaseline
from meters import services as meter_services
from meters.storage import INTERVAL
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.meters.factories import MeterFactory


def household(utility, *, sanctioned_load_kw: str | None = None, language: str = "en"):
    """A meter, its account and the account's holder (who receives its alerts)."""
    meter = MeterFactory(
        utility=utility,
        account__utility=utility,
        account__sanctioned_load_kw=Decimal(sanctioned_load_kw) if sanctioned_load_kw else None,
    )
    user = UserFactory(language=language)
    AccountLinkFactory(user=user, account=meter.account)
    return meter, user


def policy(utility, **fields) -> InsightPolicy:
    return InsightPolicy.objects.update_or_create(utility=utility, defaults=fields)[0]


def local_day_slots(utility, day: date) -> tuple[datetime, int]:
    """A local day's first instant and its number of quarter-hours (92, 96 or 100)."""
    zone = utility.zone
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, int((end - start) / INTERVAL)


def feed(meter, day: date, wh: int | list[int], *, present: int | None = None) -> None:
    """Readings of one local day of the meter: `wh` in every quarter-hour (or one value per
    quarter-hour), only the first `present` of them sent."""
    start, slots = local_day_slots(meter.utility, day)
    values = list(wh) if isinstance(wh, list) else [wh] * slots
    values = values[: slots if present is None else present]
    meter_services.readings_ingest(
        utility=meter.utility,
        blocks=[{"meter": meter.serial, "start": start.isoformat(), "values": values}],
        source="test",
        now=start + timedelta(days=2),
    )


def feed_days(meter, first: date, wh_by_day: list[int | None]) -> None:
    """Whole days from `first` on, one flat use per day (None: nothing sent that day)."""
    for n, wh in enumerate(wh_by_day):
        if wh is not None:
            feed(meter, first + timedelta(days=n), wh)


def morning_after(utility, day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(8, 35), utility.zone)


def run_day(utility, day: date, capture) -> int:
    """The hourly beat's run on the morning after `day`, its chunks run in-process and the alerts'
    on-commit pushes with them. Returns how many days it started."""
    with time_machine.travel(morning_after(utility, day), tick=False), capture(execute=True):
        return tasks.insight_daily.delay().get()


def run_days(utility, first: date, count: int, capture) -> None:
    for n in range(count):
        run_day(utility, first + timedelta(days=n), capture)


def baseline_of(account) -> UsageBaseline:
    return UsageBaseline.objects.get(account=account)
