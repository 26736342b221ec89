from __future__ import annotations

from django.urls import path

from core.schema import id_converter_register
from notifications import apis

id_converter_register()

urlpatterns = [
    path("devices/", apis.DeviceListApi.as_view(), name="devices"),
    path("devices/<id:device_id>/", apis.DeviceDetailApi.as_view(), name="device-detail"),
    path("notifications/", apis.NotificationListApi.as_view(), name="notifications"),
    path(
        "notifications/unread-count/",
        apis.UnreadCountApi.as_view(),
        name="notifications-unread-count",
    ),
    path(
        "notifications/read-all/",
        apis.NotificationReadAllApi.as_view(),
        name="notifications-read-all",
    ),
    path(
        "notifications/<str:notification_id>/",
        apis.NotificationDetailApi.as_view(),
        name="notification-detail",
    ),
    path(
        "notifications/<str:notification_id>/read/",
        apis.NotificationReadApi.as_view(),
        name="notification-read",
    ),
    path(
        "notification-categories/", apis.CategoryListApi.as_view(), name="notification-categories"
    ),
    path(
        "notification-preferences/",
        apis.PreferencesApi.as_view(),
        name="notification-preferences",
    ),
]
