"""Reads for money: balance and how long it lasts, statements, top-ups, bills, ledger checks."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts.models import ConsumerAccount
from billing.models import Balance, Bill, LedgerEntry, TopUp
from billing.relay import policy_for
from core.errors import DomainError

SPEND_KINDS = (
    LedgerEntry.Kind.ENERGY_CHARGE,
    LedgerEntry.Kind.ENERGY_ADJUSTMENT,
    LedgerEntry.Kind.FIXED_CHARGE,
)
SPEND_WINDOW_DAYS = 28
MAX_PROJECTION_DAYS = 365


def daily_spend(
    *, account: ConsumerAccount, today: date, days: int = SPEND_WINDOW_DAYS
) -> dict[date, Decimal]:
    """What the account spent on each of the last `days` complete local days (charges are negative
    entries; their period says which day they were for)."""
    zone = account.utility.zone
    start = datetime.combine(today - timedelta(days=days), datetime.min.time(), zone)
    end = datetime.combine(today, datetime.min.time(), zone)
    spend: dict[date, Decimal] = defaultdict(Decimal)
    rows = LedgerEntry.objects.filter(
        account=account, kind__in=SPEND_KINDS, period_start__gte=start, period_start__lt=end
    ).values_list("period_start", "amount")
    for moment, amount in rows:
        spend[moment.astimezone(zone).date()] -= amount
    return dict(spend)


def balance_summary(*, account: ConsumerAccount, now: datetime | None = None) -> dict:
    """Balance, and how long it will last at the recent weekday and weekend pace.

    1. Average daily spend over the last 28 local days with charges, separately for the
       utility's weekdays and weekend days (a household spends differently on each).
    2. Walk forward day by day from now, spending each day's expected amount from the balance and
       any emergency credit not yet used, until it runs out: that day is the depletion date.
    """
    now = now or timezone.now()
    utility = account.utility
    zone = utility.zone
    today = now.astimezone(zone).date()
    balance = Balance.objects.filter(account=account).first()
    amount = balance.amount if balance else Decimal(0)
    debt = balance.debt if balance else Decimal(0)
    policy = policy_for(utility)
    emergency_available = min(
        policy.emergency_credit, max(Decimal(0), policy.emergency_credit + amount)
    )
    emergency_in_use = amount < 0 and policy.emergency_credit > 0
    spend = daily_spend(account=account, today=today)
    weekend = set(utility.weekend_days)
    by_kind = {"weekday": [], "weekend": []}
    for day, value in spend.items():
        by_kind["weekend" if day.weekday() in weekend else "weekday"].append(value)
    all_days = [v for values in by_kind.values() for v in values]
    average = sum(all_days) / len(all_days) if all_days else None
    pace = {k: (sum(v) / len(v) if v else average) for k, v in by_kind.items()}

    days_left, depletion = None, None
    remaining = amount + (
        policy.emergency_credit if amount > -policy.emergency_credit else Decimal(0)
    )
    # A closed account is spent no more: there is nothing to project.
    if average and average > 0 and account.status != ConsumerAccount.Status.CLOSED:
        if remaining <= 0:
            days_left, depletion = Decimal(0), today
        else:
            day, counted = today, Decimal(0)
            # Today's share: the part of today still ahead.
            fraction_left = Decimal(1) - Decimal(
                (
                    now.astimezone(zone) - datetime.combine(today, datetime.min.time(), zone)
                ).total_seconds()
            ) / Decimal(86400)
            while counted < MAX_PROJECTION_DAYS:
                need = pace["weekend" if day.weekday() in weekend else "weekday"] or average
                share = fraction_left if day == today else Decimal(1)
                cost = need * share
                if cost >= remaining:
                    counted += remaining / need
                    depletion = day
                    break
                remaining -= cost
                counted += share
                day += timedelta(days=1)
            days_left = counted.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    last = (
        topups_for_account(account=account)
        .filter(status=TopUp.Status.SUCCEEDED)
        .order_by("-paid_at")
        .first()
    )
    minor = utility.currency_minor_unit
    exponent = Decimal(1).scaleb(-minor)
    return {
        "account": account.pk,
        "consumer_id": account.consumer_id,
        "balance": _money(amount, minor),
        "currency": utility.currency,
        "as_of": now,
        "last_topup": None
        if last is None
        else {"amount": _money(last.amount, minor), "at": last.paid_at, "channel": last.channel},
        "average_daily_spend": None
        if average is None
        else _money(average.quantize(exponent, rounding=ROUND_HALF_UP), minor),
        "weekday_daily_spend": None
        if pace["weekday"] is None
        else _money(pace["weekday"].quantize(exponent, rounding=ROUND_HALF_UP), minor),
        "weekend_daily_spend": None
        if pace["weekend"] is None
        else _money(pace["weekend"].quantize(exponent, rounding=ROUND_HALF_UP), minor),
        "projected_days_left": None if days_left is None else str(days_left),
        "depletion_date": depletion,
        "emergency_credit": {
            "limit": _money(policy.emergency_credit, minor),
            "available": _money(emergency_available, minor),
            "in_use": emergency_in_use,
        },
        "debt": _money(debt, minor),
    }


def _money(value: Decimal, minor: int) -> str:
    """Amounts travel as strings with the currency's own decimals: 1.500 KWD, never 1.5."""
    return f"{Decimal(value).quantize(Decimal(1).scaleb(-minor)):f}"


