"""The dashboard's two charts of a utility (core.charts draws them): its load over the last
local days and its top-ups by channel."""

from __future__ import annotations

from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Utility
from billing.models import TopUp
from console.selectors import ChannelTotal, UtilityFigures
from core.charts import bar_chart
from core.money import money_digits

# Short names of the channels under the chart's bars; the table beside it has the full ones.
CHANNEL_SHORT = {
    TopUp.Channel.APP: gettext_lazy("App"),
    TopUp.Channel.WEB: gettext_lazy("Website"),
    TopUp.Channel.CALL_CENTRE: gettext_lazy("Call centre"),
    TopUp.Channel.COUNTER: gettext_lazy("Counter"),
    TopUp.Channel.PAYMENT_CODE: gettext_lazy("Pay code"),
}


def _energy_unit(highest_wh: int) -> tuple[str, int]:
    """kWh, or MWh / GWh when a utility's day would need seven digits of kWh."""
    for unit, divisor in (("GWh", 10**9), ("MWh", 10**6)):
        if highest_wh >= 100 * divisor:
            return unit, divisor
    return "kWh", 1000


def load_chart(f: UtilityFigures) -> SafeString:
    highest = max((d.wh or 0 for d in f.load), default=0)
    unit, divisor = _energy_unit(highest)
    return bar_chart(
        title=_("Load, last %(days)s days") % {"days": len(f.load)},
        unit=unit,
        labels=[d.day.strftime("%a %d") for d in f.load],
        values=[None if d.wh is None else d.wh / divisor for d in f.load],
        partial=[d.partial for d in f.load],
        description=_(
            "Energy of all the utility's meters per local day (%(zone)s), from their readings; "
            "today so far in the lighter bar."
        )
        % {"zone": f.utility.timezone},
    )


def topup_chart(utility: Utility, totals: list[ChannelTotal], days: int) -> SafeString:
    minor = utility.currency_minor_unit
    return bar_chart(
        title=_("Top-ups by channel, last %(days)s days") % {"days": days},
        unit=utility.currency,
        labels=[str(CHANNEL_SHORT.get(t.channel, t.channel)) for t in totals],
        values=[float(t.amount) for t in totals],
        value_labels=[money_digits(t.amount, minor_unit=minor) for t in totals],
        description=_("Paid balance top-ups per channel, amounts in %(currency)s.")
        % {"currency": utility.currency},
    )
