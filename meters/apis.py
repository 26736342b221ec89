from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from core.parsers import PayloadTooLarge
from core.schema import MOMENT_PATTERN
from meters import exports, ingest, selectors, services
from meters.auth import ServiceTokenAuthentication
from meters.ingest import csv_rows

# ---- Head-end ingest -------------------------------------------------------------------------


class RawBodyParser(BaseParser):
    """Reads JSON or CSV bodies up to READINGS_MAX_BODY_BYTES; the view decides what they mean."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.READINGS_MAX_BODY_BYTES
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge(f"A batch may be at most {limit // (1024 * 1024)} MiB; split it.")
        return data


QUALITIES = ["actual", "estimated", "missing"]


class ReadingInput(serializers.Serializer):
    meter = serializers.CharField(max_length=40, help_text="The meter's serial.")
    start = serializers.DateTimeField(help_text="The interval's start, with its UTC offset.")
    wh = serializers.IntegerField(
        min_value=0, allow_null=True, help_text="Energy in the interval; null when missing."
    )
    quality = serializers.ChoiceField(choices=QUALITIES, required=False, default="actual")


class BlockInput(serializers.Serializer):
    meter = serializers.CharField(max_length=40, help_text="The meter's serial.")
    start = serializers.DateTimeField(help_text="The first interval's start, with its offset.")
    values = serializers.ListField(
        child=serializers.IntegerField(min_value=0, allow_null=True),
        help_text="Wh of consecutive 15-minute intervals from `start`.",
    )
    quality = serializers.JSONField(
        required=False,
        help_text="One of actual, estimated, missing for the whole block, or a list as long "
        "as `values`.",
    )


class IngestBatchInput(serializers.Serializer):
    batch_id = serializers.CharField(
        required=False, max_length=100, help_text="The head-end's own id of the batch."
    )
    readings = ReadingInput(many=True, required=False)
    blocks = BlockInput(many=True, required=False)


class RejectionSerializer(serializers.Serializer):
    """Where the refused reading was: `index` (JSON readings), `block` and `position` (a block's
    values) or `line` (CSV)."""

    index = serializers.IntegerField(required=False)
    block = serializers.IntegerField(required=False)
    position = serializers.IntegerField(required=False)
    line = serializers.IntegerField(required=False)
    meter = serializers.CharField()
    start = serializers.CharField(help_text="As sent.")
    reason = serializers.CharField(help_text="unknown_meter, in_future, bad_quality, ...")
    message = serializers.CharField()


class IngestResultSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField()
    readings = serializers.IntegerField()
    accepted = serializers.IntegerField()
    stored = serializers.IntegerField()
    corrected = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rejections = RejectionSerializer(many=True)


def _ingest_body(result: services.IngestResult) -> dict:
    return {
        "batch_id": result.batch_id,
        "readings": result.readings,
        "accepted": result.accepted,
        "stored": result.stored,
        "corrected": result.corrected,
        "unchanged": result.unchanged,
        "rejected": result.rejected,
        "rejections": [r.as_dict() for r in result.rejections],
    }


class ReadingsIngestApi(APIView):
    """Batches of 15-minute readings from the utility's head-end system.

    JSON: `{"batch_id": "...", "readings": [{"meter", "start", "wh", "quality"}]}` and/or
    `"blocks": [{"meter", "start", "values": [Wh, ...], "quality": "actual" | [...]}]` (a load profile:
    consecutive intervals from `start`). CSV (`Content-Type: text/csv`): header `meter,start,wh,quality`.
    `start` is the interval's start with its UTC offset. Good readings are stored and bad ones listed;
    sending the same batch again stores nothing twice; a different value for a stored interval replaces
    it and is kept in the audit trail.
    """

    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [RawBodyParser]

    @extend_schema(
        request={"application/json": IngestBatchInput, "text/csv": str},
        responses={200: IngestResultSerializer},
    )
    def post(self, request):
        token = request.user
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        # An empty body reaches no parser: DRF gives an empty form instead of bytes.
        body = request.data if isinstance(request.data, bytes) else b""
        if content_type == "text/csv":
            try:
                text = body.decode("utf-8-sig")
                readings = list(csv_rows(text))
            except (UnicodeDecodeError, ValueError) as exc:
                raise DomainError(f"Unreadable CSV: {exc}", code="malformed_csv") from None
            kwargs = {"readings": readings, "source": "csv"}
        elif content_type == "application/json":
            kwargs = ingest.json_batch_parse(body)
        else:
            return Response(
                {
                    "error": {
                        "code": "unsupported_media_type",
                        "message": "Send application/json or text/csv.",
                        "fields": {},
                    }
                },
                status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            )
        result = services.readings_ingest(utility=token.utility, token=token, **kwargs)
        if result.readings == 0:
            raise DomainError("The batch holds no readings.", code="empty_batch")
        if result.accepted == 0:
            raise DomainError(
                "Every reading in the batch was refused; see rejections.",
                code="all_rejected",
                extra={
                    "rejections": [r.as_dict() for r in result.rejections],
                    "batch_id": result.batch_id,
                },
            )
        return Response(_ingest_body(result))


# ---- Consumers ---------------------------------------------------------------------------------


class TenancySerializer(serializers.Serializer):
    account = serializers.IntegerField(help_text="The account id for /accounts/{id}/ calls.")
    consumer_id = serializers.CharField()
    start = serializers.DateTimeField(help_text="In the utility's zone.")
    end = serializers.DateTimeField(allow_null=True, help_text="Null while it runs.")
    current = serializers.BooleanField()


class GridSerializer(serializers.Serializer):
    area = serializers.CharField()
    feeder = serializers.CharField()
    transformer = serializers.CharField()


class SupplySerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["on", "off", "unknown"],
        help_text="unknown: the meter has been silent a day (or never spoke) and reported no "
        "failure.",
    )
    since = serializers.DateTimeField(
        allow_null=True,
        help_text="Local time with offset: the failure (the meter's own, else the outage's "
        "start) or the last restoration; null when on and it never failed.",
    )
    outage = serializers.IntegerField(
        allow_null=True, help_text="The outage it is in (GET /outages/{id}/), while off."
    )


def _local(moment: datetime | None, meter) -> str | None:
    return moment.astimezone(meter.utility.zone).isoformat() if moment else None


class MeterSerializer(serializers.Serializer):
    """A meter as its reader may see it: the live state only while the reader holds it now; a
    meter of a closed account shows its history's bounds and nothing of its next tenant. Times
    are the utility's local time with its offset."""

    id = serializers.IntegerField()
    serial = serializers.CharField()
    utility = serializers.CharField(source="utility.code")
    account = serializers.SerializerMethodField()
    consumer_id = serializers.SerializerMethodField()
    current = serializers.SerializerMethodField()
    tenancies = serializers.SerializerMethodField()
    payment_mode = serializers.CharField()
    status = serializers.SerializerMethodField()
    relay = serializers.SerializerMethodField()
    relay_confirmed_at = serializers.SerializerMethodField(
        help_text="When the meter last reported its relay opening or closing."
    )
    supply = serializers.SerializerMethodField()
    rated_capacity_kw = serializers.DecimalField(max_digits=8, decimal_places=2)
    last_reading_at = serializers.SerializerMethodField(
        help_text="Start of the newest interval stored."
    )
    last_communication_at = serializers.SerializerMethodField()
    communication = serializers.SerializerMethodField()
    grid = serializers.SerializerMethodField()

    @staticmethod
    def _current(meter) -> bool:
        return any(t.current for t in meter.tenancies)

    def get_account(self, meter) -> int:
        return meter.tenancies[-1].account_id

    def get_consumer_id(self, meter) -> str:
        return meter.tenancies[-1].consumer_id

    def get_current(self, meter) -> bool:
        return self._current(meter)

    @extend_schema_field(TenancySerializer(many=True))
    def get_tenancies(self, meter) -> list[dict]:
        return selectors.tenancies_body(meter)

    def get_status(self, meter) -> str | None:
        return meter.status if self._current(meter) else None

    def get_relay(self, meter) -> str | None:
        return meter.relay if self._current(meter) else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_relay_confirmed_at(self, meter) -> str | None:
        return _local(meter.supply.relay_confirmed_at, meter) if self._current(meter) else None

    @extend_schema_field(SupplySerializer(allow_null=True))
    def get_supply(self, meter) -> dict | None:
        return selectors.meter_supply(meter=meter) if self._current(meter) else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_last_reading_at(self, meter) -> str | None:
        return _local(meter.last_reading_at, meter) if self._current(meter) else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_last_communication_at(self, meter) -> str | None:
        return _local(meter.last_communication_at, meter) if self._current(meter) else None

    def get_communication(self, meter) -> str | None:
        return selectors.communication_health(meter=meter) if self._current(meter) else None

    @extend_schema_field(GridSerializer(allow_null=True))
    def get_grid(self, meter) -> dict | None:
        t = meter.transformer
        if t is None:
            return None
        return {"area": t.feeder.area.name, "feeder": t.feeder.code, "transformer": t.code}


