"""Pages a consumer's browser opens: the simulated gateway's checkout and the call-centre payment link."""

from __future__ import annotations

from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from billing import payments
from billing.models import TopUp
from core.errors import DomainError


def _masked_name(name: str) -> str:
    return " ".join(w[0] + "*" * (len(w) - 1) for w in name.split())


@require_http_methods(["GET", "POST"])
def simulated_checkout(request, reference: str):
    """The simulated gateway's hosted page. Paying sends the signed webhook, as a real gateway does."""
    from billing.tasks import simulated_gateway_notify

    topup = (
        TopUp.objects.select_related("account__utility")
        .filter(gateway="simulated", gateway_reference=reference)
        .first()
    )
    if topup is None:
        return render(
            request,
            "billing/message.html",
            {"title": "Payment not found", "text": "This payment page does not exist."},
            status=404,
        )
    if request.method == "POST" and topup.status == TopUp.Status.PENDING:
        succeeded = request.POST.get("outcome") == "pay"
        simulated_gateway_notify.delay(reference, succeeded)
        return render(
            request,
            "billing/message.html",
            {
                "title": "Payment accepted" if succeeded else "Payment cancelled",
                "text": "Your balance is updated in a few seconds."
                if succeeded
                else "Nothing was charged.",
                "topup": topup,
            },
        )
    return render(
        request, "billing/checkout.html", {"topup": topup, "name": _masked_name(topup.account.name)}
    )


@require_http_methods(["GET", "POST"])
def payment_link(request, token: str):
    try:
        link = payments.payment_link_open(token=token)
        if request.method == "POST":
            return HttpResponseRedirect(payments.payment_link_pay(token=token))
    except DomainError as exc:
        return render(
            request,
            "billing/message.html",
            {"title": "Payment link", "text": exc.message},
            status=exc.status_code,
        )
    return render(
        request, "billing/link.html", {"link": link, "name": _masked_name(link.account.name)}
    )
