from __future__ import annotations

from django.urls import path

from core.schema import id_converter_register
from insight import apis

id_converter_register()

urlpatterns = [
    path(
        "accounts/<id:account_id>/bill-forecast/",
        apis.BillForecastApi.as_view(),
        name="account-bill-forecast",
    ),
    path(
        "accounts/<id:account_id>/bills/<str:month>/comparison/",
        apis.BillComparisonApi.as_view(),
        name="account-bill-comparison",
    ),
    path(
        "accounts/<id:account_id>/time-of-day/",
        apis.TimeOfDayApi.as_view(),
        name="account-time-of-day",
    ),
    path("accounts/<id:account_id>/demand/", apis.DemandApi.as_view(), name="account-demand"),
]
