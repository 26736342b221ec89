from __future__ import annotations

from django.urls import path

from outages import apis

urlpatterns = [
    path("outages/", apis.OutageListApi.as_view(), name="outages"),
    path("outages/<int:outage_id>/", apis.OutageDetailApi.as_view(), name="outage-detail"),
    path("compensations/", apis.CompensationListApi.as_view(), name="compensations"),
]
