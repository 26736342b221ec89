"""Pages a consumer's browser opens: the simulated gateway's checkout and the call-centre payment
link; the simulated gateway's status API, which reconciliation asks as it would a real one; and its
card tokenisation endpoint, which the app calls as it would a real gateway's client SDK."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import gateway, payments
from billing.models import SimulatedPayment, TopUp
from core.errors import DomainError, error_body
from core.money import utility_money
from core.parsers import json_loads_bounded
from core.timebuckets import moment_text


def _masked_name(name: str) -> str:
    return " ".join(w[0] + "*" * (len(w) - 1) for w in name.split())


def _message(request, title: str, text: str, status: int = 200):
    return render(request, "billing/message.html", {"title": title, "text": text}, status=status)


@require_http_methods(["GET", "POST"])
def simulated_checkout(request, reference: str):
    """The simulated gateway's hosted page. Paying records the outcome in the gateway's books,
    which deliver it to our webhook until it is taken (billing.gateway)."""
    topup = (
        TopUp.objects.select_related("account__utility")
        .filter(gateway="simulated", gateway_reference=reference)
        .first()
    )
    payment = SimulatedPayment.objects.filter(reference=reference).first()
    if topup is None or payment is None:
        return _message(request, "Payment not found", "This payment page does not exist.", 404)
    utility = topup.account.utility
    amount = utility_money(payment.amount, utility)
    if request.method == "POST" and not payment.outcome:
        try:
            payment = gateway.simulated_pay(
                reference=reference, succeeded=request.POST.get("outcome") == "pay"
            )
        except DomainError as exc:
            return _message(request, "Payment page expired", exc.message, exc.status_code)
        if payment.outcome == SimulatedPayment.Outcome.SUCCEEDED:
            return _message(
                request,
                "Payment accepted",
                f"{amount} paid to {utility.name}. Your balance is updated within a minute.",
            )
        return _message(request, "Payment cancelled", "Nothing was charged.")
    if payment.outcome == SimulatedPayment.Outcome.SUCCEEDED:
        return _message(request, "Already paid", f"{amount} was paid on this page.")
    if payment.outcome == SimulatedPayment.Outcome.FAILED:
        return _message(request, "Payment cancelled", "This payment was cancelled.")
    if payment.expires_at <= timezone.now():
        return _message(
            request,
            "Payment page expired",
            "This payment page has expired. Nothing was charged.",
            410,
        )
    return render(
        request,
        "billing/checkout.html",
        {"topup": topup, "amount": amount, "name": _masked_name(topup.account.name)},
    )


@require_GET
def simulated_status(request, reference: str):
    """The simulated gateway's status API: `Authorization: Bearer <PAYMENT_GATEWAY_API_KEY>`;
    404 when it never saw the reference."""
    header = request.headers.get("Authorization", "")
    expected = f"Bearer {settings.PAYMENT_GATEWAY_API_KEY}"
    if not hmac.compare_digest(header.encode(), expected.encode()):
        return JsonResponse({"error": "unauthorized"}, status=401)
    answer = gateway.simulated_status(reference=reference)
    if answer is None:
        return JsonResponse({"error": "unknown", "reference": reference}, status=404)
    return JsonResponse(answer)


@require_http_methods(["GET", "POST"])
def payment_link(request, token: str):
    try:
        link = payments.payment_link_open(token=token)
        if request.method == "POST":
            return HttpResponseRedirect(payments.payment_link_pay(token=token))
    except DomainError as exc:
        return _message(request, "Payment link", exc.message, exc.status_code)
    return render(
        request,
        "billing/link.html",
        {
            "link": link,
            "amount": utility_money(link.amount, link.account.utility),
            "valid_until": moment_text(link.expires_at, link.account.utility.zone),
            "name": _masked_name(link.account.name),
        },
    )


@csrf_exempt  # called by the app, not a browser form: no cookie session to forge a request with
@require_POST
def simulated_tokens(request):
    """The simulated gateway's tokenisation, as a real gateway's client SDK posts the card to the
    gateway and never to the merchant: JSON (or a form) with number, exp_month, exp_year and cvc;
    201 with a single-use `token` the app gives our API (POST /api/v1/payment-methods/), or 400
    with the gateway's code (invalid_number, invalid_expiry, invalid_cvc)."""
    try:
        if request.content_type == "application/json":
            data = json_loads_bounded(request.body)
            if not isinstance(data, dict):
                raise DomainError("Send a JSON object.", code="invalid")
        else:
            data = request.POST
        card = gateway.simulated_card_tokenise(
            number=data.get("number"),
            exp_month=data.get("exp_month"),
            exp_year=data.get("exp_year"),
            cvc=data.get("cvc"),
        )
    except DomainError as exc:
        return JsonResponse(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
    return JsonResponse(
        {
            "token": card.single_use_token,
            "brand": card.brand,
            "last4": card.last4,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
        },
        status=201,
    )
