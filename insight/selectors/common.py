"""What the insight reads share: parsing a month or a number of days, the account's meters as
the reader may see them, pricing, and how figures are written (docs/insight.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.db.models import Q

from accounts.models import ConsumerAccount, Utility
from billing.tariffs import WH_PER_KWH, Pricing, tariff_for
from core.errors import Conflict, DomainError
from core.timebuckets import date_in_range, local_midnight
from insight.models import InsightPolicy
from meters.models import Meter, MeterAssignment
from meters.selectors import meter_series
from meters.storage import INTERVAL, Series

POSTPAID = Meter.PaymentMode.POSTPAID
MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
KWH = Decimal("0.001")
KW = Decimal("0.01")
MAX_TOD_DAYS = 90
# Without a time-of-use tariff, a bill comparison splits use by these parts of the local day.
DAY_PARTS = (
    ("night", time(0), time(6)),
    ("morning", time(6), time(12)),
    ("afternoon", time(12), time(18)),
    ("evening", time(18), time(0)),
)
# The hours a time-of-use tariff leaves to its flat rate.
REST_OF_DAY = "standard"


def insight_policy_for(utility: Utility) -> InsightPolicy:
    """The utility's insight policy, or the defaults (unsaved) when staff never set one."""
    try:
        return utility.insight_policy
    except InsightPolicy.DoesNotExist:
        return InsightPolicy(utility=utility)


def month_parse(raw: str | None, *, field_name: str) -> date:
    """A month a client names as YYYY-MM: its first day. 400 `bad_month` otherwise."""
    if not raw or not MONTH.fullmatch(raw):
        raise DomainError.for_field(field_name, "Give a month as YYYY-MM.", code="bad_month")
    month = date(int(raw[:4]), int(raw[5:]), 1)
    if not date_in_range(month):
        raise DomainError.for_field(
            field_name, "Give a month from 2000 to 2099.", code="period_out_of_range"
        )
    return month


def days_parse(raw: str | None, *, default: int = 30) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit():
        raise DomainError.for_field("days", "Give a whole number of days.", code="bad_days")
    days = int(raw)
    if not 1 <= days <= MAX_TOD_DAYS:
        raise DomainError.for_field(
            "days", f"Give 1 to {MAX_TOD_DAYS} days.", code="days_out_of_range"
        )
    return days


# --- Reading one account's meters as the reader may see them -------------------------------------


@dataclass
class _Meter:
    id: int
    payment_mode: str
    windows: list[tuple[datetime, datetime | None]] = field(default_factory=list)


def _account_meters(
    account: ConsumerAccount, start: datetime, end: datetime, *, payment_mode: str | None = None
) -> list[_Meter]:
    """The account's meters over [start, end), each with the windows the reader sees of it: its
    tenancies of this account, cut to the reader's `visible_from` (annotated by
    accounts.selectors.account_get_for_user), as meters.selectors cuts every consumer read."""
    rows = MeterAssignment.objects.filter(account=account, start__lt=end).filter(
        Q(end__isnull=True) | Q(end__gt=start)
    )
    if payment_mode:
        rows = rows.filter(meter__payment_mode=payment_mode)
    since = getattr(account, "visible_from", None)
    meters: dict[int, _Meter] = {}
    for meter_id, mode, begin, finish in rows.order_by("start", "pk").values_list(
        "meter_id", "meter__payment_mode", "start", "end"
    ):
        if since is not None and since > begin:
            begin = since
        if finish is not None and finish <= begin:
            continue
        meters.setdefault(meter_id, _Meter(meter_id, mode)).windows.append((begin, finish))
    return list(meters.values())


def _series(meters: list[_Meter], start: datetime, end: datetime) -> list[Series]:
    return [meter_series(meter_id=m.id, start=start, end=end).keep_only(m.windows) for m in meters]


def _local_clock(start: datetime, count: int, zone: ZoneInfo) -> list[time]:
    """The local wall-clock start of each of `count` quarter-hours from `start`."""
    return [(start + i * INTERVAL).astimezone(zone).time() for i in range(count)]


def _month_span(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A local month as UTC instants (local midnights: a DST month is its real length)."""
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return local_midnight(month, zone), local_midnight(following, zone)


def _held_days(
    windows: list[tuple[datetime, datetime | None]], first: date, last: date, zone: ZoneInfo
) -> int:
    """Local days first … last that some window touches: a bill's fixed charge is for those."""
    held = 0
    for n in range((last - first).days + 1):
        day_start = local_midnight(first + timedelta(days=n), zone)
        day_end = local_midnight(first + timedelta(days=n + 1), zone)
        if any(s < day_end and (e is None or e > day_start) for s, e in windows):
            held += 1
    return held


def _pricing(utility: Utility, payment_mode: str, on: date) -> Pricing:
    try:
        return tariff_for(utility=utility, payment_mode=payment_mode, on=on)
    except DomainError:
        raise Conflict(
            f"There is no {payment_mode} tariff for {on:%Y-%m}.", code="no_tariff"
        ) from None


def _kwh(wh: Decimal | int) -> str:
    return f"{(Decimal(wh) / WH_PER_KWH).quantize(KWH, rounding=ROUND_HALF_UP):f}"


def _percent(part: Decimal | int, whole: Decimal | int) -> float:
    if not whole:
        return 0.0
    return float((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP))


def _local_iso(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat()


def _clock(moment: time) -> str:
    return f"{moment:%H:%M}"


def _account_head(account: ConsumerAccount) -> dict:
    utility = account.utility
    return {
        "account": account.pk,
        "consumer_id": account.consumer_id,
        "currency": utility.currency,
        "timezone": utility.timezone,
    }
