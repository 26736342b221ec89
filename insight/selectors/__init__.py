"""What a household reads of its own bills and readings: the postpaid bill forecast, the comparison
of two bills, the time-of-day split with the saving from shifting use, and max demand against the
sanctioned load (docs/insight.md).

Every read is one account's meters over the period asked (a month is ~31 MeterDay rows a meter),
cut to the reader's own tenancies of the account from their link's `visible_from` on; never the
utility's rows. Energy is priced with billing's own tariffs (billing.tariffs: `tariff_for`,
`Pricing.rate_at`, `Pricing.month_cost`), as a bill prices it.
"""

from __future__ import annotations

from insight.selectors.bill_forecast import bill_forecast
from insight.selectors.common import MAX_TOD_DAYS, days_parse, insight_policy_for, month_parse
from insight.selectors.comparison import bill_comparison
from insight.selectors.demand import demand
from insight.selectors.time_of_day import time_of_day

__all__ = [
    "MAX_TOD_DAYS",
    "bill_comparison",
    "bill_forecast",
    "days_parse",
    "demand",
    "insight_policy_for",
    "month_parse",
    "time_of_day",
]
