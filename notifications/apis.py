from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Language
from notifications import selectors, services
from notifications.models import Device


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
