"""Automatic top-up rules: their input checked, their schedule's next run, and the local month's
total against its cap (docs/auto-topup.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, User
from billing.autotopup.cards import payment_methods_for_user
from billing.models import AutoTopUp, AutoTopUpRun
from billing.payments import TOPUP_ABSOLUTE_MAX, topup_amount_check
from billing.relay import policy_for
from billing.selectors import _is_postpaid
from core.errors import Conflict, DomainError, NotFound, PermissionDenied
from core.money import minor_unit_exponent, money_parse

# How far ahead a schedule may start: a standing order, not a reminder for next decade.
SCHEDULE_START_WITHIN = timedelta(days=366)
OPEN = (AutoTopUpRun.Status.PENDING, AutoTopUpRun.Status.RETRYING)

# --- Rules ----------------------------------------------------------------------------------------


@dataclass
class RuleInput:
    """A rule as the consumer sets it; on a change, the rule's values with the changes applied."""

    amount: object
    monthly_cap: object
    payment_method: int
    threshold: object = None
    frequency: str = ""
    weekday: int | None = None
    day_of_month: int | None = None
    at_time: time | None = None
    start_date: date | None = None


def schedule_next(
    *,
    frequency: str,
    weekday: int | None,
    day_of_month: int | None,
    at_time: time,
    zone,
    after: datetime,
    first_day: date | None = None,
) -> datetime:
    """The first scheduled moment after `after` (and on or after the local day `first_day`): the
    weekday or day of the month at the local `at_time`, in UTC. A local time that a daylight-saving
    change skips is read as zoneinfo reads it (the instant just after the change)."""
    day = after.astimezone(zone).date()
    if first_day is not None and first_day > day:
        day = first_day
    for _ in range(3):
        if frequency == AutoTopUp.Frequency.WEEKLY:
            day += timedelta(days=(weekday - day.weekday()) % 7)
        elif day.day > day_of_month:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=day_of_month)
        else:
            day = day.replace(day=day_of_month)
        moment = datetime.combine(day, at_time, zone).astimezone(UTC)
        if moment > after:
            return moment
        day += timedelta(days=1)
    raise AssertionError("a schedule always has a next moment within two periods")


def _checked(
    *, user: User, account: ConsumerAccount, trigger: str, data: RuleInput, now: datetime
) -> dict:
    """The rule's fields, checked as a whole; refuses (nothing written) with a code per problem."""
    if _is_postpaid(account):
        raise Conflict(
            "Automatic top-ups are for prepaid accounts; a postpaid account is billed.",
            code="account_postpaid",
        )
    if not policy_for(account.utility).auto_topup_enabled:
        raise Conflict(
            "Automatic top-ups are not offered by this utility.", code="auto_topup_unavailable"
        )
    utility = account.utility
    amount = topup_amount_check(account=account, raw=data.amount)
    cap = money_parse(
        data.monthly_cap,
        minor_unit=utility.currency_minor_unit,
        field="monthly_cap",
        max_major=TOPUP_ABSOLUTE_MAX,
    )
    if cap < amount:
        raise DomainError.for_field(
            "monthly_cap",
            "The monthly cap must be at least one top-up's amount.",
            code="cap_below_amount",
        )
    fields = {"amount": amount, "monthly_cap": cap, "threshold": None, "frequency": ""}
    fields |= {"weekday": None, "day_of_month": None, "at_time": None, "next_run_at": None}
    if trigger == AutoTopUp.Trigger.BALANCE:
        if data.threshold is None:
            raise DomainError.for_field(
                "threshold", "Say at which balance to top up.", code="threshold_required"
            )
        fields["threshold"] = _threshold_parse(data.threshold, utility=utility)
    else:
        weekly = data.frequency == AutoTopUp.Frequency.WEEKLY
        day = data.weekday if weekly else data.day_of_month
        if not data.frequency or data.at_time is None or day is None:
            raise DomainError(
                "A schedule needs frequency, at_time and weekday (weekly) or day_of_month "
                "(monthly).",
                code="schedule_incomplete",
            )
        today = now.astimezone(utility.zone).date()
        if data.start_date is not None and data.start_date < today:
            raise DomainError.for_field(
                "start_date", "The schedule cannot start in the past.", code="schedule_in_past"
            )
        if data.start_date is not None and data.start_date > today + SCHEDULE_START_WITHIN:
            # Also keeps the next-run arithmetic far from the calendar's end (9999-12-31).
            raise DomainError.for_field(
                "start_date",
                "The schedule must start within a year.",
                code="schedule_too_far",
            )
        fields |= {
            "frequency": data.frequency,
            "weekday": data.weekday if weekly else None,
            "day_of_month": None if weekly else data.day_of_month,
            "at_time": data.at_time.replace(second=0, microsecond=0),
        }
        fields["next_run_at"] = schedule_next(
            frequency=fields["frequency"],
            weekday=fields["weekday"],
            day_of_month=fields["day_of_month"],
            at_time=fields["at_time"],
            zone=utility.zone,
            after=now,
            first_day=data.start_date,
        )
    # Locked as payment_method_remove locks it: the card cannot be removed under the new rule.
    method = (
        payment_methods_for_user(user=user)
        .select_for_update()
        .filter(pk=data.payment_method)
        .first()
    )
    if method is None:
        raise NotFound("You have no such saved card.", code="payment_method_not_found")
    fields["payment_method"] = method
    return fields


