"""Households, tariffs and readers for the insight a consumer reads (bill forecast, comparison,
time of day, demand)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from accounts.models import AccountLink
from billing.models import Tariff, TariffPeriod, TariffSlab
from insight.models import InsightPolicy
from meters import services as meter_services
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.meters.factories import MeterFactory

Q = dt.timedelta(minutes=15)
# Readings are stored as a head-end would have sent them by then: never "from the future".
INGESTED_AT = dt.datetime(2028, 1, 1, tzinfo=dt.UTC)


def postpaid_meter(utility, **fields):
    return MeterFactory(utility=utility, payment_mode="postpaid", **fields)


def ingest(meter, start: dt.datetime, values: list[int]) -> None:
    """Consecutive quarter-hours from `start` (aware), `None` leaving one unread."""
    blocks, run_start, run = [], start, []
    for index, value in enumerate([*values, None]):
        if value is None:
            if run:
                blocks.append(
                    {"meter": meter.serial, "start": run_start.isoformat(), "values": run}
                )
            run, run_start = [], start + (index + 1) * Q
        else:
            run.append(value)
    result = meter_services.readings_ingest(
        utility=meter.utility, blocks=blocks, source="test", now=INGESTED_AT
    )
    assert result.rejected == 0, result.rejections


def slab_tariff(utility, *, slabs, fixed, valid_from, valid_to=None, name="slabs"):
    tariff = Tariff.objects.create(
        utility=utility,
        name=name,
        kind=Tariff.Kind.PROGRESSIVE,
        payment_mode="postpaid",
        valid_from=valid_from,
        valid_to=valid_to,
        fixed_daily_charge=Decimal(fixed),
    )
    for start, rate in slabs:
        TariffSlab.objects.create(tariff=tariff, from_kwh=start, rate=Decimal(rate))
    return tariff


def flat_postpaid_tariff(utility, *, rate, fixed="0", valid_from=dt.date(2025, 1, 1)):
    return Tariff.objects.create(
        utility=utility,
        name="flat",
        kind=Tariff.Kind.FLAT,
        payment_mode="postpaid",
        valid_from=valid_from,
        flat_rate=Decimal(rate),
        fixed_daily_charge=Decimal(fixed),
    )


def tou_postpaid_tariff(utility, *, standard, periods, fixed="0", valid_from=dt.date(2025, 1, 1)):
    """`periods`: (name, start, end, rate) in local wall-clock time."""
    tariff = Tariff.objects.create(
        utility=utility,
        name="time of day",
        kind=Tariff.Kind.TIME_OF_USE,
        payment_mode="postpaid",
        valid_from=valid_from,
        flat_rate=Decimal(standard),
        fixed_daily_charge=Decimal(fixed),
    )
    for name, start, end, rate in periods:
        TariffPeriod.objects.create(
            tariff=tariff, name=name, start=start, end=end, rate=Decimal(rate)
        )
    return tariff


def insight_policy(utility, **fields) -> InsightPolicy:
    return InsightPolicy.objects.update_or_create(utility=utility, defaults=fields)[0]


def readers(account) -> dict[str, object]:
    """Who may ask about an account: its holder, a share that may only view (no pay, no alerts),
    a consumer with an account of their own, and staff."""
    holder = AccountLinkFactory(account=account)
    viewer = UserFactory()
    AccountLink.objects.create(
        user=viewer,
        account=account,
        role=AccountLink.Role.SHARED,
        can_view=True,
        can_pay=False,
        receives_alerts=False,
        shared_by=holder,
        verified_mobile=viewer.phone,
    )
    payer = UserFactory()  # a share that may top up but not look
    AccountLink.objects.create(
        user=payer,
        account=account,
        role=AccountLink.Role.SHARED,
        can_view=False,
        can_pay=True,
        receives_alerts=False,
        shared_by=holder,
        verified_mobile=payer.phone,
    )
    other = AccountLinkFactory(account__utility=account.utility).user
    staff = UserFactory(is_staff=True, is_superuser=True)
    return {"holder": holder.user, "viewer": viewer, "payer": payer, "other": other, "staff": staff}


def ownership_check(make_api, account, path: str) -> None:
    """Holder and a viewing share read it; a paying-only share, another consumer and staff get
    404; anonymous 401."""
    people = readers(account)
    for who in ("holder", "viewer"):
        response = make_api(people[who]).get(path)
        assert response.status_code == 200, (who, response.json())
    for who in ("payer", "other", "staff"):
        response = make_api(people[who]).get(path)
        assert response.status_code == 404, who
        assert response.json()["error"]["code"] == "account_not_found"
    assert make_api().get(path).status_code == 401
