"""The run-out forecast that knows the calendar: from the household's pace, its balance and
disconnection level, and the utility's friendly hours, weekends and holidays, the earliest moment
the supply could really be cut and what to top up by then. See docs/forecast.md.

Cheap by design: one walk over the local days ahead (at most MAX_PROJECTION_DAYS), with the pace
balance_summary already read; the only reads are the policy, the taken emergency credit and the
utility's calendar for the years crossed (each once).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from django.utils import timezone

from accounts.models import ConsumerAccount, Utility, UtilityCalendarDay
from billing.affordability import emergency_credit_repay_by
from billing.models import BillingPolicy
from billing.relay import (
    disconnect_allowed_from,
    emergency_credit_in_force,
    is_public_holiday,
    policy_for,
)
from core.errors import Conflict
from core.money import minor_unit_exponent, money_digits
from core.workdays import country_holiday_names

MAX_PROJECTION_DAYS = 365  # as balance_summary: a balance lasting longer has no run-out date
FRIENDLY_HOURS, WEEKEND, HOLIDAY = "friendly_hours", "weekend", "holiday"
PRECISION = Decimal("1e-9")


@dataclass(frozen=True)
class Pace:
    """Daily spend on the utility's weekdays and weekend days (balance_summary's 28-day pace),
    spread evenly over the seconds of each local day."""

    weekday: Decimal
    weekend: Decimal
    weekend_days: frozenset[int]

    def of(self, day: date) -> Decimal:
        return self.weekend if day.weekday() in self.weekend_days else self.weekday


@dataclass
class RunoutForecast:
    as_of: datetime
    balance: Decimal
    level: Decimal  # the disconnection level now: 0, minus the allowance or the taken credit
    credit_runs_out_at: datetime | None  # the balance reaches zero (as_of when it already has)
    credit_exhausted_at: datetime | None  # it reaches the disconnection level
    disconnect_earliest: datetime | None  # the first allowed disconnection from then on
    friendly_credit: Decimal | None  # projected use between exhaustion and disconnect_earliest
    topup_amount: Decimal | None  # keeps the supply on cover_days past disconnect_earliest
    cover_days: int
    reasons: list[str] = field(default_factory=list)
    holidays: list[tuple[date, str]] = field(default_factory=list)
    taken_credit: tuple[Decimal, datetime | None] | None = None  # (amount, repay_by) in force
    offer: dict | None = None  # emergency credit on request, not taken: what taking it would give


class _Walk:
    """The projected balance over time: spend at the pace, second by second, from `start`."""

    def __init__(self, *, start: datetime, balance: Decimal, pace: Pace, zone) -> None:
        self.start, self.balance, self.pace, self.zone = start, balance, pace, zone

    def _segments(self) -> Iterator[tuple[datetime, datetime, Decimal, int]]:
        """(from, to, the day's pace, the day's length in seconds) up to each local midnight, in
        UTC: a day of 23 or 25 hours (Egypt's clock changes) spends its pace over its own length."""
        at = self.start.astimezone(UTC)
        day = self.start.astimezone(self.zone).date()
        for _ in range(MAX_PROJECTION_DAYS + 1):
            begins = datetime.combine(day, time.min, self.zone).astimezone(UTC)
            ends = datetime.combine(day + timedelta(days=1), time.min, self.zone).astimezone(UTC)
            yield at, ends, self.pace.of(day), int((ends - begins).total_seconds())
            at, day = ends, day + timedelta(days=1)

    def reaches(self, level: Decimal) -> datetime | None:
        """When the balance is down to `level` (to the second); None past the horizon."""
        left = self.balance - level
        if left <= 0:
            return self.start
        for begins, ends, pace, length in self._segments():
            if pace <= 0:
                continue
            seconds = int((ends - begins).total_seconds())
            cost = pace * seconds / length
            if cost >= left:
                needed = (left * length / pace).to_integral_value(rounding=ROUND_HALF_UP)
                return begins + timedelta(seconds=int(needed))
            left -= cost
        return None

    def spent(self, until: datetime) -> Decimal:
        """What the household is projected to use from the start until `until`."""
        total = Decimal(0)
        for begins, ends, pace, length in self._segments():
            if begins >= until:
                break
            total += pace * int((min(ends, until) - begins).total_seconds()) / length
        return total

    def balance_at(self, moment: datetime) -> Decimal:
        return self.balance - self.spent(moment)


def _exhausted_at(
    walk: _Walk, *, credit: Decimal, repay_by: datetime | None, allowance: Decimal
) -> datetime | None:
    """When the balance reaches the disconnection level: minus the taken credit until its
    repay_by, minus the automatic allowance after it (and without a taken credit)."""
    if credit <= allowance or repay_by is None:
        return walk.reaches(-max(credit, allowance))
    first = walk.reaches(-credit)
    if first is not None and first < repay_by:
        return first
    if repay_by <= walk.start:
        return walk.reaches(-allowance)
    if walk.balance_at(repay_by) <= -allowance:
        return repay_by  # unpaid when due: the credit ends, the balance is past the level
    return walk.reaches(-allowance)


def _allowed_from(*, utility: Utility, policy: BillingPolicy, moment: datetime) -> datetime | None:
    """relay's own rule (the forecast names the moment relay would send); None when a calendar
    blocks every day for 60 days: the balance screen still answers."""
    try:
        return disconnect_allowed_from(utility=utility, policy=policy, moment=moment)
    except RuntimeError:
        return None


def _ceil(amount: Decimal, minor_unit: int) -> Decimal:
    """Up to the minor unit, after dropping the division's last digits (2.4 × 50400 / 86400 may
    come out a hair above 1.4, which is not a fils more)."""
    exact = amount.quantize(PRECISION, rounding=ROUND_HALF_UP)
    return exact.quantize(minor_unit_exponent(minor_unit), rounding=ROUND_CEILING)


def _why_later(
    *, utility: Utility, policy: BillingPolicy, exhausted: datetime, disconnect: datetime
) -> tuple[list[str], list[tuple[date, str]]]:
    """Why the disconnection comes after exhaustion: its night, the weekend days and the
    holidays (with their names: staff's, else the holidays package's) from then until it."""
    if disconnect <= exhausted:
        return [], []
    zone = utility.zone
    start, end = policy.friendly_night_start, policy.friendly_night_end
    clock = exhausted.astimezone(zone).time()
    at_night = (clock >= start or clock < end) if start > end else (start <= clock < end)
    reasons = [FRIENDLY_HOURS] if at_night else []
    holidays: list[tuple[date, str]] = []
    day, last = exhausted.astimezone(zone).date(), disconnect.astimezone(zone).date()
    while day < last:
        if policy.no_disconnect_on_weekends and day.weekday() in utility.weekend_days:
            reasons.append(WEEKEND)
        elif policy.no_disconnect_on_holidays and is_public_holiday(utility=utility, day=day):
            reasons.append(HOLIDAY)
            holidays.append((day, ""))
        day += timedelta(days=1)
    if holidays:
        holidays = _holiday_names(utility, [day for day, _ in holidays])
    if not reasons:  # pushed past a night that began the day before (a blocked day's end)
        reasons = [FRIENDLY_HOURS]
    return list(dict.fromkeys(reasons)), holidays


def _holiday_names(utility: Utility, days: list[date]) -> list[tuple[date, str]]:
    """The names of a few days off: staff's calendar first, else the holidays package's."""
    staff = dict(
        UtilityCalendarDay.objects.filter(utility_id=utility.pk, day__in=days).values_list(
            "day", "name"
        )
    )
    named = []
    for day in days:
        known = dict(country_holiday_names(utility.country, day.year, utility.holiday_subdivision))
        named.append((day, staff.get(day) or known.get(day, "")))
    return named


def _full_context(account: ConsumerAccount) -> tuple[Utility, BillingPolicy]:
    """The utility and its policy with every field the forecast reads, in one query when
    balance_account_get loaded only the few the balance screen needs (the rest deferred)."""
    utility = account.utility
    deferred = utility.get_deferred_fields()
    try:
        policy = utility.billing_policy
    except BillingPolicy.DoesNotExist:
        policy = None
    if deferred or policy is None or policy.get_deferred_fields():
        fresh = BillingPolicy.objects.select_related("utility").filter(utility_id=utility.pk)
        policy = fresh.first() or policy_for(utility)
        if deferred:
            utility = policy.utility
    return utility, policy


def runout_project(
    *,
    account: ConsumerAccount,
    now: datetime,
    balance: Decimal,
    pace: Pace,
) -> RunoutForecast:
    """The calendar-aware run-out of a prepaid account spending at `pace` from `now`.

    1. The disconnection level: the automatic allowance (BillingPolicy.emergency_credit) when
       emergency credit is not on request; a taken, active EmergencyCredit's amount until its
       repay_by (then the allowance again).
    2. Walk the pace forward: the balance reaches zero (credit_runs_out_at), then the level
       (credit_exhausted_at).
    3. The first moment relay may disconnect from then (billing.relay.disconnect_allowed_from:
       friendly night, weekend, holidays, staff's no-disconnection days): disconnect_earliest;
       what is used meanwhile is the credit friendly hours lend.
    4. To top up by then: the spend from now to runout_cover_days past it, less what is
       available (the balance and the automatic allowance: a top-up repays a taken credit),
       rounded up to the minor unit, at least the utility's minimum top-up.
    5. On request and not taken: when the disconnection would be if the credit were taken as
       soon as it may be (the balance down to its amount), repaid within emergency_credit_days.
    """
    utility, policy = _full_context(account)
    minor = utility.currency_minor_unit
    allowance = Decimal(0) if policy.emergency_credit_on_request else policy.emergency_credit
    # The credit in force as relay reads it (billing.relay.emergency_credit_limit): only where it
    # is taken on request, which spares the other utilities' balance screens the read.
    taken = (
        emergency_credit_in_force(account_id=account.pk, at=now)
        if policy.emergency_credit_on_request
        else None
    )
    credit, repay_by = (taken.amount, taken.repay_by) if taken else (Decimal(0), None)
    walk = _Walk(start=now, balance=balance, pace=pace, zone=utility.zone)
    forecast = RunoutForecast(
        as_of=now,
        balance=balance,
        level=-max(credit, allowance),
        credit_runs_out_at=walk.reaches(Decimal(0)),
        credit_exhausted_at=_exhausted_at(
            walk, credit=credit, repay_by=repay_by, allowance=allowance
        ),
        disconnect_earliest=None,
        friendly_credit=None,
        topup_amount=None,
        cover_days=policy.runout_cover_days,
        taken_credit=(credit, repay_by) if credit > 0 else None,
    )
    exhausted = forecast.credit_exhausted_at
    if exhausted is None:
        return forecast
    disconnect = _allowed_from(utility=utility, policy=policy, moment=exhausted)
    if disconnect is None:
        return forecast
    forecast.disconnect_earliest = disconnect
    forecast.friendly_credit = walk.spent(disconnect) - walk.spent(exhausted)
    forecast.reasons, forecast.holidays = _why_later(
        utility=utility, policy=policy, exhausted=exhausted, disconnect=disconnect
    )
    needed = walk.spent(disconnect + timedelta(days=policy.runout_cover_days))
    forecast.topup_amount = max(_ceil(needed - (balance + allowance), minor), utility.min_topup)
    if policy.emergency_credit_on_request and policy.emergency_credit > 0 and taken is None:
        takes_at = walk.reaches(policy.emergency_credit)
        fee = policy.emergency_credit_fee
        # Taken now, it must lift the balance above its level (affordability's "not enough").
        if takes_at is not None and walk.balance_at(takes_at) - fee > -policy.emergency_credit:
            due = emergency_credit_repay_by(utility=utility, policy=policy, taken_at=takes_at)
            # Its fee is posted when it is taken, before the balance reaches the new level.
            with_fee = _Walk(start=now, balance=balance - fee, pace=pace, zone=walk.zone)
            later = _exhausted_at(
                with_fee, credit=policy.emergency_credit, repay_by=due, allowance=Decimal(0)
            )
            forecast.offer = {
                "amount": policy.emergency_credit,
                "fee": fee,
                "available_from": takes_at,
                "repay_by": due,
                "disconnect_earliest": None
                if later is None
                else _allowed_from(utility=utility, policy=policy, moment=later),
            }
    return forecast


def runout_as_dict(forecast: RunoutForecast, *, utility: Utility) -> dict:
    """The forecast as the API gives it: moments in the utility's zone with their offset, amounts
    in the currency's decimals."""
    zone, minor = utility.zone, utility.currency_minor_unit

    def local(moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(zone)

    def money(amount: Decimal | None) -> str | None:
        return None if amount is None else money_digits(amount, minor_unit=minor)

    offer = forecast.offer
    return {
        "timezone": utility.timezone,
        "disconnection_level": money(forecast.level),
        "credit_runs_out_at": local(forecast.credit_runs_out_at),
        "credit_exhausted_at": local(forecast.credit_exhausted_at),
        "disconnect_earliest": local(forecast.disconnect_earliest),
        "reasons": forecast.reasons,
        "holidays": [{"date": day, "name": name} for day, name in forecast.holidays],
        "friendly_credit": money(forecast.friendly_credit),
        "top_up_by": local(forecast.disconnect_earliest),
        "topup_amount": money(forecast.topup_amount),
        "cover_days": forecast.cover_days,
        "emergency_credit_taken": None
        if forecast.taken_credit is None
        else {
            "amount": money(forecast.taken_credit[0]),
            "repay_by": local(forecast.taken_credit[1]),
        },
        "emergency_credit_offer": None
        if offer is None
        else {
            "amount": money(offer["amount"]),
            "fee": money(offer["fee"]),
            "available_from": local(offer["available_from"]),
            "repay_by": local(offer["repay_by"]),
            "disconnect_earliest": local(offer["disconnect_earliest"]),
        },
    }


def runout_forecast(*, account: ConsumerAccount, now: datetime | None = None) -> dict:
    """The forecast endpoint's answer: the balance screen's pace and the run-out block
    (billing.selectors.balance_summary computes both, once). Refused for a postpaid account
    (its supply is not cut when a balance runs out), a closed one, and one with no charges yet
    to take a pace from."""
    from billing import selectors

    now = now or timezone.now()
    summary = selectors.balance_summary(account=account, now=now)
    if summary["payment_mode"] != "prepaid":
        raise Conflict(
            "A postpaid account is billed monthly: there is no balance to run out.",
            code="not_prepaid",
        )
    if account.status == ConsumerAccount.Status.CLOSED:
        raise Conflict("This consumer account is closed.", code="account_closed")
    if summary["runout"] is None:
        raise Conflict(
            "There is no usage yet to project from: the forecast starts after the first charges.",
            code="no_usage_history",
        )
    return {
        "account": summary["account"],
        "consumer_id": summary["consumer_id"],
        "currency": summary["currency"],
        "as_of": now.astimezone(account.utility.zone),
        "balance": summary["balance"],
        "weekday_daily_spend": summary["weekday_daily_spend"],
        "weekend_daily_spend": summary["weekend_daily_spend"],
        **summary["runout"],
    }
