"""Reads for money: balance and how long it lasts, statements, top-ups, bills, ledger checks."""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.db import connection, models
from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, User, Utility
from billing.forecast import Pace, runout_as_dict, runout_project
from billing.models import Balance, Bill, BillingPolicy, LedgerEntry, TopUp
from billing.relay import emergency_credit_limit, policy_for
from core import sql
from core.errors import DomainError, NotFound
from core.money import money_digits

SPEND_KINDS = (
    LedgerEntry.Kind.ENERGY_CHARGE,
    LedgerEntry.Kind.ENERGY_ADJUSTMENT,
    LedgerEntry.Kind.FIXED_CHARGE,
)
POSTPAID = "postpaid"  # meters.models.Meter.PaymentMode.POSTPAID
SPEND_WINDOW_DAYS = 28
MAX_PROJECTION_DAYS = 365


_ACCOUNT = ("id", "utility_id", "consumer_id", "status")
# The whole utility and policy: the balance answer's run-out forecast reads the calendar, friendly
# hours and emergency-credit rules of both (billing.forecast), and a second query for them would
# cost more than the columns.
_UTILITY = tuple(f.attname for f in Utility._meta.concrete_fields)
_BALANCE = ("account_id", "amount", "debt", "open_day", "open_amount", "open_wh")
_POLICY = tuple(f.attname for f in BillingPolicy._meta.concrete_fields)


def balance_account_get(*, user: User, account_id: int) -> ConsumerAccount:
    """One of the user's accounts as accounts.selectors.account_get_for_user reads it (a live link,
    or the link of a closed account; `visible_from` the earliest of the user's), with its utility,
    balance row and billing policy loaded for balance_summary: one hand-written query (core.sql),
    the balance being the app's most frequent call. Fields balance_summary does not read are
    deferred. `is_postpaid` tells balance_summary which answer to give."""
    quote = connection.ops.quote_name
    utility_columns = ", ".join(f"u.{quote(f.column)}" for f in sql.columns(Utility, _UTILITY))
    policy_columns = ", ".join(f"p.{quote(f.column)}" for f in sql.columns(BillingPolicy, _POLICY))
    balance_columns = ", ".join(f"b.{quote(f.column)}" for f in sql.columns(Balance, _BALANCE))
    row = sql.select(
        f"""
        SELECT a.id, a.utility_id, a.consumer_id, a.status, MIN(l.visible_from),
               {utility_columns},
               {balance_columns}, {policy_columns},
               EXISTS (SELECT 1 FROM meters_meter m WHERE m.account_id = a.id AND m.payment_mode = %s)
               OR EXISTS (SELECT 1 FROM billing_bill bl WHERE bl.account_id = a.id)
        FROM accounts_consumeraccount a
        JOIN accounts_accountlink l ON l.account_id = a.id
        JOIN accounts_utility u ON u.id = a.utility_id
        LEFT JOIN billing_balance b ON b.account_id = a.id
        LEFT JOIN billing_billingpolicy p ON p.utility_id = a.utility_id
        WHERE a.id = %s AND l.user_id = %s
              AND ((l.unlinked_at IS NULL AND l.can_view) OR l.end_reason = %s)
        GROUP BY a.id, u.id, b.account_id, p.utility_id
        """,  # noqa: S608 - only column names from the models are put in
        [POSTPAID, account_id, user.pk, AccountLink.EndReason.ACCOUNT_CLOSED],
        [
            *sql.columns(ConsumerAccount, _ACCOUNT),
            AccountLink._meta.get_field("visible_from"),
            *sql.columns(Utility, _UTILITY),
            *sql.columns(Balance, _BALANCE),
            *sql.columns(BillingPolicy, _POLICY),
            None,
        ],
    )
    if not row:
        raise NotFound("You have no such account.", code="account_not_found")
    values = row[0]
    utility_end = 5 + len(_UTILITY)
    balance_end = utility_end + len(_BALANCE)
    policy_end = balance_end + len(_POLICY)
    account = sql.instance(ConsumerAccount, _ACCOUNT, values[0:4])
    account.visible_from = values[4]
    # Postpaid: a postpaid meter now, or bills from the past (a converted account keeps them).
    account.is_postpaid = bool(values[policy_end])
    account.utility = sql.instance(Utility, _UTILITY, values[5:utility_end])
    # No Balance row yet: nothing was ever posted, so it is zero (never saved from here).
    account.balance = (
        sql.instance(Balance, _BALANCE, values[utility_end:balance_end])
        if values[utility_end] is not None
        else Balance(account=account, amount=Decimal(0), debt=Decimal(0))
    )
    account.utility.billing_policy = (
        sql.instance(BillingPolicy, _POLICY, values[balance_end:policy_end])
        if values[balance_end] is not None
        else policy_for(account.utility)
    )
    return account