PERIOD_PARAMS = [
    OpenApiParameter(
        "period_from",
        str,
        required=True,
        pattern=MOMENT_PATTERN,
        description="Local date (2026-11-01) or ISO time (without an offset: local).",
    ),
    OpenApiParameter(
        "period_to",
        str,
        required=True,
        pattern=MOMENT_PATTERN,
        description="Exclusive end, after period_from: local date or ISO time. A period may be "
        "at most 31 days by interval, 92 by hour, 732 by day and 1830 by week or month.",
    ),
]


class CountsSerializer(serializers.Serializer):
    energy_wh = serializers.IntegerField(
        allow_null=True, help_text="Null when no interval has a reading: never 0 for no data."
    )
    expected_intervals = serializers.IntegerField(
        help_text="Quarter-hours ended within the reader's tenancy."
    )
    present_intervals = serializers.IntegerField()
    estimated_intervals = serializers.IntegerField()
    missing_intervals = serializers.IntegerField()
    outside_intervals = serializers.IntegerField(
        help_text="Quarter-hours outside the reader's tenancy: neither expected nor missing."
    )


class ConsumptionBucketSerializer(serializers.Serializer):
    """A quarter-hour (group_by=interval: start, energy_wh, quality) or a local hour, day, week or
    month (start, end, the counts and complete). `cost` when the meter has a tariff."""

    start = serializers.DateTimeField(help_text="Local time with offset.")
    end = serializers.DateTimeField(required=False)
    energy_wh = serializers.IntegerField(allow_null=True)
    quality = serializers.ChoiceField(
        choices=["absent", "actual", "estimated", "missing", "outside"], required=False
    )
    expected_intervals = serializers.IntegerField(required=False)
    present_intervals = serializers.IntegerField(required=False)
    estimated_intervals = serializers.IntegerField(required=False)
    missing_intervals = serializers.IntegerField(required=False)
    outside_intervals = serializers.IntegerField(required=False)
    complete = serializers.BooleanField(required=False)
    cost = serializers.CharField(
        allow_null=True,
        required=False,
        help_text="In the currency's decimals; null without a present reading or a tariff.",
    )


