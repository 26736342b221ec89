"""Saved cards and automatic top-ups (billing.autotopup; docs/auto-topup.md)."""

from __future__ import annotations

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_get_for_user
from billing import autotopup
from billing.apis import AMOUNT_HELP, AmountField
from billing.models import AutoTopUp
from core.money import money_digits
from core.schema import ID_MAX, id_converter_register, refuses

id_converter_register()

# --- Saved cards ----------------------------------------------------------------------------------


class PaymentMethodSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    brand = serializers.CharField(help_text="visa, mastercard, amex or card.")
    last4 = serializers.CharField(help_text="The card's last four digits: all we keep of it.")
    exp_month = serializers.IntegerField(allow_null=True)
    exp_year = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class PaymentMethodListApi(APIView):
    class SaveInput(serializers.Serializer):
        gateway_token = serializers.CharField(
            max_length=100,
            help_text="The single-use token the gateway's tokenisation answered (the simulated "
            "gateway: POST /pay/simulated/tokens/ with number, exp_month, exp_year, cvc). "
            "The card itself is never sent to this API.",
        )

    @extend_schema(responses=PaymentMethodSerializer(many=True), summary="Your saved cards")
    def get(self, request):
        methods = autotopup.payment_methods_for_user(user=request.user)
        return Response(PaymentMethodSerializer(methods, many=True).data)

    @extend_schema(
        request=SaveInput,
        responses={201: PaymentMethodSerializer, 200: PaymentMethodSerializer},
        summary="Save a card from a gateway token",
        description="201: saved; 200: this token was saved before (a retry answers the same "
        "card). Refused: invalid_gateway_token (unknown, or another user's).",
    )
    @refuses(409)
    def post(self, request):
        data = self.SaveInput(data=request.data)
        data.is_valid(raise_exception=True)
        method, created = autotopup.payment_method_save(
            user=request.user, gateway_token=data.validated_data["gateway_token"]
        )
        return Response(
            PaymentMethodSerializer(method).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PaymentMethodDetailApi(APIView):
    @extend_schema(
        responses={204: None},
        summary="Remove a saved card",
        description="Refused with payment_method_in_use (409) while an automatic top-up pays "
        "with it.",
    )
    @refuses(409)
    def delete(self, request, method_id: int):
        autotopup.payment_method_remove(user=request.user, method_id=method_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Rules ----------------------------------------------------------------------------------------

LEVEL_PATTERN = r"^\d{1,10}(\.\d{1,3})?$"


class RuleFields(serializers.Serializer):
    amount = AmountField(max_length=32, help_text=AMOUNT_HELP)
    monthly_cap = AmountField(
        max_length=32,
        help_text="The most automatic top-ups of this rule take in one local month; at least "
        "`amount`.",
    )
    payment_method = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, help_text="One of your saved cards."
    )
    threshold = serializers.RegexField(
        LEVEL_PATTERN,
        max_length=32,
        required=False,
        help_text='Balance trigger: top up when the balance is at or below this ("0": when it '
        "runs out).",
    )
    frequency = serializers.ChoiceField(choices=AutoTopUp.Frequency.values, required=False)
    weekday = serializers.IntegerField(
        min_value=0, max_value=6, required=False, help_text="Weekly: 0 = Monday … 6 = Sunday."
    )
    day_of_month = serializers.IntegerField(
        min_value=1, max_value=28, required=False, help_text="Monthly: 1 to 28."
    )
    at_time = serializers.TimeField(
        required=False, help_text="Schedule: local time in the utility's zone, HH:MM."
    )
    start_date = serializers.DateField(
        required=False,
        help_text="Schedule: the local day it starts (today or later); default today.",
    )

    def to_internal_value(self, data):
        # Amounts as JSON numbers are read as their text (billing.apis.TopUpInput does the same).
        if isinstance(data, dict):
            data = {
                **data,
                **{
                    name: str(data[name])
                    for name in ("amount", "monthly_cap", "threshold")
                    if name in data and not isinstance(data[name], str | None)
                },
            }
        return super().to_internal_value(data)


class RuleCreateInput(RuleFields):
    trigger = serializers.ChoiceField(choices=AutoTopUp.Trigger.values)


class RuleCardSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    brand = serializers.CharField()
    last4 = serializers.CharField()


class RuleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    trigger = serializers.ChoiceField(choices=AutoTopUp.Trigger.values)
    amount = serializers.CharField()
    currency = serializers.CharField()
    monthly_cap = serializers.CharField()
    month_total = serializers.CharField(
        help_text="Taken (or being charged) by this rule in the current local month."
    )
    cap_left = serializers.CharField(help_text="What the monthly cap still allows this month.")
    threshold = serializers.CharField(allow_null=True, help_text="Balance trigger.")
    armed = serializers.BooleanField(
        help_text="Balance trigger: false after it fired, until the balance is above the level."
    )
    frequency = serializers.CharField(allow_null=True)
    weekday = serializers.IntegerField(allow_null=True)
    day_of_month = serializers.IntegerField(allow_null=True)
    at_time = serializers.CharField(allow_null=True, help_text="Local HH:MM.")
    next_run_at = serializers.CharField(
        allow_null=True,
        help_text="Schedule: the next top-up, in the utility's zone with its offset.",
    )
    mine = serializers.BooleanField(help_text="Set by you, with your card.")
    payment_method = RuleCardSerializer(
        allow_null=True, help_text="Your card; null on a rule another user set."
    )
    created_at = serializers.CharField(help_text="In the utility's zone with its offset.")


def _rule_body(rule: AutoTopUp, *, user, totals: dict) -> dict:
    utility = rule.account.utility
    zone = utility.zone

    def money(value):
        return (
            None if value is None else money_digits(value, minor_unit=utility.currency_minor_unit)
        )

    total = totals.get(rule.pk, 0)
    mine = rule.user_id == user.pk
    method = rule.payment_method
    return {
        "id": rule.pk,
        "trigger": rule.trigger,
        "amount": money(rule.amount),
        "currency": utility.currency,
        "monthly_cap": money(rule.monthly_cap),
        "month_total": money(total),
        "cap_left": money(max(rule.monthly_cap - total, 0)),
        "threshold": money(rule.threshold),
        "armed": rule.armed,
        "frequency": rule.frequency or None,
        "weekday": rule.weekday,
        "day_of_month": rule.day_of_month,
        "at_time": rule.at_time.strftime("%H:%M") if rule.at_time else None,
        "next_run_at": rule.next_run_at.astimezone(zone).isoformat() if rule.next_run_at else None,
        "mine": mine,
        "payment_method": {"id": method.pk, "brand": method.brand, "last4": method.last4}
        if mine
        else None,
        "created_at": rule.created_at.astimezone(zone).isoformat(),
    }


def _rules_body(rules: list[AutoTopUp], *, user) -> list[dict]:
    totals = autotopup.month_totals(rules=rules, now=timezone.now())
    return [_rule_body(rule, user=user, totals=totals) for rule in rules]


REFUSALS = (
    "Refused, nothing written: amount_below_minimum, amount_too_large (the utility's max_topup), "
    "cap_below_amount, threshold_required, schedule_incomplete, schedule_in_past (400); "
    "payment_method_not_found (404: not one of your saved cards); auto_topup_exists (409: one "
    "active rule per trigger), auto_topup_unavailable (409: the utility's policy), "
    "account_postpaid, account_closed (409); share_not_allowed (403: a share not allowed to pay)."
)


class RuleListApi(APIView):
    @extend_schema(
        responses=RuleSerializer(many=True),
        summary="Automatic top-ups of an account",
        description="For the holder and shares allowed to pay.",
    )
    def get(self, request, account_id: int):
        account = account_get_for_user(
            user=request.user, account_id=account_id, paying=True, must_view=True
        )
        rules = list(autotopup.auto_topups_for_account(account=account))
        return Response(_rules_body(rules, user=request.user))

    @extend_schema(
        request=RuleCreateInput,
        responses={201: RuleSerializer},
        summary="Set an automatic top-up: at a balance level or on a schedule",
        description=REFUSALS,
    )
    @refuses(409)
    def post(self, request, account_id: int):
        account = account_get_for_user(
            user=request.user, account_id=account_id, paying=True, must_view=True
        )
        data = RuleCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        trigger = fields.pop("trigger")
        rule = autotopup.auto_topup_create(
            user=request.user, account=account, trigger=trigger, data=autotopup.RuleInput(**fields)
        )
        rule = autotopup.auto_topup_get(account=account, rule_id=rule.pk)
        return Response(_rules_body([rule], user=request.user)[0], status=status.HTTP_201_CREATED)


class RuleDetailApi(APIView):
    @extend_schema(
        request=RuleFields(partial=True),
        responses=RuleSerializer,
        summary="Change an automatic top-up (who set it)",
        description="Any of the fields; the rule with them is checked as a new one. "
        + REFUSALS
        + " not_your_auto_topup (403: another user's rule).",
    )
    @refuses(403, 409)
    def patch(self, request, account_id: int, rule_id: int):
        account = account_get_for_user(
            user=request.user, account_id=account_id, paying=True, must_view=True
        )
        data = RuleFields(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        rule = autotopup.auto_topup_update(
            user=request.user, account=account, rule_id=rule_id, changes=data.validated_data
        )
        return Response(_rules_body([rule], user=request.user)[0])

    @extend_schema(
        responses={204: None},
        summary="End an automatic top-up (who set it, or the account's holder)",
        description="A run not charged yet is skipped. not_your_auto_topup (403).",
    )
    @refuses(403)
    def delete(self, request, account_id: int, rule_id: int):
        account = account_get_for_user(
            user=request.user, account_id=account_id, paying=True, must_view=True
        )
        autotopup.auto_topup_end(user=request.user, account=account, rule_id=rule_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("payment-methods/", PaymentMethodListApi.as_view(), name="payment-methods"),
    path(
        "payment-methods/<id:method_id>/",
        PaymentMethodDetailApi.as_view(),
        name="payment-method",
    ),
    path(
        "accounts/<id:account_id>/auto-topups/",
        RuleListApi.as_view(),
        name="account-auto-topups",
    ),
    path(
        "accounts/<id:account_id>/auto-topups/<id:rule_id>/",
        RuleDetailApi.as_view(),
        name="account-auto-topup",
    ),
]
