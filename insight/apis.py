"""The insight a consumer reads about one account: bill forecast, bill comparison, time of day and
max demand (docs/insight.md). Each is one selector over one account's meters; any user who may view
the account (its holder, a share with the view right) reads it."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_get_for_user
from core.schema import refuses
from insight import selectors
from insight.selectors import MAX_TOD_DAYS

MONTH_PATTERN = r"^(20[0-9]{2})-(0[1-9]|1[0-2])$"
MONEY_HELP = 'In the currency\'s own decimals, as a string ("12.50" EGP, "1.500" KWD).'
KWH_HELP = "kWh with three decimals, as a string."


def _money(help_text: str = "") -> serializers.CharField:
    return serializers.CharField(help_text=f"{help_text} {MONEY_HELP}".strip())


def _kwh(help_text: str = "") -> serializers.CharField:
    return serializers.CharField(help_text=f"{help_text} {KWH_HELP}".strip())


class TariffRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["flat", "progressive", "tou"])


class AccountHead(serializers.Serializer):
    account = serializers.IntegerField()
    consumer_id = serializers.CharField()
    currency = serializers.CharField()
    timezone = serializers.CharField(help_text="The utility's IANA zone: local days are its own.")


# --- Bill forecast -------------------------------------------------------------------------------


class ForecastPartSerializer(serializers.Serializer):
    period_to = serializers.DateTimeField(help_text="Local time with its offset.")
    days = serializers.IntegerField(help_text="Local days of fixed charges.")
    kwh = _kwh()
    energy = _money()
    fixed_charges = _money()
    total = _money(help_text="energy + fixed_charges.")


class BillForecastSerializer(AccountHead):
    month = serializers.RegexField(MONTH_PATTERN)
    period_from = serializers.DateTimeField(help_text="The local month's first instant.")
    as_of = serializers.DateTimeField(help_text="Now, to the quarter-hour, local.")
    tariff = TariffRefSerializer()
    coverage_percent = serializers.FloatField(
        help_text="The share of the last `coverage_days` days' quarter-hours that were read."
    )
    coverage_days = serializers.IntegerField()
    min_coverage_percent = serializers.IntegerField(
        help_text="Below this coverage no forecast is given (409 insufficient_readings)."
    )
    so_far = ForecastPartSerializer(help_text="The month up to now, as read.")
    projected = ForecastPartSerializer(
        help_text="To the month's end: unread and future quarter-hours at the household's "
        "average pace and rate."
    )


class BillForecastApi(APIView):
    @extend_schema(
        responses=BillForecastSerializer,
        summary="Postpaid: this month's bill so far and projected to the month's end",
        description=(
            "409 `not_postpaid` for a prepaid account (its balance forecast projects the month), "
            "`no_readings` without any reading to go on, `insufficient_readings` when too few of "
            "the recent quarter-hours were read (`error.coverage_percent`, "
            "`error.min_coverage_percent`), `no_tariff` without a postpaid tariff."
        ),
    )
    @refuses(409)
    def get(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id)
        return Response(selectors.bill_forecast(account=account))


# --- Bill comparison -----------------------------------------------------------------------------


class ComparedBillSerializer(serializers.Serializer):
    month = serializers.RegexField(MONTH_PATTERN)
    days = serializers.IntegerField(help_text="Days in the local month.")
    kwh = _kwh()
    energy = _money()
    fixed_charges = _money()
    fine = _money()
    total = _money(help_text="The bill's amount plus its fine.")
    tariff = TariffRefSerializer()


class ComparisonPartsSerializer(serializers.Serializer):
    days = _money(
        help_text="The base month's daily use over this month's days, at the base tariff, "
        "minus the base bill's energy."
    )
    usage = _money(help_text="The rest of the kWh change, at the base month's tariff.")
    tariff = _money(help_text="This month's kWh at its own tariff minus at the base tariff.")
    fixed_charges = _money()
    fines = _money()


class TimeWindowSerializer(serializers.Serializer):
    start = serializers.RegexField(r"^\d{2}:\d{2}$", help_text="Local wall-clock time.")
    end = serializers.RegexField(r"^\d{2}:\d{2}$", help_text="Exclusive; 00:00 is midnight.")


class UsagePartSerializer(serializers.Serializer):
    name = serializers.CharField()
    windows = TimeWindowSerializer(many=True)
    base_kwh = _kwh()
    bill_kwh = _kwh()
    change_kwh = _kwh()


class BillComparisonSerializer(AccountHead):
    bill = ComparedBillSerializer()
    base = ComparedBillSerializer(help_text="The bill compared with: the previous, or `with`.")
    difference = _money(help_text="bill.total − base.total: the parts add up to it exactly.")
    parts = ComparisonPartsSerializer()
    kwh_change = _kwh()
    usage_by_time_of_day = UsagePartSerializer(
        many=True,
        help_text="kWh of each month by the periods of the time-of-use tariff (this bill's, else "
        "the base's), else by night, morning, afternoon and evening; from the readings.",
    )


class BillComparisonApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "month",
                str,
                location=OpenApiParameter.PATH,
                pattern=MONTH_PATTERN,
                description="The bill's local month, YYYY-MM (400 `bad_month` otherwise).",
            ),
            OpenApiParameter(
                "with",
                str,
                pattern=MONTH_PATTERN,
                description="The month of the bill to compare with; the previous bill if absent.",
            ),
        ],
        responses=BillComparisonSerializer,
        summary="Why a bill differs from another: days, usage, tariff, fixed charges, fines",
        description=(
            "404 `bill_not_found` for a month without a bill of the reader's; 409 "
            "`no_previous_bill` when no earlier bill exists, `same_month` when `with` names the "
            "bill's own month, `no_tariff` when a month has none; 400 `bad_month`."
        ),
    )
    @refuses(409)
    def get(self, request, account_id: int, month: str):
        bill_month = selectors.month_parse(month, field_name="month")
        raw_with = request.query_params.get("with")
        base_month = (
            None if raw_with is None else selectors.month_parse(raw_with, field_name="with")
        )
        account = account_get_for_user(user=request.user, account_id=account_id)
        return Response(
            selectors.bill_comparison(account=account, month=bill_month, base_month=base_month)
        )


# --- Time of day ---------------------------------------------------------------------------------


class TouPeriodSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The tariff's period; `standard`: its other hours.")
    windows = TimeWindowSerializer(many=True)
    rate = serializers.CharField(help_text="Per kWh, in the currency, up to 6 decimals.")
    kwh = _kwh()
    cost = _money()
    kwh_share_percent = serializers.FloatField()
    cost_share_percent = serializers.FloatField()


class TouSavingSerializer(serializers.Serializer):
    shift_percent = serializers.IntegerField(help_text="The utility's tod_shift_percent.")
    from_period = serializers.CharField(help_text="The highest-rate period with use.")
    to_period = serializers.CharField(help_text="The cheapest period.")
    kwh = _kwh(help_text="kWh moved.")
    amount = _money(help_text="What moving it would have saved over these days.")


class TimeOfDaySerializer(AccountHead):
    period_from = serializers.DateTimeField()
    period_to = serializers.DateTimeField(help_text="Today's local midnight: whole days.")
    days = serializers.IntegerField()
    tariff = TariffRefSerializer()
    total_kwh = _kwh()
    total_cost = _money(help_text="The sum of the periods' costs.")
    periods = TouPeriodSerializer(many=True)
    saving = TouSavingSerializer()


class TimeOfDayApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "days",
                {"type": "integer", "minimum": 1, "maximum": MAX_TOD_DAYS, "default": 30},
                description="The last complete local days to read (400 `days_out_of_range`, "
                "`bad_days`).",
            )
        ],
        responses=TimeOfDaySerializer,
        summary="Time of day: use and cost by tariff period, and the saving from shifting use",
        description=(
            "409 `no_time_of_day_tariff` when the account's tariff has no periods; "
            "`no_readings` without readings in those days."
        ),
    )
    @refuses(409)
    def get(self, request, account_id: int):
        days = selectors.days_parse(request.query_params.get("days"))
        account = account_get_for_user(user=request.user, account_id=account_id)
        return Response(selectors.time_of_day(account=account, days=days))


# --- Max demand ----------------------------------------------------------------------------------


class DemandDaySerializer(serializers.Serializer):
    date = serializers.DateField(help_text="The local day.")
    max_kw = serializers.CharField(allow_null=True, help_text="Null: nothing read that day.")
    at = serializers.DateTimeField(allow_null=True, help_text="Local start of that quarter-hour.")
    over = serializers.BooleanField(
        allow_null=True, help_text="Above the sanctioned load; null without one on record."
    )


class DemandSerializer(AccountHead):
    month = serializers.RegexField(MONTH_PATTERN)
    sanctioned_load_kw = serializers.CharField(
        allow_null=True, help_text="The contracted demand; null: none on record."
    )
    max_demand_kw = serializers.CharField(
        help_text="The highest 15-minute demand (Wh × 4 / 1000), two decimals."
    )
    max_demand_at = serializers.DateTimeField(help_text="Local start of that quarter-hour.")
    intervals_over = serializers.IntegerField(
        allow_null=True, help_text="Quarter-hours above the sanctioned load."
    )
    days_over = serializers.IntegerField(
        allow_null=True, help_text="Local days with a quarter-hour above it."
    )
    days = DemandDaySerializer(many=True, help_text="Each local day of the month up to today.")


class DemandApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "month",
                str,
                pattern=MONTH_PATTERN,
                description="A local month, YYYY-MM; the current one if absent (400 `bad_month`; "
                "409 `month_in_future`).",
            )
        ],
        responses=DemandSerializer,
        summary="Max 15-minute demand against the sanctioned load",
        description="409 `no_readings` without readings in the month.",
    )
    @refuses(409)
    def get(self, request, account_id: int):
        raw = request.query_params.get("month")
        month = None if raw is None else selectors.month_parse(raw, field_name="month")
        account = account_get_for_user(user=request.user, account_id=account_id)
        return Response(selectors.demand(account=account, month=month))
