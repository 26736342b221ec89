from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Language
from core.http import BoundedLimitOffsetPagination
from core.money import money_digits
from notifications import categories, selectors, services
from notifications.models import Device

# --- Devices ----------------------------------------------------------------------------------


class DeviceOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    platform = serializers.CharField()
    app_version = serializers.CharField()
    language = serializers.CharField()
    token_suffix = serializers.SerializerMethodField(help_text="The token's last 8 characters.")
    created_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()

    def get_token_suffix(self, device) -> str:
        return device.token[-8:]


class DeviceListApi(APIView):
    class DeviceRegisterInput(serializers.Serializer):
        token = serializers.RegexField(
            r"^[\x21-\x7e]+$", max_length=512, help_text="FCM registration token."
        )
        platform = serializers.ChoiceField(choices=Device.Platform.choices)
        app_version = serializers.CharField(
            max_length=32, required=False, default="", allow_blank=True
        )
        language = serializers.ChoiceField(choices=Language.choices, required=False)
        replaces = serializers.CharField(
            max_length=512,
            required=False,
            help_text="This install's previous token, when FCM rotated it.",
        )
        fid = serializers.RegexField(
            r"^[\x21-\x7e]+$",
            max_length=512,
            required=False,
            help_text="The app's Firebase installation ID; pushes target it when given.",
        )

    @extend_schema(responses=DeviceOutputSerializer(many=True), summary="My devices")
    def get(self, request):
        return Response(
            DeviceOutputSerializer(selectors.devices_for_user(user=request.user), many=True).data
        )

    @extend_schema(
        request=DeviceRegisterInput,
        responses={201: DeviceOutputSerializer, 200: DeviceOutputSerializer},
        summary="Register or refresh a push token (idempotent)",
    )
    def post(self, request):
        data = self.DeviceRegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        device, created = services.device_register(user=request.user, **data.validated_data)
        return Response(
            DeviceOutputSerializer(device).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class DeviceDetailApi(APIView):
    @extend_schema(responses={204: None}, summary="Stop pushes to a device")
    def delete(self, request, device_id: int):
        services.device_remove(user=request.user, device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Inbox ------------------------------------------------------------------------------------


class NotificationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    category = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    data = serializers.DictField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
    read = serializers.SerializerMethodField()

    def get_read(self, notification) -> bool:
        return notification.read_at is not None


class NotificationListApi(APIView):
    pagination_class = BoundedLimitOffsetPagination

    class FilterInput(serializers.Serializer):
        unread = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        parameters=[FilterInput],
        responses=NotificationOutputSerializer(many=True),
        summary="My notifications, newest first",
    )
    def get(self, request):
        filters = self.FilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.notifications_for_user(
            user=request.user, unread_only=filters.validated_data["unread"]
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(NotificationOutputSerializer(page, many=True).data)


class NotificationDetailApi(APIView):
    @extend_schema(responses=NotificationOutputSerializer, summary="One notification")
    def get(self, request, notification_id: str):
        notification = selectors.notification_get(
            user=request.user, notification_id=notification_id
        )
        return Response(NotificationOutputSerializer(notification).data)


class NotificationReadApi(APIView):
    @extend_schema(request=None, responses=NotificationOutputSerializer, summary="Mark read")
    def post(self, request, notification_id: str):
        notification = services.notification_mark_read(
            user=request.user, notification_id=notification_id
        )
        return Response(NotificationOutputSerializer(notification).data)


class NotificationReadAllApi(APIView):
    class ReadAllResult(serializers.Serializer):
        marked = serializers.IntegerField()

    @extend_schema(request=None, responses=ReadAllResult, summary="Mark all my notifications read")
    def post(self, request):
        return Response({"marked": services.notifications_mark_all_read(user=request.user)})


class UnreadCountApi(APIView):
    class UnreadCount(serializers.Serializer):
        unread = serializers.IntegerField()

    @extend_schema(responses=UnreadCount, summary="How many notifications are unread")
    def get(self, request):
        return Response({"unread": selectors.unread_count(user=request.user)})


# --- Categories and preferences ---------------------------------------------------------------


class CategoryListApi(APIView):
    class Output(serializers.Serializer):
        code = serializers.CharField()
        urgent = serializers.BooleanField()
        description = serializers.CharField()

    @extend_schema(responses=Output(many=True), summary="Alert categories")
    def get(self, request):
        return Response(self.Output(categories.CATEGORIES.values(), many=True).data)


@extend_schema_field({"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"})
class HourMinuteField(serializers.TimeField):
    """A local wall-clock time as HH:MM, in and out."""

    def __init__(self, **kwargs) -> None:
        super().__init__(format="%H:%M", input_formats=["%H:%M"], **kwargs)


@extend_schema_field(
    {"type": "string", "pattern": r"^[0-9]{1,9}(\.[0-9]{1,3})?$", "nullable": True}
)
class AmountField(serializers.DecimalField):
    """An amount as a string in up to three decimals ("2.500"); a bare number is read too."""


class QuietHoursSerializer(serializers.Serializer):
    start = HourMinuteField()
    end = HourMinuteField()


class PreferencesOutputSerializer(serializers.Serializer):
    """`utility` in the context: the one whose currency the low-balance amount is in (None: the
    user holds no account, or accounts in several currencies; the amount is then as stored)."""

    categories = serializers.SerializerMethodField()
    low_balance_amount = serializers.SerializerMethodField(
        help_text="In the currency's own decimals; null: the utility's default."
    )
    currency = serializers.SerializerMethodField(
        help_text="The currency of the low-balance amount: that of the accounts I hold."
    )
    low_balance_days = serializers.IntegerField(allow_null=True)
    quiet_hours = serializers.SerializerMethodField()

    def get_low_balance_amount(self, preference) -> str | None:
        amount, utility = preference.low_balance_amount, self.context.get("utility")
        if amount is None:
            return None
        if utility is None:
            return f"{amount:f}"
        return money_digits(amount, minor_unit=utility.currency_minor_unit)

    def get_currency(self, preference) -> str | None:
        utility = self.context.get("utility")
        return utility.currency if utility else None

    def get_categories(self, preference) -> dict[str, bool]:
        return {code: code not in preference.disabled_categories for code in categories.CATEGORIES}

    def get_quiet_hours(self, preference) -> dict[str, str] | None:
        if preference.quiet_start is None:
            return None
        return QuietHoursSerializer(
            {"start": preference.quiet_start, "end": preference.quiet_end}
        ).data


@extend_schema_field(
    {
        "type": "object",
        # Urgent categories cannot be turned off: true is all they take.
        "properties": {
            code: {"type": "boolean", "enum": [True]} if category.urgent else {"type": "boolean"}
            for code, category in categories.CATEGORIES.items()
        },
        "additionalProperties": False,
        "description": "{category: on/off}, for the categories of /notification-categories/; "
        "urgent ones stay on.",
    }
)
class CategorySwitchesField(serializers.DictField):
    pass


class PreferencesApi(APIView):
    class UpdateInput(serializers.Serializer):
        categories = CategorySwitchesField(child=serializers.BooleanField(), required=False)
        low_balance_amount = AmountField(
            max_digits=12, decimal_places=3, min_value=0, allow_null=True, required=False
        )
        low_balance_days = serializers.IntegerField(
            min_value=0, max_value=60, allow_null=True, required=False
        )
        quiet_hours = QuietHoursSerializer(
            allow_null=True, required=False, help_text="Local times; null turns them off."
        )

    @extend_schema(responses=PreferencesOutputSerializer, summary="My alert preferences")
    def get(self, request):
        return _preferences_response(request, selectors.preferences_get(user=request.user))

    @extend_schema(
        request=UpdateInput,
        responses=PreferencesOutputSerializer,
        summary="Change my alert preferences",
    )
    def patch(self, request):
        data = self.UpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        if "quiet_hours" in values:
            quiet = values["quiet_hours"]
            values["quiet_hours"] = None if quiet is None else (quiet["start"], quiet["end"])
        preference = services.preferences_update(user=request.user, **values)
        return _preferences_response(request, preference)


def _preferences_response(request, preference) -> Response:
    utility = selectors.preferences_utility(user=request.user)
    return Response(PreferencesOutputSerializer(preference, context={"utility": utility}).data)