def _spend_and_last_topup(
    *, account: ConsumerAccount, today: date, days: int = SPEND_WINDOW_DAYS
) -> tuple[dict[date, Decimal], tuple[datetime, Decimal, str] | None]:
    """What the account spent on each of the last `days` complete local days (charges are negative
    entries; their period says which day they were for), and the last successful top-up the reader
    may see (from their `visible_from` on, as topups_for_account) as (paid_at, amount, channel).
    Both in one hand-written query, for the balance screen (see balance_account_get)."""
    zone = account.utility.zone
    start = datetime.combine(today - timedelta(days=days), datetime.min.time(), zone)
    end = datetime.combine(today, datetime.min.time(), zone)
    since = getattr(account, "visible_from", None)
    # A top-up begun before `since` belongs to the account's previous holder.
    topups = "account_id = %s AND status = %s" + (" AND created_at >= %s" if since else "")
    topup_params = [account.pk, TopUp.Status.SUCCEEDED, *([since] if since else [])]
    rows = sql.select(
        f"""
        SELECT period_start, amount, NULL FROM billing_ledgerentry
        WHERE account_id = %s AND kind IN (%s, %s, %s) AND period_start >= %s AND period_start < %s
        UNION ALL
        SELECT paid_at, amount, channel FROM billing_topup
        WHERE {topups} AND paid_at = (
            SELECT paid_at FROM billing_topup WHERE {topups} ORDER BY paid_at DESC LIMIT 1
        )
        """,  # noqa: S608 - the only text put in is one of two fixed conditions
        [account.pk, *SPEND_KINDS, start, end, *topup_params, *topup_params],
        [
            LedgerEntry._meta.get_field("period_start"),
            LedgerEntry._meta.get_field("amount"),
            None,
        ],
    )
    spend: dict[date, Decimal] = defaultdict(Decimal)
    last = None
    for moment, amount, channel in rows:
        if channel is None:
            spend[moment.astimezone(zone).date()] -= amount
        else:
            last = (moment, amount, channel)
    return dict(spend), last


def _balance_row(account: ConsumerAccount) -> Balance | None:
    try:
        return account.balance  # no query when loaded by balance_account_get
    except Balance.DoesNotExist:
        return None


def _policy(utility: Utility) -> BillingPolicy:
    try:
        return utility.billing_policy  # no query when loaded by balance_account_get
    except BillingPolicy.DoesNotExist:
        return policy_for(utility)


def balance_summary(*, account: ConsumerAccount, now: datetime | None = None) -> dict:
    """Balance, and how long it will last at the recent weekday and weekend pace.

    1. Average daily spend over the last 28 local days with charges, separately for the
       utility's weekdays and weekend days (a household spends differently on each).
    2. Walk forward day by day from now, spending each day's expected amount from the balance and
       any emergency credit not yet used, until it runs out: that day is the depletion date.
    """
    now = now or timezone.now()
    if _is_postpaid(account):
        return postpaid_summary(account=account, now=now)
    utility = account.utility
    zone = utility.zone
    today = now.astimezone(zone).date()
    balance = _balance_row(account)
    amount = balance.amount if balance else Decimal(0)
    debt = balance.debt if balance else Decimal(0)
    policy = _policy(utility)
    # The automatic allowance, or the credit the consumer took (billing.affordability).
    emergency = emergency_credit_limit(account=account, policy=policy, at=now)
    emergency_available = min(emergency, max(Decimal(0), emergency + amount))
    emergency_in_use = amount < 0 and emergency > 0
    spend, last = _spend_and_last_topup(account=account, today=today)
    held_day = balance.open_day if balance is not None and balance.open_amount else None
    if held_day is not None and today - timedelta(days=SPEND_WINDOW_DAYS) <= held_day < today:
        # A complete day whose energy is still held on the balance (billing.energy_days).
        spend[held_day] = spend.get(held_day, Decimal(0)) - balance.open_amount
    weekend = set(utility.weekend_days)
    by_kind = {"weekday": [], "weekend": []}
    for day, value in spend.items():
        by_kind["weekend" if day.weekday() in weekend else "weekday"].append(value)
    all_days = [v for values in by_kind.values() for v in values]
    average = sum(all_days) / len(all_days) if all_days else None
    pace = {k: (sum(v) / len(v) if v else average) for k, v in by_kind.items()}

    days_left, depletion = None, None
    remaining = amount + (emergency if amount > -emergency else Decimal(0))
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
    # The calendar-aware run-out (billing.forecast): when the supply could really be cut, and
    # what to top up by then. Null without a pace to project.
    runout = None
    if days_left is not None:
        forecast = runout_project(
            account=account,
            now=now,
            balance=amount,
            pace=Pace(pace["weekday"], pace["weekend"], frozenset(weekend)),
        )
        runout = runout_as_dict(forecast, utility=utility)
    minor = utility.currency_minor_unit
    exponent = Decimal(1).scaleb(-minor)
    return {
        "account": account.pk,
        "consumer_id": account.consumer_id,
        "payment_mode": "prepaid",
        "balance": _money(amount, minor),
        "currency": utility.currency,
        "as_of": now,
        "last_topup": None
        if last is None
        else {"amount": _money(last[1], minor), "at": last[0], "channel": last[2]},
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
            "limit": _money(emergency, minor),
            "available": _money(emergency_available, minor),
            "in_use": emergency_in_use,
        },
        "debt": _money(debt, minor),
        "open_energy_day": None
        if balance is None or balance.open_day is None or not balance.open_amount
        else {
            "day": balance.open_day,
            "amount": _money(balance.open_amount, minor),
            "kwh": f"{Decimal(balance.open_wh) / 1000:.3f}",
        },
        "runout": runout,
    }


