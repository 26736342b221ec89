from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from config.celery import app as celery_app

logger = logging.getLogger(__name__)

# The broker's answer, per broker URL: (when asked, "ok" or the error), kept for
# HEALTHZ_BROKER_CACHE_SECONDS so that a load balancer probing every web worker every second
# opens a broker connection a few times a minute per process, not once per probe.
_broker_checks: dict[str, tuple[float, str]] = {}
_broker_lock = threading.Lock()


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _check_broker() -> str:
    url = str(celery_app.conf.broker_url)
    # One thread of the process asks; the others wait for its answer (at most the timeout).
    with _broker_lock:
        checked = _broker_checks.get(url)
        if checked and time.monotonic() - checked[0] < settings.HEALTHZ_BROKER_CACHE_SECONDS:
            return checked[1]
        try:
            with celery_app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            answer = "ok"
        except Exception as exc:  # any failure means unhealthy; say which and why
            logger.warning("health check broker failed: %s", exc)
            answer = f"error: {exc.__class__.__name__}"
        _broker_checks[url] = (time.monotonic(), answer)
        return answer


def healthz(request):
    """200 when the database and the Celery broker answer, 503 naming what does not. The
    broker's answer is at most HEALTHZ_BROKER_CACHE_SECONDS old."""
    checks = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as exc:  # any failure means unhealthy; say which and why
            logger.warning("health check %s failed: %s", name, exc)
            checks[name] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unhealthy", "checks": checks},
        status=200 if healthy else 503,
    )
