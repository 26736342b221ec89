from __future__ import annotations

from django.urls import path

from core.schema import id_converter_register
from servicerequests import apis

id_converter_register()

urlpatterns = [
    path(
        "accounts/<id:account_id>/service-request-types/",
        apis.RequestTypeListApi.as_view(),
        name="service-request-types",
    ),
    path("accounts/<id:account_id>/helpline/", apis.HelplineApi.as_view(), name="helpline"),
    path(
        "accounts/<id:account_id>/outage-reports/",
        apis.OutageReportListApi.as_view(),
        name="outage-reports",
    ),
    path("service-requests/", apis.RequestListApi.as_view(), name="service-requests"),
    path(
        "service-requests/<id:request_id>/",
        apis.RequestDetailApi.as_view(),
        name="service-request",
    ),
    path(
        "service-requests/<id:request_id>/comments/",
        apis.CommentApi.as_view(),
        name="service-request-comments",
    ),
    path(
        "service-requests/<id:request_id>/cancel/",
        apis.CancelApi.as_view(),
        name="service-request-cancel",
    ),
    path(
        "service-requests/<id:request_id>/estimate/pay/",
        apis.EstimatePayApi.as_view(),
        name="service-request-estimate-pay",
    ),
    path(
        "service-requests/<id:request_id>/attachments/",
        apis.AttachmentListApi.as_view(),
        name="service-request-attachments",
    ),
    path(
        "service-requests/<id:request_id>/attachments/<id:attachment_id>/",
        apis.AttachmentDownloadApi.as_view(),
        name="service-request-attachment",
    ),
]
