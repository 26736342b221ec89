"""GET /metrics: the Prometheus page, for the monitoring system only.

Allowed when the request carries `Authorization: Bearer <METRICS_TOKEN>` (compared in constant
time) or comes from an address in METRICS_ALLOW_NETS (as core.http.client_ip reads it). Else:
404 when neither is configured (the endpoint is off), 401 otherwise, with nothing in the body
that says more.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from core.metrics.collect import FiguresCollector
from core.metrics.registry import page


@lru_cache(maxsize=8)
def _networks(nets: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(net, strict=False) for net in nets)


def _token_given(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def _address_allowed(request: HttpRequest) -> bool:
    nets = _networks(tuple(settings.METRICS_ALLOW_NETS))
    if not nets:
        return False
    try:
        # The peer's own address, never X-Forwarded-For: its leftmost entry is whatever the
        # client wrote there, behind a proxy that appends (the scraper reaches the web directly).
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    return any(address in net for net in nets)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not (settings.METRICS_TOKEN or settings.METRICS_ALLOW_NETS):
        return HttpResponse(status=404)
    if not (_token_given(request) or _address_allowed(request)):
        response = HttpResponse(status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = page(
        accept=request.META.get("HTTP_ACCEPT", ""), extra=[FiguresCollector()]
    )
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
