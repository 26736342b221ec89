from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.money import money_digits
from outages import selectors
from outages.models import Outage


def _local(value, zone):
    return value.astimezone(zone).isoformat() if value else None


class OutageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    source = serializers.ChoiceField(
        choices=Outage.Source.choices,
        help_text="meters: detected from the meters' own failure events; staff: entered by staff.",
    )
    status = serializers.CharField()
    reason = serializers.CharField()
    area = serializers.SerializerMethodField()
    start = serializers.SerializerMethodField(help_text="Planned start, local time with offset.")
    end = serializers.SerializerMethodField(
        help_text="Planned end; for an unplanned outage the estimated restoration."
    )
    actual_start = serializers.SerializerMethodField()
    actual_end = serializers.SerializerMethodField()
    timezone = serializers.CharField(source="utility.timezone")

    def get_area(self, outage) -> str:
        # The place in the reader's language, as the notice said it.
        user = self.context.get("user")
        language = getattr(user, "language", None) or "en"
        return selectors.outage_area_text(outage=outage, language=language)

    def get_start(self, outage) -> str:
        return _local(outage.planned_start, outage.utility.zone)

    def get_end(self, outage) -> str:
        return _local(outage.planned_end, outage.utility.zone)

    def get_actual_start(self, outage) -> str | None:
        return _local(outage.actual_start, outage.utility.zone)

    def get_actual_end(self, outage) -> str | None:
        return _local(outage.actual_end, outage.utility.zone)


class AffectedMeterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    serial = serializers.CharField()
    account = serializers.IntegerField()
    consumer_id = serializers.CharField()


class OutageDetailSerializer(OutageSerializer):
    my_meters = serializers.SerializerMethodField()

    @extend_schema_field(AffectedMeterSerializer(many=True))
    def get_my_meters(self, outage) -> list[dict]:
        rows = selectors.outage_meters_for_user(user=self.context["user"], outage=outage)
        return [
            {
                "id": r.meter_id,
                "serial": r.meter.serial,
                "account": r.reader_account.pk,
                "consumer_id": r.reader_account.consumer_id,
            }
            for r in rows
        ]


class CompensationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    consumer_id = serializers.CharField(source="account.consumer_id")
    standard = serializers.CharField()
    standard_name = serializers.CharField(source="get_standard_display")
    reason = serializers.CharField()
    amount = serializers.SerializerMethodField(help_text="In the currency's own decimals.")
    currency = serializers.CharField()
    status = serializers.CharField()
    failure_at = serializers.DateTimeField()
    credited_at = serializers.DateTimeField()
    outage = serializers.IntegerField(source="outage_id")
    evidence = serializers.SerializerMethodField(
        help_text="What the time without supply was measured from: meter (the meter's own "
        "failure and restoration events), outage (the outage's times: the meter did not report), "
        "or null for standards not measured from an outage."
    )

    @extend_schema_field(
        serializers.ChoiceField(choices=["meter", "outage", "supplied"], allow_null=True)
    )
    def get_evidence(self, compensation) -> str | None:
        return (compensation.details or {}).get("evidence")

    def get_amount(self, compensation) -> str:
        minor = compensation.utility.currency_minor_unit
        return money_digits(compensation.amount, minor_unit=minor)


class OutageListApi(APIView):
    @extend_schema(
        responses=OutageSerializer(many=True),
        summary="Upcoming and active outages affecting my meters",
    )
    def get(self, request):
        outages = selectors.outages_for_user(user=request.user)
        return Response(OutageSerializer(outages, many=True, context={"user": request.user}).data)


class OutageDetailApi(APIView):
    @extend_schema(responses=OutageDetailSerializer, summary="An outage affecting my meters")
    def get(self, request, outage_id: int):
        outage: Outage = selectors.outage_get_for_user(user=request.user, outage_id=outage_id)
        return Response(OutageDetailSerializer(outage, context={"user": request.user}).data)


class CompensationListApi(APIView):
    @extend_schema(
        responses=CompensationSerializer(many=True),
        summary="Compensation owed or paid to my accounts under the guaranteed standards, and why",
    )
    def get(self, request):
        rows = selectors.compensations_for_user(user=request.user)
        return Response(CompensationSerializer(rows, many=True).data)
