"""The run-out forecast that knows the calendar (billing.forecast; docs/forecast.md)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors
from billing.forecast import FRIENDLY_HOURS, HOLIDAY, WEEKEND, runout_forecast
from core.schema import id_converter_register, refuses

id_converter_register()

LOCAL = "Local time in the utility's zone, with its offset (2026-11-30T08:00:00+03:00)."


class RunoutHolidaySerializer(serializers.Serializer):
    date = serializers.DateField(help_text="A local day.")
    name = serializers.CharField(help_text="Staff's name for it, else the public holiday's.")


class RunoutTakenCreditSerializer(serializers.Serializer):
    amount = serializers.CharField(help_text="Lowers the disconnection level until repay_by.")
    repay_by = serializers.DateTimeField(allow_null=True, help_text=LOCAL)


class RunoutCreditOfferSerializer(serializers.Serializer):
    amount = serializers.CharField()
    fee = serializers.CharField()
    available_from = serializers.DateTimeField(
        help_text="When it may be taken: the balance down to its amount. " + LOCAL
    )
    repay_by = serializers.DateTimeField(
        allow_null=True, help_text="If taken then; null: repaid by the next top-up. " + LOCAL
    )
    disconnect_earliest = serializers.DateTimeField(
        allow_null=True, help_text="The earliest disconnection if it is taken. " + LOCAL
    )


class RunoutSerializer(serializers.Serializer):
    """Moments are null when the balance lasts past the projection's year."""

    timezone = serializers.CharField(help_text="The utility's IANA zone.")
    disconnection_level = serializers.CharField(
        help_text="The balance at which the supply may be cut: 0, or minus the automatic "
        "allowance or the taken emergency credit."
    )
    credit_runs_out_at = serializers.DateTimeField(
        allow_null=True, help_text="The balance reaches zero (now if it has). " + LOCAL
    )
    credit_exhausted_at = serializers.DateTimeField(
        allow_null=True, help_text="The balance reaches the disconnection level. " + LOCAL
    )
    disconnect_earliest = serializers.DateTimeField(
        allow_null=True,
        help_text="The first moment at or after exhaustion when a disconnection is allowed "
        "(not in friendly night hours, at weekends or on holidays). " + LOCAL,
    )
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=[FRIENDLY_HOURS, WEEKEND, HOLIDAY]),
        help_text="Why the disconnection comes after exhaustion.",
    )
    holidays = RunoutHolidaySerializer(many=True, help_text="The holidays it waits over.")
    friendly_credit = serializers.CharField(
        allow_null=True,
        help_text="What the household is projected to use between exhaustion and "
        "disconnect_earliest: the credit friendly hours lend.",
    )
    top_up_by = serializers.DateTimeField(
        allow_null=True, help_text="Top up before this (disconnect_earliest). " + LOCAL
    )
    topup_amount = serializers.CharField(
        allow_null=True,
        help_text="Enough to stay on cover_days past disconnect_earliest at the recent pace, "
        "rounded up to the currency's minor unit, at least the minimum top-up.",
    )
    cover_days = serializers.IntegerField(help_text="BillingPolicy.runout_cover_days.")
    emergency_credit_taken = RunoutTakenCreditSerializer(allow_null=True)
    emergency_credit_offer = RunoutCreditOfferSerializer(
        allow_null=True,
        help_text="Emergency credit on request, not taken: what taking it would change.",
    )


class RunoutForecastSerializer(RunoutSerializer):
    account = serializers.IntegerField()
    consumer_id = serializers.CharField()
    currency = serializers.CharField()
    as_of = serializers.DateTimeField(help_text=LOCAL)
    balance = serializers.CharField(help_text="In the currency's decimals.")
    weekday_daily_spend = serializers.CharField(help_text="The pace projected on weekdays.")
    weekend_daily_spend = serializers.CharField(help_text="The pace projected at weekends.")


class RunoutForecastApi(APIView):
    @extend_schema(
        responses=RunoutForecastSerializer,
        summary="Run-out forecast: the earliest disconnection and what to top up by then",
        description=(
            "From the last 28 local days' weekday and weekend pace, the balance and the "
            "disconnection level, and the utility's friendly hours, weekends and holidays. "
            "409 `not_prepaid` for a postpaid account, `account_closed` for a closed one, "
            "`no_usage_history` before the first charges."
        ),
    )
    @refuses(409)
    def get(self, request, account_id: int):
        account = selectors.balance_account_get(user=request.user, account_id=account_id)
        return Response(runout_forecast(account=account))


urlpatterns = [
    path(
        "accounts/<id:account_id>/forecast/", RunoutForecastApi.as_view(), name="account-forecast"
    ),
]
