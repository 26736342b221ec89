"""Reconciliation with the gateway: every top-up pending longer than a few minutes is asked about
and settled (credited once through billing.payments.topup_confirm, failed, or expired), by the
beat and from the admin. docs/payments.md tells the whole journey."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from billing import gateway as gateways
from billing.models import TopUp
from billing.payments import topup_confirm
from core.money import money_text

logger = logging.getLogger(__name__)


def topups_reconcile(
    *,
    now: datetime | None = None,
    topup_ids: Iterable[str] | None = None,
    limit: int | None = None,
) -> Counter:
    """Settle pending top-ups whose webhook has not come by asking the gateway. Returns how many
    were `due` and what became of each: credited, already_credited, failed, expired, pending,
    unreachable, error, skipped (another worker had it), not_pending (admin choices).

    1. The work: pending top-ups whose reconcile_at has passed, oldest first, `limit` at a time,
       found through the partial index topup_pending_reconcile (pending rows only, however long
       the history); or, asked by staff, the chosen `topup_ids` still pending, due or not.
    2. Claim each with a conditional update that moves reconcile_at to the next check: of two
       workers given the same top-up, one asks the gateway and the other skips it.
    3. Ask the gateway, holding no lock while it answers, and settle (_topup_settle).
    4. An unreachable gateway ends the batch: the rest wait for the next run.
    """
    now = now or timezone.now()
    pending = TopUp.objects.filter(status=TopUp.Status.PENDING)
    counts: Counter = Counter()
    if topup_ids is None:
        rows = list(topups_due(now=now)[: limit or settings.PAYMENT_RECONCILE_BATCH])
    else:
        chosen = {str(pk) for pk in topup_ids}
        rows = list(
            pending.filter(pk__in=chosen).order_by("created_at").values_list("pk", "reconcile_at")
        )
        counts["not_pending"] = len(chosen) - len(rows)
    counts["due"] = len(rows)
    recheck = now + timedelta(minutes=settings.PAYMENT_RECONCILE_AFTER_MINUTES)
    for pk, seen in rows:
        if not pending.filter(pk=pk, reconcile_at=seen).update(reconcile_at=recheck):
            counts["skipped"] += 1
            continue
        topup = TopUp.objects.select_related("account__utility").get(pk=pk)
        outcome = _topup_settle(topup=topup, now=now)
        counts[outcome] += 1
        if outcome == "unreachable":
            break
    return counts


def topups_due(*, now: datetime) -> QuerySet:
    """(id, reconcile_at) of the pending top-ups due a check, oldest first: an index range scan
    of topup_pending_reconcile, which holds pending rows only."""
    return (
        TopUp.objects.filter(status=TopUp.Status.PENDING, reconcile_at__lte=now)
        .order_by("reconcile_at")
        .values_list("pk", "reconcile_at")
    )


def _topup_settle(*, topup: TopUp, now: datetime) -> str:
    """Ask the gateway about one claimed top-up and settle it as the answer says:
    paid → credited once; failed → failed; not paid (open, or never seen) and older than the
    checkout's validity → expired; still open → asked again at reconcile_at. Each change is a
    conditional update from pending, so a webhook settling it meanwhile wins and nothing moves back.
    """
    gateway = gateways.GATEWAYS.get(topup.gateway)
    if gateway is None:
        _topup_note(topup, f"gateway {topup.gateway!r} cannot be asked", stop=True)
        return "error"
    try:
        answer = gateway.payment_status(reference=topup.gateway_reference)
    except gateways.TransientGatewayError as exc:
        logger.warning("Reconciliation: gateway unreachable for top-up %s: %s", topup.pk, exc)
        if exc.retry_after and exc.retry_after > settings.PAYMENT_RECONCILE_AFTER_MINUTES * 60:
            topup.reconcile_at = now + timedelta(seconds=exc.retry_after)
            TopUp.objects.filter(pk=topup.pk, status=TopUp.Status.PENDING).update(
                reconcile_at=topup.reconcile_at
            )
        _topup_note(topup, str(exc))
        return "unreachable"
    except gateways.PermanentGatewayError as exc:
        # Asking again would be refused again: stop asking, and let staff see why.
        logger.error("Reconciliation: gateway refused the query for top-up %s: %s", topup.pk, exc)
        _topup_note(topup, str(exc), stop=True)
        return "error"
    pending = TopUp.objects.filter(pk=topup.pk, status=TopUp.Status.PENDING)
    if answer.status == "succeeded":
        if answer.amount != topup.amount or answer.currency != topup.currency:
            logger.error("Reconciliation: top-up %s paid another amount at the gateway", topup.pk)
            paid = money_text(
                answer.amount or 0,
                currency=answer.currency,
                minor_unit=topup.account.utility.currency_minor_unit,
            )
            _topup_note(topup, f"paid {paid} at the gateway: check by hand", stop=True)
            return "error"
        credited = topup_confirm(topup=topup, paid_at=answer.paid_at or now).credited
        return "credited" if credited else "already_credited"
    if answer.status == "failed":
        changed = pending.update(status=TopUp.Status.FAILED, reconcile_note="failed at the gateway")
        return "failed" if changed else "settled_meanwhile"
    valid_until = topup.checkout_valid_until
    seen = "never seen by the gateway" if answer.status == "unknown" else "not paid"
    if valid_until <= now:
        changed = pending.update(
            status=TopUp.Status.EXPIRED, reconcile_note=f"{seen}; checkout expired"
        )
        return "expired" if changed else "settled_meanwhile"
    _topup_note(topup, seen)
    return "pending"


def _topup_note(topup: TopUp, note: str, *, stop: bool = False) -> None:
    """Record what the gateway said (only if it changed); `stop` ends automatic checks: staff
    can still ask from the admin."""
    values: dict = {"reconcile_at": None} if stop else {}
    if topup.reconcile_note != note[:200]:
        values["reconcile_note"] = note[:200]
    if values:
        TopUp.objects.filter(pk=topup.pk, status=TopUp.Status.PENDING).update(**values)
