from __future__ import annotations

from django.urls import path

from core.schema import id_converter_register
from meters import apis, event_apis

id_converter_register()

urlpatterns = [
    path("headend/readings/", apis.ReadingsIngestApi.as_view(), name="headend-readings"),
    path("headend/events/", event_apis.EventsIngestApi.as_view(), name="headend-events"),
    path("meters/", apis.MeterListApi.as_view(), name="meters"),
    path("meters/<id:meter_id>/", apis.MeterDetailApi.as_view(), name="meter-detail"),
    path(
        "meters/<id:meter_id>/consumption/",
        apis.ConsumptionApi.as_view(),
        name="meter-consumption",
    ),
    path("meters/<id:meter_id>/pattern/", apis.PatternApi.as_view(), name="meter-pattern"),
    path("meters/<id:meter_id>/export/", apis.ExportApi.as_view(), name="meter-export"),
]