def _is_postpaid(account: ConsumerAccount) -> bool:
    known = getattr(account, "is_postpaid", None)
    if known is not None:  # loaded by balance_account_get
        return known
    from meters.models import Meter

    return (
        Meter.objects.filter(account=account, payment_mode=POSTPAID).exists()
        or Bill.objects.filter(account=account).exists()
    )


def postpaid_summary(*, account: ConsumerAccount, now: datetime | None = None) -> dict:
    """What a postpaid household owes: its open bills (amount, fine, paid, due date, overdue), the
    total due and what is overdue, and any credit from paying ahead. No prepaid balance, emergency
    credit or days left: a postpaid supply is not cut when a balance runs out."""
    now = now or timezone.now()
    utility = account.utility
    minor = utility.currency_minor_unit
    today = now.astimezone(utility.zone).date()
    balance = _balance_row(account)
    amount = balance.amount if balance else Decimal(0)
    open_bills = [
        bill
        for bill in bills_for_account(account=account).filter(status=Bill.Status.UNPAID)
        if bill.unpaid > 0
    ]
    open_bills.sort(key=lambda bill: bill.month)
    due = sum((bill.unpaid for bill in open_bills), Decimal(0))
    overdue = sum((bill.unpaid for bill in open_bills if bill.due_date < today), Decimal(0))
    last = (
        topups_for_account(account=account)
        .filter(status=TopUp.Status.SUCCEEDED)
        .order_by("-paid_at")
        .values_list("paid_at", "amount", "channel")
        .first()
    )
    return {
        "account": account.pk,
        "consumer_id": account.consumer_id,
        "payment_mode": "postpaid",
        "currency": utility.currency,
        "as_of": now,
        "amount_due": _money(due, minor),
        "overdue": _money(overdue, minor),
        "next_due_date": min((b.due_date for b in open_bills if b.due_date >= today), default=None),
        # Paid ahead of the bills (the ledger above zero): taken off the next bill when issued.
        "credit": _money(max(Decimal(0), amount), minor),
        "open_bills": [
            {
                "month": bill.month.strftime("%Y-%m"),
                "amount": _money(bill.amount, minor),
                "fine": _money(bill.fine_amount, minor),
                "paid": _money(bill.paid_amount, minor),
                "unpaid": _money(bill.unpaid, minor),
                "due_date": bill.due_date,
                "overdue": bill.due_date < today,
            }
            for bill in open_bills
        ],
        "last_payment": None
        if last is None
        else {"amount": _money(last[1], minor), "at": last[0], "channel": last[2]},
        "debt": _money(balance.debt if balance else Decimal(0), minor),
    }