def _since(queryset: QuerySet, account: ConsumerAccount, moment: str) -> QuerySet:
    """Only what happened from the reader's `visible_from` on (set by
    accounts.selectors.accounts_for_user): a new holder never reads the previous one's history."""
    since = getattr(account, "visible_from", None)
    return queryset.filter(**{f"{moment}__gte": since}) if since else queryset


def statement(
    *,
    account: ConsumerAccount,
    kinds: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet[LedgerEntry]:
    entries = _since(LedgerEntry.objects.filter(account=account), account, "created_at")
    if kinds:
        unknown = set(kinds) - set(LedgerEntry.Kind.values)
        if unknown:
            raise DomainError.for_field(
                "kind", f"Unknown kind {sorted(unknown)[0]!r}.", code="unknown_kind"
            )
        entries = entries.filter(kind__in=kinds)
    if start:
        entries = entries.filter(created_at__gte=start)
    if end:
        entries = entries.filter(created_at__lt=end)
    return entries.order_by("-id")


def topups_for_account(*, account: ConsumerAccount) -> QuerySet[TopUp]:
    return _since(TopUp.objects.filter(account=account), account, "created_at").order_by(
        "-created_at"
    )


def bills_for_account(*, account: ConsumerAccount) -> QuerySet[Bill]:
    return _since(Bill.objects.filter(account=account), account, "issued_at").order_by("-month")


def ledger_check() -> list[tuple[int, Decimal, Decimal]]:
    """Accounts whose Balance row differs from the sum of their ledger (should be none), and the
    entries whose running balance skips a beat."""
    sums = dict(
        LedgerEntry.objects.values("account")
        .annotate(total=Sum("amount"))
        .values_list("account", "total")
    )
    wrong = []
    # Amounts have at most 3 decimals; SQLite sums them as floats, so its total is rounded back.
    cent = Decimal("0.001")
    for account_id, amount in Balance.objects.values_list("account", "amount"):
        total = Decimal(sums.get(account_id) or 0).quantize(cent)
        if total != amount:
            wrong.append((account_id, amount, total))
    return wrong


def _money_text(nano: int, minor: int) -> str:
    """An amount held in billionths of the major unit, rounded half up to the minor unit, as text."""
    step = 10 ** (9 - minor)
    units = (nano + step // 2) // step if nano >= 0 else -((-nano + step // 2) // step)
    if not minor:
        return str(units)
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // 10**minor}.{units % 10**minor:0{minor}d}"


def bucket_costs(*, meter, series, spans: list[tuple[int, int]]) -> list[str | None] | None:
    """The price of each bucket's energy under the meter's tariff, or None without a tariff.

    Flat and time-of-use tariffs price each quarter-hour exactly (in integers: Wh × the rate in
    millionths is billionths of the currency, rounded once per bucket). Under progressive slabs a
    bucket's share of the month depends on everything else that month, so each kWh is priced at
    the average rate its month has reached in this series; the bill itself is exact.
    """
    from billing.tariffs import WH_PER_KWH, pricing_on, tariffs_cached
    from meters.storage import INTERVAL, PRESENT

    utility = meter.utility
    pricings = tariffs_cached(utility_id=utility.pk, payment_mode=meter.payment_mode)
    if not pricings:
        return None
    zone = utility.zone
    minor = utility.currency_minor_unit
    values, quality = series.values, series.quality
    month_average: dict[date, Decimal] = {}
    out: list[str | None] = []
    current: tuple[date, date] | None = None  # the local day range the current pricing covers
    pricing = None
    for i0, i1 in spans:
        if not any(q in PRESENT for q in quality[i0:i1]):
            out.append(None)
            continue
        first_local = (series.start + i0 * INTERVAL).astimezone(zone)
        day = first_local.date()
        if current is None or not (current[0] <= day <= current[1]):
            pricing = pricing_on(pricings, day)
            current = (
                (day, day)
                if pricing is None
                else (pricing.tariff.valid_from, pricing.tariff.valid_to or date.max)
            )
        if pricing is None:
            out.append(None)
            continue
        kind = pricing.tariff.kind
        if kind == "flat" or (kind == "tou" and not pricing.periods):
            rate = int((pricing.tariff.flat_rate or 0) * 1_000_000)
            wh = sum(values[i0:i1])
            out.append(_money_text(wh * rate, minor))
        elif kind == "tou":
            nano = 0
            for i in range(i0, i1):
                if quality[i] in PRESENT:
                    local = (series.start + i * INTERVAL).astimezone(zone).time()
                    nano += values[i] * int(pricing.rate_at(local) * 1_000_000)
            out.append(_money_text(nano, minor))
        else:
            month = day.replace(day=1)
            if month not in month_average:
                month_wh = sum(
                    values[i]
                    for i in range(len(series))
                    if quality[i] in PRESENT
                    and (series.start + i * INTERVAL).astimezone(zone).date().replace(day=1)
                    == month
                )
                kwh = Decimal(month_wh) / WH_PER_KWH
                month_average[month] = pricing.month_cost(kwh) / kwh if kwh else Decimal(0)
            nano = int(Decimal(sum(values[i0:i1])) * month_average[month] * 1_000_000)
            out.append(_money_text(nano, minor))
    return out
