"""Emergency credit in the app: what it gives and costs, when it must be repaid, and taking it
(billing.affordability; docs/affordability.md)."""

from __future__ import annotations

from datetime import datetime

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_get_for_user
from billing import affordability, payments
from billing.models import EmergencyCredit
from core.money import money_digits
from core.schema import id_converter_register, idempotency_key_header, refuses

id_converter_register()

REASONS = [
    affordability.CLOSED,
    affordability.POSTPAID,
    affordability.NOT_OFFERED,
    affordability.IN_USE,
    affordability.NOT_NEEDED,
    affordability.NOT_ENOUGH,
]


class CreditInUseSerializer(serializers.Serializer):
    amount = serializers.CharField(help_text="In the currency's decimals.")
    fee = serializers.CharField()
    taken_at = serializers.DateTimeField(help_text="Local time with its offset.")
    repay_by = serializers.DateTimeField(
        allow_null=True,
        help_text="Local time with its offset; null: repaid by the next top-up, with no date.",
    )


class EmergencyCreditOfferSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    consumer_id = serializers.CharField()
    currency = serializers.CharField()
    timezone = serializers.CharField(help_text="The utility's zone, in which times are given.")
    offered = serializers.BooleanField(
        help_text="The utility offers emergency credit to take in the app."
    )
    available = serializers.BooleanField(help_text="It may be taken now.")
    reason = serializers.ChoiceField(
        choices=REASONS,
        allow_null=True,
        help_text="Why it cannot be taken now; null when it can.",
    )
    amount = serializers.CharField(
        help_text="How far below zero the balance may go once taken, in the currency's decimals."
    )
    fee = serializers.CharField(help_text="What taking it costs (0: free), debited when taken.")
    repay_within_days = serializers.IntegerField(
        allow_null=True, help_text="Null: repaid by the next top-up, with no date."
    )
    repay_by = serializers.DateTimeField(
        allow_null=True,
        help_text="If taken now: when it must be repaid (local time with its offset); past it, "
        "unpaid, the supply is cut at the next allowed time.",
    )
    balance = serializers.CharField()
    in_use = CreditInUseSerializer(
        allow_null=True, help_text="The credit taken and not yet repaid, if any."
    )


def _local(moment: datetime | None, zone) -> str | None:
    return None if moment is None else moment.astimezone(zone).isoformat(timespec="seconds")


def _answer(offer: affordability.EmergencyCreditOffer) -> dict:
    account, policy = offer.account, offer.policy
    utility = account.utility
    zone, minor = utility.zone, utility.currency_minor_unit
    credit: EmergencyCredit | None = offer.in_use
    return {
        "account": account.pk,
        "consumer_id": account.consumer_id,
        "currency": utility.currency,
        "timezone": utility.timezone,
        "offered": policy.emergency_credit_on_request and policy.emergency_credit > 0,
        "available": offer.available,
        "reason": offer.reason,
        "amount": money_digits(offer.amount, minor_unit=minor),
        "fee": money_digits(offer.fee, minor_unit=minor),
        "repay_within_days": policy.emergency_credit_days,
        "repay_by": _local(offer.repay_by, zone),
        "balance": money_digits(offer.balance, minor_unit=minor),
        "in_use": None
        if credit is None
        else {
            "amount": money_digits(credit.amount, minor_unit=minor),
            "fee": money_digits(credit.fee, minor_unit=minor),
            "taken_at": _local(credit.taken_at, zone),
            "repay_by": _local(credit.repay_by, zone),
        },
    }


class EmergencyCreditApi(APIView):
    @extend_schema(
        responses=EmergencyCreditOfferSerializer,
        summary="Emergency credit: whether it can be taken now, what it gives and costs, when "
        "it must be repaid",
        description="`reason` says why it cannot be taken now: " + ", ".join(REASONS) + ".",
    )
    def get(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id)
        return Response(_answer(affordability.emergency_credit_offer(account=account)))

    @extend_schema(
        request=None,
        parameters=[
            idempotency_key_header(
                "One per credit the user means: a retry sends the same one and is "
                "answered as the credit is now."
            )
        ],
        responses={201: EmergencyCreditOfferSerializer},
        summary="Take emergency credit",
        description=(
            "The holder, or a share allowed to pay. The answer is the emergency credit as it is "
            "now, with `in_use` set. Refused, with nothing written: 409 "
            + ", ".join(REASONS)
            + " (the same codes as `reason`); 403 share_not_allowed; 400 "
            "idempotency_key_required, idempotency_key_reused."
        ),
    )
    @refuses(409)
    def post(self, request, account_id: int):
        account = account_get_for_user(
            user=request.user, account_id=account_id, paying=True, must_view=True
        )

        def produce():
            affordability.emergency_credit_take(account=account, user=request.user)
            return 201, _answer(affordability.emergency_credit_offer(account=account))

        def replay(code: int, first: dict):
            return code, _answer(affordability.emergency_credit_offer(account=account))

        code, body = payments.idempotent(
            user=request.user,
            scope=f"emergency_credit:{account.pk}",
            key=request.headers.get("Idempotency-Key", ""),
            fingerprint=payments.request_fingerprint({"account": account.pk}),
            produce=produce,
            replay=replay,
        )
        return Response(body, status=code)


urlpatterns = [
    path(
        "accounts/<id:account_id>/emergency-credit/",
        EmergencyCreditApi.as_view(),
        name="account-emergency-credit",
    ),
]
