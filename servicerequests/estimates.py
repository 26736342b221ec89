"""Paying a cost estimate through the top-up payment flow (billing.payments), without touching the
prepaid balance.

The payment is a TopUp with purpose "estimate" on the request's consumer account (topup_start:
the same hosted checkout and signed webhook as any top-up). When the gateway confirms it, billing
credits it and does nothing else (no debt recovery, no bills, no reconnection, no top-up alert);
the sync here (a beat task every minute) then debits the same amount as a SERVICE_CHARGE with the
ledger key `estimate:<request id>`, so the balance is unchanged and the statement shows both
movements. The request becomes paid, and its clock starts, at the top-up's `paid_at`: the moment
the money was paid, however late the sync runs.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from billing.ledger import ledger_post
from billing.models import LedgerEntry, TopUp
from billing.payments import topup_start
from core.errors import Conflict
from servicerequests import deadlines
from servicerequests.models import ServiceRequest
from servicerequests.services import _locked, transition_apply

logger = logging.getLogger(__name__)
S = ServiceRequest.Status


def _checkout_open(topup: TopUp) -> bool:
    """Pending and its hosted page still takes payment (as billing.payments.payment_link_pay
    resumes one): past its validity, reconciliation expires it and a new checkout is started."""
    return topup.status == TopUp.Status.PENDING and topup.checkout_valid_until > timezone.now()


def estimate_pay_start(*, request: ServiceRequest, user: User) -> tuple[TopUp, str, bool]:
    """Start (or resume) the estimate's payment. Returns the top-up, the checkout URL, and whether
    it is new: calling again while a payment is pending returns that payment, so retries are safe."""
    with transaction.atomic():
        request = _locked(request.pk)
        if request.status != S.ESTIMATE_ISSUED:
            raise Conflict(
                "There is no estimate waiting for payment on this request.",
                code="estimate_not_payable",
                extra={"status": request.status},
            )
        topup = request.estimate_topup
        if topup is not None and _checkout_open(topup):
            return topup, topup.checkout_url, False
        if topup is not None and topup.status == TopUp.Status.SUCCEEDED:
            raise Conflict(
                "This estimate is paid; the request is being updated.", code="estimate_paid"
            )
        topup, url = topup_start(
            account=request.account,
            amount=request.estimate_amount,
            channel=TopUp.Channel.APP,
            user=user,
            purpose=TopUp.Purpose.ESTIMATE,
        )
        request.estimate_topup = topup
        request.save(update_fields=["estimate_topup", "updated_at"])
    return topup, url, True


def estimate_payment_settle(*, request_id: int) -> bool:
    """The estimate's top-up succeeded: debit it back (`estimate:<id>`), mark the request paid at
    the payment's time and start its clock. Once only: the row lock and the ledger key see to it.
    A payment that arrives after the request was cancelled stays on the balance as a top-up."""
    with transaction.atomic():
        request = _locked(request_id)
        topup = request.estimate_topup
        if (
            request.status != S.ESTIMATE_ISSUED
            or topup is None
            or topup.status != TopUp.Status.SUCCEEDED
        ):
            return False
        ledger_post(
            account=request.account,
            kind=LedgerEntry.Kind.SERVICE_CHARGE,
            amount=-topup.amount,
            key=f"estimate:{request.pk}",
            description=f"Cost estimate, service request #{request.pk} ({request.type.name_en})",
            reason=request.estimate_note,
            meta={"service_request": request.pk, "topup": str(topup.pk)},
        )
        request.paid_at = topup.paid_at
        request.save(update_fields=["paid_at"])
        transition_apply(request, S.PAID, text=f"Receipt {topup.receipt_number}", at=topup.paid_at)
        deadlines.clock_start(request=request, at=topup.paid_at)
    return True


def estimate_payments_sync() -> int:
    """Beat: settle every estimate whose payment has succeeded. Returns how many were settled."""
    ids = ServiceRequest.objects.filter(
        status=S.ESTIMATE_ISSUED, estimate_topup__status=TopUp.Status.SUCCEEDED
    ).values_list("pk", flat=True)
    settled = 0
    for request_id in list(ids):
        try:
            settled += estimate_payment_settle(request_id=request_id)
        except Exception:  # one bad row must not stop the others; it is retried next run
            logger.exception("service request %s: estimate payment not settled", request_id)
    return settled
