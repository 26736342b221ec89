from __future__ import annotations

from django.urls import path

from core.schema import id_converter_register
from outages import apis

id_converter_register()

urlpatterns = [
    path("outages/", apis.OutageListApi.as_view(), name="outages"),
    path("outages/<id:outage_id>/", apis.OutageDetailApi.as_view(), name="outage-detail"),
    path("compensations/", apis.CompensationListApi.as_view(), name="compensations"),
]
