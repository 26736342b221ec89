"""Paying for someone else: top up any account by its consumer id after seeing its holder's
masked name, without linking it. See docs/sharing.md."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import shares
from billing import payfor, payments
from billing.apis import AMOUNT_HELP, AmountField, AmountInput, TopUpSerializer, _money
from billing.models import TopUp
from billing.relay import policy_for
from core.schema import idempotency_key_header, refuses


class PayeeSerializer(serializers.Serializer):
    utility = serializers.CharField(source="utility.code")
    utility_name = serializers.CharField(source="utility.name")
    consumer_id = serializers.CharField()
    holder = serializers.SerializerMethodField(
        help_text="The account holder's name, masked: the first letter of each word, so the "
        "payer can check it is the account they mean."
    )
    currency = serializers.CharField(source="utility.currency")
    min_topup = serializers.SerializerMethodField(help_text="The smallest top-up taken.")
    max_topup = serializers.SerializerMethodField(
        help_text="The largest single top-up taken; null: no cap."
    )

    def get_holder(self, account) -> str:
        return shares.name_mask(account.name)

    def get_min_topup(self, account) -> str:
        return _money(account.utility.min_topup, account)

    def get_max_topup(self, account) -> str | None:
        cap = policy_for(account.utility).max_topup
        return None if cap is None else _money(cap, account)


PAYEE_REFUSALS = (
    "Each lookup, found or not, counts against the caller's hourly budget: past it, "
    "`too_many_lookups` (429, Retry-After). `unknown_consumer` (404), `account_closed` and "
    "`pay_for_others_unavailable` (409: the utility takes top-ups only from linked users)."
)


class PayeeApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("utility", str, required=True, description="The utility's code."),
            OpenApiParameter("consumer_id", str, required=True),
        ],
        responses=PayeeSerializer,
        summary="Find an account to pay for: its holder's masked name and the top-up limits",
        description="No balance and no address are shown. " + PAYEE_REFUSALS,
    )
    @refuses(404, 409, 429)
    def get(self, request):
        account = payfor.payee_get(
            user=request.user,
            utility_code=request.query_params.get("utility", ""),
            consumer_id=request.query_params.get("consumer_id", ""),
        )
        return Response(PayeeSerializer(account).data)


class PayerTopUpSerializer(TopUpSerializer):
    utility = serializers.CharField(source="account.utility.code")
    consumer_id = serializers.CharField(source="account.consumer_id")


def _answer(topup: TopUp) -> dict:
    url = topup.checkout_url if topup.status == TopUp.Status.PENDING else None
    return {"topup": PayerTopUpSerializer(topup).data, "payment_url": url or None}


class PayForTopUpApi(APIView):
    class PayForInput(AmountInput):
        utility = serializers.SlugField(max_length=32)
        consumer_id = serializers.CharField(max_length=32)
        amount = AmountField(max_length=32, help_text=AMOUNT_HELP)

    @extend_schema(
        request=PayForInput,
        parameters=[
            idempotency_key_header("One per payment the user means: a retry sends the same one.")
        ],
        responses={
            201: inline_serializer(
                "PayForStarted",
                {
                    "topup": PayerTopUpSerializer(),
                    "payment_url": serializers.URLField(
                        allow_null=True,
                        help_text="The hosted payment page while the top-up is pending; "
                        "null once it is settled.",
                    ),
                },
            )
        },
        summary="Top up someone else's account: returns the hosted payment page",
        description=(
            "The payer links nothing and sees nothing of the account but this top-up; the "
            "account's holder and alert receivers are told when it is paid. A retry with the "
            "same Idempotency-Key and body answers the top-up as it is now. Amounts as on the "
            "account's own top-ups (`amount_below_minimum`, `amount_too_large`, …). "
            + PAYEE_REFUSALS
        ),
    )
    @refuses(404, 409, 429)
    def post(self, request):
        data = self.PayForInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        account = payfor.payee_get(
            user=request.user, utility_code=values["utility"], consumer_id=values["consumer_id"]
        )

        def produce():
            amount = payments.topup_amount_check(account=account, raw=values["amount"])
            topup, _url = payments.topup_start(
                account=account, amount=amount, channel=TopUp.Channel.APP, user=request.user
            )
            return 201, _answer(topup)

        def replay(code: int, first: dict):
            return code, _answer(
                payfor.payer_topup_get(user=request.user, topup_id=first["topup"]["id"])
            )

        code, body = payments.idempotent(
            user=request.user,
            scope="payfor",
            key=request.headers.get("Idempotency-Key", ""),
            fingerprint=payments.request_fingerprint({"account": account.pk, **values}),
            produce=produce,
            replay=replay,
        )
        return Response(body, status=code)


class PayForTopUpDetailApi(APIView):
    @extend_schema(
        responses=PayerTopUpSerializer,
        summary="A top-up I paid for someone else, with its receipt once paid (payer only)",
    )
    def get(self, request, topup_id: str):
        return Response(
            PayerTopUpSerializer(payfor.payer_topup_get(user=request.user, topup_id=topup_id)).data
        )


urlpatterns = [
    path("pay/accounts/", PayeeApi.as_view(), name="pay-account"),
    path("pay/topups/", PayForTopUpApi.as_view(), name="pay-topups"),
    path("pay/topups/<uuid:topup_id>/", PayForTopUpDetailApi.as_view(), name="pay-topup"),
]
