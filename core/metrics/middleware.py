"""HTTP requests counted by view and status, and timed: first in MIDDLEWARE, so the time is the
whole of Django's work and every answer is counted, those of other middleware included."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core.metrics.registry import HTTP_LATENCY, HTTP_REQUESTS

# Any other method a client invents is "other": labels must stay few.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A request no URL pattern matched (a 404, or answered by middleware before resolving): the
# raw path would let anyone create a time series per path.
UNMATCHED = "unmatched"


def view_label(request: HttpRequest) -> str:
    """The URL pattern's name (namespaced: "admin:index"), or the view's dotted path when the
    pattern has none: bounded by the URL configuration, whatever paths clients send."""
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None else UNMATCHED


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        view = view_label(request)
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUESTS.labels(view, method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(view).observe(time.perf_counter() - started)
        return response
