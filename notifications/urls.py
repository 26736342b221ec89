from __future__ import annotations

from django.urls import path

from notifications import apis

urlpatterns = [
    path("devices/", apis.DeviceListApi.as_view(), name="devices"),
    path("devices/<int:device_id>/", apis.DeviceDetailApi.as_view(), name="device-detail"),
]