def _money(value: Decimal, minor: int) -> str:
    """Amounts travel as strings with the currency's own decimals: 1.500 KWD, never 1.5."""
    return money_digits(value, minor_unit=minor)


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
    """Accounts whose Balance row differs from the sum of their ledger and the energy charge held
    on it for its open day (billing.energy_days): should be none."""
    sums = dict(
        LedgerEntry.objects.values("account")
        .annotate(total=Sum("amount"))
        .values_list("account", "total")
    )
    wrong = []
    # Amounts have at most 3 decimals; SQLite sums them as floats, so its total is rounded back.
    cent = Decimal("0.001")
    for account_id, amount, held in Balance.objects.values_list("account", "amount", "open_amount"):
        total = (Decimal(sums.get(account_id) or 0) + held).quantize(cent)
        if total != amount:
            wrong.append((account_id, amount, total))
    return wrong


def _units_text(units: int, minor: int) -> str:
    """A whole number of minor units as the currency writes it: 48 fils → "0.048"."""
    if not minor:
        return str(units)
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // 10**minor}.{units % 10**minor:0{minor}d}"


def cost_months_span(*, meter, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The whole local months around [start, end), as UTC instants, when the meter's readings are
    priced at all (None without a tariff): bucket_costs needs every month a period touches whole,
    since a day's cost is its share of its month's."""
    from billing.tariffs import tariffs_cached
    from core.timebuckets import local_midnight

    if not tariffs_cached(utility_id=meter.utility_id, payment_mode=meter.payment_mode):
        return None
    zone = meter.utility.zone
    first = start.astimezone(zone).date().replace(day=1)
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    following = (last.replace(day=28) + timedelta(days=4)).replace(day=1)
    return local_midnight(first, zone), local_midnight(following, zone)


def bucket_costs(*, meter, series, spans: list[tuple[int, int]]) -> list[str | None] | None:
    """The price of each bucket's energy under the meter's tariff, or None without a tariff.

    `series` covers whole local months (cost_months_span) as the reader sees them; `spans` index
    into it. Every figure adds up, whatever period is asked:
    1. Each quarter-hour's exact price, in integers (Wh × millionths of the currency per kWh =
       billionths). A month is priced by the tariff in force on its first day, as charging and
       bills price it; under progressive slabs each Wh costs the month's average rate, the
       month's total being the slabs applied to the month's whole energy (never the query's).
    2. The month's exact total rounded half up to the minor unit: what charging posts for it
       (its rounded running total) and what a bill charges for its energy.
    3. That split among the month's local days by largest remainder, and a day's share split
       among its quarter-hours the same way (core.money.units_allocate): intervals and hours sum
       to their day, days to their month, and a day costs the same asked alone or in a year.
    A bucket without a present reading, or with one in a month without a tariff, costs None.
    """
    from billing.tariffs import WH_PER_KWH, pricing_on, tariffs_cached
    from core.money import units_allocate, units_round
    from core.timebuckets import local_midnight
    from meters.storage import PRESENT

    utility = meter.utility
    pricings = tariffs_cached(utility_id=utility.pk, payment_mode=meter.payment_mode)
    if not pricings:
        return None
    zone = utility.zone
    minor = utility.currency_minor_unit
    step = 10 ** (9 - minor)  # billionths in one minor unit
    values, quality = series.values, series.quality
    count = len(series)
    actual, estimated = PRESENT

    # The local days of the series as index ranges: 92, 96 or 100 quarter-hours each.
    days: list[tuple[date, int, int]] = []
    day, i0 = series.start.astimezone(zone).date(), 0
    while i0 < count:
        i1 = min(count, series.index_of(local_midnight(day + timedelta(days=1), zone)))
        days.append((day, i0, i1))
        day, i0 = day + timedelta(days=1), i1
    # Cut days: a bucket edge falls inside them, so their quarter-hours are allocated one by one.
    edges = sorted({edge for span in spans for edge in span})

    def cut(a: int, b: int) -> bool:
        following = bisect.bisect_right(edges, a)
        return following < len(edges) and edges[following] < b

    units = [0] * (count + 1)  # allocated minor units, by interval (or on a day's first interval)
    unpriced = bytearray(count)  # 1 where a present reading has no tariff to price it
    month_rates: dict[int, dict] = {}
    by_month: dict[date, list[tuple[date, int, int]]] = {}
    for entry in days:
        by_month.setdefault(entry[0].replace(day=1), []).append(entry)
    for month, month_days in by_month.items():
        pricing = pricing_on(pricings, month)
        present = [
            (d, a, b)
            for d, a, b in month_days
            if actual in quality[a:b] or estimated in quality[a:b]  # bytes: a search, not a loop
        ]
        if pricing is None:
            for _, a, b in present:
                unpriced[a:b] = b"\x01" * (b - a)
            continue
        kind = pricing.tariff.kind
        denominator = 1
        month_nano = 0
        if kind == "progressive":
            month_wh = sum(_present_wh(values, quality, a, b) for _, a, b in present)
            denominator = month_wh or 1
            month_nano = int(pricing.month_cost(Decimal(month_wh) / WH_PER_KWH) * 1_000_000_000)
        flat = int((pricing.tariff.flat_rate or 0) * 1_000_000)
        tou = kind == "tou" and bool(pricing.periods)
        price = _MonthPrice(
            pricing, month_nano, flat, tou, zone, month_rates.setdefault(pricing.tariff.pk, {})
        )

        day_weights = []
        interval_weights: dict[int, list[int]] = {}
        for _, a, b in present:
            if tou or cut(a, b):
                interval_weights[a] = price.weights(series, a, b)
                day_weights.append(sum(interval_weights[a]))
            elif kind == "progressive":
                day_weights.append(_present_wh(values, quality, a, b) * month_nano)
            else:
                day_weights.append(_present_wh(values, quality, a, b) * flat)
        month_units = units_round(sum(day_weights), denominator * step)
        for (_, a, b), day_units in zip(
            present, units_allocate(month_units, day_weights, denominator * step), strict=True
        ):
            if cut(a, b):
                units[a:b] = units_allocate(day_units, interval_weights[a], denominator * step)
            else:
                units[a] = day_units

    running = [0, *itertools.accumulate(units[:count])]
    any_unpriced = 1 in unpriced
    texts: dict[int, str] = {}  # a month of quarter-hours repeats a few small amounts
    out: list[str | None] = []
    for i0, i1 in spans:
        chunk = quality[i0:i1]
        if (actual not in chunk and estimated not in chunk) or (
            any_unpriced and 1 in unpriced[i0:i1]
        ):
            out.append(None)
            continue
        amount = running[i1] - running[i0]
        text = texts.get(amount)
        if text is None:
            text = texts[amount] = _units_text(amount, minor)
        out.append(text)
    return out


@dataclass(frozen=True)
class _MonthPrice:
    """How bucket_costs prices one month's quarter-hours."""

    pricing: object
    month_nano: int  # progressive slabs: the month's total, shared by Wh
    flat: int  # millionths of the currency per kWh
    tou: bool
    zone: ZoneInfo
    rates: dict  # time-of-use rate by local wall-clock time, filled as met

    def weights(self, series, a: int, b: int) -> list[int]:
        """Each quarter-hour's exact price in [a, b), in billionths (times the month's Wh under
        progressive slabs)."""
        from meters.storage import INTERVAL, PRESENT

        values, quality = series.values, series.quality
        progressive = self.pricing.tariff.kind == "progressive"
        chunk = quality[a:b]
        if not self.tou and chunk.count(PRESENT[0]) + chunk.count(PRESENT[1]) == b - a:
            rate = self.month_nano if progressive else self.flat  # every slot present: one rate
            return [value * rate for value in values[a:b]]
        out = []
        for i in range(a, b):
            if quality[i] not in PRESENT:
                out.append(0)
            elif progressive:
                out.append(values[i] * self.month_nano)
            elif self.tou:
                local = (series.start + i * INTERVAL).astimezone(self.zone).time()
                rate = self.rates.get(local)
                if rate is None:
                    rate = self.rates[local] = int(self.pricing.rate_at(local) * 1_000_000)
                out.append(values[i] * rate)
            else:
                out.append(values[i] * self.flat)
        return out


def _present_wh(values, quality, a: int, b: int) -> int:
    """The energy of [a, b) that was measured or estimated (other slots carry no energy)."""
    from meters.storage import PRESENT

    chunk = quality[a:b]
    if chunk.count(PRESENT[0]) + chunk.count(PRESENT[1]) == len(chunk):  # counted in C
        return sum(values[a:b])
    return sum(v for v, q in zip(values[a:b], chunk, strict=True) if q in PRESENT)


# A projection's pace varies between weekdays and weekends and with the hour of the day; a check
# is skipped only when the balance is this far above anything a days-left alert could ask for.
DAYS_LEFT_MARGIN = Decimal("1.5")


def balance_checks_due(*, account_ids: list[int]) -> list[int]:
    """Of the accounts a charging pass touched, those whose balance check could do anything: order
    a disconnection, fire an alert, or re-arm one. A few grouped queries for the whole list, so
    that a pass over a city of healthy balances costs no per-account work.

    Due: the balance is at or below the disconnection level (emergency credit used up) or zero;
    or a linked user's low-balance amount; or within a margin of a days-left level at the account's
    recent pace; or some alert state is waiting to re-arm (a refund may have lifted the balance).
    """
    from django.conf import settings

    from notifications.models import BalanceAlertState

    if not account_ids:
        return []
    # Plain values, not model instances: a pass sorts 2,000 accounts, and making each an account
    # with its utility cost more than all of this function's queries together.
    accounts = {
        account_id: (utility_id, currency, level, armed)
        for account_id, utility_id, currency, level, armed in ConsumerAccount.objects.filter(
            pk__anyof=account_ids
        )
        # Its automatic top-up at a balance level (at most one active): it fires at or below its
        # threshold when armed, and re-arms above it after a refund (billing.autotopup).
        .annotate(
            balance_rule=models.FilteredRelation(
                "auto_topups",
                condition=models.Q(auto_topups__trigger="balance", auto_topups__is_active=True),
            )
        )
        .values_list(
            "pk",
            "utility_id",
            "utility__currency",
            "balance_rule__threshold",
            "balance_rule__armed",
        )
    }
    balances, held = {}, {}
    for account_id, amount, open_amount in Balance.objects.filter(
        account_id__anyof=account_ids
    ).values_list("account_id", "amount", "open_amount"):
        balances[account_id], held[account_id] = amount, open_amount
    waiting = set(
        BalanceAlertState.objects.filter(account_id__anyof=account_ids)
        .filter(models.Q(low_armed=False) | models.Q(days_armed=False) | models.Q(zero_armed=False))
        .values_list("account_id", flat=True)
    )
    levels: dict[int, tuple[Decimal, int]] = {}
    for account_id, amount, days in AccountLink.objects.filter(
        account_id__anyof=account_ids, unlinked_at__isnull=True, receives_alerts=True
    ).values_list(
        "account_id",
        "user__notification_preference__low_balance_amount",
        "user__notification_preference__low_balance_days",
    ):
        currency = accounts[account_id][1]
        amount = (
            amount
            if amount is not None
            else Decimal(settings.LOW_BALANCE_DEFAULT_AMOUNTS.get(currency, "0"))
        )
        days = days if days is not None else settings.LOW_BALANCE_DEFAULT_DAYS
        known = levels.get(account_id, (Decimal(0), 0))
        levels[account_id] = (max(known[0], amount), max(known[1], days))
    since = timezone.now() - timedelta(days=SPEND_WINDOW_DAYS + 1)
    spend = {
        account_id: (-(total or 0), days)
        for account_id, total, days in LedgerEntry.objects.filter(
            account_id__anyof=list(levels), kind__in=SPEND_KINDS, period_start__gte=since
        )
        .values("account_id")
        .annotate(total=Sum("amount"), days=models.Count("period_start__date", distinct=True))
        .values_list("account_id", "total", "days")
    }
    due = []
    emergency_credit: dict[int, Decimal] = {}
    for account_id in sorted(accounts):
        balance = balances.get(account_id, Decimal(0))
        utility_id, _, level, armed = accounts[account_id]
        if utility_id not in emergency_credit:
            # Credit on request is no allowance until taken: checked from zero (an account that
            # took some is checked a little early, which costs a check, never a wrong cut).
            utility_policy = policy_for(Utility(pk=utility_id))  # the policy is found by the id
            emergency_credit[utility_id] = (
                Decimal(0)
                if utility_policy.emergency_credit_on_request
                else utility_policy.emergency_credit
            )
        emergency = emergency_credit[utility_id]
        if (
            balance <= -emergency
            or account_id in waiting
            or (level is not None and (balance <= level) == armed)
        ):
            due.append(account_id)
            continue
        if account_id not in levels:  # nobody to tell, nothing to disconnect
            continue
        amount, days = levels[account_id]
        total, spend_days = spend.get(account_id, (Decimal(0), 0))
        total -= held.get(account_id, Decimal(0))  # the open day's energy, not in the ledger yet
        pace = total / spend_days if spend_days else Decimal(0)
        if balance <= 0 or balance <= amount or balance <= pace * days * DAYS_LEFT_MARGIN:
            due.append(account_id)
    return due