class ConsumptionSerializer(serializers.Serializer):
    meter = serializers.IntegerField()
    timezone = serializers.CharField()
    period_from = serializers.DateTimeField()
    period_to = serializers.DateTimeField()
    group_by = serializers.ChoiceField(choices=["interval", "hour", "day", "week", "month"])
    unit = serializers.ChoiceField(choices=["Wh"])
    currency = serializers.CharField()
    tenancies = TenancySerializer(many=True)
    total = CountsSerializer()
    buckets = ConsumptionBucketSerializer(many=True)


class ProfileSlotSerializer(serializers.Serializer):
    time = serializers.RegexField(r"^\d{2}:\d{2}$", help_text="Local wall-clock slot start.")
    average_wh = serializers.FloatField(allow_null=True)
    days = serializers.IntegerField(help_text="Days with a reading in this slot.")


class PeakSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    energy_wh = serializers.IntegerField()
    demand_kw = serializers.FloatField()


class PreviousPeriodSerializer(serializers.Serializer):
    period_from = serializers.DateTimeField()
    period_to = serializers.DateTimeField()
    daily_average_wh = serializers.FloatField(allow_null=True)
    complete_days = serializers.IntegerField()


class PatternSerializer(serializers.Serializer):
    meter = serializers.IntegerField()
    timezone = serializers.CharField()
    period_from = serializers.DateTimeField()
    period_to = serializers.DateTimeField()
    unit = serializers.ChoiceField(choices=["Wh"])
    tenancies = TenancySerializer(many=True)
    profile = ProfileSlotSerializer(many=True, help_text="96 local quarter-hours.")
    weekday_daily_average_wh = serializers.FloatField(allow_null=True)
    weekend_daily_average_wh = serializers.FloatField(allow_null=True)
    peak = PeakSerializer(allow_null=True)
    base_load_w = serializers.FloatField(allow_null=True)
    daily_average_wh = serializers.FloatField(allow_null=True)
    complete_days = serializers.IntegerField()
    total = CountsSerializer(allow_null=True, help_text="Null for a period not yet begun.")
    previous_period = PreviousPeriodSerializer()
    change_percent = serializers.FloatField(allow_null=True)


