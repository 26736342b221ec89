"""A household's recent pace and its balance, as the run-out forecast reads them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from billing.ledger import ledger_post

INDIA_MP = {
    "code": "in-mpcz",
    "name": "Madhya Pradesh Central Zone",
    "country": "IN",
    "holiday_subdivision": "MP",
    "timezone": "Asia/Kolkata",
    "currency": "INR",
    "currency_minor_unit": 2,
    "languages": ["hi", "en"],
    "default_language": "hi",
    "min_topup": Decimal("10.00"),
    "weekend_days": [6],  # Sunday: no disconnection on Sundays
    "week_starts_on": 0,
}


def daily_spend(account, *, before: date, amount: str, days: int = 28) -> Decimal:
    """Energy charges of `amount` a local day for the `days` days before `before`; their total."""
    zone = account.utility.zone
    for back in range(1, days + 1):
        start = datetime.combine(before - timedelta(days=back), datetime.min.time(), zone)
        ledger_post(
            account=account,
            kind="energy_charge",
            amount=-Decimal(amount),
            key=f"forecast-spend:{account.pk}:{start.date()}",
            description="Energy",
            period_start=start,
            period_end=start + timedelta(days=1),
        )
    return Decimal(amount) * days


def balance_left(account, *, spent: Decimal, left: str) -> None:
    """A top-up (or, below zero, nothing more) that leaves the balance at `left` after `spent`."""
    ledger_post(
        account=account,
        kind="topup",
        amount=spent + Decimal(left),
        key=f"forecast-topup:{account.pk}",
        description="Top-up",
    )
