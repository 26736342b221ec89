from __future__ import annotations

from django.apps import AppConfig


class ServiceRequestsConfig(AppConfig):
    name = "servicerequests"
    verbose_name = "Service requests and complaints"