def _period(request, meter, group_by="day"):
    return selectors.period_parse(
        raw_from=request.query_params.get("period_from"),
        raw_to=request.query_params.get("period_to"),
        zone=meter.utility.zone,
        group_by=group_by,
    )


class MeterListApi(APIView):
    @extend_schema(responses=MeterSerializer(many=True), summary="My meters")
    def get(self, request):
        return Response(
            MeterSerializer(selectors.meters_for_user(user=request.user), many=True).data
        )


class MeterDetailApi(APIView):
    @extend_schema(responses=MeterSerializer, summary="A meter's status")
    def get(self, request, meter_id: int):
        meter = selectors.meter_get_for_user(
            user=request.user, meter_id=meter_id, with_grid=True, with_supply=True
        )
        return Response(MeterSerializer(meter).data)


class ConsumptionApi(APIView):
    @extend_schema(
        parameters=[
            *PERIOD_PARAMS,
            OpenApiParameter(
                "group_by", str, enum=["interval", "hour", "day", "week", "month"], default="day"
            ),
        ],
        responses=ConsumptionSerializer,
        summary="Energy by local interval, hour, day, week or month; gaps shown as missing",
    )
    def get(self, request, meter_id: int):
        meter = selectors.meter_get_for_user(user=request.user, meter_id=meter_id)
        group_by = request.query_params.get("group_by", "day")
        period = _period(request, meter, group_by)
        return Response(selectors.consumption(meter=meter, period=period, group_by=group_by))


class PatternApi(APIView):
    @extend_schema(
        parameters=PERIOD_PARAMS,
        responses=PatternSerializer,
        summary="Consumption pattern for a period",
        description="A period of at most 92 days, against the period of equal length before it.",
    )
    def get(self, request, meter_id: int):
        meter = selectors.meter_get_for_user(user=request.user, meter_id=meter_id)
        return Response(selectors.pattern(meter=meter, period=_period(request, meter, "hour")))


class ExportApi(APIView):
    @extend_schema(
        parameters=[
            *PERIOD_PARAMS,
            OpenApiParameter("format", str, enum=["csv", "greenbutton"], default="csv"),
        ],
        responses={(200, "text/csv"): str, (200, "application/atom+xml"): str},
        summary="Download my data: CSV or Green Button (ESPI) XML",
    )
    def get(self, request, meter_id: int):
        meter = selectors.meter_get_for_user(user=request.user, meter_id=meter_id)
        kind = request.query_params.get("format", "csv")
        if kind not in ("csv", "greenbutton"):
            raise DomainError.for_field("format", "Use csv or greenbutton.", code="unknown_format")
        period = _period(request, meter, "day")
        series = selectors.meter_series_for_user(meter=meter, start=period.start, end=period.end)
        stem = f"{meter.serial}_{period.start.astimezone(period.zone):%Y%m%d}"
        if kind == "csv":
            response = StreamingHttpResponse(
                exports.csv_lines(series, period.zone), content_type="text/csv"
            )
            response["Content-Disposition"] = f'attachment; filename="{stem}.csv"'
            return response
        response = HttpResponse(
            exports.green_button(meter, series, period.zone), content_type="application/atom+xml"
        )
        response["Content-Disposition"] = f'attachment; filename="{stem}_greenbutton.xml"'
        return response
