"""The utility's own systems (CIS, head-end) record move-outs and move-ins, with the head-end's
service token (`Authorization: Bearer hes_…`): the token's utility is the only one they reach.
Accounts are named by consumer ID and meters by serial, as the utility knows them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import moves
from billing.models import Move
from core.errors import NotFound
from core.money import money_digits
from core.schema import refuses
from meters.auth import ServiceTokenAuthentication
from meters.models import Meter


class FinalMeterSerializer(serializers.Serializer):
    meter = serializers.IntegerField()
    serial = serializers.CharField()
    tenancy_start = serializers.DateTimeField()
    tenancy_end = serializers.DateTimeField(allow_null=True)
    last_interval_start = serializers.DateTimeField(allow_null=True)


class FinalStatementSerializer(serializers.Serializer):
    """A move-out's last intervals and money as they stood after settling (empty on a move-in)."""

    meters = FinalMeterSerializer(many=True, required=False)
    balance = serializers.CharField(required=False)
    debt = serializers.CharField(required=False)


class MoveSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    account = serializers.IntegerField(source="account_id")
    consumer_id = serializers.CharField(source="account.consumer_id")
    meters = serializers.SerializerMethodField()
    at = serializers.DateTimeField()
    credit = serializers.CharField()
    credit_amount = serializers.SerializerMethodField()
    debt = serializers.CharField()
    debt_amount = serializers.SerializerMethodField()
    carried_to = serializers.CharField(source="carried_to.consumer_id", allow_null=True)
    final_statement = FinalStatementSerializer()

    def get_credit_amount(self, move) -> str:
        return money_digits(move.credit_amount, minor_unit=move.account.utility.currency_minor_unit)

    def get_debt_amount(self, move) -> str:
        return money_digits(move.debt_amount, minor_unit=move.account.utility.currency_minor_unit)

    def get_meters(self, move) -> list[str]:
        return sorted(move.meters.values_list("serial", flat=True))


def _answer(move: Move) -> Response:
    code = status.HTTP_200_OK if move.replayed else status.HTTP_201_CREATED
    return Response(MoveSerializer(move).data, status=code)


class UtilitySystemApi(APIView):
    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsAuthenticated]


class MoveOutApi(UtilitySystemApi):
    class MoveOutInput(serializers.Serializer):
        consumer_id = serializers.CharField(max_length=32)
        at = serializers.DateTimeField(
            required=False, help_text="With its offset, on a quarter-hour; default now."
        )
        credit = serializers.ChoiceField(
            choices=["refund", "carry"], required=False, help_text="Default: the utility's policy."
        )
        debt = serializers.ChoiceField(
            choices=["carry", "write_off"],
            required=False,
            help_text="Required when the account owes anything.",
        )
        carry_to = serializers.CharField(
            max_length=32, required=False, help_text="The consumer ID of the new account."
        )
        reason = serializers.CharField(max_length=1000, required=False, allow_blank=True)

    @extend_schema(
        request=MoveOutInput,
        responses={201: MoveSerializer, 200: MoveSerializer},
        summary="Move out: end the tenancy, settle the money, close the account (repeat-safe)",
    )
    @refuses(404, 409)
    def post(self, request):
        data = self.MoveOutInput(data=request.data)
        data.is_valid(raise_exception=True)
        utility = request.user.utility
        values = data.validated_data
        account = moves.account_by_consumer_id(utility=utility, consumer_id=values["consumer_id"])
        choice = moves.MoveOutChoice(
            credit=values.get("credit"),
            debt=values.get("debt"),
            carry_to=moves.account_by_consumer_id(utility=utility, consumer_id=values["carry_to"])
            if values.get("carry_to")
            else None,
            reason=values.get("reason", ""),
        )
        move = moves.move_out(account=account, at=values.get("at"), choice=choice, source="api")
        return _answer(move)


class MoveInApi(UtilitySystemApi):
    class MoveInInput(serializers.Serializer):
        meter = serializers.CharField(max_length=40, help_text="The meter's serial.")
        consumer_id = serializers.CharField(max_length=32)
        registered_mobile = serializers.CharField(max_length=32)
        name = serializers.CharField(max_length=200)
        premises_address = serializers.CharField(max_length=1000, required=False, allow_blank=True)
        at = serializers.DateTimeField(
            required=False, help_text="With its offset, on a quarter-hour; default now."
        )

    @extend_schema(
        request=MoveInInput,
        responses={201: MoveSerializer, 200: MoveSerializer},
        summary="Move in: a new account on a vacant meter (repeat-safe)",
    )
    @refuses(404, 409)
    def post(self, request):
        data = self.MoveInInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        meter = Meter.objects.filter(utility=request.user.utility, serial=values["meter"]).first()
        if meter is None:
            raise NotFound(f"No meter has serial {values['meter']}.", code="unknown_meter")
        move = moves.move_in(
            meter=meter,
            consumer_id=values["consumer_id"],
            registered_mobile=values["registered_mobile"],
            name=values["name"],
            premises_address=values.get("premises_address", ""),
            at=values.get("at"),
            source="api",
        )
        return _answer(move)
