"""Automatic top-up runs: fired by a balance crossing or a schedule, charged once per run (its id
is the gateway's idempotency key), and settled by what the gateway did (docs/auto-topup.md)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import ConsumerAccount
from accounts.selectors import accounts_for_user
from billing import gateway as gateways
from billing.autotopup.rules import COMMITTED, OPEN, _rule_end, month_bounds, schedule_next
from billing.models import AutoTopUp, AutoTopUpRun, Balance, PaymentMethod, TopUp
from billing.payments import topup_confirm
from billing.relay import policy_for
from billing.selectors import _is_postpaid

logger = logging.getLogger(__name__)

# A transient failure is charged again after 1, 5 and 30 minutes; the fourth failure is final.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
# A claimed run is its worker's for this long: a worker that dies mid-charge leaves it due again
# (auto_topups_due re-queues it), and the same idempotency key makes the retry charge nothing new.
CHARGE_LEASE = timedelta(minutes=2)
DUE_BATCH = 200


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
