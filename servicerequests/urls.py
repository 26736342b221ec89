from __future__ import annotations

from django.urls import path

from servicerequests import apis

urlpatterns = [
    path(
        "accounts/<int:account_id>/service-request-types/",
        apis.RequestTypeListApi.as_view(),
        name="service-request-types",
    ),
    path("accounts/<int:account_id>/helpline/", apis.HelplineApi.as_view(), name="helpline"),
    path("service-requests/", apis.RequestListApi.as_view(), name="service-requests"),
    path(
        "service-requests/<int:request_id>/",
        apis.RequestDetailApi.as_view(),
        name="service-request",
    ),
    path(
        "service-requests/<int:request_id>/comments/",
        apis.CommentApi.as_view(),
        name="service-request-comments",
    ),
    path(
        "service-requests/<int:request_id>/cancel/",
        apis.CancelApi.as_view(),
        name="service-request-cancel",
    ),
    path(
        "service-requests/<int:request_id>/estimate/pay/",
        apis.EstimatePayApi.as_view(),
        name="service-request-estimate-pay",
    ),
    path(
        "service-requests/<int:request_id>/attachments/",
        apis.AttachmentListApi.as_view(),
        name="service-request-attachments",
    ),
    path(
        "service-requests/<int:request_id>/attachments/<int:attachment_id>/",
        apis.AttachmentDownloadApi.as_view(),
        name="service-request-attachment",
    ),
]