def _threshold_parse(raw: object, *, utility) -> Decimal:
    """A balance level as amounts are read (money_parse), and zero too: "when it runs out"."""
    try:
        zero = not isinstance(raw, bool) and Decimal(str(raw).strip()) == 0
    except ArithmeticError:  # not a number: money_parse says so with its code
        zero = False
    if zero:
        return Decimal(0).quantize(minor_unit_exponent(utility.currency_minor_unit))
    return money_parse(
        raw, minor_unit=utility.currency_minor_unit, field="threshold", max_major=TOPUP_ABSOLUTE_MAX
    )


def _exists_refused() -> Conflict:
    return Conflict(
        "This account already has an automatic top-up of this kind: change that one.",
        code="auto_topup_exists",
    )


def auto_topup_create(
    *, user: User, account: ConsumerAccount, trigger: str, data: RuleInput
) -> AutoTopUp:
    """Set a rule on an account the user may pay for, with one of the user's own cards."""
    now = timezone.now()
    try:
        with transaction.atomic():
            fields = _checked(user=user, account=account, trigger=trigger, data=data, now=now)
            if AutoTopUp.objects.filter(account=account, trigger=trigger, is_active=True).exists():
                raise _exists_refused()
            return AutoTopUp.objects.create(
                account=account, user=user, trigger=trigger, created_at=now, **fields
            )
    except IntegrityError:  # two at once: the unique index one_active_auto_topup_per_trigger
        raise _exists_refused() from None


def auto_topups_for_account(*, account: ConsumerAccount):
    return (
        AutoTopUp.objects.filter(account=account, is_active=True)
        .select_related("account__utility", "payment_method")
        .order_by("trigger")
    )


def auto_topup_get(*, account: ConsumerAccount, rule_id: int) -> AutoTopUp:
    rule = auto_topups_for_account(account=account).filter(pk=rule_id).first()
    if rule is None:
        raise NotFound("This account has no such automatic top-up.", code="auto_topup_not_found")
    return rule


def auto_topup_update(
    *, user: User, account: ConsumerAccount, rule_id: int, changes: dict
) -> AutoTopUp:
    """Change a rule (its own user only): the rule's values with `changes` applied are checked as a
    new rule would be; a changed schedule gets its next moment again. The trigger stays."""
    with transaction.atomic():
        rule = auto_topup_get(account=account, rule_id=rule_id)
        rule = AutoTopUp.objects.select_for_update().get(pk=rule.pk)
        if rule.user_id != user.pk:
            raise PermissionDenied(
                "Only who set this automatic top-up can change it.", code="not_your_auto_topup"
            )
        current = RuleInput(
            amount=rule.amount,
            monthly_cap=rule.monthly_cap,
            payment_method=rule.payment_method_id,
            threshold=rule.threshold,
            frequency=rule.frequency,
            weekday=rule.weekday,
            day_of_month=rule.day_of_month,
            at_time=rule.at_time,
        )
        for name, value in changes.items():
            setattr(current, name, value)
        fields = _checked(
            user=user, account=account, trigger=rule.trigger, data=current, now=timezone.now()
        )
        schedule = ("frequency", "weekday", "day_of_month", "at_time", "start_date")
        if rule.trigger == AutoTopUp.Trigger.SCHEDULE and not set(schedule) & changes.keys():
            fields.pop("next_run_at")  # unchanged: keep the moment already due
        for name, value in fields.items():
            setattr(rule, name, value)
        rule.save()
    return auto_topup_get(account=account, rule_id=rule.pk)


def auto_topup_end(*, user: User, account: ConsumerAccount, rule_id: int) -> None:
    """End a rule: its own user, or the account's holder, who decides what is charged to it. A
    run not yet charged is skipped when its turn comes (the rule holds on every path)."""
    with transaction.atomic():
        rule = auto_topup_get(account=account, rule_id=rule_id)
        holder = AccountLink.objects.filter(
            account=account, user=user, unlinked_at__isnull=True, role=AccountLink.Role.HOLDER
        ).exists()
        if rule.user_id != user.pk and not holder:
            raise PermissionDenied(
                "Only who set this automatic top-up, or the account's holder, can end it.",
                code="not_your_auto_topup",
            )
        _rule_end(rule_id=rule.pk, reason="by_user")


def _rule_end(*, rule_id: int, reason: str) -> None:
    AutoTopUp.objects.filter(pk=rule_id, is_active=True).update(
        is_active=False, ended_at=timezone.now(), end_reason=reason, next_run_at=None
    )


def month_bounds(*, zone, moment: datetime) -> tuple[datetime, datetime]:
    """The local month holding `moment`, as UTC instants [start, end)."""
    first = moment.astimezone(zone).date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return (
        datetime.combine(first, time(0), zone).astimezone(UTC),
        datetime.combine(following, time(0), zone).astimezone(UTC),
    )


# What counts against the monthly cap: runs paid, and runs that passed the cap check and are being
# charged (they have their top-up). Skipped and failed runs took nothing.
COMMITTED = Q(status=AutoTopUpRun.Status.SUCCEEDED) | Q(status__in=OPEN, topup__isnull=False)


def month_totals(*, rules: list[AutoTopUp], now: datetime | None = None) -> dict[int, Decimal]:
    """Each rule's total for the current local month (one grouped query for an account's rules)."""
    now = now or timezone.now()
    if not rules:
        return {}
    start, end = month_bounds(zone=rules[0].account.utility.zone, moment=now)
    return dict(
        AutoTopUpRun.objects.filter(
            COMMITTED, rule__in=rules, created_at__gte=start, created_at__lt=end
        )
        .values("rule_id")
        .annotate(total=Sum("amount"))
        .values_list("rule_id", "total")
    )
