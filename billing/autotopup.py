"""Automatic top-ups from a saved card (issue 18; docs/auto-topup.md).

A consumer saves a card with the gateway (we keep only its reusable reference, brand, last four
digits and expiry) and sets a rule on an account: top up `amount` when the balance falls to
`threshold`, or on a weekly or monthly schedule at a local time; never more than `monthly_cap` in
one local month. Each firing is an AutoTopUpRun, charged once however often it is retried (its id
is the gateway's idempotency key), then succeeded (credited through payments.topup_confirm),
failed and reported, or skipped (cap reached, rule or access ended, policy off).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, User
from accounts.selectors import accounts_for_user
from billing import gateway as gateways
from billing.models import AutoTopUp, AutoTopUpRun, Balance, PaymentMethod, TopUp
from billing.payments import TOPUP_ABSOLUTE_MAX, topup_amount_check, topup_confirm
from billing.relay import policy_for
from billing.selectors import _is_postpaid
from core.errors import Conflict, DomainError, NotFound, PermissionDenied
from core.money import minor_unit_exponent, money_parse

logger = logging.getLogger(__name__)

# A transient failure is charged again after 1, 5 and 30 minutes; the fourth failure is final.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
# A claimed run is its worker's for this long: a worker that dies mid-charge leaves it due again
# (auto_topups_due re-queues it), and the same idempotency key makes the retry charge nothing new.
CHARGE_LEASE = timedelta(minutes=2)
DUE_BATCH = 200
# How far ahead a schedule may start: a standing order, not a reminder for next decade.
SCHEDULE_START_WITHIN = timedelta(days=366)
OPEN = (AutoTopUpRun.Status.PENDING, AutoTopUpRun.Status.RETRYING)


# --- Saved cards ----------------------------------------------------------------------------------


def payment_methods_for_user(*, user: User):
    return PaymentMethod.objects.filter(user=user, removed_at__isnull=True)


def payment_method_save(*, user: User, gateway_token: str) -> tuple[PaymentMethod, bool]:
    """Trade the app's single-use gateway token for a saved card of `user`; returns it and whether
    it is new. The same token again (a retry after a lost answer) returns the same card; a token
    another user attached, or an unknown one, is refused."""
    gateway = gateways.gateway_get()
    try:
        card = gateway.payment_method_attach(token=gateway_token)
    except gateways.PermanentGatewayError:
        raise DomainError.for_field(
            "gateway_token",
            "This card token is unknown or used; enter the card again.",
            code="invalid_gateway_token",
        ) from None
    except gateways.TransientGatewayError:
        raise Conflict(
            "The payment gateway did not answer; try again in a minute.",
            code="gateway_unavailable",
        ) from None
    try:
        with transaction.atomic():
            method, created = PaymentMethod.objects.get_or_create(
                gateway=gateway.name,
                reference=card.reference,
                defaults={
                    "user": user,
                    "brand": card.brand,
                    "last4": card.last4,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                },
            )
    except IntegrityError:  # the same token posted twice at once: the other request saved it
        method, created = (
            PaymentMethod.objects.get(gateway=gateway.name, reference=card.reference),
            False,
        )
    if method.user_id != user.pk or method.removed_at is not None:
        raise DomainError.for_field(
            "gateway_token",
            "This card token is unknown or used; enter the card again.",
            code="invalid_gateway_token",
        )
    return method, created


def payment_method_remove(*, user: User, method_id: int) -> None:
    with transaction.atomic():
        # Locked as auto_topup_create locks it: a rule being set with this card at the same moment
        # either commits first (and this refuses) or finds the card removed.
        method = (
            payment_methods_for_user(user=user).select_for_update().filter(pk=method_id).first()
        )
        if method is None:
            raise NotFound("You have no such saved card.", code="payment_method_not_found")
        if AutoTopUp.objects.filter(payment_method=method, is_active=True).exists():
            raise Conflict(
                "An automatic top-up pays with this card: change or delete it first.",
                code="payment_method_in_use",
            )
        method.removed_at = timezone.now()
        method.save(update_fields=["removed_at"])


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


# --- Firing ---------------------------------------------------------------------------------------


def _run_start(*, rule: AutoTopUp, occurrence: str, now: datetime) -> AutoTopUpRun | None:
    """Create the run (once per occurrence, the unique auto_topup_run_once) and queue its charge
    after commit. The run is due at once, so the beat also finds it if the queued task is lost."""
    from billing.tasks import auto_topup_charge

    try:
        with transaction.atomic():
            run = AutoTopUpRun.objects.create(
                rule=rule,
                occurrence=occurrence,
                amount=rule.amount,
                created_at=now,
                next_attempt_at=now,
            )
    except IntegrityError:
        return None
    transaction.on_commit(lambda: auto_topup_charge.delay(str(run.pk)))
    return run


def auto_topups_on_balance(*, account: ConsumerAccount, balance: Decimal) -> AutoTopUpRun | None:
    """After the balance moved (billing.services.account_balance_changed, prepaid): fire the
    account's balance rule once per fall to its threshold, re-arm it once above.

    1. Lock the rule row. The race: two charging batches cross the threshold at once and both
       call this; the second waits here, then finds the rule disarmed and fires nothing.
    2. Read the balance again under the lock: the caller's `balance` may be older than a top-up
       that committed meanwhile (this rule's own, re-arming it), and firing on it would charge
       twice for one fall. The caller's figure stands only for an account without a balance row.
    3. Armed and at or below the threshold: disarm, count the crossing, start a run
       ("crossing:N"), charged after commit. Above the threshold: re-arm.
    """
    if not AutoTopUp.objects.filter(
        account=account, trigger=AutoTopUp.Trigger.BALANCE, is_active=True
    ).exists():
        return None
    with transaction.atomic():
        rule = (
            AutoTopUp.objects.select_for_update()
            .filter(account=account, trigger=AutoTopUp.Trigger.BALANCE, is_active=True)
            .first()
        )
        if rule is None:
            return None
        current = Balance.objects.filter(account=account).values_list("amount", flat=True).first()
        current = balance if current is None else current
        if current > rule.threshold:
            if not rule.armed:
                rule.armed = True
                rule.save(update_fields=["armed"])
            return None
        if not rule.armed:
            return None
        rule.armed = False
        rule.crossings += 1
        rule.save(update_fields=["armed", "crossings"])
        return _run_start(rule=rule, occurrence=f"crossing:{rule.crossings}", now=timezone.now())


def auto_topups_due(*, now: datetime | None = None, limit: int = DUE_BATCH) -> list[str]:
    """The beat's work; returns the ids of the runs to charge now.

    1. Schedules due: active schedule rules whose next_run_at has come, oldest first, `limit` at
       a time (the partial index auto_topup_schedule_due). Each is claimed by a conditional update
       moving next_run_at to the following moment after now (a beat down for days fires once,
       not once per missed moment), and its run created for the local date it was due.
    2. Runs due: new runs, retries whose wait is over and runs a dead worker left (lease run
       out), oldest first, `limit` (the partial index auto_topup_run_due, open runs only).
    """
    now = now or timezone.now()
    rules = list(
        AutoTopUp.objects.filter(
            is_active=True, trigger=AutoTopUp.Trigger.SCHEDULE, next_run_at__lte=now
        )
        .select_related("account__utility")
        .order_by("next_run_at")[:limit]
    )
    for rule in rules:
        due = rule.next_run_at
        following = schedule_next(
            frequency=rule.frequency,
            weekday=rule.weekday,
            day_of_month=rule.day_of_month,
            at_time=rule.at_time,
            zone=rule.account.utility.zone,
            after=now,
        )
        with transaction.atomic():
            claimed = AutoTopUp.objects.filter(pk=rule.pk, is_active=True, next_run_at=due).update(
                next_run_at=following
            )
            if claimed:
                occurrence = due.astimezone(rule.account.utility.zone).date().isoformat()
                _run_start(rule=rule, occurrence=occurrence, now=now)
    return [
        str(pk)
        for pk in AutoTopUpRun.objects.filter(status__in=OPEN, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    ]


# --- Charging a run -------------------------------------------------------------------------------


def _card_text(method: PaymentMethod) -> str:
    return f"{method.brand.upper()} ****{method.last4}"


def _refusal(*, rule: AutoTopUp) -> str:
    """Why a run of `rule` may not be charged now, checked at every attempt; "" if it may."""
    account = rule.account
    if not rule.is_active:
        return "rule_ended"
    if account.status == ConsumerAccount.Status.CLOSED:
        return "account_closed"
    if not policy_for(account.utility).auto_topup_enabled:
        return "auto_topup_unavailable"
    if _is_postpaid(account):
        return "account_postpaid"
    if not accounts_for_user(user=rule.user, paying=True).filter(pk=account.pk).exists():
        return "access_ended"  # moved out, or the holder took back the right to pay
    return ""


def auto_topup_charge(*, run_id: str, now: datetime | None = None) -> str:
    """Charge one run, at most once however often it is called; returns what became of it.

    1. Claim it with a conditional update (due, open, next_attempt_at as read → a lease ahead,
       attempts + 1): two workers given the same run, one charges and the other returns.
    2. Under the rule's lock, check again that it may be charged (_refusal: rule ended, access,
       policy, account), then the monthly cap: the local month's paid and in-flight runs plus this
       one over the cap → skipped, and one AUTO_TOPUP_CAP_REACHED alert per rule and month. The
       lock makes two runs of one rule decide one after the other. Passing, the run gets its
       pending TopUp (channel auto, paid by the rule's user).
    3. Charge the card outside any transaction, the run's id as the idempotency key: a retry, or
       a worker taking over a dead one's lease, gets the first charge's answer, never a second.
    4. Paid: topup_confirm credits it once (debt recovery, reconnection, TOPUP_RECEIVED), the run
       succeeds. Transient: retrying after RETRY_DELAYS (auto_topups_due charges it again), and
       failed after the last. Declined: failed at once. Failed: the TopUp failed, and an
       AUTO_TOPUP_FAILED alert to the rule's user.
    """
    now = now or timezone.now()
    seen = (
        AutoTopUpRun.objects.filter(pk=run_id, status__in=OPEN, next_attempt_at__lte=now)
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if seen is None:
        return "not_due"
    lease = now + CHARGE_LEASE
    if not AutoTopUpRun.objects.filter(pk=run_id, status__in=OPEN, next_attempt_at=seen).update(
        next_attempt_at=lease, attempts=F("attempts") + 1
    ):
        return "claimed_elsewhere"
    run = AutoTopUpRun.objects.select_related(
        "rule__account__utility", "rule__payment_method", "rule__user"
    ).get(pk=run_id)
    with transaction.atomic():
        rule = (
            AutoTopUp.objects.select_for_update()
            .select_related("account__utility", "payment_method", "user")
            .get(pk=run.rule_id)
        )
        refusal = _refusal(rule=rule)
        if refusal and refusal in {"account_closed", "access_ended", "account_postpaid"}:
            _rule_end(rule_id=rule.pk, reason=refusal)
        if refusal and run.topup_id is None:
            return _finish(run=run, status=AutoTopUpRun.Status.SKIPPED, error=refusal, now=now)
        if run.topup_id is None:
            start, end = month_bounds(zone=rule.account.utility.zone, moment=run.created_at)
            taken = AutoTopUpRun.objects.filter(
                COMMITTED, rule=rule, created_at__gte=start, created_at__lt=end
            ).exclude(pk=run.pk).aggregate(total=Sum("amount"))["total"] or Decimal(0)
            if taken + run.amount > rule.monthly_cap:
                _cap_alert(rule=rule, run=run, month=start.astimezone(rule.account.utility.zone))
                return _finish(
                    run=run, status=AutoTopUpRun.Status.SKIPPED, error="monthly_cap", now=now
                )
            run.topup = TopUp.objects.create(
                account=rule.account,
                amount=run.amount,
                currency=rule.account.utility.currency,
                channel=TopUp.Channel.AUTO,
                user=rule.user,
                gateway=rule.payment_method.gateway,
                created_at=now,
            )
            AutoTopUpRun.objects.filter(pk=run.pk).update(topup=run.topup)
    method = rule.payment_method
    if refusal:
        # A charge may have gone out on an earlier attempt (a worker lost after it): the run is
        # settled by what the gateway did with its key, never skipped over money taken.
        return _settle_by_gateway(run=run, rule=rule, lease=lease, now=now, skipped=refusal)
    try:
        charge = gateways.gateway_get(method.gateway).charge_saved(
            reference=method.reference,
            amount=run.amount,
            currency=run.topup.currency,
            idempotency_key=str(run.pk),
        )
    except gateways.TransientGatewayError as exc:
        if run.attempts <= len(RETRY_DELAYS):
            wait = RETRY_DELAYS[run.attempts - 1]
            AutoTopUpRun.objects.filter(pk=run.pk, status__in=OPEN, next_attempt_at=lease).update(
                status=AutoTopUpRun.Status.RETRYING,
                next_attempt_at=now + wait,
                error=str(exc)[:200],
            )
            logger.warning(
                "Automatic top-up run %s: attempt %d failed (%s); again in %s",
                run.pk,
                run.attempts,
                exc,
                wait,
            )
            return "retrying"
        # A timeout may follow a charge that went through: ask before reporting a failure.
        return _settle_by_gateway(run=run, rule=rule, lease=lease, now=now, error=str(exc))
    except gateways.PermanentGatewayError as exc:
        return _fail(run=run, rule=rule, error=str(exc), now=now)
    return _credit(run=run, reference=charge.reference, now=now)


def _credit(*, run: AutoTopUpRun, reference: str, now: datetime) -> str:
    """The card was charged: credit the run's top-up once (topup_confirm) and close the run."""
    with transaction.atomic():
        TopUp.objects.filter(pk=run.topup_id, gateway_reference="").update(
            gateway_reference=reference
        )
        topup_confirm(topup=TopUp.objects.get(pk=run.topup_id), paid_at=now)
        AutoTopUpRun.objects.filter(pk=run.pk, status__in=OPEN).update(
            status=AutoTopUpRun.Status.SUCCEEDED, finished_at=now, next_attempt_at=None, error=""
        )
    return AutoTopUpRun.Status.SUCCEEDED


def _settle_by_gateway(
    *,
    run: AutoTopUpRun,
    rule: AutoTopUp,
    lease: datetime,
    now: datetime,
    skipped: str = "",
    error: str = "",
) -> str:
    """A run whose charge may or may not have gone out: after the last transient failure, or one
    that may no longer be charged (`skipped`: its rule ended, the payer's access ended) though an
    earlier attempt may have charged it. The gateway is asked what it did with the run's key:
    charged → credited (the money was taken: it is the consumer's, docs/auto-topup.md); never
    charged → skipped, or failed and reported; the gateway not answering → asked again later,
    never reported as a failure that may have been a payment."""
    try:
        found = gateways.gateway_get(rule.payment_method.gateway).charge_find(
            idempotency_key=str(run.pk)
        )
    except gateways.GatewayError as exc:
        AutoTopUpRun.objects.filter(pk=run.pk, status__in=OPEN, next_attempt_at=lease).update(
            status=AutoTopUpRun.Status.RETRYING,
            next_attempt_at=now + RETRY_DELAYS[-1],
            error=f"outcome unknown: {exc}"[:200],
        )
        return "retrying"
    if found is not None and found.outcome == "succeeded":
        return _credit(run=run, reference=found.reference, now=now)
    if skipped:
        return _finish(run=run, status=AutoTopUpRun.Status.SKIPPED, error=skipped, now=now)
    return _fail(run=run, rule=rule, error=f"gave up: {error}", now=now)


def _finish(*, run: AutoTopUpRun, status: str, error: str, now: datetime) -> str:
    AutoTopUpRun.objects.filter(pk=run.pk, status__in=OPEN).update(
        status=status, finished_at=now, next_attempt_at=None, error=error[:200]
    )
    if run.topup_id:
        TopUp.objects.filter(pk=run.topup_id, status=TopUp.Status.PENDING).update(
            status=TopUp.Status.FAILED
        )
    return status


def _fail(*, run: AutoTopUpRun, rule: AutoTopUp, error: str, now: datetime) -> str:
    from notifications import categories
    from notifications.services import alert_create

    with transaction.atomic():
        status = _finish(run=run, status=AutoTopUpRun.Status.FAILED, error=error, now=now)
        account = rule.account
        alert_create(
            user=rule.user,
            category=categories.AUTO_TOPUP_FAILED,
            dedupe_key=f"auto_topup_failed:{run.pk}",
            context={
                "amount": run.amount,
                "consumer_id": account.consumer_id,
                "card": _card_text(rule.payment_method),
                "account_id": account.pk,
            },
            utility=account.utility,
        )
    logger.warning("Automatic top-up run %s failed: %s", run.pk, error)
    return status


def _cap_alert(*, rule: AutoTopUp, run: AutoTopUpRun, month: datetime) -> None:
    from notifications import categories
    from notifications.services import alert_create

    account = rule.account
    alert_create(
        user=rule.user,
        category=categories.AUTO_TOPUP_CAP_REACHED,
        dedupe_key=f"auto_topup_cap:{rule.pk}:{month:%Y-%m}",
        context={
            "amount": run.amount,
            "consumer_id": account.consumer_id,
            "cap": rule.monthly_cap,
            "account_id": account.pk,
        },
        utility=account.utility,
    )
